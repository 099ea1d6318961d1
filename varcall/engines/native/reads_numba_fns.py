"""numba kernels of :mod:`varcall.engines.native.reads`: CIGAR text parsing and
mate-overlap masking. Pure computation on the columnar arrays of a ReadBatch
(reference positions 0-based; query offsets index the batch's ``bases``/``quals``)."""

from __future__ import annotations

import numpy as np

from varcall.core.jit import kernel

__all__ = ["parse_cigars", "aligned_query_offsets", "mask_pairs"]


@kernel
def parse_cigars(text: np.ndarray, codes: np.ndarray, n_reads: int):
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


@kernel
def aligned_query_offsets(r, lo, hi, start, qoff, coff, cn, cig_op, cig_len):
    """(hi - lo,) int64: for each reference position of ``[lo, hi)`` the offset (into the
    batch's bases/quals) of read r's base aligned there, -1 where none (deleted, skipped,
    outside the read)."""
    out = np.full(hi - lo, -1, np.int64)
    rpos = start[r]
    qpos = 0
    for c in range(coff[r], coff[r] + cn[r]):
        op = cig_op[c]
        ln = cig_len[c]
        if op == 0 or op == 7 or op == 8:
            for j in range(ln):
                p = rpos + j
                if lo <= p < hi:
                    out[p - lo] = qoff[r] + qpos + j
            rpos += ln
            qpos += ln
        elif op == 1 or op == 4:
            qpos += ln
        elif op == 2 or op == 3:
            rpos += ln
    return out


@kernel
def mask_pairs(pairs, start, end, qoff, coff, cn, cig_op, cig_len, quals):
    """For each pair (a, b) of ``pairs`` (K, 2), at every reference position where both
    mates have an aligned base, set the quality of the weaker base to 0 in ``quals``
    (ties: b's)."""
    for k in range(pairs.shape[0]):
        a = pairs[k, 0]
        b = pairs[k, 1]
        lo = max(start[a], start[b])
        hi = min(end[a], end[b])
        if hi <= lo:
            continue
        qa = aligned_query_offsets(a, lo, hi, start, qoff, coff, cn, cig_op, cig_len)
        qb = aligned_query_offsets(b, lo, hi, start, qoff, coff, cn, cig_op, cig_len)
        for x in range(hi - lo):
            ia = qa[x]
            ib = qb[x]
            if ia >= 0 and ib >= 0:
                if quals[ib] > quals[ia]:
                    quals[ia] = 0
                else:
                    quals[ib] = 0
