"""Genomic regions and region planning.

Coordinates are 0-based half-open ``[start, end)`` everywhere inside varcall; region
strings given by users (``chr1:1001-2000``) are 1-based inclusive as in samtools, and BED
files are 0-based half-open as in the BED specification.

Planning (:func:`plan_regions`) splits the genome (or the user's restriction) into regions
of about equal *work*, estimated from the alignment indexes without reading any read:

- BAM ``.bai``: the linear index gives, for every 16 kb window of a contig, the virtual
  file offset of the first read overlapping it; differences between consecutive windows
  are the bytes of reads starting in the window. ``.csi`` indexes (no linear index) give
  the byte ranges (chunks) of every bin, spread over the bin's span; CRAM ``.crai``
  indexes give the byte size and the reference span of every slice. Bytes are summed over
  all alignment files.
- A virtual offset is ``(compressed block offset << 16) | offset inside the block``;
  the in-block part is scaled by the file's compression ratio, measured on its first
  BGZF blocks (a few reads of the block headers, not of the reads).
- Cost of a window = its bytes + a small per-base term (so stretches without reads still
  cost the walk over the reference).

Split points are then moved, within a small tolerance, into a run of ``N`` in the
reference when there is one nearby (no read maps there: nothing to call, nothing to
split), else into the least covered 16 kb window nearby. The index holds no variant
information, so "never inside a deletion or a variant cluster" can only be approximated:
dense windows (collapsed repeats, amplified stretches — where clusters and long events
sit) are avoided. Correctness does not depend on this: every engine fetches reads with
padding around its region and a region owns exactly the variants whose POS lies in it,
so any split point gives the same calls.
"""

from __future__ import annotations

import logging
import math
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from varcall.core.errors import InputError
from varcall.core.files import find_index
from varcall.core.regions import Region, merge_regions
from varcall.io.index import BinningIndex, CraiSlice, load_binning_index, read_crai

if TYPE_CHECKING:  # pragma: no cover - typing only (engines imports this module)
    from varcall.core.params import CallInputs

__all__ = [
    "DEFAULT_REGION_SIZE",
    "WINDOW",
    "coverage_profile",
    "pack_regions",
    "plan_regions",
    "region_costs",
]

logger = logging.getLogger(__name__)

#: Default target region length in bp when neither a size nor a count is given.
DEFAULT_REGION_SIZE = 5_000_000
#: Width in bp of the coverage windows (the BAI linear index resolution).
WINDOW = 1 << 14
#: Weight of the per-base term relative to the mean bytes per base (see module doc).
LENGTH_WEIGHT = 0.1
#: A split point moves at most this fraction of the mean region length ...
SHIFT_FRACTION = 0.1
#: ... and at most this many bp.
MAX_SHIFT = 250_000
#: Runs of N at least this long attract split points.
MIN_N_RUN = 20
#: Planning reads the indexes of at most this many alignment files.
MAX_PROFILE_FILES = 64
#: Packing: every region costs as much as this many bp more (its fixed cost: reads
#: fetched around it, its checkpoint), in per-base-term units.
REGION_OVERHEAD_BP = 2_000


# ----------------------------------------------------------------------------- indexes
def _bgzf_ratio(path: Path, max_blocks: int = 32) -> float:
    """Compressed / uncompressed size of the first BGZF blocks of ``path`` (block headers
    and footers only). Returns 0.3 when it cannot be measured."""
    comp = raw = 0
    try:
        with open(path, "rb") as fh:
            for _ in range(max_blocks):
                head = fh.read(18)
                if len(head) < 18 or head[:4] != b"\x1f\x8b\x08\x04":
                    break
                xlen = struct.unpack_from("<H", head, 10)[0]
                if xlen != 6 or head[12:14] != b"BC":
                    break
                bsize = struct.unpack_from("<H", head, 16)[0] + 1
                fh.seek(bsize - 18 - 4, os.SEEK_CUR)
                tail = fh.read(4)
                if len(tail) < 4:  # a truncated file: the run names it when it reads there
                    break
                isize = struct.unpack("<I", tail)[0]
                if isize == 0:  # EOF marker
                    break
                comp += bsize
                raw += isize
    except OSError:
        return 0.3
    return comp / raw if raw else 0.3


def _approx_bytes(voffsets: np.ndarray, ratio: float) -> np.ndarray:
    """Virtual file offsets -> approximate compressed byte positions (float64)."""
    v = voffsets.astype(np.uint64)
    return (v >> np.uint64(16)).astype(np.float64) + (v & np.uint64(0xFFFF)).astype(
        np.float64
    ) * ratio


def _windows_from_linear(
    loff: np.ndarray, end_voff: int, length: int, ratio: float, shift: int
) -> np.ndarray:
    """Bytes per ``2**shift`` window from per-window first-read offsets (monotone filled)."""
    n = (length + (1 << shift) - 1) >> shift
    pos = np.zeros(n + 1, np.float64)
    if loff.size == 0:
        return np.zeros(n)
    loff = np.maximum.accumulate(loff.astype(np.uint64))
    k = min(loff.size, n)
    pos[:k] = _approx_bytes(loff[:k], ratio)
    end = _approx_bytes(np.array([max(end_voff, int(loff[-1]))], np.uint64), ratio)[0]
    pos[k:] = end
    pos = np.maximum.accumulate(pos)
    return np.diff(pos)


def _bai_windows(
    index: BinningIndex, names: Sequence[str], lengths: dict[str, int], ratio: float
) -> dict[str, np.ndarray]:
    """Bytes per 16 kb window from a BAI's linear index (SAM spec 5.2); the end of the last
    window is the pseudo-bin's end offset (or the last chunk end)."""
    out: dict[str, np.ndarray] = {}
    for ref, entry in enumerate(index.references):
        if ref < len(names) and names[ref] in lengths:
            out[names[ref]] = _windows_from_linear(
                entry.linear, entry.end_voff, lengths[names[ref]], ratio, 14
            )
    return out


def _csi_windows(
    index: BinningIndex, names: Sequence[str], lengths: dict[str, int], ratio: float
) -> dict[str, np.ndarray]:
    """CSI has no linear index, and htslib merges small leaf bins into their parents; so
    the bytes of every bin's chunks are spread evenly over the bin's span."""
    out: dict[str, np.ndarray] = {}
    min_shift, depth = index.min_shift, index.depth
    level_first = [((1 << (3 * lvl)) - 1) // 7 for lvl in range(depth + 2)]
    for ref, entry in enumerate(index.references):
        spans: list[tuple[int, int, float]] = []
        for bin_id, (_, n_chunk) in entry.bins.items():
            if not n_chunk:
                continue
            chunks = entry.chunks(bin_id).reshape(-1)
            size = float(
                np.sum(_approx_bytes(chunks[1::2], ratio) - _approx_bytes(chunks[0::2], ratio))
            )
            lvl = max(i for i in range(depth + 1) if level_first[i] <= bin_id)
            width = 1 << (min_shift + 3 * (depth - lvl))
            beg = (bin_id - level_first[lvl]) * width
            spans.append((beg, beg + width, max(size, 0.0)))
        if ref < len(names) and names[ref] in lengths:
            out[names[ref]] = _spread_spans(spans, lengths[names[ref]])
    return out


def _spread_spans(spans: Sequence[tuple[int, int, float]], length: int) -> np.ndarray:
    """Bytes per :data:`WINDOW` window of a contig of ``length`` bp from (begin, end,
    bytes) spans (0-based half-open), each spread evenly over its span."""
    n = (length + WINDOW - 1) // WINDOW
    acc = np.zeros(n)
    for beg, end, size in spans:
        end = min(end, length)
        if end <= beg:
            continue
        w0, w1 = beg // WINDOW, (end - 1) // WINDOW
        edges = np.clip(np.arange(w0, w1 + 2) * WINDOW, beg, end)
        acc[w0 : w1 + 1] += size * np.diff(edges) / (end - beg)
    return acc


def _crai_windows(
    slices: Sequence[CraiSlice], names: Sequence[str], lengths: dict[str, int]
) -> dict[str, np.ndarray]:
    """Bytes per 16 kb window from a CRAI: each slice's size spread over its span."""
    acc: dict[str, np.ndarray] = {}
    for ref, start, span, size in slices:
        if ref < 0 or ref >= len(names) or names[ref] not in lengths:
            continue
        name = names[ref]
        length = lengths[name]
        if name not in acc:
            acc[name] = np.zeros((length + WINDOW - 1) // WINDOW)
        a = max(0, start - 1)
        b = min(length, a + max(1, span))
        if b <= a:
            continue
        w0, w1 = a // WINDOW, (b - 1) // WINDOW
        if w0 == w1:
            acc[name][w0] += size
        else:
            edges = np.clip(np.arange(w0, w1 + 2) * WINDOW, a, b)
            acc[name][w0 : w1 + 1] += size * np.diff(edges) / (b - a)
    return acc


def _alignment_profile(
    path: Path, contigs: Sequence[tuple[str, int]], reference: str | None
) -> dict[str, np.ndarray] | None:
    """Bytes per :data:`WINDOW` window of one alignment file, from its index; None when it
    has no readable index."""
    import pysam

    idx = find_index(path)
    if idx is None:
        logger.warning("%s: no index found; its coverage counts as uniform in planning", path)
        return None
    lengths = dict(contigs)
    try:
        mode = "rc" if path.suffix == ".cram" else "rb"
        kw = {"reference_filename": reference} if mode == "rc" and reference else {}
        with pysam.AlignmentFile(str(path), mode, check_sq=False, **kw) as f:
            names = list(f.references)
        if idx.suffix == ".crai":
            prof = _crai_windows(read_crai(idx), names, lengths)
        else:
            index = load_binning_index(idx)
            ratio = _bgzf_ratio(path)
            if index is None:
                logger.warning("%s: unknown index format; coverage counts as uniform", idx)
                return None
            if index.kind == "BAI":
                prof = _bai_windows(index, names, lengths, ratio)
            else:
                prof = _csi_windows(index, names, lengths, ratio)
    except (OSError, ValueError, struct.error) as e:
        logger.warning("%s: cannot read index %s (%s); coverage counts as uniform", path, idx, e)
        return None
    for name, length in contigs:
        n = (length + WINDOW - 1) // WINDOW
        if name not in prof:
            prof[name] = np.zeros(n)
        else:
            p = np.zeros(n)
            k = min(n, prof[name].size)
            p[:k] = prof[name][:k]
            prof[name] = np.maximum(p, 0.0)
    return prof


def coverage_profile(
    inputs: CallInputs, max_files: int = MAX_PROFILE_FILES
) -> dict[str, np.ndarray]:
    """Estimated alignment bytes per :data:`WINDOW` (16 kb) window of every contig, summed
    over the alignment files, from their indexes only. Window ``i`` covers 0-based
    ``[i * WINDOW, (i + 1) * WINDOW)``. Files without an index contribute nothing.

    With more than ``max_files`` files, ``max_files`` of them spread evenly over the list
    are read and the sum scaled to all files (the shape of coverage is shared by samples
    sequenced alike; this keeps planning cheap for large cohorts)."""
    total = {name: np.zeros((length + WINDOW - 1) // WINDOW) for name, length in inputs.contigs}
    bams = list(inputs.bams)
    if len(bams) > max_files:
        picks = np.linspace(0, len(bams) - 1, max_files).round().astype(int)
        bams = [bams[i] for i in sorted(set(picks.tolist()))]
    for bam in bams:
        prof = _alignment_profile(Path(bam), inputs.contigs, inputs.reference)
        if prof is None:
            continue
        for name in total:
            total[name] += prof[name]
    if len(bams) < len(inputs.bams):
        scale = len(inputs.bams) / len(bams)
        for name in total:
            total[name] *= scale
    return total


# ----------------------------------------------------------------------------- planning
def _n_runs(reference: str, contig: str, start: int, end: int) -> list[tuple[int, int]]:
    """Runs of N/n (length >= MIN_N_RUN) in ``reference`` within 0-based [start, end)."""
    import pysam

    if end <= start:
        return []
    with pysam.FastaFile(reference) as fa:
        seq = fa.fetch(contig, start, end)
    arr = np.frombuffer(seq.encode("ascii", "replace"), np.uint8)
    isn = (arr == ord("N")) | (arr == ord("n"))
    if not isn.any():
        return []
    d = np.diff(np.concatenate([[0], isn.astype(np.int8), [0]]))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    return [(start + int(a), start + int(b)) for a, b in zip(starts, ends) if b - a >= MIN_N_RUN]


def _allocate(costs: Sequence[float], lengths: Sequence[int], n: int) -> list[int]:
    """Pieces per interval: about proportional to cost (largest remainder), >= 1 each,
    at most one per bp."""
    total = float(sum(costs))
    if total <= 0:
        costs = [float(x) for x in lengths]
        total = float(sum(costs))
    quota = [n * c / total for c in costs]
    k = [max(1, min(int(math.floor(q)), ln)) for q, ln in zip(quota, lengths)]
    remaining = n - sum(k)
    if remaining > 0:
        order = sorted(range(len(k)), key=lambda i: (-(quota[i] - math.floor(quota[i])), i))
        while remaining > 0:
            progressed = False
            for i in order:
                if remaining == 0:
                    break
                if k[i] < lengths[i]:
                    k[i] += 1
                    remaining -= 1
                    progressed = True
            if not progressed:
                break
    return k


def _interval_cum(
    weights: np.ndarray, start: int, end: int, base_density: float
) -> tuple[np.ndarray, np.ndarray]:
    """Breakpoints (bp, 0-based) and cumulative cost of [start, end), piecewise linear."""
    w0, w1 = start // WINDOW, (end - 1) // WINDOW
    xs = np.concatenate([[start], np.arange(w0 + 1, w1 + 1) * WINDOW, [end]]).astype(np.float64)
    seg = np.diff(xs)
    density = weights[w0 : w1 + 1] / WINDOW + base_density
    cum = np.concatenate([[0.0], np.cumsum(seg * density)])
    return xs, cum


def _adjust_cut(
    x: int,
    lo: int,
    hi: int,
    contig: str,
    weights: np.ndarray,
    reference: str | None,
) -> int:
    """Move split point ``x`` within [lo, hi] into a run of N, else into a clearly less
    covered window; otherwise keep it."""
    if hi <= lo:
        return x
    if reference is not None:
        runs = _n_runs(reference, contig, lo, hi + 1)
        if runs:
            best = max(runs, key=lambda r: (r[1] - r[0], -abs((r[0] + r[1]) // 2 - x)))
            return min(max((best[0] + best[1]) // 2, lo), hi)
    w_lo, w_hi = lo // WINDOW, hi // WINDOW
    if w_hi >= weights.size or w_hi <= w_lo:
        return x
    here = weights[min(x // WINDOW, weights.size - 1)]
    cand = weights[w_lo : w_hi + 1]
    i = int(np.argmin(cand))
    if cand[i] < 0.5 * here:
        centre = (w_lo + i) * WINDOW + WINDOW // 2
        return min(max(centre, lo), hi)
    return x


def _split_interval(
    r: Region,
    xs: np.ndarray,
    cum: np.ndarray,
    k: int,
    weights: np.ndarray,
    reference: str | None,
) -> list[Region]:
    """Cut interval ``r`` into ``k`` pieces of about equal cost (``xs``, ``cum``: its
    piecewise linear cumulative cost, see :func:`_interval_cum`), each cut moved by
    :func:`_adjust_cut` within the tolerance; pieces in genomic order, none empty."""
    targets = cum[-1] * np.arange(1, k) / k
    ideal = np.rint(np.interp(targets, cum, xs)).astype(np.int64)
    tol = int(min(SHIFT_FRACTION * r.length / k, MAX_SHIFT))
    cuts: list[int] = []
    prev = r.start
    for j, x in enumerate(ideal.tolist()):
        # keep at least one bp for every piece still to come
        lo_bound = prev + 1
        hi_bound = r.end - (k - 1 - j)
        x = min(max(x, lo_bound), hi_bound)
        if tol > 0:
            lo = max(lo_bound, x - tol)
            hi = min(hi_bound, x + tol)
            x = _adjust_cut(x, lo, hi, r.contig, weights, reference)
        cuts.append(x)
        prev = x
    bounds = [r.start, *cuts, r.end]
    return [Region(r.contig, a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def plan_regions(
    inputs: CallInputs,
    *,
    region_size: int | None = None,
    region_count: int | None = None,
    restrict: Sequence[Region] | None = None,
    avoid_n: bool = True,
) -> list[Region]:
    """Split the genome (or ``restrict``) into coverage-balanced regions, in genomic order.

    region_size: target mean region length in bp (default :data:`DEFAULT_REGION_SIZE`);
        the number of regions is ``ceil(total length / region_size)``.
    region_count: number of regions instead of a size (at least one per interval of
        ``restrict``; never more than one per bp).
    restrict: intervals to cover (0-based half-open); overlapping ones are merged, touching
        ones stay separate, so a tiling BED gives exactly its intervals as regions when the
        size/count asks for no further split.
    avoid_n: move split points into nearby runs of N of the reference.

    Deterministic: the same inputs (files unchanged) give the same plan. Regions of one
    interval tile it exactly; the plan never covers a base twice.
    """
    if region_size is not None and region_count is not None:
        raise InputError("--region-size and --region-count both given; use one of them")
    if region_size is not None and region_size < 1:
        raise InputError(f"region size {region_size}: must be >= 1 bp; give a positive size")
    if region_count is not None and region_count < 1:
        raise InputError(f"region count {region_count}: must be >= 1; give a positive count")
    order = [name for name, _ in inputs.contigs]
    lengths = dict(inputs.contigs)
    if restrict is None:
        intervals = [Region(name, 0, length) for name, length in inputs.contigs if length > 0]
    else:
        for r in restrict:
            if r.contig not in lengths or r.end > lengths[r.contig]:
                raise InputError(f"region {r}: outside the reference; fix the region")
        intervals = merge_regions(restrict, order)
    if not intervals:
        return []
    total_len = sum(r.length for r in intervals)
    if region_count is not None:
        n = region_count
    else:
        n = math.ceil(total_len / (region_size or DEFAULT_REGION_SIZE))
    n = max(1, min(n, total_len))
    if n <= len(intervals):
        return list(intervals)

    profile = coverage_profile(inputs)
    bytes_total = sum(
        float(profile[r.contig][r.start // WINDOW : (r.end - 1) // WINDOW + 1].sum())
        for r in intervals
    )
    base_density = LENGTH_WEIGHT * bytes_total / total_len if bytes_total > 0 else 1.0
    cums = [_interval_cum(profile[r.contig], r.start, r.end, base_density) for r in intervals]
    pieces = _allocate([float(c[-1]) for _, c in cums], [r.length for r in intervals], n)
    reference = inputs.reference if avoid_n else None

    out: list[Region] = []
    for r, (xs, cum), k in zip(intervals, cums, pieces):
        if k <= 1:
            out.append(r)
            continue
        out.extend(_split_interval(r, xs, cum, k, profile[r.contig], reference))
    logger.info("planned %d regions over %d bp", len(out), total_len)
    return out


# ----------------------------------------------------------------------------- packing
def _bytes_before(window_bytes: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Bytes of a contig's windows before 0-based positions ``x`` (a window's bytes spread
    evenly over its :data:`WINDOW` bp)."""
    cum = np.concatenate([[0.0], np.cumsum(window_bytes)])
    w = np.minimum(x // WINDOW, window_bytes.size)
    inside = np.where(
        w < window_bytes.size, window_bytes[np.minimum(w, window_bytes.size - 1)], 0.0
    )
    return cum[w] + inside * (x - w * WINDOW) / WINDOW


def region_costs(regions: Sequence[Region], profile: dict[str, np.ndarray]) -> np.ndarray:
    """Estimated work of each region (float64, arbitrary units): its alignment bytes from
    ``profile`` (see :func:`coverage_profile`), plus a per-base term (the walk over the
    reference) and a fixed cost of :data:`REGION_OVERHEAD_BP` bp, both at
    :data:`LENGTH_WEIGHT` times the mean bytes per base. A region without reads in any
    index costs only the last two."""
    n = len(regions)
    costs = np.zeros(n)
    by_contig: dict[str, list[int]] = {}
    for i, r in enumerate(regions):
        by_contig.setdefault(r.contig, []).append(i)
    total_len = 0.0
    for contig, idx in by_contig.items():
        prof = profile.get(contig)
        starts = np.array([regions[i].start for i in idx], np.int64)
        ends = np.array([regions[i].end for i in idx], np.int64)
        if prof is not None and prof.size:
            b = _bytes_before(prof, ends) - _bytes_before(prof, starts)
            costs[idx] = np.maximum(b, 0.0)
        total_len += float((ends - starts).sum())
    total_bytes = float(costs.sum())
    density = LENGTH_WEIGHT * total_bytes / total_len if total_bytes > 0 and total_len else 1.0
    lengths = np.array([r.length for r in regions], np.float64)
    return costs + density * (lengths + REGION_OVERHEAD_BP)


def pack_regions(costs: Sequence[float], n_tasks: int) -> list[list[int]]:
    """Group regions into at most ``n_tasks`` tasks of about equal cost: consecutive runs
    of the given (genomic) order, so a task reads neighbouring stretches of the files.
    Returns the region indexes of every task, in order; every index is in exactly one.
    A region costing more than a task's share gets a task of its own (regions are never
    split here: a region is the unit of checkpoints and calls). Deterministic."""
    c = np.asarray(costs, np.float64)
    n = c.size
    if n == 0:
        return []
    n_tasks = max(1, min(int(n_tasks), n))
    if n_tasks == n:
        return [[i] for i in range(n)]
    total = float(c.sum())
    if total <= 0:
        c = np.ones(n)
        total = float(n)
    # each region goes to the task holding the middle of its cost on the cumulative axis
    mid = np.cumsum(c) - c / 2
    label = np.minimum((mid * n_tasks / total).astype(np.int64), n_tasks - 1)
    label = np.maximum.accumulate(label)
    cuts = np.flatnonzero(np.diff(label)) + 1
    return [part.tolist() for part in np.split(np.arange(n), cuts)]
