"""Paired-end reads simulated from a sample's haplotypes: fragments, duplicates, low-MAPQ
pairs, quality profiles, substitution / indel errors, adapter tails, alignments (pos,
CIGAR, NM) and mate fields. Positions are 0-based reference coordinates; SAM text (in
:mod:`varcall.simulate.sam`) adds 1."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from varcall.simulate.config import SimulationConfig, keyed_rng
from varcall.simulate.haplotypes import HapAlignment, haplotype, read_cigar
from varcall.simulate.reference import ASCII_BASES, ContigTexture
from varcall.simulate.variants import TruthRecord

__all__ = [
    "ADAPTER",
    "WRITE_BLOCK",
    "Reads",
    "quality_bank",
    "simulate_hap_reads",
    "contig_reads",
    "depth_at_least",
]

#: Illumina TruSeq adapter: the bases a read runs into past the end of a short fragment.
ADAPTER = "AGATCGGAAGAGCACACGTCTGAACTCCAGTCACATCGATCTCGTATGCCGTCTTCTGCTTG"
_COMP = bytes.maketrans(b"ACGTNacgtn", b"TGCANtgcan")
# base (ASCII) -> code 0..3 (anything else -> 0; only called on A/C/G/T)
_CODE = np.zeros(256, dtype=np.uint8)
for _i, _b in enumerate(b"ACGT"):
    _CODE[_b] = _i
# Phred quality -> error probability scaled to 2**16 (for uint16 uniform draws)
_ERR_THRESHOLD = np.rint(10.0 ** (-np.arange(94) / 10.0) * 65536).astype(np.uint32)
_ERR_THRESHOLD[_ERR_THRESHOLD > 65536] = 65536

# read-level constants (fractions are per read pair unless said otherwise)
_DUPLICATE_RATE = 0.03
_LOW_MAPQ_RATE = 0.02
_SOFT_CLIP_RATE = 0.01  # per read
_INDEL_ERROR_RATE = 0.002  # per read
_QUALITY_PROFILES = 512
WRITE_BLOCK = 100_000  # reads per block when drawing errors and writing SAM text
_FLAG_PAIRED, _FLAG_PROPER, _FLAG_REV, _FLAG_MREV = 0x1, 0x2, 0x10, 0x20
_FLAG_READ1, _FLAG_READ2, _FLAG_DUP = 0x40, 0x80, 0x400


def quality_bank(rng: np.random.Generator, read_length: int) -> np.ndarray:
    """Quality profiles (Phred, sequencing direction): falling along the read, noisy, with
    occasional low-quality dips. Shape (_QUALITY_PROFILES, read_length), uint8."""
    x = np.arange(read_length) / max(read_length - 1, 1)
    mean = 37.0 - 4.0 * x - 12.0 * x**3
    q = (
        mean
        + rng.normal(0.0, 1.5, (_QUALITY_PROFILES, 1))
        + rng.normal(0.0, 2.0, (_QUALITY_PROFILES, read_length))
    )
    dips = rng.random((_QUALITY_PROFILES, read_length)) < 0.005 + 0.02 * x
    q[dips] = rng.uniform(2, 12, int(dips.sum()))
    return np.clip(np.rint(q), 2, 41).astype(np.uint8)


@dataclasses.dataclass
class Reads:
    """Reads of one haplotype (or a concatenation), reference orientation."""

    pos: np.ndarray  # int64 0-based first aligned base
    end: np.ndarray  # int64 exclusive
    flag: np.ndarray  # int32
    mapq: np.ndarray  # int32
    mpos: np.ndarray  # int64
    tlen: np.ndarray  # int64
    hap: np.ndarray  # int32 haplotype number (1-based)
    pair: np.ndarray  # int64 pair number within the haplotype
    nm: np.ndarray  # int32 edit distance to the reference (SAM NM tag)
    seq: np.ndarray  # uint8 (n, L) ASCII
    qual: np.ndarray  # uint8 (n, L) ASCII (Phred + 33)
    cigar: list  # per read: bytes


def contig_reads(
    config: SimulationConfig,
    tex: ContigTexture,
    records: Sequence[TruthRecord],
    sample_index: int,
    contig_index: int,
    bank: np.ndarray,
) -> list[Reads]:
    """The reads of one sample on one contig: one :class:`Reads` per haplotype (two on a
    diploid contig, one on a haploid one), each at ``coverage / ploidy`` mean depth."""
    s, c = sample_index, contig_index
    ploidy = config.ploidy(c)
    ref_bytes = tex.seq.encode("ascii")
    parts = []
    for h in range(ploidy):
        edits = [
            (r.pos, r.alleles[0], r.alleles[int(r.genotypes[s, h])])
            for r in records
            if r.genotypes is not None and r.genotypes[s, h] > 0
        ]
        bases, refpos = haplotype(tex.seq, edits)
        hal = HapAlignment(bases, refpos, ref_bytes)
        parts.append(
            simulate_hap_reads(
                config,
                bases,
                hal,
                ref_bytes,
                config.coverage / ploidy,
                bank,
                keyed_rng(config, 4, s, c, h),
                h + 1,
            )
        )
    return parts


def depth_at_least(parts: Sequence[Reads], length: int, min_depth: int) -> np.ndarray:
    """Per position of a ``length`` bp contig: whether the non-duplicate reads of ``parts``
    cover it at least ``min_depth`` times (bool array, 0-based)."""
    pos = np.concatenate([p.pos for p in parts])
    end = np.concatenate([p.end for p in parts])
    nd = np.concatenate([(p.flag & _FLAG_DUP) == 0 for p in parts])
    n1 = length + 1
    diff = np.bincount(pos[nd], minlength=n1) - np.bincount(end[nd], minlength=n1)
    return np.cumsum(diff[:-1]) >= min_depth


def simulate_hap_reads(
    config: SimulationConfig,
    hap_bases: np.ndarray,
    hal: HapAlignment,
    ref_bytes: bytes,
    depth: float,
    bank: np.ndarray,
    rng: np.random.Generator,
    hap_number: int,
) -> Reads:
    """Paired reads from one haplotype at mean ``depth`` (duplicates not counted).

    Fragments: start uniform on the haplotype, length ~ normal(insert_mean, insert_sd) and
    at least one read length; fragments overlapping N are skipped. Each pair: left read
    forward, right read reverse, read 1 on either side; ~2% of pairs get MAPQ 0-19, ~3% are
    copied as duplicates (flag 0x400, own errors). Qualities come from a bank of profiles
    falling along the read (reversed for reverse reads); substitution errors are drawn
    from them. ~0.2% of reads get a 1-base indel error, ~1% an adapter tail (soft clip at
    the 3' end). Alignments come from the haplotype's left-aligned alignment
    (:class:`HapAlignment`), or :func:`read_cigar` for reads with simulated indel errors
    or clips. Positions are 0-based reference coordinates.
    """
    rl = config.read_length
    start, flen, r1_left, mq, pair_src, is_dup = _draw_pairs(config, hap_bases, depth, rng)
    hstart, rev, read1 = _read_layout(start, flen, r1_left, pair_src, rl)
    nreads = hstart.size

    windows = np.lib.stride_tricks.sliding_window_view(hap_bases, rl)
    seq = windows[hstart]  # fancy indexing copies
    prof = rng.integers(0, bank.shape[0], nreads)
    qual = bank[prof]
    qual[rev] = qual[rev, ::-1]
    # alignments from the haplotype's (left-aligned) alignment; reads with a simulated
    # indel error or adapter clip are aligned one by one after their errors are drawn
    pos, end, window_cigars, drop = hal.window_cigars(hstart, rl)
    clip = rng.random(nreads) < _SOFT_CLIP_RATE
    indel_err = rng.random(nreads) < _INDEL_ERROR_RATE
    special = np.flatnonzero((clip | indel_err) & ~drop)
    sp_refpos = _special_reads(seq, special, hstart, rev, clip, indel_err, hap_bases, hal, rng)
    _substitution_errors(seq, qual, rng)
    qual += 33
    cigars = _read_cigars(seq, window_cigars, sp_refpos, ref_bytes, pos, end, drop)
    complex_reads = np.union1d(
        np.fromiter(window_cigars, dtype=np.int64, count=len(window_cigars)),
        np.fromiter(sp_refpos, dtype=np.int64, count=len(sp_refpos)),
    )
    complex_reads = complex_reads[~drop[complex_reads]]
    nm = _edit_distances(seq, hstart, hal.refpos, complex_reads, sp_refpos, pos, end, ref_bytes)
    mpos, tl = _mate_fields(pos, end, read1)
    reads = Reads(
        pos=pos,
        end=end,
        flag=_flags(rev, read1, is_dup),
        mapq=np.repeat(mq[pair_src], 2),
        mpos=mpos,
        tlen=tl,
        hap=np.full(nreads, hap_number, dtype=np.int32),
        pair=np.repeat(np.arange(pair_src.size), 2),
        nm=nm,
        seq=seq,
        qual=qual,
        cigar=cigars,
    )
    return _drop_pairs(reads, drop)


def _draw_pairs(
    config: SimulationConfig, hap_bases: np.ndarray, depth: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fragments of one haplotype and their pairs: (start, flen, r1_left, mapq) per
    fragment (0-based haplotype start, length in bp), then ``pair_src`` (the fragment of
    each pair: every fragment once, then the duplicated ones again) and ``is_dup``."""
    rl = config.read_length
    hlen = hap_bases.size
    n = int(rng.poisson(depth * hlen / (2 * rl)))
    flen = np.rint(rng.normal(config.insert_mean, config.insert_sd, n)).astype(np.int64)
    flen = np.clip(flen, rl, hlen)
    start = (rng.random(n) * (hlen - flen + 1)).astype(np.int64)
    ncum = np.concatenate([[0], np.cumsum(hap_bases == ord("N"))])
    ok = ncum[start + flen] == ncum[start]
    start, flen = start[ok], flen[ok]
    n = start.size
    r1_left = rng.random(n) < 0.5
    low = rng.random(n) < _LOW_MAPQ_RATE
    mq = np.where(low, rng.integers(0, 20, n), 60).astype(np.int32)
    dup_src = np.flatnonzero(rng.random(n) < _DUPLICATE_RATE)
    pair_src = np.concatenate([np.arange(n), dup_src])
    is_dup = np.concatenate([np.zeros(n, bool), np.ones(dup_src.size, bool)])
    return start, flen, r1_left, mq, pair_src, is_dup


def _read_layout(
    start: np.ndarray, flen: np.ndarray, r1_left: np.ndarray, pair_src: np.ndarray, rl: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reads of the pairs: (hstart, rev, read1) per read, 0-based haplotype start of each
    read; read 2k is pair k's left (forward) read, 2k+1 its right (reverse) read."""
    npairs = pair_src.size
    # reads: 2k = left (forward), 2k+1 = right (reverse)
    hstart = np.empty(2 * npairs, dtype=np.int64)
    hstart[0::2] = start[pair_src]
    hstart[1::2] = start[pair_src] + flen[pair_src] - rl
    rev = np.zeros(2 * npairs, dtype=bool)
    rev[1::2] = True
    read1 = np.empty(2 * npairs, dtype=bool)
    read1[0::2] = r1_left[pair_src]
    read1[1::2] = ~r1_left[pair_src]
    return hstart, rev, read1


def _special_reads(
    seq: np.ndarray,
    special: np.ndarray,
    hstart: np.ndarray,
    rev: np.ndarray,
    clip: np.ndarray,
    indel_err: np.ndarray,
    hap_bases: np.ndarray,
    hal: HapAlignment,
    rng: np.random.Generator,
) -> dict[int, np.ndarray]:
    """Give the ``special`` reads their 1-base indel error and / or adapter tail (in
    ``seq``, in place); return each one's per-base reference positions (-1 inserted,
    -2 clipped), to be aligned one by one."""
    rl = seq.shape[1]
    hlen = hap_bases.size
    hap_refpos = hal.refpos
    sp_refpos: dict[int, np.ndarray] = {}
    for i in special.tolist():
        a = int(hstart[i])
        bases = seq[i].copy()
        rp = hap_refpos[a : a + rl].copy()
        if indel_err[i]:
            k = int(rng.integers(10, rl - 10))
            if rng.random() < 0.5 and a + rl + 1 <= hlen:  # lose base k
                bases = np.concatenate([hap_bases[a : a + k], hap_bases[a + k + 1 : a + rl + 1]])
                rp = np.concatenate([hap_refpos[a : a + k], hap_refpos[a + k + 1 : a + rl + 1]])
            else:  # gain a base after k-1 (slippage: a copy of it, or a random base)
                extra = hap_bases[a + k - 1] if rng.random() < 0.7 else ASCII_BASES[rng.integers(4)]
                bases = np.concatenate(
                    [hap_bases[a : a + k], [extra], hap_bases[a + k : a + rl - 1]]
                ).astype(np.uint8)
                rp = np.concatenate([hap_refpos[a : a + k], [-1], hap_refpos[a + k : a + rl - 1]])
        if clip[i]:
            k = int(rng.integers(5, 31))
            if rev[i]:  # the 3' end of a reverse read is its left end
                bases[:k] = np.frombuffer(
                    ADAPTER[:k].encode().translate(_COMP)[::-1], dtype=np.uint8
                )
                rp[:k] = -2
            else:
                bases[-k:] = np.frombuffer(ADAPTER[:k].encode(), dtype=np.uint8)
                rp[-k:] = -2
        seq[i] = bases
        sp_refpos[i] = rp
    return sp_refpos


def _substitution_errors(seq: np.ndarray, qual: np.ndarray, rng: np.random.Generator) -> None:
    """Substitution errors drawn from the (Phred) qualities, in ``seq`` in place."""
    nreads = seq.shape[0]
    for lo in range(0, nreads, WRITE_BLOCK):
        sq, qu = seq[lo : lo + WRITE_BLOCK], qual[lo : lo + WRITE_BLOCK]
        u = rng.integers(0, 65536, size=sq.shape, dtype=np.uint16)
        err = np.nonzero(u < _ERR_THRESHOLD[qu])
        if err[0].size:
            codes = _CODE[sq[err]]
            sq[err] = ASCII_BASES[(codes + rng.integers(1, 4, codes.size)) % 4]


def _read_cigars(
    seq: np.ndarray,
    window_cigars: dict[int, bytes],
    sp_refpos: dict[int, np.ndarray],
    ref_bytes: bytes,
    pos: np.ndarray,
    end: np.ndarray,
    drop: np.ndarray,
) -> list:
    """Every read's CIGAR: ``{rl}M``, the window's, or (reads in ``sp_refpos``) its own
    left-aligned alignment, which also sets its ``pos`` / ``end``; a read that aligns
    nowhere is marked in ``drop`` (arrays updated in place)."""
    nreads, rl = seq.shape
    cigars: list = [b"%dM" % rl] * nreads
    for i, c in window_cigars.items():
        cigars[i] = c
    for i, rp in sp_refpos.items():
        res = read_cigar(seq[i].tobytes(), rp, ref_bytes)
        if res is None:
            drop[i] = True
            continue
        pos[i], c, end[i] = res[0], res[1].encode(), res[2]
        cigars[i] = c
    return cigars


def _mate_fields(
    pos: np.ndarray, end: np.ndarray, read1: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(mpos, tlen) of every read: 0-based mate position; template length, positive for
    the read that starts first (read 1 on a tie), negative for its mate."""
    nreads = pos.size
    left, right = pos[0::2], pos[1::2]
    span_lo = np.minimum(left, right)
    span_hi = np.maximum(end[0::2], end[1::2])
    t = span_hi - span_lo
    tl = np.empty(nreads, dtype=np.int64)
    left_first = (left < right) | ((left == right) & read1[0::2])
    tl[0::2] = np.where(left_first, t, -t)
    tl[1::2] = -tl[0::2]
    mpos = np.empty(nreads, dtype=np.int64)
    mpos[0::2], mpos[1::2] = right, left
    return mpos, tl


def _flags(rev: np.ndarray, read1: np.ndarray, is_dup: np.ndarray) -> np.ndarray:
    """SAM FLAG of every read (paired, proper pair, strand, mate strand, read 1/2, dup);
    ``is_dup`` is per pair."""
    flag = np.full(rev.size, _FLAG_PAIRED | _FLAG_PROPER, dtype=np.int32)
    flag |= np.where(rev, _FLAG_REV, _FLAG_MREV)
    flag |= np.where(read1, _FLAG_READ1, _FLAG_READ2)
    flag |= np.repeat(np.where(is_dup, _FLAG_DUP, 0), 2)
    return flag


def _drop_pairs(reads: Reads, drop: np.ndarray) -> Reads:
    """``reads`` without the whole pairs of which a read is marked in ``drop`` (a read
    that aligns nowhere)."""
    if not drop.any():
        return reads
    keep = ~np.repeat(drop.reshape(-1, 2).any(axis=1), 2)
    return Reads(
        *(getattr(reads, f.name)[keep] for f in dataclasses.fields(Reads)[:-1]),
        cigar=[c for c, k in zip(reads.cigar, keep.tolist()) if k],
    )


def _edit_distances(
    seq: np.ndarray,
    hstart: np.ndarray,
    hap_refpos: np.ndarray,
    complex_reads: np.ndarray,
    sp_refpos: dict[int, np.ndarray],
    pos: np.ndarray,
    end: np.ndarray,
    ref_bytes: bytes,
) -> np.ndarray:
    """NM of every read: mismatching aligned bases + inserted bases (not soft-clipped) +
    deleted reference bases. Reads not in ``complex_reads`` align ungapped at ``pos``; the
    others follow the haplotype window at ``hstart`` or, for reads aligned one by one,
    ``sp_refpos[i]`` (left-aligning keeps NM unchanged)."""
    n, rl = seq.shape
    ref_arr = np.frombuffer(ref_bytes, dtype=np.uint8)
    nm = np.zeros(n, dtype=np.int32)
    plain = np.ones(n, dtype=bool)
    plain[complex_reads] = False
    plain_idx = np.flatnonzero(plain)
    ref_windows = np.lib.stride_tricks.sliding_window_view(ref_arr, rl)
    for lo in range(0, plain_idx.size, WRITE_BLOCK):
        idx = plain_idx[lo : lo + WRITE_BLOCK]
        nm[idx] = (seq[idx] != ref_windows[pos[idx]]).sum(axis=1)
    windows = np.lib.stride_tricks.sliding_window_view(hap_refpos, rl)
    col = np.arange(rl)
    for lo in range(0, complex_reads.size, WRITE_BLOCK):
        idx = complex_reads[lo : lo + WRITE_BLOCK]
        rp = windows[hstart[idx]]  # fancy indexing copies
        for k, i in enumerate(idx.tolist()):
            if i in sp_refpos:
                rp[k] = sp_refpos[i]
        aligned = rp >= 0
        mism = (aligned & (seq[idx] != ref_arr[np.maximum(rp, 0)])).sum(axis=1)
        first = aligned.argmax(axis=1)
        last = rl - 1 - aligned[:, ::-1].argmax(axis=1)
        inner_ins = (~aligned & (col > first[:, None]) & (col < last[:, None])).sum(axis=1)
        deleted = (end[idx] - pos[idx]) - aligned.sum(axis=1)
        nm[idx] = mism + inner_ins + deleted
    return nm
