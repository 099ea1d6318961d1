"""Windows of the native engine, sized so that a task's memory stays under a budget.

The engine decodes and processes a region's reads one window at a time
(:meth:`varcall.engines.native.engine.NativeEngine.call_region`). What a window holds in
memory follows the bytes of reads it decodes, not its length: 150 kb at 3,000x is 2 GB,
at 30x 20 MB. :func:`plan_windows` therefore cuts a region into windows whose *estimated*
peak memory fits ``params.memory_budget_mb`` (MiB, the whole process of a task):

    estimate(ws, we) = READ_FACTOR x decoded bytes of the reads fetched for [ws, we)
                       + POSITION_BYTES x samples x (we - ws + 2 x SHADOW_PAD)

where the decoded bytes come from the alignment indexes
(:func:`varcall.plan.volume.contig_volume`: per 16 kb, the reads' BAM record bytes), from
the 16 kb index window where the fetch starts (the decoder reads from there) to the end of
the padded window; and the budget left for a window is ``memory_budget_mb`` minus
:data:`PROCESS_MB` (the interpreter, numba, numpy and Dask themselves). READ_FACTOR was
measured on a 3,000x sample (peak RSS over window sizes 5-50 kb: 1.83 bytes per decoded
byte, plus ~110 MiB) and rounded up. Windows are also never longer than
:func:`~varcall.engines.native.engine.window_size` (the length cap by cohort size) nor
shorter than :data:`MIN_WINDOW` (the padding would dominate; a deeper stretch than the
budget allows is then processed in windows of that size, over budget). A window cut by the
budget ends, where that keeps at least half of it, so that the next window's fetch starts
on a 16 kb index window (:func:`_aligned_cut`). When an index cannot tell (no index, an
unknown format) the length cap alone applies.

Windows only batch the work: every quantity at a position comes from the reads
overlapping it, fetched with ``SHADOW_PAD`` around the window, so the calls do not depend
on where windows fall (``tests/test_windows.py``). Coordinates are 0-based half-open.
"""

from __future__ import annotations

import logging

import numpy as np

from varcall.core.params import CallInputs
from varcall.engines.native.pileup import SHADOW_PAD
from varcall.plan.volume import WINDOW as INDEX_WINDOW
from varcall.plan.volume import contig_volume

__all__ = ["MIN_WINDOW", "POSITION_BYTES", "PROCESS_MB", "READ_FACTOR", "plan_windows"]

logger = logging.getLogger(__name__)

#: Peak bytes in memory per decoded byte of the reads a window fetches (measured 1.83).
READ_FACTOR = 2.2
#: Bytes per sample and position of the per-position arrays (counts, depth, cover, ...).
POSITION_BYTES = 40
#: MiB of a task's process that are not the window's (interpreter, libraries, Dask).
PROCESS_MB = 384
#: The smallest window (bp) the budget may ask for.
MIN_WINDOW = 1_000
#: The least MiB left to a window, whatever the budget.
MIN_WINDOW_MB = 64

_MIB = 1 << 20


def _cumulative(volume: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(breakpoints bp, cumulative decoded bytes) of ``volume`` spread evenly over each
    16 kb window: a piecewise linear function of the position."""
    xs = np.minimum(np.arange(volume.size + 1, dtype=np.int64) * INDEX_WINDOW, length)
    return xs.astype(np.float64), np.concatenate([[0.0], np.cumsum(volume)])


def _aligned_cut(ws: int, we: int) -> int:
    """A window cut by the budget at ``we`` ends instead where the next window's fetch
    starts on a 16 kb index window (its decoder then reads nothing before its reads),
    when that keeps at least half of the window."""
    k = (we - SHADOW_PAD) // INDEX_WINDOW
    cut = k * INDEX_WINDOW + SHADOW_PAD
    return cut if cut - ws >= max(MIN_WINDOW, (we - ws) // 2) else we


def plan_windows(
    inputs: CallInputs,
    contig: str,
    length: int,
    start: int,
    end: int,
    max_window: int,
    budget_mb: int,
) -> list[tuple[int, int]]:
    """The windows ``[(ws, we), ...]`` tiling ``[start, end)`` of ``contig`` (``length``
    bp): each at most ``max_window`` bp and, where the indexes allow, with an estimated
    peak memory within ``budget_mb`` MiB for the whole process (see the module
    docstring). Deterministic for the same files."""
    if end <= start:
        return []
    volume = contig_volume(inputs.bams, inputs.reference, contig, length)
    if volume is None or budget_mb <= 0:
        return [(ws, min(end, ws + max_window)) for ws in range(start, end, max_window)]
    xs, cum = _cumulative(volume, length)
    room = max(MIN_WINDOW_MB, budget_mb - PROCESS_MB) * _MIB
    per_bp = POSITION_BYTES * max(1, len(inputs.samples))

    def estimate(ws: int, we: np.ndarray) -> np.ndarray:
        ews = max(0, ws - SHADOW_PAD)
        lo = (ews // INDEX_WINDOW) * INDEX_WINDOW  # the decoder starts at this 16 kb window
        hi = np.minimum(length, we + SHADOW_PAD)
        decoded = np.interp(hi, xs, cum) - np.interp(lo, xs, cum)
        return READ_FACTOR * decoded + per_bp * (we - ws + 2 * SHADOW_PAD)

    out: list[tuple[int, int]] = []
    ws = start
    while ws < end:
        longest = min(end, ws + max_window)
        shortest = min(longest, ws + MIN_WINDOW)
        ends = np.arange(shortest, longest + 1, dtype=np.int64)
        fits = estimate(ws, ends) <= room  # non-increasing along ends: a prefix fits
        k = int(np.count_nonzero(fits))
        we = int(ends[k - 1]) if k else shortest
        if we < longest:
            we = _aligned_cut(ws, we)
        out.append((ws, we))
        ws = we
    if len(out) > 1:
        logger.debug(
            "%s:%d-%d: %d windows of %d-%d bp for a %d MiB budget",
            contig, start + 1, end, len(out), min(b - a for a, b in out),
            max(b - a for a, b in out), budget_mb,
        )  # fmt: skip
    return out
