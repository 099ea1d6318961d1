"""numba kernels of :mod:`varcall.engines.native.repeats`: tandem repeat tracts in reference
base codes (A=0 C=1 G=2 T=3, N=4). Positions are indexes into the given array."""

from __future__ import annotations

import numpy as np

from varcall.core.jit import kernel

__all__ = ["tract_at", "find_tracts"]


@kernel
def tract_at(ref, o, max_period, max_len):
    """(period, length in bp) of the longest tandem repeat tract starting at ``ref[o]``:
    the period ``p`` in ``1..max_period`` whose stretch ``ref[o:o+n]`` with
    ``ref[i] == ref[i - p]`` is longest (at most ``max_len`` bp, no N), counted only when it
    holds at least two full copies (``n >= 2p``); the smaller period on a tie. (0, 0)
    when there is none."""
    best_p = 0
    best_n = 0
    m = ref.shape[0]
    for p in range(1, max_period + 1):
        if o + p > m:
            break
        ok = True
        for i in range(o, o + p):
            if ref[i] >= 4:
                ok = False
                break
        if not ok:
            continue
        n = p
        while n < max_len and o + n < m and ref[o + n] == ref[o + n - p]:
            n += 1
        if n >= 2 * p and n > best_n:
            best_n = n
            best_p = p
    return best_p, best_n


@kernel
def find_tracts(ref, max_period, min_len, max_len):
    """Maximal tandem repeat tracts of ``ref`` (period ``1..max_period``, ``min_len`` bp or
    longer): (start, period, length) int64 arrays, by start. A tract starts where the repeat
    cannot extend one base to the left (``ref[s - 1] != ref[s - 1 + p]``); tracts found at
    one start for a smaller period win ties (:func:`tract_at`). Overlapping tracts of
    different periods are all reported."""
    m = ref.shape[0]
    starts = np.empty(m // 2 + 1, np.int64)
    periods = np.empty(m // 2 + 1, np.int64)
    lengths = np.empty(m // 2 + 1, np.int64)
    k = 0
    o = 0
    while o < m:
        p, n = tract_at(ref, o, max_period, max_len)
        if p > 0 and n >= min_len and (o == 0 or ref[o - 1] != ref[o - 1 + p]):
            starts[k] = o
            periods[k] = p
            lengths[k] = n
            k += 1
            o += n - p + 1  # a tract of another phase may start inside this one
        else:
            o += 1
    return starts[:k].copy(), periods[:k].copy(), lengths[:k].copy()
