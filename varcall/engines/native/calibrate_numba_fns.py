"""numba kernels of :mod:`varcall.engines.native.calibrate`: the stutter steps of the reads
at the calibration loci. Pure computation; positions 0-based."""

from __future__ import annotations

import numpy as np

from varcall.core.jit import kernel

__all__ = ["net_change", "count_loci"]


@kernel
def net_change(rstart, c0, c1, cig_op, cig_len, ts, te):
    """Bases inserted minus bases deleted by CIGAR ops ``[c0, c1)`` of a read starting at
    ``rstart`` inside the tract ``[ts, te)`` (insertions at its boundaries included)."""
    rpos = rstart
    net = 0
    for c in range(c0, c1):
        op = cig_op[c]
        ln = cig_len[c]
        if op == 0 or op == 7 or op == 8:
            rpos += ln
        elif op == 1:
            if ts <= rpos <= te:
                net += ln
        elif op == 2 or op == 3:
            if rpos < te and rpos + ln > ts:
                net -= ln
            rpos += ln
        if rpos > te:
            break
    return net


@kernel
def count_loci(
    start, end, sample, coff, cn, cig_op, cig_len, mate, l_start, l_len, l_period, l_row,
    flank, max_step, counts,
):  # fmt: skip
    """Add to ``counts[l_row[j], sample, k + max_step]`` every fragment of the reads (in
    file order) whose alignment spans locus j (``l_start`` sorted, ``l_len`` bp, period
    ``l_period``) plus ``flank`` bp on both sides and changes it by ``k`` whole units
    (``|k| <= max_step``; other changes are ignored). A fragment counts once: a read
    whose overlapping mate (``mate``, -1: none) comes first and spans the locus too is
    left out, whatever that mate's change."""
    n_loci = l_start.shape[0]
    for i in range(start.shape[0]):
        s = sample[i]
        if s < 0:
            continue
        rs, re = start[i], end[i]
        j = np.searchsorted(l_start, rs + flank)
        while j < n_loci and l_start[j] < re:
            ts, n, p = l_start[j], l_len[j], l_period[j]
            if ts + n + flank <= re:
                m = mate[i]
                if not (0 <= m < i and start[m] + flank <= ts and ts + n + flank <= end[m]):
                    net = net_change(rs, coff[i], coff[i] + cn[i], cig_op, cig_len, ts, ts + n)
                    if net % p == 0 and abs(net // p) <= max_step:
                        counts[l_row[j], s, net // p + max_step] += 1
            j += 1
