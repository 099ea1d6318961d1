"""Stage 1 of a ``varcall call`` run: validate the inputs and plan the regions.

Nothing is created at OUT here: an :class:`InputError` leaves the file system as it was.
A local Dask cluster starts in the background (:class:`ClusterStarter`) once the inputs
are valid, while the run is planned. Regions are 0-based half-open.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from varcall.core.errors import InputError
from varcall.core.params import CallInputs, CallParams
from varcall.core.privacy import OutputOptions, Privacy, resolve_privacy
from varcall.core.regions import Region, merge_regions, sort_regions
from varcall.engines import Engine, get_engine
from varcall.plan.empty import contigs_without_reads
from varcall.plan.ploidy import resolve_ploidy
from varcall.plan.regions import (
    DEFAULT_REGION_SIZE,
    coverage_profile,
    pack_regions,
    plan_regions,
    region_costs,
)
from varcall.run.clusters import ClusterSpec, ClusterStarter, with_batch_defaults
from varcall.run.empty import split_empty

__all__ = [
    "MODES",
    "TASKS_PER_SLOT",
    "PlanOptions",
    "RunFlags",
    "PreparedRun",
    "prepare",
    "default_region_count",
    "pack_layout",
]

logger = logging.getLogger(__name__)

MODES = ("distributed", "single")
#: Without a size or count, plan at least this many regions per worker slot.
TASKS_PER_SLOT = 3
#: Regions are packed into tasks only when there are at least this many per task.
PACK_FACTOR = 2


@dataclasses.dataclass(frozen=True)
class PlanOptions:
    """How the user asked the regions to be planned (see :func:`run_call`): a target size
    (bp) or count, region strings (1-based inclusive), a BED file (0-based), or an explicit
    layout (0-based half-open, no overlaps) instead of planning; whether neighbouring
    regions are packed into shared Dask tasks."""

    region_size: int | None = None
    region_count: int | None = None
    region_strings: tuple[str, ...] = ()
    regions_bed: str | os.PathLike | None = None
    regions: Sequence[Region] | None = None
    pack: bool = True


@dataclasses.dataclass(frozen=True)
class RunFlags:
    """The switches of a run: resume (reuse valid checkpoints in ``OUT/work``), overwrite
    (``OUT`` may exist), build_index (build missing or stale alignment indexes),
    rename_duplicate_samples (rename a repeated sample name S to S.2, S.3, ...)."""

    resume: bool = False
    overwrite: bool = False
    build_index: bool = False
    rename_duplicate_samples: bool = False


@dataclasses.dataclass
class PreparedRun:
    """A validated, planned run. layout: the regions to call (None: a single-process run
    of the whole genome, one unit per contig). cluster / client: as given to
    :func:`run_call`; starter: the local cluster starting in the background, or None;
    packs: the layout's region indexes of every Dask task (:func:`pack_layout`; None: one
    task per region);
    privacy: what the outputs carry (FORMAT fields, sample names, redaction);
    empty_regions: regions of the run on contigs without reads in any index, not in
    ``layout`` (no task; :mod:`varcall.run.empty`)."""

    out: Path
    mode: str
    params: CallParams
    inputs: CallInputs
    engine: Engine
    plan: PlanOptions
    flags: RunFlags
    layout: list[Region] | None
    cluster: ClusterSpec | None
    client: Any
    starter: ClusterStarter | None
    privacy: Privacy = dataclasses.field(default_factory=lambda: Privacy(OutputOptions(), {}))
    packs: list[list[int]] | None = None
    empty_regions: list[Region] = dataclasses.field(default_factory=list)

    @property
    def spec(self) -> ClusterSpec:
        """The cluster to start when no client is given."""
        return self.cluster or ClusterSpec()


def _worker_slots(spec: ClusterSpec, client: Any) -> int:
    """Tasks that can run at once: the client's worker threads, a local cluster's
    workers x threads, a batch cluster's jobs x cores (adaptive: the maximum); 1 if unknown."""
    if client is not None:
        try:
            return max(1, sum(client.nthreads().values()))
        except Exception:  # a client without workers yet
            return 1
    if spec.kind == "local":
        return (spec.workers or os.cpu_count() or 1) * spec.threads_per_worker
    if spec.kind in ("slurm", "pbs", "lsf", "sge"):
        return (spec.adapt_max or spec.jobs or 1) * (spec.cores or 1)
    return 1


def default_region_count(inputs: CallInputs, restrict: Sequence[Region] | None, slots: int) -> int:
    """Regions of a run given no ``--region-size``/``--region-count``: one per
    :data:`~varcall.plan.regions.DEFAULT_REGION_SIZE` bp, and at least
    :data:`TASKS_PER_SLOT` per worker slot so that every worker has work and a slow region
    does not leave the others idle at the end. Rounded up so that every contig (or
    interval) is cut into pieces no longer than that mean: 6 regions over four equal
    contigs would leave two whole contigs as regions twice the size of the others, the
    run's stragglers; this gives 8 equal ones."""
    if restrict:
        lengths = [r.length for r in merge_regions(restrict, [c for c, _ in inputs.contigs])]
    else:
        lengths = [n for _, n in inputs.contigs if n > 0]
    total = sum(lengths)
    if total == 0:
        return 1
    n = max(1, math.ceil(total / DEFAULT_REGION_SIZE), TASKS_PER_SLOT * slots)
    mean = total / n
    return sum(max(1, math.ceil(length / mean - 1e-9)) for length in lengths)


def pack_layout(
    inputs: CallInputs, layout: Sequence[Region] | None, slots: int
) -> list[list[int]] | None:
    """Group the regions of ``layout`` into Dask tasks so that the task count follows the
    work, not the number of regions (a BED's lines, a reference's small contigs): as many
    tasks as the default plan would have regions (one per
    :data:`~varcall.plan.regions.DEFAULT_REGION_SIZE` bp, at least :data:`TASKS_PER_SLOT`
    per worker slot), each a run of neighbouring regions of about equal indexed bytes
    (:func:`~varcall.plan.regions.pack_regions`). Returns the region indexes per task, or
    None when every region is a task of its own: also when there are fewer than
    :data:`PACK_FACTOR` regions per task. Packing so few regions makes tasks of one and
    of two regions, and the worker left with the double ones finishes last: the default
    plan's 8 equal regions of the 32-sample benchmark cohort (made 8, not 6, for that
    reason, :func:`default_region_count`) packed into 6 tasks kept one of 2 workers idle
    for 18 s of a 47 s run. Each region keeps its own checkpoint, so the calls are those
    of one task per region."""
    if not layout:
        return None
    total = sum(r.length for r in layout)
    n_tasks = max(1, math.ceil(total / DEFAULT_REGION_SIZE), TASKS_PER_SLOT * slots)
    if len(layout) < PACK_FACTOR * n_tasks:
        return None
    costs = region_costs(layout, coverage_profile(inputs))
    packs = pack_regions(costs, n_tasks)
    logger.info("packed %d regions into %d tasks", len(layout), len(packs))
    return packs


def _check_engine(engine: Engine | None, inputs: CallInputs, params: CallParams) -> Engine:
    """The run's engine (``get_engine(params.engine)`` when None), checked for these
    inputs and parameters; the ``--ploidy-contig`` names checked against the reference."""
    if engine is None:
        try:
            engine = get_engine(params.engine)
        except ValueError as e:
            raise InputError(f"--engine {params.engine}: {e}") from e
    engine.check()
    engine.check_params(inputs, params)
    known = {c for c, _ in inputs.contigs}
    for contig, _ in params.ploidy_by_contig:
        if contig not in known:
            raise InputError(
                f"--ploidy-contig {contig}: the reference {inputs.reference} has no such "
                "contig; use a name from its .fai"
            )
    return engine


def _explicit_layout(regions: Sequence[Region], inputs: CallInputs) -> list[Region]:
    """``regions`` in genomic order after checking they lie on the reference, are not
    empty and do not overlap."""
    contig_order = [c for c, _ in inputs.contigs]
    lengths = dict(inputs.contigs)
    for r in regions:
        if r.contig not in lengths or r.end > lengths[r.contig] or r.length == 0:
            raise InputError(f"region {r}: empty or outside the reference; fix the layout")
    layout = sort_regions(regions, contig_order)
    if len(merge_regions(layout, contig_order)) != len([r for r in layout if r.length > 0]):
        raise InputError("explicit regions overlap; give a layout where no base is in two")
    return layout


def _plan_layout(prep: PreparedRun) -> list[Region] | None:
    """The regions of the run: the explicit layout, the distributed plan (by default
    :func:`default_region_count` regions) or, in single mode, the merged restriction
    (None: the whole genome). Regions on contigs without reads in any index are set apart
    in ``prep.empty_regions`` (whole intervals, not split) and left out of the layout and
    of the plan, so the called regions are planned as without those contigs."""
    from varcall.plan.validate import validate_regions

    plan, inputs = prep.plan, prep.inputs
    contig_order = [c for c, _ in inputs.contigs]
    restrict = validate_regions(plan.region_strings, plan.regions_bed, inputs.contigs) or None
    if plan.regions is not None:
        layout = _explicit_layout(plan.regions, inputs)
        empty = contigs_without_reads(inputs, sorted({r.contig for r in layout}))
        layout, prep.empty_regions = split_empty(layout, empty)
        return layout
    if prep.mode == "distributed" or restrict:
        wanted = restrict or [Region(c, 0, n) for c, n in inputs.contigs if n > 0]
        empty = contigs_without_reads(inputs, sorted({r.contig for r in wanted}))
        if empty:
            restrict, skipped = split_empty(merge_regions(wanted, contig_order), empty)
            prep.empty_regions = skipped
            if not restrict:
                return []
    if prep.mode == "distributed":
        planned_count = plan.region_count
        if plan.region_size is None and plan.region_count is None:
            planned_count = default_region_count(
                inputs, restrict, _worker_slots(prep.spec, prep.client)
            )
        return plan_regions(
            inputs, region_size=plan.region_size, region_count=planned_count, restrict=restrict
        )
    if restrict:
        return merge_regions(restrict, contig_order)
    empty = contigs_without_reads(inputs)  # the whole genome, single-process
    prep.empty_regions = [Region(c, 0, n) for c, n in inputs.contigs if c in empty]
    return None


def _check_numbers(params: CallParams) -> None:
    """InputError for a NaN among the numeric parameters (``--min-qual nan``): every
    comparison with it is false, so it would turn a test off silently and could not be
    written to the manifest (inf and -inf are the documented way to turn a test off)."""
    for field in dataclasses.fields(params):
        value = getattr(params, field.name)
        if isinstance(value, float) and math.isnan(value):
            option = "--" + field.name.replace("_", "-")
            raise InputError(f"{option} nan: not a number; give a number (inf / -inf turn a "
                             "filter test off)")  # fmt: skip


def _validate(
    reference: str | os.PathLike,
    bams: Sequence[str | os.PathLike],
    out: Path,
    params: CallParams,
    plan: PlanOptions,
    flags: RunFlags,
) -> CallInputs:
    """:func:`varcall.plan.validate.validate_call` of the run's files and regions."""
    from varcall.plan.validate import validate_call

    return validate_call(
        Path(reference),
        [Path(b) for b in bams],
        out,
        overwrite=flags.overwrite,
        resume=flags.resume,
        build_index=flags.build_index,
        rename_duplicate_samples=flags.rename_duplicate_samples,
        region_strings=tuple(plan.region_strings),
        regions_bed=None if plan.regions_bed is None else Path(plan.regions_bed),
        engine_name=params.engine,
    )


def prepare(
    reference: str | os.PathLike,
    bams: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    params: CallParams,
    mode: str,
    plan: PlanOptions,
    flags: RunFlags,
    cluster: ClusterSpec | None = None,
    client: Any = None,
    engine: Engine | None = None,
    output: OutputOptions | None = None,
) -> PreparedRun:
    """Validate the inputs, the engine, the output options and the cluster and plan the
    regions (output: see :class:`~varcall.core.privacy.OutputOptions`). A local
    cluster starts in the background once the inputs are valid (closed again if a later
    check fails). Raises :class:`InputError` (nothing created at ``out``)."""
    if mode not in MODES:
        raise InputError(f"mode {mode!r}: unknown; use one of {', '.join(MODES)}")
    out = Path(out)
    starter = None
    try:
        _check_numbers(params)
        inputs = _validate(reference, bams, out, params, plan, flags)
        params = resolve_ploidy(params, inputs)  # sexes and ploidy files, read once here
        privacy = resolve_privacy(output, inputs.samples, out)
        if mode == "distributed" and client is None and cluster is not None:
            cluster = with_batch_defaults(cluster, len(inputs.samples))  # --cores/--memory
        # valid inputs: a local cluster starts in the background while the run is planned
        if mode == "distributed" and client is None and (cluster or ClusterSpec()).kind == "local":
            starter = ClusterStarter(
                cluster or ClusterSpec(),
                # the workers run the merge's encode tasks too (VCF records: numba)
                warm=(f"varcall.engines.{params.engine}", "varcall.io.vcf_write"),
                client_warm=("varcall.io.vcz_encode",),
            )
        engine = _check_engine(engine, inputs, params)
        prepare_params = getattr(engine, "prepare_params", None)
        if prepare_params is not None:  # once per run, before any region (native: stutter)
            params = prepare_params(inputs, params)
        if mode == "distributed" and client is None:
            (cluster or ClusterSpec()).check()
        prep = PreparedRun(
            out, mode, params, inputs, engine, plan, flags, None, cluster, client, starter, privacy
        )
        prep.layout = _plan_layout(prep)
        if mode == "distributed" and plan.pack:
            prep.packs = pack_layout(prep.inputs, prep.layout, _worker_slots(prep.spec, client))
        if mode == "distributed" and client is None:
            from varcall.plan.validate_cluster import check_cluster

            check_cluster(prep.spec)  # before out/ exists: nothing left behind
    except BaseException:
        if starter is not None:
            starter.close()
        raise
    return prep
