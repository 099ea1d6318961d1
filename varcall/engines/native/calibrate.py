"""Calibration of the stutter table (:mod:`varcall.engines.native.stutter`) from the run's
own reads at repeat loci, once per run, before any region is called.

Exactness: the loci depend only on the reference and the number of input files, and the reads
there come from every input file, so the table is the same whatever the region plan,
packing, windows and workers. :func:`calibrated_params` fills ``CallParams.stutter_table``
(recorded in manifest.json and part of the checkpoint key); the engine computes the same
table itself when it is called with an empty one.

1. **Loci.** The reference is scanned for tandem repeat tracts (period 1-6, 10 to
   :data:`MAX_CALIBRATION_TRACT` bp): all of it up to :data:`SCAN_BP`, else
   :data:`SCAN_BP` in :data:`SCAN_BLOCK` bp blocks spread evenly over the genome. Only
   tracts starting in a tile (the first :data:`TILE` bp of a 16 kb window of the index,
   :data:`LINEAR_WINDOW`) are used. Tracts are binned by period and length (4 bp bins,
   40 bp and longer in one); loci are taken round-robin over the bins (within a bin in
   the order of a CRC-32 of contig and position); a locus is taken when its tile is
   already fetched or fewer than :func:`tile_budget` tiles are (240 / files, at least
   20), up to :data:`MAX_LOCI` loci.
2. **Reads.** Per locus and sample, each fragment (one read per name) passing the run's
   read filters whose alignment spans the tract plus :data:`FLANK` bp on both sides gives
   the net bases its CIGAR inserts (+) or deletes (-) inside the tract; a net change of
   ``k`` whole units counts as ``k`` (``|k| <= MAX_STEP``), anything else is ignored.
3. **Fit.** Per locus and sample, the most frequent ``k`` is the sample's allele (tract
   length ``L``); reads one unit down / up from it are stutter. Samples that look
   heterozygous for a one-unit neighbour (a binomial 50 % split more likely, at prior odds
   :data:`HET_PRIOR`, than stutter at the current rates) are left out, for 3 rounds. Per
   period and direction, ``(a, b)`` maximise the binomial likelihood of the stutter counts
   under ``s1(p, L, dir)`` plus a Gaussian prior around :data:`~.stutter.PRIOR_TABLE`
   (standard deviations :data:`PRIOR_SD_A`, :data:`PRIOR_SD_B`; Newton's method); the
   two-unit ratios are ``(x2 + 20 r0) / (x1 + 20)`` per direction, clipped to [0.02, 0.5].
"""

from __future__ import annotations

import logging
import math
import time
import zlib

import numpy as np
import pysam

from varcall.core.errors import InputError
from varcall.core.params import CallInputs, CallParams
from varcall.engines.native.calibrate_numba_fns import count_loci
from varcall.engines.native.pileup import encode_bases
from varcall.engines.native.reads import fetch_reads
from varcall.engines.native.repeats import reference_tracts
from varcall.engines.native.stutter import (
    L_CENTER,
    MAX_PERIOD,
    MAX_STEP,
    PRIOR_TABLE,
    RATIO_AT,
    S1_MAX,
    VARIANT_PRIOR_AT,
    StutterModel,
)
from varcall.io.index import BAI_LINEAR_SHIFT
from varcall.plan.inputs import sample_columns

__all__ = [
    "calibrated_params",
    "calibration_loci",
    "count_steps",
    "fit_table",
    "tile_budget",
    "stutter_table",
]

logger = logging.getLogger(__name__)

#: Reference scanned for calibration loci (bp), in blocks of SCAN_BLOCK bp.
SCAN_BP = 8_000_000
SCAN_BLOCK = 100_000
#: Shortest and longest tract (bp) used for calibration (reads must span the longest).
MIN_CALIBRATION_TRACT = 10
MAX_CALIBRATION_TRACT = 80
#: Aligned bases a read must have on both sides of a tract.
FLANK = 3
#: Length bins (bp) of the round-robin locus choice; longer tracts share the last bin.
LENGTH_BIN = 4
LENGTH_BINS_MAX = 40
#: Prior odds that a sample is heterozygous for a one-unit neighbour of its allele.
HET_PRIOR = 0.02
#: Prior standard deviations of the logistic intercept and slope (per bp).
PRIOR_SD_A = 0.75
PRIOR_SD_B = 0.05
#: Prior standard deviations of the repeat variant prior's intercept and slope (per bp):
#: wide, the run's loci decide (the prior's centre is THETA at every length).
PRIOR_SD_C = 4.0
PRIOR_SD_D = 0.5
#: Largest Newton step of a logistic fit (logit units).
MAX_NEWTON_STEP = 2.0
#: Indexed fetches (tiles x alignment files) of a calibration, at least MIN_TILES tiles.
#: A tile is the first TILE bp of a LINEAR_WINDOW bp window of the BAI/CSI linear index;
#: its chosen loci share one fetch per file. An indexed fetch starts at the first read of
#: the linear window that holds its start, so a tile's fetch decodes only the reads of
#: the tile (a tile anywhere in the window would also decode, on average, half a window
#: of reads before it).
FETCH_BUDGET = 240
MIN_TILES = 20
TILE = 4096
LINEAR_WINDOW = 1 << BAI_LINEAR_SHIFT
#: Most loci used.
MAX_LOCI = 400
#: Reads per locus and sample below which a sample's locus is not used.
MIN_LOCUS_READS = 4


def tile_budget(n_files: int) -> int:
    """Reference tiles (:data:`TILE` bp) whose reads are fetched, for ``n_files``
    alignment files: one indexed fetch per tile and file, :data:`FETCH_BUDGET` in all."""
    return max(MIN_TILES, FETCH_BUDGET // max(1, n_files))


def _tile(contig: str, start: int) -> tuple[str, int]:
    """The tile (contig, linear-window number) of a locus starting at ``start`` (0-based)."""
    return contig, start // LINEAR_WINDOW


def _scan_windows(contigs: tuple[tuple[str, int], ...]) -> list[tuple[str, int, int]]:
    """(contig, start, end) of the reference scanned for loci (module docstring)."""
    total = sum(n for _, n in contigs)
    if total <= SCAN_BP:
        return [(c, 0, n) for c, n in contigs if n > 0]
    n_blocks = SCAN_BP // SCAN_BLOCK
    offsets = np.cumsum([0] + [n for _, n in contigs])
    out = []
    for i in range(n_blocks):
        g = int((i + 0.5) * total / n_blocks)
        ci = int(np.searchsorted(offsets, g, side="right")) - 1
        contig, length = contigs[ci]
        mid = g - int(offsets[ci])
        start = max(0, min(length - SCAN_BLOCK, mid - SCAN_BLOCK // 2))
        out.append((contig, start, min(length, start + SCAN_BLOCK)))
    return out


def calibration_loci(inputs: CallInputs) -> list[tuple[str, int, int, int]]:
    """(contig, 0-based start, period, length bp) of the calibration loci, sorted by
    contig order and position; a function of the reference and the file count only."""
    bins: dict[tuple[int, int], list[tuple[int, str, int, int, int]]] = {}
    with pysam.FastaFile(inputs.reference) as fasta:
        for contig, ws, we in _scan_windows(inputs.contigs):
            ref = encode_bases(fasta.fetch(contig, ws, we).upper())
            starts, periods, lengths = reference_tracts(ref, MIN_CALIBRATION_TRACT)
            for s, p, n in zip(starts.tolist(), periods.tolist(), lengths.tolist()):
                if n > MAX_CALIBRATION_TRACT or s < FLANK or s + n + FLANK > we - ws:
                    continue
                if not FLANK <= (ws + s) % LINEAR_WINDOW < TILE:
                    continue
                key = zlib.crc32(f"{contig}:{ws + s}".encode())
                b = min(n, LENGTH_BINS_MAX) // LENGTH_BIN
                bins.setdefault((p, b), []).append((key, contig, ws + s, p, n))
    budget = tile_budget(len(inputs.bams))
    queues = [sorted(v) for _, v in sorted(bins.items())]
    chosen: list[tuple[str, int, int, int]] = []
    tiles: set[tuple[str, int]] = set()
    depth = 0
    while len(chosen) < MAX_LOCI and any(depth < len(q) for q in queues):
        for q in queues:
            if depth >= len(q) or len(chosen) >= MAX_LOCI:
                continue
            locus = q[depth][1:]
            tile = _tile(locus[0], locus[1])
            if tile in tiles or len(tiles) < budget:  # loci in fetched tiles cost nothing
                tiles.add(tile)
                chosen.append(locus)
        depth += 1
    order = {c: i for i, (c, _) in enumerate(inputs.contigs)}
    return sorted(chosen, key=lambda t: (order[t[0]], t[1]))


def count_steps(
    inputs: CallInputs, params: CallParams, loci: list[tuple[str, int, int, int]]
) -> np.ndarray:
    """(loci, samples, 2 MAX_STEP + 1) int64: per locus and sample the fragments whose
    tract is ``k`` units off the reference (index ``k + MAX_STEP``). ``loci`` sorted by
    contig and start; the reads of the loci of one tile come from one fetch per file
    (:func:`varcall.engines.native.reads.fetch_reads`: the run's read filters)."""
    counts = np.zeros((len(loci), len(inputs.samples), 2 * MAX_STEP + 1), np.int64)
    groups: dict[tuple[str, int], list[int]] = {}
    for li, (contig, ts, _, _) in enumerate(loci):
        groups.setdefault(_tile(contig, ts), []).append(li)
    for path, index in zip(inputs.bams, sample_columns(inputs)):
        try:
            _count_file(path, index, inputs, params, loci, groups, counts)
        except (OSError, ValueError, InputError) as e:
            # a damaged block or a read group without SM: the region that reads it fails
            # and names the file; a run restricted to other regions goes on without it
            logger.info(
                "%s: cannot be read for the stutter estimate (%s: %s); its remaining "
                "loci are left out", path, type(e).__name__, e,
            )  # fmt: skip
    return counts


def _count_file(
    path: str,
    index: dict[str, int],
    inputs: CallInputs,
    params: CallParams,
    loci: list[tuple[str, int, int, int]],
    groups: dict[tuple[str, int], list[int]],
    counts: np.ndarray,
) -> None:
    """Add one alignment file's fragments to ``counts`` (see :func:`count_steps`)."""
    for (contig, _), members in groups.items():
        rows = np.array(members, np.int64)
        starts = np.array([loci[li][1] for li in members], np.int64)
        periods = np.array([loci[li][2] for li in members], np.int64)
        lengths = np.array([loci[li][3] for li in members], np.int64)
        lo = int(starts[0]) - FLANK
        hi = int((starts + lengths).max()) + FLANK
        batch = fetch_reads(
            [path], inputs.reference, [index], contig, lo, hi,
            min_mapq=params.min_mapq, include_supplementary=params.include_supplementary,
        )  # fmt: skip
        if batch.n_reads == 0:
            continue
        mate, _ = batch.mates()
        count_loci(
            batch.start, batch.end, batch.sample, batch.coff, batch.cn, batch.cig_op,
            batch.cig_len, mate, starts, lengths, periods, rows, FLANK, MAX_STEP, counts,
        )  # fmt: skip


def _sample_observations(
    periods: np.ndarray, lengths: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """Rows (period, L of the sample's allele, n, down1, up1, down2, up2) float64, one per
    (locus, sample) with at least MIN_LOCUS_READS fragments."""
    n = counts.sum(axis=2)
    li, si = np.nonzero(n >= MIN_LOCUS_READS)
    c = counts[li, si]  # (R, 2 MAX_STEP + 1)
    mode = c.argmax(axis=1)
    padded = np.pad(c, ((0, 0), (2, 2)))
    rows = np.arange(c.shape[0])
    m = mode + 2

    def at(d: int) -> np.ndarray:
        return padded[rows, m + d]

    p = periods[li]
    length = lengths[li] + (mode - MAX_STEP) * p
    return np.stack([p, length, n[li, si], at(-1), at(1), at(-2), at(2)], axis=1).astype(np.float64)


def _logistic_fit(
    x_len: np.ndarray,
    n: np.ndarray,
    x: np.ndarray,
    prior: tuple,
    sd: tuple[float, float] = (PRIOR_SD_A, PRIOR_SD_B),
) -> tuple:
    """MAP ``(a, b)`` of ``x ~ Binomial(n, logistic(a + b (L - L_CENTER)))`` with a
    Gaussian prior centred on ``prior`` (standard deviations ``sd``); Newton's method."""
    theta = np.array(prior, np.float64)
    lam = np.array([1 / sd[0] ** 2, 1 / sd[1] ** 2])
    z = x_len - L_CENTER
    design = np.stack([np.ones_like(z), z], axis=1)
    for _ in range(60):
        s = 1.0 / (1.0 + np.exp(-np.clip(design @ theta, -50.0, 50.0)))
        grad = design.T @ (x - n * s) - lam * (theta - prior)
        hess = -(design.T * (n * s * (1 - s))) @ design - np.diag(lam)
        step = np.linalg.solve(hess, grad)
        # damped: far from the optimum (a rare event's rate started at THETA) a full
        # Newton step overshoots where the curvature n s (1 - s) is tiny
        step *= min(1.0, MAX_NEWTON_STEP / max(1e-300, float(np.abs(step).max())))
        theta = theta - step
        if np.abs(step).max() < 1e-9:
            break
    return float(theta[0]), float(theta[1])


def _het_likelier(x, other, s):
    """Whether ``x`` reads of a step beside ``other`` reads are more likely a
    heterozygous allele (a 50 % split, at prior odds HET_PRIOR) than stutter at rate
    ``s`` (clipped to [1e-6, S1_MAX]); numbers or numpy arrays."""
    s = np.clip(s, 1e-6, S1_MAX)
    stutter = x * np.log(s) + other * np.log(1 - s)
    return (x + other) * math.log(0.5) + math.log(HET_PRIOR) > stutter


def _het_mask(obs: np.ndarray, model: StutterModel) -> np.ndarray:
    """Rows whose one-unit neighbour counts look like a heterozygous allele
    (:func:`_het_likelier` against the rest of the row's fragments, under ``model``)."""
    het = np.zeros(obs.shape[0], bool)
    if obs.shape[0] == 0:
        return het
    # one rate per locus (rows of a locus share its period and length)
    loci, inverse = np.unique(obs[:, :2], axis=0, return_inverse=True)
    n = obs[:, 2]
    for up, col in ((False, 3), (True, 4)):
        rate = np.array([model.one_unit(int(p), float(ln), up) for p, ln in loci.tolist()])
        het |= _het_likelier(obs[:, col], n - obs[:, col], rate[inverse.reshape(-1)])
    return het


def fit_table(periods: np.ndarray, lengths: np.ndarray, counts: np.ndarray) -> tuple[float, ...]:
    """The stutter table fitted to the step counts of loci with these periods and
    lengths (module docstring, step 3); the prior where there are no data."""
    obs = _sample_observations(periods, lengths, counts)
    table = list(PRIOR_TABLE)
    for _ in range(3):
        use = obs[~_het_mask(obs, StutterModel(tuple(table)))]
        for p in range(1, MAX_PERIOD + 1):
            rows = use[(use[:, 0] == p) & (use[:, 1] >= 2 * p)]
            for up in (0, 1):
                i = (p - 1) * 4 + 2 * up
                prior = (PRIOR_TABLE[i], PRIOR_TABLE[i + 1])
                table[i : i + 2] = _logistic_fit(rows[:, 1], rows[:, 2], rows[:, 3 + up], prior)
        for up in (0, 1):
            x1, x2 = use[:, 3 + up].sum(), use[:, 5 + up].sum()
            r0 = PRIOR_TABLE[RATIO_AT + up]
            table[RATIO_AT + up] = min(0.5, max(0.02, (x2 + 20 * r0) / (x1 + 20)))
    model = StutterModel(tuple(table))
    variant = _variant_loci(periods, lengths, counts, model)
    seen = counts.sum(axis=2).max(axis=1) >= MIN_LOCUS_READS
    table[VARIANT_PRIOR_AT : VARIANT_PRIOR_AT + 2] = _logistic_fit(
        lengths[seen].astype(np.float64),
        np.ones(int(seen.sum())),
        variant[seen].astype(np.float64),
        PRIOR_TABLE[VARIANT_PRIOR_AT : VARIANT_PRIOR_AT + 2],
        (PRIOR_SD_C, PRIOR_SD_D),
    )
    return tuple(round(float(v), 4) for v in table)


def _variant_loci(
    periods: np.ndarray, lengths: np.ndarray, counts: np.ndarray, model: StutterModel
) -> np.ndarray:
    """(loci,) bool: some sample's reads show a non-reference allele of the locus: its
    most frequent step is not 0, or a step's count (2 or more) against the count at 0
    passes :func:`_het_likelier` under ``model``, for any step. Samples with fewer than
    MIN_LOCUS_READS fragments are not looked at."""
    steps = [k for k in range(-MAX_STEP, MAX_STEP + 1) if k != 0]
    # per locus and step, the step's stutter rate
    rate = np.array(
        [[model.step(int(p), float(n), k) for k in steps] for p, n in zip(periods, lengths)]
    ).reshape(len(periods), len(steps))
    seen = counts.sum(axis=2) >= MIN_LOCUS_READS  # (loci, samples)
    variant = seen & (counts.argmax(axis=2) != MAX_STEP)
    x0 = counts[:, :, MAX_STEP].astype(np.float64)
    for j, k in enumerate(steps):
        x = counts[:, :, k + MAX_STEP].astype(np.float64)
        variant |= seen & (x >= 2) & _het_likelier(x, x0, rate[:, j][:, None])
    return variant.any(axis=1)


def stutter_table(inputs: CallInputs, params: CallParams) -> tuple[float, ...]:
    """The run's stutter table: ``params.stutter_table`` when given, the prior with
    ``indel_errors="prior"``, else fitted from the reads (module docstring)."""
    if params.stutter_table:
        return tuple(params.stutter_table)
    if params.indel_errors == "prior":
        return PRIOR_TABLE
    t0 = time.perf_counter()
    loci = calibration_loci(inputs)
    counts = count_steps(inputs, params, loci)
    periods = np.array([t[2] for t in loci], np.int64)
    lengths = np.array([t[3] for t in loci], np.int64)
    table = fit_table(periods, lengths, counts)
    logger.info(
        "stutter table from %d repeat loci, %d fragments in %.2f s",
        len(loci), int(counts.sum()), time.perf_counter() - t0,
    )  # fmt: skip
    return table


def calibrated_params(inputs: CallInputs, params: CallParams) -> CallParams:
    """``params`` with ``stutter_table`` filled (:func:`stutter_table`)."""
    if params.stutter_table:
        return params
    import dataclasses

    return dataclasses.replace(params, stutter_table=stutter_table(inputs, params))
