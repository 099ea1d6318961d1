"""Candidate sites of a window: alleles from the evidence of pass 1, and the haplotypes
pass 2 compares reads with (see :mod:`varcall.engines.native.pileup`, step 3). Positions
0-based; ``ref`` holds base codes of the reference from ``ref_lo`` on."""

from __future__ import annotations

import bisect
import dataclasses

import numpy as np

from varcall.engines.native.evidence import Evidence
from varcall.engines.native.evidence_numba_fns import snv_candidates
from varcall.engines.native.pileup import (
    BASES,
    CALL_REACH,
    INDEL_CAP,
    INDEL_CAP_MIN,
    INDEL_FLANK,
    INDEL_LEFT_FLANK,
    MAX_ALLELES,
    MAX_ALT_ALLELES,
    MAX_COMPARE,
    MAX_ERROR_P,
    MAX_SHIFT,
    MIN_ALT_FRACTION,
    MIN_ALT_READS,
    NEIGHBOUR_HAPS,
    NEIGHBOUR_LEFT,
    encode_bases,
)
from varcall.engines.native.reads import ReadBatch
from varcall.engines.native.stutter import PRIOR_TABLE, THETA, StutterModel, site_stutter

__all__ = ["Sites", "find_sites", "pooled_support"]

#: Candidate alleles per 0-based POS: (kind, sequence, supporting reads).
_PerSite = dict[int, list[tuple[str, str, int]]]


@dataclasses.dataclass
class Sites:
    """Candidate sites of a window, sorted by position. N sites, A = MAX_ALLELES.

    pos: (N,) int64 0-based POS. n_alleles: (N,) int32 (REF included).
    alleles: per site a list of allele descriptors, REF first: ``("R", "")``,
    ``("X", base)`` SNV, ``("I", inserted sequence)``, ``("D", deleted reference
    sequence)``; all anchored at POS. support: (N, A) int64 total candidate read counts.
    hap: (N, A, H) uint8 haplotype codes from POS on; cmp_len: (N,) int32 bases compared
    (1 at SNV-only sites); indel: (N,) bool; cap: (N,) float64 per-read indel cap (phred);
    allele_indel: (N, A) bool, the allele is an insertion or deletion; shift: (N,) int32
    largest read shift tried at an indel site (0 at SNV-only sites); del_end: (N, A) int64
    end (0-based, exclusive) of the reference stretch ``[POS + 1, del_end)`` a deletion
    allele removes, 0 for other alleles (spanning deletions, see
    :mod:`varcall.engines.native.pileup`); cand: (L,) uint8 over the reference from
    ``ref_lo`` (L = the reference length given), bit b set where base code b is a
    candidate SNV allele; hap_cand: (N, A, H) uint8 those bits along each indel site's
    haplotypes, for candidates within CALL_REACH of POS (0 elsewhere and at SNV-only
    sites): the local haplotypes a read's context is compared with. st_keep (N, A),
    st_trans (N, A, A) float64: the stutter probabilities of
    :func:`varcall.engines.native.stutter.site_stutter` (1 and 0 at SNV-only sites and
    outside repeats). ``hap`` and ``hap_cand`` have A + NEIGHBOUR_HAPS rows: rows A ..
    A + n_neighbour[k] - 1 hold indel site k's neighbour haplotypes (:func:`_neighbours`),
    which stand for allele 0; n_neighbour: (N,) int32. theta: (N,) float64 the site's QUAL
    prior (:meth:`varcall.engines.native.stutter.StutterModel.variant_prior` at repeat
    indel sites, THETA elsewhere). At indel sites
    ``hap[k, a, h]`` holds reference position ``POS - INDEL_LEFT_FLANK - shift + h`` of
    the allele's haplotype (left flank, allele, reference after it); at SNV-only sites
    ``hap[k, a, 0]`` is the allele's base.
    """

    pos: np.ndarray
    n_alleles: np.ndarray
    alleles: list[list[tuple[str, str]]]
    support: np.ndarray
    hap: np.ndarray
    cmp_len: np.ndarray
    indel: np.ndarray
    cap: np.ndarray
    allele_indel: np.ndarray
    shift: np.ndarray
    del_end: np.ndarray
    cand: np.ndarray
    hap_cand: np.ndarray
    st_keep: np.ndarray
    st_trans: np.ndarray
    n_neighbour: np.ndarray
    theta: np.ndarray

    @property
    def n_sites(self) -> int:
        return int(self.pos.shape[0])


def _allele_order_key(a: tuple[str, str, int]) -> tuple:
    kind, seq, support = a
    return (-support, kind, len(seq), seq)


def find_sites(
    ev: Evidence,
    batch: ReadBatch,
    ref: np.ndarray,
    ref_lo: int,
    ref_text: str,
    stutter: StutterModel | None = None,
) -> Sites:
    """Candidate alleles of the window (see :mod:`varcall.engines.native.pileup`), their
    haplotypes and their stutter probabilities under ``stutter`` (default: the built-in
    prior table; a run passes its estimated one).

    ``ref_text`` is the reference sequence (upper case) from 0-based ``ref_lo``; ``ref``
    its base codes."""
    per_site: _PerSite = {}
    _snv_candidates(ev, ref, ref_lo, per_site)
    if ev.ev_pos.shape[0]:
        _indel_candidates(ev, batch, ref, ref_lo, ref_text, per_site)
    model = stutter if stutter is not None else StutterModel(PRIOR_TABLE)
    return _site_table(per_site, ref, ref_lo, ref_text, model)


def pooled_support(count: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Cohort-pooled ALT evidence: the sum over samples (axis 0) of the reads showing an
    allele, counting only samples where those reads are at least ``MIN_ALT_FRACTION`` of
    the sample's depth (the per-sample floor). ``count`` (S, ...) int; ``depth``
    broadcastable to it. The allele is a candidate when the result is >= MIN_ALT_READS."""
    carrier = (count > 0) & (count >= MIN_ALT_FRACTION * depth)
    return np.where(carrier, count, 0).sum(axis=0)


def _snv_candidates(ev: Evidence, ref: np.ndarray, ref_lo: int, per_site: _PerSite) -> None:
    """Add the SNV candidates of the window to ``per_site``: pooled support
    (:func:`pooled_support`) >= MIN_ALT_READS, at a known reference base."""
    ws = ev.ws
    w = ev.we - ev.ws
    if not w:
        return
    win_ref = ref[ws - ref_lo : ws - ref_lo + w]
    wi, bi, total = snv_candidates(
        ev.counts, ev.depth, ev.err, win_ref, MIN_ALT_FRACTION, MIN_ALT_READS, MAX_ERROR_P
    )
    for i, b, t in zip(wi.tolist(), bi.tolist(), total.tolist()):
        per_site.setdefault(ws + i, []).append(("X", BASES[b], t))


#: Inserted sequences up to this length are grouped by a base-5 code (5^27 < 2^63); longer
#: ones (rare) by their bytes.
_CODE_LEN = 27


def _indel_groups(ev: Evidence, batch: ReadBatch) -> dict[tuple[int, int, bytes], np.ndarray]:
    """Per-sample event counts (S,) int64 of each (anchor, length, inserted base codes),
    in the order of each group's first event."""
    n_samples = ev.counts.shape[0]
    groups: dict[tuple[int, int, bytes], np.ndarray] = {}
    if ev.ev_pos.shape[0] == 0:
        return groups
    ln = ev.ev_len
    start = batch.qoff[ev.ev_read] + ev.ev_qoff  # first inserted base (insertions)
    code = np.zeros(ln.shape[0], np.int64)
    long_ins = ln > _CODE_LEN
    for i in range(int(min(_CODE_LEN, max(0, ln.max())))):
        m = ln > i
        code[m] += batch.bases[start[m] + i].astype(np.int64) * 5**i
    code[long_ins] = -1 - np.arange(int(long_ins.sum()))  # each long one apart for now
    keys = np.stack([ev.ev_pos, ln, code], axis=1)
    uniq, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    counts = np.zeros((uniq.shape[0], n_samples), np.int64)
    np.add.at(counts, (inverse.reshape(-1), batch.sample[ev.ev_read]), 1)
    for g in np.argsort(first, kind="stable").tolist():
        e = int(first[g])
        p, n = int(ev.ev_pos[e]), int(ln[e])
        seq = batch.bases[start[e] : start[e] + n].tobytes() if n > 0 else b""
        have = groups.get((p, n, seq))
        if have is None:
            groups[(p, n, seq)] = counts[g].copy()
        else:  # long insertions with the same bases
            have += counts[g]
    return groups


def _indel_candidates(
    ev: Evidence,
    batch: ReadBatch,
    ref: np.ndarray,
    ref_lo: int,
    ref_text: str,
    per_site: _PerSite,
) -> None:
    """Add the indel candidates to ``per_site``: the events grouped by (anchor, length,
    sequence) that qualify against the cover at the anchor."""
    # insertions of one length at one anchor whose sequences differ (sequencing errors
    # in the inserted bases) are counted together: when no sequence qualifies on its
    # own but the group does, its most frequent sequence stands for it
    by_len: dict[tuple[int, int], list[tuple[bytes, np.ndarray]]] = {}
    for (p, ln, seq), cnt in _indel_groups(ev, batch).items():
        by_len.setdefault((p, ln), []).append((seq, cnt))
    for (p, ln), members in by_len.items():
        if ref[p - ref_lo] == 4:
            continue
        cov = ev.cover[:, p - ev.ws]

        def qualifies(cnt: np.ndarray, cov: np.ndarray = cov) -> bool:
            return bool(pooled_support(cnt, cov) >= MIN_ALT_READS)

        chosen = [(seq, cnt) for seq, cnt in members if qualifies(cnt) and 4 not in seq]
        if not chosen and ln > 0:
            total = np.sum([cnt for _, cnt in members], axis=0)
            clean = [(seq, cnt) for seq, cnt in members if 4 not in seq]
            if clean and qualifies(total):
                seq, _ = min(clean, key=lambda m: (-int(m[1].sum()), m[0]))
                chosen = [(seq, total)]
        for seq, cnt in chosen:
            if ln > 0:
                allele = ("I", "".join(BASES[c] for c in seq))
            else:
                allele = ("D", ref_text[p + 1 - ref_lo : p + 1 - ln - ref_lo])
            per_site.setdefault(p, []).append((*allele, int(cnt.sum())))


def _site_table(
    per_site: _PerSite, ref: np.ndarray, ref_lo: int, ref_text: str, stutter: StutterModel
) -> Sites:
    """The Sites of the candidates: ALTs chosen and ordered, haplotypes built."""
    positions = sorted(per_site)
    n = len(positions)
    pos = np.array(positions, np.int64)
    n_alleles = np.zeros(n, np.int32)
    support = np.zeros((n, MAX_ALLELES), np.int64)
    cmp_len = np.ones(n, np.int32)
    indel = np.zeros(n, bool)
    cap = np.full(n, INDEL_CAP)
    shift = np.zeros(n, np.int32)
    st_keep = np.ones((n, MAX_ALLELES))
    st_trans = np.zeros((n, MAX_ALLELES, MAX_ALLELES))
    theta = np.full(n, THETA)
    alleles_out: list[list[tuple[str, str]]] = []
    haps: list[list[np.ndarray]] = []
    site_alts = []
    for p in positions:
        alts = sorted(per_site[p], key=_allele_order_key)[:MAX_ALT_ALLELES]
        # ALT order in the record: SNVs, then deletions, then insertions; by sequence
        alts.sort(key=lambda a: ("XDI".index(a[0]), len(a[1]), a[1]))
        site_alts.append(alts)
    indel_pos = [p for p, alts in zip(positions, site_alts) if any(a[0] != "X" for a in alts)]
    for k, p in enumerate(positions):
        alts = site_alts[k]
        al = [("R", "")] + [(a[0], a[1]) for a in alts]
        alleles_out.append(al)
        n_alleles[k] = len(al)
        support[k, 1 : len(al)] = [a[2] for a in alts]
        has_indel = any(a[0] != "X" for a in alts)
        indel[k] = has_indel
        if has_indel:
            hs, cmp_len[k], cap[k], shift[k] = _indel_site(al, p, indel_pos, ref, ref_lo)
            st_keep[k], st_trans[k], theta[k] = site_stutter(
                stutter, al, ref, ref_text, ref_lo, p, MAX_ALLELES
            )
        else:
            hs = [np.array([ref[p - ref_lo]], np.uint8)] + [
                np.array([BASES.index(a[1])], np.uint8) for a in al[1:]
            ]
        haps.append(hs)
    neighbours = _neighbours(pos, alleles_out, indel, cmp_len, shift, haps, ref, ref_lo)
    hap = _pack_haplotypes(haps, [[h for h, _ in nb] for nb in neighbours])
    cand = _candidate_bases(pos, alleles_out, ref.shape[0], ref_lo)
    hap_cand = _haplotype_candidates(pos, alleles_out, indel, shift, hap.shape[2], cand, ref_lo)
    for k, nb in enumerate(neighbours):
        for e, (_, x) in enumerate(nb):
            hap_cand[k, MAX_ALLELES + e, : x.shape[0]] = _candidate_bits(x, int(pos[k]), cand, ref_lo)
    return Sites(
        allele_indel=_allele_indel(alleles_out),
        del_end=_deletion_ends(pos, alleles_out),
        cand=cand,
        hap_cand=hap_cand,
        n_neighbour=np.array([len(nb) for nb in neighbours], np.int32),
        shift=shift,
        pos=pos,
        n_alleles=n_alleles,
        alleles=alleles_out,
        support=support,
        hap=hap,
        cmp_len=cmp_len,
        indel=indel,
        cap=cap,
        st_keep=st_keep,
        st_trans=st_trans,
        theta=theta,
    )


def _indel_site(
    al: list[tuple[str, str]], p: int, indel_pos: list[int], ref: np.ndarray, ref_lo: int
) -> tuple[list[np.ndarray], int, float, int]:
    """(haplotypes, bases compared, per-read cap, largest shift) of the indel site at POS
    ``p`` with alleles ``al`` (REF first); ``indel_pos`` the sorted POS of all indel sites."""
    sh = min(MAX_SHIFT, max(len(seq) for kind, seq in al[1:] if kind != "X"))
    hs, d_max = _haplotypes(al, ref, ref_lo, p)
    # stop at the next indel site's POS (its reads would blur this comparison),
    # but always compare past the first base where the haplotypes differ
    nxt = bisect.bisect_right(indel_pos, p)
    limit = MAX_COMPARE
    if nxt < len(indel_pos):
        limit = max(d_max + 2, indel_pos[nxt] - p + 1)
    cmp_len = min(MAX_COMPARE, d_max + INDEL_FLANK + 1, limit)
    cap = max(INDEL_CAP_MIN, INDEL_CAP - 0.5 * d_max)
    left = _codes_at(np.arange(p - INDEL_LEFT_FLANK - sh, p), ref, ref_lo)
    width = INDEL_LEFT_FLANK + 2 * sh + int(cmp_len)
    return [np.concatenate([left, h])[:width] for h in hs], cmp_len, cap, sh


def _pack_haplotypes(haps: list[list[np.ndarray]], extra: list[list[np.ndarray]]) -> np.ndarray:
    """(N, MAX_ALLELES + NEIGHBOUR_HAPS, H) uint8: the haplotypes of each site's alleles,
    then its neighbour haplotypes (``extra``), N (4) padded."""
    n = len(haps)
    hmax = max([h.shape[0] for hs in haps for h in hs], default=1)
    hap = np.full((n, MAX_ALLELES + NEIGHBOUR_HAPS, hmax), 4, np.uint8)
    for k in range(n):
        rows = [*enumerate(haps[k]), *enumerate(extra[k], start=MAX_ALLELES)]
        for a, h in rows:
            m = min(hmax, h.shape[0])
            hap[k, a, :m] = h[:m]
    return hap


def _neighbours(
    pos: np.ndarray,
    alleles: list[list[tuple[str, str]]],
    indel: np.ndarray,
    cmp_len: np.ndarray,
    shift: np.ndarray,
    haps: list[list[np.ndarray]],
    ref: np.ndarray,
    ref_lo: int,
) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Per site, its neighbour haplotypes as (codes, reference position of each base, -1
    inside an insertion), in the frame of the site's own haplotypes (index 0 faces
    ``POS - INDEL_LEFT_FLANK - shift``, POS's base at ``INDEL_LEFT_FLANK + shift``).

    An indel site k's neighbours are the insertion and deletion alleles of the indel
    sites with POS in ``[POS_k - NEIGHBOUR_LEFT, POS_k)`` that keep POS_k (a deletion
    spanning it is a spanning deletion instead), the nearest first, at most
    NEIGHBOUR_HAPS: each is the reference around POS_k with that allele. (Indel sites
    after POS_k need none: the comparison stops at the next one.) A read of a nearby
    indel's haplotype can fit one of site k's ALT haplotypes better than its REF one (a
    1-bp insertion before CATCATCA reads like the reference with AT deleted two bases
    later, up to where the two differ); it fits its own haplotype best, so it counts for
    allele 0 ("not this indel") at site k. A neighbour haplotype equal to one of site k's
    ALT haplotypes along the compared stretch (``haps``: the site's own, as long as that
    stretch) cannot be told apart from it there and is left out. SNV-only sites have
    none."""
    out: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(pos.shape[0])]
    idx = np.nonzero(indel)[0]
    ipos = pos[idx].tolist()
    for k in idx.tolist():
        p, cl = int(pos[k]), int(cmp_len[k])
        found = []
        lo, hi = bisect.bisect_left(ipos, p - NEIGHBOUR_LEFT), bisect.bisect_left(ipos, p)
        for j in idx[lo:hi].tolist():  # sites before POS_k only
            pj = int(pos[j])
            for kind, seq in alleles[j][1:]:
                if kind in "ID" and not (kind == "D" and p <= pj + len(seq)):
                    found.append((p - pj, pj, kind, len(seq), seq))
        for _, pj, kind, _, seq in sorted(found):
            if len(out[k]) == NEIGHBOUR_HAPS:
                break
            codes, x = _neighbour_haplotype(p, int(shift[k]), cl, pj, kind, seq, ref, ref_lo)
            if not any(np.array_equal(codes, h) for h in haps[k][1:]):
                out[k].append((codes, x))
    return out


def _neighbour_haplotype(
    p: int, sh: int, cl: int, pj: int, kind: str, seq: str, ref: np.ndarray, ref_lo: int
) -> tuple[np.ndarray, np.ndarray]:
    """(codes, reference positions) of the reference with the indel ``kind``/``seq`` at
    POS ``pj``, in the frame of the indel site at ``p`` (see :func:`_neighbours`)."""
    width = INDEL_LEFT_FLANK + 2 * sh + cl
    lo = p - INDEL_LEFT_FLANK - sh - NEIGHBOUR_LEFT
    x = np.arange(lo, p + width + 1 + (len(seq) if kind == "D" else 0))
    if kind == "D":
        x = x[(x <= pj) | (x > pj + len(seq))]
        codes = _codes_at(x, ref, ref_lo)
    else:
        cut = int(np.searchsorted(x, pj + 1))
        codes = np.concatenate(
            [_codes_at(x[:cut], ref, ref_lo), encode_bases(seq), _codes_at(x[cut:], ref, ref_lo)]
        )
        x = np.concatenate([x[:cut], np.full(len(seq), -1), x[cut:]])
    s0 = int(np.nonzero(x == p)[0][0]) - INDEL_LEFT_FLANK - sh
    return codes[s0 : s0 + width], x[s0 : s0 + width]


def _codes_at(x: np.ndarray, ref: np.ndarray, ref_lo: int) -> np.ndarray:
    """Reference codes at positions ``x`` (N, 4, outside the window's reference)."""
    ok = (x >= ref_lo) & (x < ref_lo + ref.shape[0])
    out = np.full(x.shape[0], 4, np.uint8)
    out[ok] = ref[x[ok] - ref_lo]
    return out


def _candidate_bits(x: np.ndarray, p: int, cand: np.ndarray, ref_lo: int) -> np.ndarray:
    """The candidate bits (``cand``) of reference positions ``x`` (-1: none) within
    CALL_REACH of ``p`` and inside the window's reference."""
    ok = (x >= max(ref_lo, p - CALL_REACH)) & (x <= p + CALL_REACH)
    ok &= x < ref_lo + cand.shape[0]
    out = np.zeros(x.shape[0], np.uint8)
    out[ok] = cand[x[ok] - ref_lo]
    return out


def _allele_indel(alleles: list[list[tuple[str, str]]]) -> np.ndarray:
    """(N, MAX_ALLELES) bool: the allele is an insertion or a deletion."""
    allele_indel = np.zeros((len(alleles), MAX_ALLELES), bool)
    for k, al in enumerate(alleles):
        for a, (kind, _) in enumerate(al):
            allele_indel[k, a] = kind in "ID"
    return allele_indel


def _deletion_ends(pos: np.ndarray, alleles: list[list[tuple[str, str]]]) -> np.ndarray:
    """(N, MAX_ALLELES) int64: end of the reference stretch each deletion allele removes
    (``POS + 1 + length``), 0 for other alleles."""
    out = np.zeros((len(alleles), MAX_ALLELES), np.int64)
    for k, al in enumerate(alleles):
        for a, (kind, seq) in enumerate(al):
            if kind == "D":
                out[k, a] = int(pos[k]) + 1 + len(seq)
    return out


def _candidate_bases(
    pos: np.ndarray, alleles: list[list[tuple[str, str]]], length: int, ref_lo: int
) -> np.ndarray:
    """(length,) uint8 over the reference from ``ref_lo``: bit b set where base code b is
    a candidate SNV allele (``X``) of some site."""
    cand = np.zeros(length, np.uint8)
    for k, al in enumerate(alleles):
        for kind, seq in al:
            if kind == "X":
                cand[int(pos[k]) - ref_lo] |= np.uint8(1 << BASES.index(seq))
    return cand


def _haplotype_candidates(
    pos: np.ndarray,
    alleles: list[list[tuple[str, str]]],
    indel: np.ndarray,
    shift: np.ndarray,
    width: int,
    cand: np.ndarray,
    ref_lo: int,
) -> np.ndarray:
    """(N, MAX_ALLELES + NEIGHBOUR_HAPS, width) uint8: the candidate bits (``cand``) of the
    reference position each haplotype base of an indel site's alleles stands for (none
    inside an insertion), for positions within CALL_REACH of POS, so that they are the
    same in every window; the neighbour rows are left 0 for the caller."""
    out = np.zeros((len(alleles), MAX_ALLELES + NEIGHBOUR_HAPS, width), np.uint8)
    for k in np.nonzero(indel)[0].tolist():
        p = int(pos[k])
        left = np.arange(p - INDEL_LEFT_FLANK - int(shift[k]), p)
        for a, (kind, seq) in enumerate(alleles[k]):
            after = np.arange(p + 1, p + 1 + width)
            if kind == "D":
                after = after + len(seq)
            elif kind == "I":
                after = np.concatenate([np.full(len(seq), -1), after])
            x = np.concatenate([left, [p], after])[:width]
            # positions past the contig end (where the window's reference ends) have none
            out[k, a, : x.shape[0]] = _candidate_bits(x, p, cand, ref_lo)
    return out


def _haplotypes(
    alleles: list[tuple[str, str]], ref: np.ndarray, ref_lo: int, p: int
) -> tuple[list[np.ndarray], int]:
    """Haplotype codes from POS ``p`` on (MAX_COMPARE + MAX_SHIFT bases) for each allele,
    and the largest offset at which an ALT haplotype first differs from the REF one."""
    o = p - ref_lo
    ln = MAX_COMPARE + MAX_SHIFT
    ref_h = ref[o : o + ln]
    out = [ref_h]
    d_max = 0
    for kind, seq in alleles[1:]:
        if kind == "X":
            h = np.concatenate([encode_bases(seq), ref[o + 1 : o + ln]])
        elif kind == "D":
            h = np.concatenate([ref[o : o + 1], ref[o + 1 + len(seq) : o + 1 + len(seq) + ln]])
        else:
            h = np.concatenate([ref[o : o + 1], encode_bases(seq), ref[o + 1 : o + ln]])
        h = h[:ln]
        m = min(h.shape[0], ref_h.shape[0])
        diff = np.nonzero(h[:m] != ref_h[:m])[0]
        d = int(diff[0]) if diff.shape[0] else m
        d_max = max(d_max, d)
        out.append(h)
    return out, d_max
