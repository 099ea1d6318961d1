"""Reads -> per-position allele evidence, columnar.

Pipeline for one window ``[ws, we)`` of a contig (0-based half-open throughout):

1. :func:`fetch_reads` decodes every read overlapping the window from every BAM/CRAM into
   one :class:`ReadBatch` of flat numpy arrays (positions, CIGAR ops, base codes, base
   qualities). Indexed BAM files are decoded by numba kernels straight from the inflated
   BGZF blocks (:mod:`varcall.io.bam`, no Python object per read); CRAM goes through pysam.
   Reads are filtered here (unmapped, secondary, QC-fail, duplicate, MAPQ below
   ``min_mapq``, supplementary unless asked for) and assigned to a sample by their ``@RG``
   ``SM``. Mates of one pair whose alignments overlap are paired up, and
   :func:`mask_mate_overlaps` counts each overlapping reference base once: of the two
   aligned bases the one with the higher base quality is kept, the other gets quality 0
   (ties keep the first mate, flag 0x40).
2. :func:`count_evidence` (numba) walks every CIGAR once: per sample and position, counts
   of A/C/G/T with base quality >= ``min_baseq``, and every insertion/deletion event,
   left-normalised against the reference. Normalisation shifts an indel left while the
   alignment stays equivalent (the read's base at the anchor equals the reference and the
   shifted sequence is identical) and stops at the first base of the read's aligned block
   that precedes the indel -- never before the read's own first aligned base, so the read
   always overlaps the normalised POS. One indel placed at different offsets of a repeat by
   the aligner is therefore one allele. An indel whose shift is stopped only by that block
   start (its leftmost placement would lie before the read's aligned bases: a read starting
   inside the repeat) is ambiguous and yields no event.
3. :func:`find_sites` picks candidate alleles: an allele is a candidate when, in some
   sample, at least ``MIN_ALT_READS`` reads show it and they are at least
   ``MIN_ALT_FRACTION`` of that sample's depth there (insertions of one length at one
   POS that no single sequence qualifies for count together, under their most frequent
   sequence: errors in inserted bases do not hide an insertion). At most ``MAX_ALT_ALLELES`` ALT
   alleles per POS are kept (most supported first).
4. :func:`site_observations` (numba) computes, for every read overlapping a site and every
   allele, a phred penalty ``-10 log10 P(read | allele)`` relative to the read's best
   allele (see :mod:`varcall.engines.native.model` for how penalties become genotype likelihoods).

   - SNV-only sites compare the read's base at POS; a mismatch costs
     ``-10 log10(eps / 3) + 10 log10(1 - eps)`` with ``eps = e_b + e_m - e_b e_m``,
     ``e_b = 10^(-BQ/10)``, ``e_m = 10^(-MAPQ/10)``.
   - Sites with an indel allele build each allele's haplotype: ``INDEL_LEFT_FLANK``
     reference bases before POS, the allele, then the reference after it. The read's bases
     from ``INDEL_LEFT_FLANK`` before its base aligned at POS to the end of the compared
     stretch (where the haplotypes differ, plus ``INDEL_FLANK`` bases, but not past the
     POS of the next indel site; soft-clipped bases included) are compared ungapped with each haplotype, at every placement shift up to
     the longest indel of the site (at most ``MAX_SHIFT``); the best shift counts. This
     realigns reads whose aligner clipped, mismatched or misplaced the indel, and reads
     that start inside an insertion. Each mismatching base costs its base-quality penalty
     (``e_m = 0`` above); the differences to the best haplotype are capped at
     ``min(MAPQ, indel cap)``, the indel cap falling with the repeat length:
     ``max(INDEL_CAP_MIN, INDEL_CAP - d / 2)`` with ``d`` the offset from POS where the
     haplotypes first differ. A read too short to reach that offset ties the alleles.
   - Reads with many mismatches near the site are down-weighted: the penalties of a read
     with ``n`` mismatching high-quality bases are divided by ``1 + max(0, n - 1)^2`` at
     indel sites (mismatches vs its best haplotype over the compared stretch: such a read
     fits no haplotype, e.g. it carries another indel nearby) and by
     ``1 + max(0, n - 1)`` at SNV sites (mismatches vs the reference within
     ``SNV_CONTEXT`` bp).
   - Misaligned reads near indels: at an SNV-only site, a read aligned without a gap
     across an earlier indel site whose compared stretch reaches POS, and whose bases
     match one of that site's indel haplotypes best, is left out (the aligner wrote
     mismatches where the indel is; its base at POS is no evidence). So is a read without
     a base aligned at that indel site's POS (typically one starting inside the indel),
     whose alignment there cannot be checked. Windows are fetched with ``SHADOW_PAD`` bp
     of extra reads on both sides, so the indel sites before (shadowing) and after (ending
     a comparison) a site are always seen.

   A read counts at a site only when its base aligned at POS is present (not deleted, not
   masked as the weaker mate); at SNV-only sites that base must also have quality >=
   ``min_baseq`` and not be N.

Everything at a position depends only on the reads overlapping it and on the parameters;
windows only batch work, so any split of a region gives the same calls.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numba
import numpy as np
import pysam

from varcall.core.errors import InputError
from varcall.io import bam as _bam

__all__ = [
    "ReadBatch",
    "Evidence",
    "Sites",
    "Observations",
    "fetch_reads",
    "mask_mate_overlaps",
    "count_evidence",
    "find_sites",
    "site_observations",
    "encode_bases",
    "MAX_ALT_ALLELES",
    "MAX_INDEL_LENGTH",
]

logger = logging.getLogger(__name__)

#: At most this many ALT alleles per POS (the most supported ones).
MAX_ALT_ALLELES = 4
#: Maximum number of alleles per site (REF + ALTs).
MAX_ALLELES = MAX_ALT_ALLELES + 1
#: Candidate allele: >= this many reads in one sample ...
MIN_ALT_READS = 2
#: ... making >= this fraction of that sample's depth at the position.
MIN_ALT_FRACTION = 0.1
#: Indels longer than this (bp) are ignored (treated as not present in the read).
MAX_INDEL_LENGTH = 200
#: Bases compared beyond the stretch where indel haplotypes differ.
INDEL_FLANK = 12
#: Per-read indel evidence cap (phred) outside repeats, and its floor in long repeats.
INDEL_CAP = 45.0
INDEL_CAP_MIN = 30.0
#: Half-width (bp) of the context whose mismatches down-weight a read at an SNV site.
SNV_CONTEXT = 10
#: Longest haplotype comparison (bp) at an indel site, from POS on.
MAX_COMPARE = MAX_INDEL_LENGTH + 120
#: Reference bases before POS included in indel haplotypes (they anchor the read).
INDEL_LEFT_FLANK = 10
#: Largest shift (bp) tried when placing a read against an indel haplotype.
MAX_SHIFT = 32
#: Extra bp of reads fetched on both sides of a window: indel sites there shadow its SNV
#: sites (left) or end its indel comparisons (right).
SHADOW_PAD = MAX_COMPARE
#: Reference margin (bp) fetched beyond the reads of a window.
REF_MARGIN = MAX_INDEL_LENGTH + MAX_COMPARE + MAX_SHIFT + 100
#: Reference bases needed before the first site of a window.
REF_LEFT = INDEL_LEFT_FLANK + MAX_SHIFT

# CIGAR operation codes (BAM)
_M, _I, _D, _N, _S, _H, _P, _EQ, _X = range(9)
_CIGAR_CODES = np.full(256, 255, np.uint8)
for _i, _c in enumerate(b"MIDNSHP=X"):
    _CIGAR_CODES[_c] = _i

_BASE_CODES = np.full(256, 4, np.uint8)
for _i, _c in enumerate(b"ACGT"):
    _BASE_CODES[_c] = _i
    _BASE_CODES[ord(chr(_c).lower())] = _i
BASES = "ACGTN"

_FILTER_FLAGS = 0x4 | 0x100 | 0x200 | 0x400  # unmapped, secondary, QC fail, duplicate
_SUPPLEMENTARY = 0x800


def encode_bases(seq: bytes | str) -> np.ndarray:
    """Base codes (uint8: A=0 C=1 G=2 T=3, anything else 4) of a sequence."""
    if isinstance(seq, str):
        seq = seq.encode("ascii")
    return _BASE_CODES[np.frombuffer(seq, np.uint8)]


@dataclasses.dataclass
class ReadBatch:
    """Reads of one window, columnar. R reads; Q bases in all; C CIGAR ops in all.

    start/end: (R,) int64 0-based reference span ``[start, end)`` of the alignment.
    mapq, flag, sample: (R,) int32. qoff: (R,) int64 offset of the read in bases/quals;
    qlen: (R,) int32. coff: (R,) int64 offset in cig_op/cig_len; cn: (R,) int32 op count.
    bases: (Q,) uint8 codes; quals: (Q,) uint8 phred after mate-overlap masking (0 =
    masked: the base is counted through the other mate); raw_quals: (Q,) uint8 phred as
    read. Masked qualities are only consulted at the position being counted (where both
    mates are fetched); comparisons of read stretches use raw_quals. cig_op: (C,) uint8;
    cig_len: (C,) int32. pairs: (K, 2) int64 read indexes of overlapping mates
    (first mate, second mate).
    """

    start: np.ndarray
    end: np.ndarray
    mapq: np.ndarray
    flag: np.ndarray
    sample: np.ndarray
    qoff: np.ndarray
    qlen: np.ndarray
    coff: np.ndarray
    cn: np.ndarray
    bases: np.ndarray
    quals: np.ndarray
    raw_quals: np.ndarray
    cig_op: np.ndarray
    cig_len: np.ndarray
    pairs: np.ndarray

    @property
    def n_reads(self) -> int:
        return int(self.start.shape[0])

    @classmethod
    def concatenate(cls, parts: Sequence[ReadBatch]) -> ReadBatch:
        """One batch of the reads of ``parts``, in order (offsets and pair indexes shifted)."""
        if len(parts) == 1:
            return parts[0]
        qshift = np.cumsum([0] + [p.bases.shape[0] for p in parts[:-1]])
        cshift = np.cumsum([0] + [p.cig_op.shape[0] for p in parts[:-1]])
        rshift = np.cumsum([0] + [p.n_reads for p in parts[:-1]])
        cat = np.concatenate
        return cls(
            start=cat([p.start for p in parts]),
            end=cat([p.end for p in parts]),
            mapq=cat([p.mapq for p in parts]),
            flag=cat([p.flag for p in parts]),
            sample=cat([p.sample for p in parts]),
            qoff=cat([p.qoff + s for p, s in zip(parts, qshift)]),
            qlen=cat([p.qlen for p in parts]),
            coff=cat([p.coff + s for p, s in zip(parts, cshift)]),
            cn=cat([p.cn for p in parts]),
            bases=cat([p.bases for p in parts]),
            quals=cat([p.quals for p in parts]),
            raw_quals=cat([p.raw_quals for p in parts]),
            cig_op=cat([p.cig_op for p in parts]),
            cig_len=cat([p.cig_len for p in parts]),
            pairs=cat([p.pairs + s for p, s in zip(parts, rshift)]).reshape(-1, 2),
        )


@numba.njit(cache=True, nogil=True)
def _parse_cigars(text: np.ndarray, codes: np.ndarray, n_reads: int):
    """Parse ';'-terminated CIGAR strings (one per read) into op/length arrays."""
    n_ops = 0
    for c in text:
        if c >= 65 or c == 61:  # letters and '='
            n_ops += 1
    ops = np.empty(n_ops, np.uint8)
    lens = np.empty(n_ops, np.int32)
    coff = np.empty(n_reads, np.int64)
    cn = np.zeros(n_reads, np.int32)
    k = 0
    r = 0
    num = 0
    if n_reads > 0:
        coff[0] = 0
    for c in text:
        if 48 <= c <= 57:
            num = num * 10 + (c - 48)
        elif c == 59:  # ';'
            r += 1
            if r < n_reads:
                coff[r] = k
        else:
            ops[k] = codes[c]
            lens[k] = num
            num = 0
            cn[r] += 1
            k += 1
    return ops, lens, coff, cn


def _sample_maps(
    header: dict, path: str, sample_index: dict[str, int]
) -> tuple[int, dict[str, int]]:
    """(default sample index or -1, RG ID -> sample index) of one alignment file."""
    rgs = header.get("RG", [])
    by_rg: dict[str, int] = {}
    sms = []
    for rg in rgs:
        sm = rg.get("SM")
        if sm is None:
            continue
        if sm not in sample_index:
            raise InputError(
                f"{path}: sample {sm!r} (read group {rg.get('ID')}) is not among the run's "
                "samples; resolve inputs again from these BAM files"
            )
        by_rg[rg["ID"]] = sample_index[sm]
        if sm not in sms:
            sms.append(sm)
    if len(sms) <= 1:
        if sms:
            return sample_index[sms[0]], by_rg
        # no SM: the file is one sample named after the file (see varcall.plan.inputs)
        name = Path(path).name.split(".")[0]
        if name not in sample_index:
            raise InputError(
                f"{path}: no @RG SM and no sample named {name!r} in the run; add read groups "
                "with 'samtools addreplacerg'"
            )
        return sample_index[name], by_rg
    return -1, by_rg


@functools.lru_cache(maxsize=256)
def _header_info(path: str, reference: str, mtime: float) -> tuple[tuple[str, ...], dict]:
    with pysam.AlignmentFile(path, reference_filename=reference, check_sq=False) as f:
        return tuple(f.references), {"RG": f.header.to_dict().get("RG", [])}


def fetch_reads(
    bams: Sequence[str],
    reference: str,
    sample_index: dict[str, int] | Sequence[dict[str, int]],
    contig: str,
    start: int,
    end: int,
    *,
    min_mapq: int,
    include_supplementary: bool,
    fast: bool = True,
) -> ReadBatch:
    """Decode every read overlapping ``contig:[start, end)`` (0-based half-open) from all
    files into one :class:`ReadBatch`, with overlapping mate pairs recorded.

    Reads are in file order, files in the given order. Reads failing the flag or MAPQ
    filters are dropped; reads of a read group outside ``sample_index`` raise InputError.
    ``sample_index`` maps SM -> output column, for all files or one mapping per file.
    Indexed BAM files (``.bai``) are decoded by :mod:`varcall.io.bam` unless ``fast`` is
    False; CRAM and other files go through pysam. Both give the same batch.
    """
    drop = _FILTER_FLAGS | (0 if include_supplementary else _SUPPLEMENTARY)
    parts = []
    # one SM -> column mapping for all files, or one per file (varcall.plan.inputs.sample_columns:
    # needed when a name repeats across files and the run renamed the copies)
    per_file = not isinstance(sample_index, dict)
    for i, path in enumerate(bams):
        refs, header = _header_info(path, reference, os.path.getmtime(path))
        file_index = sample_index[i] if per_file else sample_index
        default, by_rg = _sample_maps(header, path, file_index)
        if contig not in refs:
            continue
        raw = None
        if fast:
            raw = _bam.fetch_raw(
                path,
                refs.index(contig),
                start,
                end,
                drop_flags=drop,
                min_mapq=min_mapq,
                default_sample=default,
                rg_to_sample=by_rg,
            )
        if raw is None:
            parts.append(
                _fetch_pysam(path, reference, contig, start, end, drop, min_mapq, default, by_rg)
            )
            continue
        *arrays, bad = raw
        if bad >= 0:
            raise InputError(
                f"{path}: a read on {contig} has a read group without an @RG SM header line; "
                "fix the header with 'samtools addreplacerg'"
            )
        (st, en, mq, fl, sm, qoff, qlen, coff, cn, bases, quals, ops, lens, pairs) = arrays
        parts.append(
            ReadBatch(
                start=st,
                end=en,
                mapq=mq,
                flag=fl,
                sample=sm,
                qoff=qoff,
                qlen=qlen,
                coff=coff,
                cn=cn,
                bases=bases,
                quals=quals.copy(),
                raw_quals=quals,
                cig_op=ops,
                cig_len=lens,
                pairs=pairs,
            )  # fmt: skip
        )
    if not parts:
        return _empty_batch()
    batch = ReadBatch.concatenate(parts)
    pair_arr, flag_arr = batch.pairs, batch.flag
    if pair_arr.shape[0]:
        # order each pair (first mate, second mate); a pair without a clear first mate
        # keeps file order
        swap = ((flag_arr[pair_arr[:, 1]] & 0x40) != 0) & ((flag_arr[pair_arr[:, 0]] & 0x40) == 0)
        pair_arr[swap] = pair_arr[swap][:, ::-1]
    return batch


def _fetch_pysam(
    path: str,
    reference: str,
    contig: str,
    start: int,
    end: int,
    drop: int,
    min_mapq: int,
    default: int,
    by_rg: dict[str, int],
) -> ReadBatch:
    """The reads of one file through pysam (CRAM, unindexed-by-BAI files, tests)."""
    starts: list[int] = []
    ends: list[int] = []
    mapqs: list[int] = []
    flags: list[int] = []
    samples: list[int] = []
    qlens: list[int] = []
    seqs: list[str] = []
    quals: list = []
    cigars: list[str] = []
    pairs: list[tuple[int, int]] = []
    with pysam.AlignmentFile(path, reference_filename=reference) as f:
        open_mates: dict[str, int] = {}
        try:
            reads = f.fetch(contig, start, end)
        except ValueError as e:
            raise InputError(
                f"{path}: cannot fetch reads by region ({e}); index it with 'samtools index {path}'"
            ) from None
        for r in reads:
            flag = r.flag
            if flag & drop:
                continue
            mq = r.mapping_quality
            if mq < min_mapq:
                continue
            seq = r.query_sequence
            if not seq:
                continue
            rs = r.reference_start
            re_ = r.reference_end
            if re_ is None or re_ <= rs:
                continue
            idx = len(starts)
            if default >= 0:
                samples.append(default)
            else:
                rg = r.get_tag("RG") if r.has_tag("RG") else None
                if rg not in by_rg:
                    raise InputError(
                        f"{path}: a read on {contig} has a read group without an @RG SM "
                        "header line; fix the header with 'samtools addreplacerg'"
                    )
                samples.append(by_rg[rg])
            q = r.query_qualities
            quals.append(q if q is not None else b"\x1e" * len(seq))
            seqs.append(seq)
            cigars.append(r.cigarstring)
            starts.append(rs)
            ends.append(re_)
            mapqs.append(mq)
            flags.append(flag)
            qlens.append(len(seq))
            if flag & 0x1 and not flag & 0x8 and r.next_reference_id == r.reference_id:
                ns = r.next_reference_start
                if rs <= ns < re_:
                    # the mate starts inside this read: it may overlap it
                    if ns == rs:
                        mate = open_mates.pop(r.query_name, -1)
                        if mate >= 0:
                            pairs.append((mate, idx))
                        else:
                            open_mates[r.query_name] = idx
                    else:
                        open_mates[r.query_name] = idx
                elif ns < rs:
                    mate = open_mates.pop(r.query_name, -1)
                    if mate >= 0:
                        pairs.append((mate, idx))
    n = len(starts)
    if n == 0:
        return _empty_batch()
    qlen = np.array(qlens, np.int32)
    qoff = np.zeros(n, np.int64)
    np.cumsum(qlen[:-1], out=qoff[1:])
    text = np.frombuffer(";".join(cigars).encode("ascii") + b";", np.uint8)
    ops, lens, coff, cn = _parse_cigars(text, _CIGAR_CODES, n)
    raw_quals = np.frombuffer(b"".join(quals), np.uint8)
    return ReadBatch(
        start=np.array(starts, np.int64),
        end=np.array(ends, np.int64),
        mapq=np.array(mapqs, np.int32),
        flag=np.array(flags, np.int32),
        sample=np.array(samples, np.int32),
        qoff=qoff,
        qlen=qlen,
        coff=coff,
        cn=cn,
        bases=encode_bases("".join(seqs)),
        quals=raw_quals.copy(),
        raw_quals=raw_quals,
        cig_op=ops,
        cig_len=lens,
        pairs=np.array(pairs, np.int64).reshape(-1, 2),
    )


def _empty_batch() -> ReadBatch:
    z64 = np.zeros(0, np.int64)
    z32 = np.zeros(0, np.int32)
    return ReadBatch(
        start=z64,
        end=z64.copy(),
        mapq=z32,
        flag=z32.copy(),
        sample=z32.copy(),
        qoff=z64.copy(),
        qlen=z32.copy(),
        coff=z64.copy(),
        cn=z32.copy(),
        bases=np.zeros(0, np.uint8),
        quals=np.zeros(0, np.uint8),
        raw_quals=np.zeros(0, np.uint8),
        cig_op=np.zeros(0, np.uint8),
        cig_len=z32.copy(),
        pairs=np.zeros((0, 2), np.int64),
    )


# ----------------------------------------------------------------------------- mates
@numba.njit(cache=True, nogil=True)
def _mask_pairs(pairs, start, end, qoff, coff, cn, cig_op, cig_len, quals):
    for k in range(pairs.shape[0]):
        a = pairs[k, 0]
        b = pairs[k, 1]
        lo = max(start[a], start[b])
        hi = min(end[a], end[b])
        if hi <= lo:
            continue
        # query offset of read a at each reference position of the overlap (-1: none)
        qa = np.full(hi - lo, -1, np.int64)
        rpos = start[a]
        qpos = 0
        for c in range(coff[a], coff[a] + cn[a]):
            op = cig_op[c]
            ln = cig_len[c]
            if op == 0 or op == 7 or op == 8:
                for j in range(ln):
                    p = rpos + j
                    if lo <= p < hi:
                        qa[p - lo] = qoff[a] + qpos + j
                rpos += ln
                qpos += ln
            elif op == 1 or op == 4:
                qpos += ln
            elif op == 2 or op == 3:
                rpos += ln
        rpos = start[b]
        qpos = 0
        for c in range(coff[b], coff[b] + cn[b]):
            op = cig_op[c]
            ln = cig_len[c]
            if op == 0 or op == 7 or op == 8:
                for j in range(ln):
                    p = rpos + j
                    if lo <= p < hi:
                        ia = qa[p - lo]
                        if ia >= 0:
                            ib = qoff[b] + qpos + j
                            if quals[ib] > quals[ia]:
                                quals[ia] = 0
                            else:
                                quals[ib] = 0
                rpos += ln
                qpos += ln
            elif op == 1 or op == 4:
                qpos += ln
            elif op == 2 or op == 3:
                rpos += ln


def mask_mate_overlaps(batch: ReadBatch) -> None:
    """Count each reference base covered by both mates of a pair once, in place: the base
    with the lower quality gets quality 0 (ties: the second mate's)."""
    if batch.pairs.shape[0]:
        _mask_pairs(
            batch.pairs,
            batch.start,
            batch.end,
            batch.qoff,
            batch.coff,
            batch.cn,
            batch.cig_op,
            batch.cig_len,
            batch.quals,
        )


# ----------------------------------------------------------------------------- pass 1
@dataclasses.dataclass
class Evidence:
    """Per-position evidence of one window ``[ws, we)``.

    counts: (S, W, 4) int32 reads per base (A, C, G, T) with quality >= min_baseq.
    depth: (S, W) int32 sum of counts. cover: (S, W) int32 reads with an unmasked base
    aligned at the position (the denominator of indel fractions).
    Indel events (E,): ev_pos 0-based anchor (the base before the indel, VCF POS - 1),
    ev_len (+L insertion, -L deletion), ev_read (read index), ev_qoff (query offset of the
    normalised inserted sequence within its read; -1 for deletions).
    """

    ws: int
    we: int
    counts: np.ndarray
    depth: np.ndarray
    cover: np.ndarray
    ev_pos: np.ndarray
    ev_len: np.ndarray
    ev_read: np.ndarray
    ev_qoff: np.ndarray


@numba.njit(cache=True, nogil=True)
def _count_pass(
    start, qoff, coff, cn, cig_op, cig_len, bases, quals, sample,
    ref, ref_lo, ws, we, min_baseq, max_indel, counts, cover,
    ev_pos, ev_len, ev_read, ev_qoff,
):  # fmt: skip
    ne = 0
    for i in range(start.shape[0]):
        s = sample[i]
        qo = qoff[i]
        rpos = start[i]
        qpos = 0
        block = -1  # reference start of the aligned block just walked, -1 when none
        for c in range(coff[i], coff[i] + cn[i]):
            op = cig_op[c]
            ln = cig_len[c]
            if op == 0 or op == 7 or op == 8:
                if block < 0:
                    block = rpos
                j0 = max(0, ws - rpos)
                j1 = min(ln, we - rpos)
                for j in range(j0, j1):
                    q = quals[qo + qpos + j]
                    if q >= 1:
                        w = rpos + j - ws
                        cover[s, w] += 1
                        b = bases[qo + qpos + j]
                        if q >= min_baseq and b < 4:
                            counts[s, w, b] += 1
                rpos += ln
                qpos += ln
            elif op == 1:
                if block >= 0 and ln <= max_indel:
                    anchor = rpos - 1
                    qa = qpos - 1
                    while (
                        anchor > block
                        and bases[qo + qa] == ref[anchor - ref_lo]
                        and bases[qo + qa] == bases[qo + qa + ln]
                    ):
                        anchor -= 1
                        qa -= 1
                    # stopped by the block start although the shift could go on: the
                    # leftmost placement lies before the read's aligned bases (ambiguous)
                    ambiguous = (
                        bases[qo + qa] == ref[anchor - ref_lo]
                        and bases[qo + qa] == bases[qo + qa + ln]
                    )
                    if ws <= anchor < we and quals[qo + qa] >= 1 and not ambiguous:
                        ev_pos[ne] = anchor
                        ev_len[ne] = ln
                        ev_read[ne] = i
                        ev_qoff[ne] = qa + 1
                        ne += 1
                qpos += ln
                block = -1
            elif op == 2:
                if block >= 0 and ln <= max_indel:
                    anchor = rpos - 1
                    qa = qpos - 1
                    while (
                        anchor > block
                        and bases[qo + qa] == ref[anchor - ref_lo]
                        and ref[anchor - ref_lo] == ref[anchor + ln - ref_lo]
                    ):
                        anchor -= 1
                        qa -= 1
                    ambiguous = (
                        bases[qo + qa] == ref[anchor - ref_lo]
                        and ref[anchor - ref_lo] == ref[anchor + ln - ref_lo]
                    )
                    if ws <= anchor < we and quals[qo + qa] >= 1 and not ambiguous:
                        ev_pos[ne] = anchor
                        ev_len[ne] = -ln
                        ev_read[ne] = i
                        ev_qoff[ne] = -1
                        ne += 1
                rpos += ln
                block = -1
            elif op == 3:
                rpos += ln
                block = -1
            elif op == 4:
                qpos += ln
    return ne


def count_evidence(
    batch: ReadBatch,
    ref: np.ndarray,
    ref_lo: int,
    ws: int,
    we: int,
    n_samples: int,
    min_baseq: int,
) -> Evidence:
    """Pass 1 over the reads: base counts for positions in ``[ws, we)`` and the
    left-normalised indel events anchored there. ``ref`` holds base codes of the
    reference from 0-based ``ref_lo`` on, covering every read of the batch plus margin."""
    w = we - ws
    counts = np.zeros((n_samples, w, 4), np.int32)
    cover = np.zeros((n_samples, w), np.int32)
    n_ind = int(np.count_nonzero((batch.cig_op == _I) | (batch.cig_op == _D)))
    ev_pos = np.empty(n_ind, np.int64)
    ev_len = np.empty(n_ind, np.int64)
    ev_read = np.empty(n_ind, np.int64)
    ev_qoff = np.empty(n_ind, np.int64)
    ne = _count_pass(
        batch.start, batch.qoff, batch.coff, batch.cn, batch.cig_op, batch.cig_len,
        batch.bases, batch.quals, batch.sample, ref, ref_lo, ws, we, min_baseq,
        MAX_INDEL_LENGTH, counts, cover, ev_pos, ev_len, ev_read, ev_qoff,
    )  # fmt: skip
    return Evidence(
        ws=ws,
        we=we,
        counts=counts,
        depth=counts.sum(axis=2, dtype=np.int32),
        cover=cover,
        ev_pos=ev_pos[:ne],
        ev_len=ev_len[:ne],
        ev_read=ev_read[:ne],
        ev_qoff=ev_qoff[:ne],
    )


# ----------------------------------------------------------------------------- sites
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
    largest read shift tried at an indel site (0 at SNV-only sites). At indel sites
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
) -> Sites:
    """Candidate alleles of the window (see module docstring) and their haplotypes.

    ``ref_text`` is the reference sequence (upper case) from 0-based ``ref_lo``; ``ref``
    its base codes."""
    ws = ev.ws
    w = ev.we - ev.ws
    win_ref = ref[ws - ref_lo : ws - ref_lo + w]
    n_samples = ev.counts.shape[0]
    per_site: dict[int, list[tuple[str, str, int]]] = {}

    # SNV candidates: per-sample count >= MIN_ALT_READS and fraction >= MIN_ALT_FRACTION
    if w:
        ok = (ev.counts >= MIN_ALT_READS) & (ev.counts >= MIN_ALT_FRACTION * ev.depth[:, :, None])
        is_ref = np.zeros((w, 4), bool)
        known = np.nonzero(win_ref < 4)[0]
        is_ref[known, win_ref[known]] = True
        ok &= ~is_ref[None, :, :]
        ok &= (win_ref < 4)[None, :, None]
        cand = ok.any(axis=0)
        wi, bi = np.nonzero(cand)
        total = ev.counts.sum(axis=0)
        for i, b in zip(wi.tolist(), bi.tolist()):
            per_site.setdefault(ws + i, []).append(("X", BASES[b], int(total[i, b])))

    # indel candidates: group the events by (anchor, length, sequence)
    if ev.ev_pos.shape[0]:
        groups: dict[tuple[int, int, bytes], np.ndarray] = {}
        bases = batch.bases
        for p, ln, ri, qo in zip(
            ev.ev_pos.tolist(), ev.ev_len.tolist(), ev.ev_read.tolist(), ev.ev_qoff.tolist()
        ):
            if ln > 0:
                o = int(batch.qoff[ri]) + qo
                key = (p, ln, bases[o : o + ln].tobytes())
            else:
                key = (p, ln, b"")
            g = groups.get(key)
            if g is None:
                g = groups[key] = np.zeros(n_samples, np.int64)
            g[batch.sample[ri]] += 1
        # insertions of one length at one anchor whose sequences differ (sequencing errors
        # in the inserted bases) are counted together: when no sequence qualifies on its
        # own but the group does, its most frequent sequence stands for it
        by_len: dict[tuple[int, int], list[tuple[bytes, np.ndarray]]] = {}
        for (p, ln, seq), cnt in groups.items():
            by_len.setdefault((p, ln), []).append((seq, cnt))
        for (p, ln), members in by_len.items():
            if ref[p - ref_lo] == 4:
                continue
            cov = ev.cover[:, p - ws]

            def qualifies(cnt: np.ndarray, cov: np.ndarray = cov) -> bool:
                return bool(np.any((cnt >= MIN_ALT_READS) & (cnt >= MIN_ALT_FRACTION * cov)))

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

    positions = sorted(per_site)
    n = len(positions)
    pos = np.array(positions, np.int64)
    n_alleles = np.zeros(n, np.int32)
    support = np.zeros((n, MAX_ALLELES), np.int64)
    cmp_len = np.ones(n, np.int32)
    indel = np.zeros(n, bool)
    cap = np.full(n, INDEL_CAP)
    shift = np.zeros(n, np.int32)
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
            sh = min(MAX_SHIFT, max(len(a[1]) for a in alts if a[0] != "X"))
            hs, d_max = _haplotypes(al, ref, ref_lo, p)
            # stop at the next indel site's POS (its reads would blur this comparison),
            # but always compare past the first base where the haplotypes differ
            nxt = bisect.bisect_right(indel_pos, p)
            limit = MAX_COMPARE
            if nxt < len(indel_pos):
                limit = max(d_max + 2, indel_pos[nxt] - p + 1)
            cmp_len[k] = min(MAX_COMPARE, d_max + INDEL_FLANK + 1, limit)
            cap[k] = max(INDEL_CAP_MIN, INDEL_CAP - 0.5 * d_max)
            shift[k] = sh
            left = _ref_codes(ref, ref_lo, p - INDEL_LEFT_FLANK - sh, p)
            width = INDEL_LEFT_FLANK + 2 * sh + int(cmp_len[k])
            hs = [np.concatenate([left, h])[:width] for h in hs]
        else:
            hs = [np.array([ref[p - ref_lo]], np.uint8)] + [
                np.array([BASES.index(a[1])], np.uint8) for a in al[1:]
            ]
        haps.append(hs)
    hmax = max([h.shape[0] for hs in haps for h in hs], default=1)
    hap = np.full((n, MAX_ALLELES, hmax), 4, np.uint8)
    for k in range(n):
        for a, h in enumerate(haps[k]):
            m = min(hmax, h.shape[0])
            hap[k, a, :m] = h[:m]
    allele_indel = np.zeros((n, MAX_ALLELES), bool)
    for k, al in enumerate(alleles_out):
        for a, (kind, _) in enumerate(al):
            allele_indel[k, a] = kind in "ID"
    return Sites(
        allele_indel=allele_indel,
        shift=shift,
        pos=pos,
        n_alleles=n_alleles,
        alleles=alleles_out,
        support=support,
        hap=hap,
        cmp_len=cmp_len,
        indel=indel,
        cap=cap,
    )


def _ref_codes(ref: np.ndarray, ref_lo: int, start: int, end: int) -> np.ndarray:
    """Reference codes of ``[start, end)``, N (4) before the contig start."""
    pad = max(0, -start)
    return np.concatenate([np.full(pad, 4, np.uint8), ref[start + pad - ref_lo : end - ref_lo]])


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


# ----------------------------------------------------------------------------- pass 2
@dataclasses.dataclass
class Observations:
    """One row per (site, read) used: site (index into Sites), sample, pen (A,) float64
    phred penalty of each allele relative to the read's best (0 for the best; unused
    allele slots 0), best (int8 allele index the read supports uniquely, -1 if tied)."""

    site: np.ndarray
    sample: np.ndarray
    pen: np.ndarray
    best: np.ndarray


@numba.njit(cache=True, nogil=True)
def _mismatch_penalty(q: float, mq: float) -> float:
    eb = 10.0 ** (-q / 10.0)
    em = 10.0 ** (-mq / 10.0) if mq < 255 else 0.0
    eps = eb + em - eb * em
    if eps > 0.75:
        eps = 0.75
    return -10.0 * np.log10(eps / 3.0) + 10.0 * np.log10(1.0 - eps)


@numba.njit(cache=True, nogil=True)
def _query_offset(p, rstart, c0, c1, cig_op, cig_len):
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


@numba.njit(cache=True, nogil=True)
def _hap_scores(k, qp, qo, rlen, cmp_len, shift, flank, hap, na, bases, rquals, min_baseq, scores):
    """Score the read against each haplotype of indel site k: read bases from
    ``qp - flank`` to ``qp + cmp_len`` (query offsets; qp = the base aligned at POS) are
    compared ungapped, for every placement shift in [-shift, shift], with the haplotype;
    a mismatching base costs its base-quality penalty; the best shift counts. Returns
    (best allele, unique best, high-quality mismatches against the best)."""
    sh = shift[k]
    v = qp - flank - sh  # query offset facing haplotype index 0 at shift 0
    j0 = max(0, qp - flank)
    j1 = min(rlen, qp + cmp_len[k])
    best_shift = 0
    ib = -1
    for a in range(na):
        best = 1e300
        bs = 0
        for s in range(-sh, sh + 1):
            sc = 0.0
            for j in range(j0, j1):
                b = bases[qo + j]
                if b < 4 and b != hap[k, a, j - v + s]:
                    q = rquals[qo + j]
                    if q > 0:
                        sc += _mismatch_penalty(float(q), 255.0)
                        if sc >= best:
                            break
            if sc < best:
                best = sc
                bs = s
        scores[a] = best
        if ib < 0 or best < scores[ib]:
            ib = a
            best_shift = bs
    unique = True
    for a in range(na):
        if a != ib and scores[a] <= scores[ib]:
            unique = False
    nmm = 0
    for j in range(j0, j1):
        b = bases[qo + j]
        if b < 4 and b != hap[k, ib, j - v + best_shift] and rquals[qo + j] >= min_baseq:
            nmm += 1
    return ib, unique, nmm


@numba.njit(cache=True, nogil=True)
def _obs_pass(
    site_pos, site_na, hap, cmp_len, indel, cap, allele_indel, shift, flank, emit,
    order, sorted_start, max_span,
    start, end, mapq, sample, qoff, qlen, coff, cn, cig_op, cig_len, bases, quals, rquals,
    ref, ref_lo, min_baseq, snv_context, max_compare, count_only,
    o_site, o_sample, o_pen, o_best,
):  # fmt: skip
    no = 0
    na_max = hap.shape[1]
    scores = np.zeros(na_max)
    shadow_scores = np.zeros(na_max)
    for k in range(site_pos.shape[0]):
        if not emit[k]:
            continue
        p = site_pos[k]
        na = site_na[k]
        # indel sites before p whose compared stretch covers p ("shadowing" sites)
        k0 = k
        if not indel[k]:
            while k0 > 0 and site_pos[k0 - 1] >= p - max_compare:
                k0 -= 1
        lo = np.searchsorted(sorted_start, p - max_span, side="left")
        hi = np.searchsorted(sorted_start, p, side="right")
        for t in range(lo, hi):
            i = order[t]
            if end[i] <= p:
                continue
            # query offset aligned at p (-1: deleted/skipped) and context mismatches
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
                    if not indel[k]:
                        j0 = max(0, p - snv_context - rpos)
                        j1 = min(ln, p + snv_context + 1 - rpos)
                        for j in range(j0, j1):
                            if rpos + j == p:
                                continue
                            b = bases[qo + qpos + j]
                            if (
                                b < 4
                                and rquals[qo + qpos + j] >= min_baseq
                                and b != ref[rpos + j - ref_lo]
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
            if qp < 0:
                continue
            q0 = quals[qo + qp]
            if q0 == 0:
                continue
            if not indel[k]:
                b = bases[qo + qp]
                if q0 < min_baseq or b >= 4:
                    continue
                # a read aligned without gaps across a nearby indel site whose indel
                # haplotype it matches best is misaligned there: its base at p is no
                # evidence (the aligner put mismatches where the indel is)
                misaligned = False
                for j in range(k0, k):
                    if not indel[j] or site_pos[j] + cmp_len[j] <= p:
                        continue
                    q_j = _query_offset(
                        site_pos[j], start[i], coff[i], coff[i] + cn[i], cig_op, cig_len
                    )
                    if q_j < 0:
                        # the read starts after the indel site (or lacks a base there):
                        # its alignment near the indel cannot be checked
                        misaligned = True
                        break
                    if qp - q_j != p - site_pos[j]:
                        continue
                    ib, uniq, _ = _hap_scores(
                        j, q_j, qo, qlen[i], cmp_len, shift, flank, hap, site_na[j], bases,
                        rquals, min_baseq, shadow_scores,
                    )  # fmt: skip
                    if uniq and allele_indel[j, ib]:
                        misaligned = True
                        break
                if misaligned:
                    continue
                if count_only:
                    no += 1
                    continue
                w = _mismatch_penalty(float(q0), float(mapq[i])) / (1.0 + max(0, nmm - 1))
                best = -1
                for a in range(na_max):
                    if a < na and hap[k, a, 0] != b:
                        o_pen[no, a] = w
                    else:
                        o_pen[no, a] = 0.0
                    if a < na and hap[k, a, 0] == b:
                        best = a
                o_site[no] = k
                o_sample[no] = sample[i]
                o_best[no] = best
                no += 1
                continue
            if count_only:
                no += 1
                continue
            ib, unique, nmm = _hap_scores(
                k, qp, qo, qlen[i], cmp_len, shift, flank, hap, na, bases, rquals, min_baseq,
                scores,
            )  # fmt: skip
            c_read = min(float(mapq[i]), cap[k]) / (1.0 + max(0, nmm - 1) ** 2)
            for a in range(na_max):
                if a < na:
                    o_pen[no, a] = min(scores[a] - scores[ib], c_read)
                else:
                    o_pen[no, a] = 0.0
            o_site[no] = k
            o_sample[no] = sample[i]
            o_best[no] = ib if unique else -1
            no += 1
    return no


def site_observations(
    sites: Sites,
    batch: ReadBatch,
    ref: np.ndarray,
    ref_lo: int,
    min_baseq: int,
    emit: np.ndarray | None = None,
) -> Observations:
    """Pass 2: the per-read allele penalties at every candidate site (module docstring).

    ``emit`` (N,) bool selects the sites to observe (default all); the others still serve
    as shadowing indel sites for SNV sites after them."""
    n_reads = batch.n_reads
    if sites.n_sites == 0 or n_reads == 0:
        return Observations(
            site=np.zeros(0, np.int64),
            sample=np.zeros(0, np.int32),
            pen=np.zeros((0, MAX_ALLELES)),
            best=np.zeros(0, np.int8),
        )
    order = np.argsort(batch.start, kind="stable")
    sorted_start = batch.start[order]
    max_span = int((batch.end - batch.start).max())
    if emit is None:
        emit = np.ones(sites.n_sites, bool)
    args_head = (
        sites.pos, sites.n_alleles, sites.hap, sites.cmp_len, sites.indel, sites.cap,
        sites.allele_indel, sites.shift, INDEL_LEFT_FLANK, emit, order, sorted_start, max_span,
        batch.start, batch.end, batch.mapq, batch.sample, batch.qoff, batch.qlen,
        batch.coff, batch.cn, batch.cig_op, batch.cig_len, batch.bases, batch.quals,
        batch.raw_quals, ref, ref_lo, min_baseq, SNV_CONTEXT, MAX_COMPARE,
    )  # fmt: skip
    e64 = np.zeros(0, np.int64)
    n = _obs_pass(
        *args_head, True, e64, np.zeros(0, np.int32), np.zeros((0, MAX_ALLELES)),
        np.zeros(0, np.int8),
    )  # fmt: skip
    o_site = np.empty(n, np.int64)
    o_sample = np.empty(n, np.int32)
    o_pen = np.empty((n, MAX_ALLELES))
    o_best = np.empty(n, np.int8)
    _obs_pass(*args_head, False, o_site, o_sample, o_pen, o_best)
    return Observations(site=o_site, sample=o_sample, pen=o_pen, best=o_best)
