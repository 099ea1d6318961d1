"""Tandem repeat tracts of the reference (homopolymers and STRs with units of 1-6 bp),
for the stutter model (:mod:`varcall.engines.native.stutter`) and its calibration
(:mod:`varcall.engines.native.calibrate`). Kernels: :mod:`.repeats_numba_fns`.

A tract at 0-based position ``o`` is the longest stretch ``ref[o : o + L]`` that repeats
its first ``p`` bases (``ref[i] == ref[i - p]``), for the period ``p`` in 1..6 giving the
longest stretch (the smaller period on a tie), with at least two full copies (``L >= 2p``).
An indel site's tract starts right after its anchor base (POS + 1): indels are
left-normalised, so a repeat unit gained or lost in a tract is anchored just before it.
Tract lengths are capped at :data:`MAX_TRACT` bp, so a call looks at most that far
beyond POS in the reference (well inside the reference margin of a window).
"""

from __future__ import annotations

import numpy as np

from varcall.engines.native.repeats_numba_fns import find_tracts, tract_at

__all__ = ["MAX_TRACT", "MAX_UNIT", "site_tract", "reference_tracts"]

#: Longest unit (bp) of a tandem repeat.
MAX_UNIT = 6
#: Longest tract (bp) measured.
MAX_TRACT = 200


def site_tract(ref: np.ndarray, ref_lo: int, pos: int) -> tuple[int, int]:
    """(period, length bp) of the tract starting right after the anchor of an indel site
    at 0-based ``pos`` (``ref``: base codes from ``ref_lo``); (0, 0) outside repeats."""
    o = pos + 1 - ref_lo
    if o < 0 or o >= ref.shape[0]:
        return 0, 0
    p, n = tract_at(ref, o, MAX_UNIT, MAX_TRACT)
    return int(p), int(n)


def reference_tracts(ref: np.ndarray, min_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximal tracts of at least ``min_len`` bp in base codes ``ref``: (start, period,
    length) int64 arrays (start: index into ``ref``)."""
    if ref.shape[0] == 0:
        e = np.zeros(0, np.int64)
        return e, e, e
    return find_tracts(ref, MAX_UNIT, min_len, MAX_TRACT)
