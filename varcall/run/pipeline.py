"""Orchestration of a ``varcall call`` run: prepare -> execute -> merge -> record.

Two modes give identical output:

- ``distributed`` (default): the plan's regions run as Dask tasks (:mod:`varcall.run.tasks`)
  on an embedded LocalCluster, an existing scheduler or a batch-system cluster; each region
  is checkpointed to ``OUT/work/<key>.npz``.
- ``single``: no Dask at all. The engine's own whole-genome run
  (:meth:`Engine.call_whole`) in this process, one checkpoint per contig. With a region
  restriction (``-r`` / ``--regions``) the restricted intervals are called one after the
  other with :meth:`Engine.call_region` instead (calling the whole genome to keep a part
  of it would waste the run).

The stages: :func:`varcall.run.prepare.prepare` validates and plans (nothing is created at
OUT before it succeeds), :func:`varcall.run.execute.execute` calls the units into
checkpoints, :func:`merge` (while the Dask client is still open) writes
``OUT/calls.vcf.gz`` + ``.tbi`` and ``OUT/calls.vcz`` from them with the parallel merge
(:func:`varcall.run.merge.merge_checkpoints`: encode tasks on the workers write the
store's chunks and bgzipped pieces of the VCF; the client joins them, so it never holds
the calls), and
:func:`varcall.run.record.record` writes ``OUT/audit.jsonl``, ``OUT/regions.bed`` and
``OUT/manifest.json``, each under a temporary name and renamed into place. ``OUT/work/``
is kept: ``--resume`` reuses every valid checkpoint there (a checkpoint's name is a hash
of region, inputs, parameters, engine and versions, so a changed input or parameter never
reuses a stale one); after a successful run, files in it that belong to no region of the
run are removed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from varcall.core.callset import FILTER_IDS
from varcall.core.filters import filter_descriptions
from varcall.core.manifest import Manifest
from varcall.core.params import CallParams
from varcall.core.privacy import OutputOptions
from varcall.core.regions import Region
from varcall.engines import Engine
from varcall.run.clusters import ClusterSpec
from varcall.run.empty import called_sidecars
from varcall.run.execute import ExecutedRun, execute
from varcall.run.prepare import PlanOptions, PreparedRun, RunFlags, prepare
from varcall.run.progress import ProgressReporter
from varcall.run.record import RunClock, record
from varcall.run.speculate import DEFAULT_FACTOR, DEFAULT_MIN_SECONDS, Speculation

if TYPE_CHECKING:
    from varcall.run.merge import MergeResult

__all__ = ["DEFAULT_CHUNK_SIZE", "RunResult", "run_call", "merge"]

logger = logging.getLogger(__name__)

#: VCF Zarr chunk length along variants.
DEFAULT_CHUNK_SIZE = 10_000


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a finished run produced. ``units`` are the checkpointed pieces (regions in
    distributed mode, contigs or restricted intervals in single mode) with their sidecars;
    ``manifest`` is what ``OUT/manifest.json`` holds."""

    out: Path
    mode: str
    n_variants: int
    n_units: int
    wall_seconds: float
    manifest: Manifest


def merge(
    prep: PreparedRun,
    run: ExecutedRun,
    *,
    progress: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    command_line: str | None = None,
    client: Any = None,
    retries: int = 2,
) -> MergeResult:
    """Merge the run's checkpoints into ``OUT/calls.vcf.gz`` (+ .tbi) and ``OUT/calls.vcz``
    (chunk_size: VCF Zarr chunk length along variants) with the parallel merge
    (:func:`varcall.run.merge.merge_checkpoints`): its encode tasks run on ``client``'s
    workers (Dask retries: ``retries``), or in this process without a client or workers."""
    from varcall.run.merge import merge_checkpoints

    sidecars = called_sidecars(run.sidecars)  # empty-by-index units add no records
    filter_ids = list(FILTER_IDS)
    for side in sidecars:
        for f in side["filter_ids"]:
            if f not in filter_ids:
                filter_ids.append(f)
    max_alleles = max([2, *(int(s["max_alleles"]) for s in sidecars)])
    privacy = prep.privacy  # minimised outputs: fields, sample names, redacted provenance
    header = {
        "command_line": privacy.command_line(command_line),
        "reference": privacy.path(prep.inputs.reference),
        "filter_descriptions": filter_descriptions(prep.params),  # naming the thresholds
    }
    if client is not None and not sum(client.nthreads().values()):
        client = None  # no workers left (e.g. batch jobs ended): encode here
    with ProgressReporter(len(sidecars), enabled=progress, description="merge") as bar:
        merged = merge_checkpoints(
            prep.out,
            sidecars,
            run.work,
            contigs=prep.inputs.contigs,
            samples=prep.inputs.samples,
            filter_ids=tuple(filter_ids),
            max_alleles=max_alleles,
            header_kwargs=header,
            chunk_size=chunk_size,
            format_fields=None if privacy.options.is_default else privacy.format_fields,
            output_samples=privacy.samples(prep.inputs.samples),
            client=client,
            retries=retries,
        )
        bar.advance(merged.n_variants, len(sidecars))
    return merged


def _merge_stage(
    prep: PreparedRun, clock: RunClock, **merge_kw: Any
) -> tuple[Callable[[ExecutedRun, Any], None], list[MergeResult]]:
    """The merge as :func:`execute` runs it once every unit is called (client still
    open): the clock's stage ends set around it; its result goes into the list returned."""
    done: list[MergeResult] = []

    def merge_outputs(run: ExecutedRun, client: Any) -> None:
        clock.t_called = time.time()
        done.append(merge(prep, run, client=client, **merge_kw))
        clock.t_merged = time.time()

    return merge_outputs, done


# ----------------------------------------------------------------------------- the run
def run_call(
    reference: str | os.PathLike,
    bams: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    params: CallParams | None = None,
    mode: str = "distributed",
    cluster: ClusterSpec | None = None,
    client: Any = None,
    engine: Engine | None = None,
    region_size: int | None = None,
    region_count: int | None = None,
    region_strings: Sequence[str] = (),
    regions_bed: str | os.PathLike | None = None,
    regions: Sequence[Region] | None = None,
    pack: bool = True,
    retries: int = 2,
    speculate: bool = True,
    straggler_factor: float = DEFAULT_FACTOR,
    straggler_min_seconds: float = DEFAULT_MIN_SECONDS,
    resume: bool = False,
    overwrite: bool = False,
    build_index: bool = False,
    rename_duplicate_samples: bool = False,
    progress: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    command_line: str | None = None,
    output: OutputOptions | None = None,
) -> RunResult:
    """Call variants from ``bams`` against ``reference`` into the folder ``out``.

    mode: ``distributed`` (Dask tasks per region) or ``single`` (no Dask).
    cluster: where Dask tasks run (default: a LocalCluster, one worker per core);
        ignored when ``client`` (an open ``distributed.Client``) is given.
    engine: an engine object (default: ``get_engine(params.engine)``); it must be picklable
        for process workers.
    region_size / region_count / region_strings / regions_bed: the plan (see
        :func:`varcall.plan.regions.plan_regions`; strings 1-based inclusive, BED 0-based);
        without a size or count :func:`varcall.run.prepare.default_region_count`. A local
        cluster starts in the background once the inputs are valid, while the run is planned.
    regions: an explicit region layout (0-based half-open, no overlaps) instead of planning.
    pack: regions share Dask tasks of similar work (each keeps its checkpoint; calls
        unchanged; :func:`varcall.run.prepare.pack_layout`); False: one task per region.
    retries: Dask retries per region. speculate: a Dask task running over ``straggler_factor``
    x the median of the finished tasks and ``straggler_min_seconds`` s gets a second copy on
    another worker, the first result wins (:mod:`varcall.run.speculate`; same outputs).
    resume: reuse valid checkpoints in ``out/work``.
    overwrite: ``out`` may exist; its outputs are removed when calling starts.
    chunk_size: VCF Zarr chunk length along variants.
    output: what the outputs carry (:class:`~varcall.core.privacy.OutputOptions`).

    Raises :class:`InputError` (bad input, nothing created at ``out``), :class:`RegionError`
    (regions failed; finished checkpoints kept) or :class:`VarcallError`.
    """
    clock = RunClock.start()
    params = params or CallParams()
    speculation = Speculation(speculate, straggler_factor, straggler_min_seconds)
    plan = PlanOptions(region_size, region_count, tuple(region_strings), regions_bed, regions, pack)
    flags = RunFlags(resume, overwrite, build_index, rename_duplicate_samples)
    prep = prepare(
        reference, bams, out, params=params, mode=mode, plan=plan, flags=flags,
        cluster=cluster, client=client, engine=engine, output=output,
    )  # fmt: skip
    merge_kw = {"progress": progress, "chunk_size": chunk_size, "command_line": command_line}
    then, done = _merge_stage(prep, clock, retries=retries, **merge_kw)
    run = execute(prep, retries=retries, progress=progress, speculation=speculation, then=then)
    merged = done[0]
    manifest, wall = record(prep, run, merged, clock, retries=retries, command_line=command_line)
    n_variants = int(merged.n_variants)
    logger.info(
        "%s: %d variants in %.1f s (%s mode)", prep.privacy.path(prep.out), n_variants, wall, mode
    )
    return RunResult(
        out=prep.out,
        mode=mode,
        n_variants=n_variants,
        n_units=len(manifest.units),
        wall_seconds=wall,
        manifest=manifest,
    )
