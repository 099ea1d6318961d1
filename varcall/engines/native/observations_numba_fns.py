"""numba kernels of :mod:`varcall.engines.native.observations`: per (site, read) allele
penalties, haplotype scoring of reads at indel sites, and the check for reads misaligned
near an indel. Pure computation; positions 0-based.

:func:`obs_pass` takes the columns of the sites, of the reads and of its output rows as
tuples (order in its docstring); the helpers it calls take the arrays themselves.
"""

from __future__ import annotations

import math

import numpy as np

from varcall.core.jit import kernel
from varcall.engines.native.pileup import MAX_ALLELES

__all__ = [
    "mismatch_penalty",
    "query_offset",
    "hap_scores",
    "aligned_at",
    "misaligned",
    "stutter_penalties",
    "indel_row",
    "spanning_deletion",
    "mate_counts",
    "obs_pass",
]


@kernel
def mismatch_penalty(q: float, mq: float) -> float:
    """Phred cost of a base of quality ``q`` (MAPQ ``mq``, 255: none) not matching."""
    eb = 10.0 ** (-q / 10.0)
    em = 10.0 ** (-mq / 10.0) if mq < 255 else 0.0
    eps = eb + em - eb * em
    if eps > 0.75:
        eps = 0.75
    return -10.0 * np.log10(eps / 3.0) + 10.0 * np.log10(1.0 - eps)


def _base_penalties() -> np.ndarray:
    """(256,) float64: ``mismatch_penalty(q, 255)`` for every base quality q, in plain
    Python with the same operations on the same libm (``tests/test_observations_table.py``
    checks it equals the kernel bit for bit; calling the kernel here would load numba's
    JIT at import, ~0.3 s)."""
    out = np.empty(256)
    for q in range(256):
        eb = 10.0 ** (-float(q) / 10.0)
        eps = eb + 0.0 - eb * 0.0
        if eps > 0.75:
            eps = 0.75
        out[q] = -10.0 * math.log10(eps / 3.0) + 10.0 * math.log10(1.0 - eps)
    return out


#: Mismatch cost of a base by its quality, no MAPQ term (haplotype scoring's inner loop
#: looked it up ~10^7 times per bench run: two pow and two log10 calls each, 40 % of pass 2).
BASE_PENALTY = _base_penalties()


@kernel
def query_offset(p, rstart, c0, c1, cig_op, cig_len):
    """Query offset of the read base aligned at reference position p, -1 if none."""
    rpos = rstart
    qpos = 0
    for c in range(c0, c1):
        op = cig_op[c]
        ln = cig_len[c]
        if op == 0 or op == 7 or op == 8:
            if rpos <= p < rpos + ln:
                return qpos + (p - rpos)
            rpos += ln
            qpos += ln
        elif op == 1 or op == 4:
            qpos += ln
        elif op == 2 or op == 3:
            if rpos > p:
                return -1
            rpos += ln
        if rpos > p:
            return -1
    return -1


@kernel
def _row_score(k, row, v, j0, j1, sh, hap, bases, rquals, qo, bound):
    """(best mismatch cost, its shift) of the read bases ``[j0, j1)`` against haplotype
    row ``row`` of site k over the shifts ``[-sh, sh]`` (query offset ``v`` faces index 0
    at shift 0); a shift stops counting once it reaches ``bound``."""
    best = bound
    bs = 0
    for s in range(-sh, sh + 1):
        sc = 0.0
        for j in range(j0, j1):
            b = bases[qo + j]
            if b < 4 and b != hap[k, row, j - v + s]:
                q = rquals[qo + j]
                if q > 0:
                    sc += BASE_PENALTY[q]
                    if sc >= best:
                        break
        if sc < best:
            best = sc
            bs = s
    return best, bs


@kernel
def hap_scores(
    k, qp, qo, rlen, cmp_len, shift, flank, hap, hap_cand, na, n_nb, bases, rquals,
    min_baseq, scores,
):  # fmt: skip
    """Score the read against each haplotype of indel site k: read bases from
    ``qp - flank`` to ``qp + cmp_len`` (query offsets; qp = the base aligned at POS) are
    compared ungapped, for every placement shift in [-shift, shift], with the haplotype;
    a mismatching base costs its base-quality penalty; the best shift counts. Allele 0
    scores the best of the REF haplotype and the site's ``n_nb[k]`` neighbour haplotypes
    (rows MAX_ALLELES on: a nearby indel's allele, :mod:`varcall.engines.native.sites`).
    Returns (best allele, unique best, high-quality mismatches against the best
    haplotype combined with the candidate SNV alleles ``hap_cand`` along it: a base
    showing one is no mismatch)."""
    sh = shift[k]
    v = qp - flank - sh  # query offset facing haplotype index 0 at shift 0
    j0 = max(0, qp - flank)
    j1 = min(rlen, qp + cmp_len[k])
    best_shift = 0
    best_row = 0
    ib = -1
    for a in range(na):
        scores[a], bs = _row_score(k, a, v, j0, j1, sh, hap, bases, rquals, qo, 1e300)
        row = a
        if a == 0:
            for e in range(n_nb[k]):
                sc, s_e = _row_score(
                    k, MAX_ALLELES + e, v, j0, j1, sh, hap, bases, rquals, qo, scores[0]
                )  # fmt: skip
                if sc < scores[0]:
                    scores[0], bs, row = sc, s_e, MAX_ALLELES + e
        if ib < 0 or scores[a] < scores[ib]:
            ib = a
            best_shift = bs
            best_row = row
    unique = True
    for a in range(na):
        if a != ib and scores[a] <= scores[ib]:
            unique = False
    nmm = 0
    for j in range(j0, j1):
        b = bases[qo + j]
        h = j - v + best_shift
        if b < 4 and b != hap[k, best_row, h] and rquals[qo + j] >= min_baseq:
            if not (hap_cand[k, best_row, h] >> b) & 1:
                nmm += 1
    return ib, unique, nmm


@kernel
def aligned_at(
    i, p, snv, snv_context, ref, ref_lo, cand, min_baseq, start, qoff, coff, cn, cig_op,
    cig_len, bases, rquals,
):  # fmt: skip
    """(query offset of read i's base aligned at p or -1, and at an SNV site (``snv``)
    the high-quality mismatches within ``snv_context`` bp of p, p itself excepted, with
    the best local haplotype: the reference combined with the candidate SNV alleles
    ``cand`` (bit b of ``cand[x - ref_lo]``: base b is a candidate at x) the read
    carries, so a base showing a candidate allele is no mismatch)."""
    qp = -1
    nmm = 0
    rpos = start[i]
    qpos = 0
    qo = qoff[i]
    for c in range(coff[i], coff[i] + cn[i]):
        op = cig_op[c]
        ln = cig_len[c]
        if op == 0 or op == 7 or op == 8:
            if rpos <= p < rpos + ln:
                qp = qpos + (p - rpos)
            if snv:
                j0 = max(0, p - snv_context - rpos)
                j1 = min(ln, p + snv_context + 1 - rpos)
                for j in range(j0, j1):
                    if rpos + j == p:
                        continue
                    b = bases[qo + qpos + j]
                    x = rpos + j - ref_lo
                    if (
                        b < 4
                        and rquals[qo + qpos + j] >= min_baseq
                        and b != ref[x]
                        and not (cand[x] >> b) & 1
                    ):
                        nmm += 1
            rpos += ln
            qpos += ln
        elif op == 1 or op == 4:
            qpos += ln
        elif op == 2 or op == 3:
            rpos += ln
        if rpos > p + snv_context and qp >= 0:
            break
    return qp, nmm


@kernel
def misaligned(
    k0, k, p, i, qp, flank, min_baseq, scores, pos, n_alleles, hap, hap_cand, n_nb, cmp_len,
    indel, allele_indel, shift, start, qoff, qlen, coff, cn, cig_op, cig_len, bases, rquals,
):  # fmt: skip
    """A read aligned without gaps across an indel site j in ``[k0, k)`` whose compared
    stretch covers p, and whose bases match one of that site's indel haplotypes best, is
    misaligned there: its base at p is no evidence (the aligner put mismatches where the
    indel is). So is a read without a base at such a site's POS."""
    for j in range(k0, k):
        if not indel[j] or pos[j] + cmp_len[j] <= p:
            continue
        q_j = query_offset(pos[j], start[i], coff[i], coff[i] + cn[i], cig_op, cig_len)
        if q_j < 0:
            # the read starts after the indel site (or lacks a base there):
            # its alignment near the indel cannot be checked
            return True
        if qp - q_j != p - pos[j]:
            continue
        ib, uniq, _ = hap_scores(
            j, q_j, qoff[i], qlen[i], cmp_len, shift, flank, hap, hap_cand, n_alleles[j], n_nb,
            bases, rquals, min_baseq, scores,
        )  # fmt: skip
        if uniq and allele_indel[j, ib]:
            return True
    return False


@kernel
def spanning_deletion(
    k0, k, p, i, qp, flank, min_baseq, scores, pos, n_alleles, hap, hap_cand, n_nb, cmp_len,
    indel, cap, shift, del_end, mapq, start, end, qoff, qlen, coff, cn, cig_op, cig_len, bases,
    rquals, mate, first,
):  # fmt: skip
    """Phred evidence that read i (query offset of its base at p: qp, -1 if none) carries
    a deletion spanning p, 0 when it does not: the read's unique best allele at an indel
    site j in ``[k0, k)`` (nearest first) is a deletion removing p (``del_end[j, a] >
    p``). The weight is that allele's lead over the best allele keeping p, capped and
    down-weighted as at site j (:func:`indel_row`). A read without a base at p speaks for
    its pair only as :func:`mate_counts` says."""
    if qp < 0 and not mate_counts(i, p, mate, first, start, end, coff, cn, cig_op, cig_len):
        return 0.0
    for j in range(k - 1, k0 - 1, -1):
        if not indel[j]:
            continue
        spans = False
        for a in range(n_alleles[j]):
            if del_end[j, a] > p:
                spans = True
        if not spans:
            continue
        q_j = query_offset(pos[j], start[i], coff[i], coff[i] + cn[i], cig_op, cig_len)
        if q_j < 0:
            continue
        ib, uniq, nmm = hap_scores(
            j, q_j, qoff[i], qlen[i], cmp_len, shift, flank, hap, hap_cand, n_alleles[j], n_nb,
            bases, rquals, min_baseq, scores,
        )  # fmt: skip
        if not uniq or del_end[j, ib] <= p:
            continue
        lead = 1e300
        for a in range(n_alleles[j]):
            if del_end[j, a] <= p and scores[a] - scores[ib] < lead:
                lead = scores[a] - scores[ib]
        return min(lead, float(mapq[i]), cap[j]) / (1.0 + max(0, nmm - 1) ** 2)
    return 0.0


@kernel
def mate_counts(i, p, mate, first, start, end, coff, cn, cig_op, cig_len):
    """Whether read i, without a base at p, speaks for its pair there: not when its
    overlapping mate has a base aligned at p (that base counts), nor when both lack one
    and i is the second mate (the first mate counts)."""
    m = mate[i]
    if m < 0 or not (start[m] <= p < end[m]):
        return True
    if query_offset(p, start[m], coff[m], coff[m] + cn[m], cig_op, cig_len) >= 0:
        return False
    return first[i]


@kernel
def stutter_penalties(scores, na, keep, trans, cap, mq, w, out):
    """Phred penalties ``out[a]`` (a < na) of a read whose haplotype mismatch costs are
    ``scores``, under the stutter model: with ``x_b = 10^(-(scores[b] - min scores) / 10)``,
    ``L(a) = keep[a] x_a + sum_b trans[a, b] x_b`` and ``raw(a) = -10 log10 L(a)``,
    ``out[a] = min(raw(a) - min_a' raw(a'), min(mq, cap) / w)``, rounded to 1e-9 phred
    where stutter applies (rows of ``keep``/``trans`` sum to 1, so a read with equal
    scores ties exactly). Without stutter (keep 1, trans 0) this is
    ``min(scores[a] - min scores, min(mq, cap) / w)``."""
    smin = scores[0]
    for a in range(1, na):
        smin = min(smin, scores[a])
    best = 1e300
    stutter_any = False
    for a in range(na):
        stutter = False
        for b in range(na):
            if b != a and trans[a, b] > 0.0:
                stutter = True
        if not stutter:  # exactly the mismatch cost where no stutter applies
            out[a] = scores[a] - smin
            if keep[a] != 1.0:
                out[a] -= 10.0 * np.log10(keep[a])
        else:
            lik = keep[a] * 10.0 ** (-(scores[a] - smin) / 10.0)
            for b in range(na):
                if b != a and trans[a, b] > 0.0:
                    lik += trans[a, b] * 10.0 ** (-(scores[b] - smin) / 10.0)
            out[a] = -10.0 * np.log10(lik)
            stutter_any = True
        best = min(best, out[a])
    c = min(mq, cap) / w
    for a in range(na):
        out[a] = min(out[a] - best, c)
        if stutter_any:
            out[a] = math.floor(out[a] * 1e9 + 0.5) / 1e9


@kernel
def indel_row(
    k, i, qp, flank, min_baseq, scores, pens, no, n_alleles, hap, hap_cand, n_nb, cmp_len, cap,
    shift, stutter, mapq, sample, qoff, qlen, bases, rquals, o_site, o_sample, o_pen, o_best,
):  # fmt: skip
    """Write row ``no``: read i (base aligned at POS: query offset qp) scored against the
    haplotypes of indel site k, its penalties under the stutter model (``stutter``: the
    Sites columns st_keep, st_trans), capped (see varcall.engines.native.pileup);
    ``scores``, ``pens``: scratch."""
    na = n_alleles[k]
    ib, unique, nmm = hap_scores(
        k, qp, qoff[i], qlen[i], cmp_len, shift, flank, hap, hap_cand, na, n_nb, bases, rquals,
        min_baseq, scores,
    )  # fmt: skip
    keep, trans = stutter
    w = 1.0 + max(0, nmm - 1) ** 2
    stutter_penalties(scores, na, keep[k], trans[k], cap[k], float(mapq[i]), w, pens)
    for a in range(o_pen.shape[1]):
        if a < na:
            o_pen[no, a] = pens[a]
        else:
            o_pen[no, a] = 0.0
    o_site[no] = k
    o_sample[no] = sample[i]
    o_best[no] = ib if unique else -1


@kernel
def snv_row(no, k, s, na, hap, w, b, o_site, o_sample, o_pen, o_best):
    """Write row ``no`` of SNV site k: a read of sample s showing base code b costs ``w``
    on every allele but b's; b < 0 stands for a spanning deletion, which costs ``w`` on
    every allele but REF (allele 0: "not this SNV")."""
    best = -1
    for a in range(o_pen.shape[1]):
        carried = a < na and (hap[k, a, 0] == b if b >= 0 else a == 0)
        o_pen[no, a] = 0.0 if carried or a >= na else w
        if carried:
            best = a
    o_site[no] = k
    o_sample[no] = s
    o_best[no] = best


@kernel
def obs_pass(
    sites, reads, emit, order, sorted_start, max_span, ref, ref_lo, min_baseq,
    flank, snv_context, max_compare, count_only, out,
):  # fmt: skip
    """Rows (site, read) of the emitted sites ``emit`` into ``out`` (or only count them
    when ``count_only``); returns the number of rows. Reads are visited in start order
    (``order``, ``sorted_start``; ``max_span`` the longest read span).

    ``sites``: the Sites columns (pos, n_alleles, hap, cmp_len, indel, cap, allele_indel,
    shift, del_end, cand, hap_cand, n_neighbour, (st_keep, st_trans)); ``reads``: the ReadBatch columns (start, end, mapq,
    sample, qoff, qlen, coff, cn, cig_op, cig_len, bases, quals, rquals = raw_quals), mate
    (overlapping mate or -1), first (first mate); ``out``: the Observations columns (site,
    sample, pen, best, read, qpos; qpos -1 for a read counted as a spanning deletion)."""
    # unpacked once (helpers reading the tuples in their loops measured 2x slower)
    pos, n_alleles, hap, cmp_len, indel, cap, allele_indel, shift, del_end, cand, hap_cand, \
        n_nb, stutter = sites  # fmt: skip
    start, end, mapq, sample, qoff, qlen, coff, cn, cig_op, cig_len, bases, quals, rquals, \
        mate, first = reads  # fmt: skip
    o_site, o_sample, o_pen, o_best, o_read, o_qpos = out
    no = 0
    scores = np.zeros(hap.shape[1])
    shadow_scores = np.zeros(hap.shape[1])
    for k in range(pos.shape[0]):
        if not emit[k]:
            continue
        p = pos[k]
        snv = not indel[k]
        # indel sites before p whose compared stretch covers p ("shadowing" sites)
        k0 = k
        if snv:
            while k0 > 0 and pos[k0 - 1] >= p - max_compare:
                k0 -= 1
        lo = np.searchsorted(sorted_start, p - max_span, side="left")
        hi = np.searchsorted(sorted_start, p, side="right")
        for t in range(lo, hi):
            i = order[t]
            if end[i] <= p:
                continue
            qp, nmm = aligned_at(
                i, p, snv, snv_context, ref, ref_lo, cand, min_baseq, start, qoff, coff, cn,
                cig_op, cig_len, bases, rquals,
            )  # fmt: skip
            b = -1  # the read's base at p; -1: a deletion spanning p
            q0 = 0
            if qp >= 0:
                q0 = quals[qoff[i] + qp]
                b = bases[qoff[i] + qp]
                if q0 == 0 or (snv and (q0 < min_baseq or b >= 4)):
                    continue
            w = 0.0
            if snv and (qp < 0 or (k0 < k and misaligned(
                k0, k, p, i, qp, flank, min_baseq, shadow_scores, pos, n_alleles, hap, hap_cand,
                n_nb, cmp_len, indel, allele_indel, shift, start, qoff, qlen, coff, cn, cig_op,
                cig_len, bases, rquals,
            ))):  # fmt: skip
                # no base at p, or a misaligned one: evidence only as a spanning deletion
                w = spanning_deletion(
                    k0, k, p, i, qp, flank, min_baseq, shadow_scores, pos, n_alleles, hap,
                    hap_cand, n_nb, cmp_len, indel, cap, shift, del_end, mapq, start, end, qoff,
                    qlen, coff, cn, cig_op, cig_len, bases, rquals, mate, first,
                )  # fmt: skip
                if w <= 0.0:
                    continue
                b = -1
            elif qp < 0:
                continue
            elif snv:
                w = mismatch_penalty(float(q0), float(mapq[i])) / (1.0 + max(0, nmm - 1))
            if not count_only:
                o_read[no], o_qpos[no] = i, qp
                if snv:
                    snv_row(no, k, sample[i], n_alleles[k], hap, w, b, o_site, o_sample, o_pen,
                            o_best)  # fmt: skip
                else:
                    indel_row(k, i, qp, flank, min_baseq, scores, shadow_scores, no, n_alleles,
                              hap, hap_cand, n_nb, cmp_len, cap, shift, stutter, mapq, sample,
                              qoff, qlen, bases, rquals, o_site, o_sample, o_pen, o_best)  # fmt: skip
            no += 1
    return no
