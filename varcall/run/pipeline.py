"""Orchestration of a ``varcall call`` run: validate -> plan -> call -> merge -> manifest.

Two modes give identical output:

- ``distributed`` (default): the plan's regions run as Dask tasks (:mod:`varcall.run.scatter`)
  on an embedded LocalCluster, an existing scheduler or a batch-system cluster; each region
  is checkpointed to ``OUT/work/<key>.npz``.
- ``single``: no Dask at all. The engine's own whole-genome run
  (:meth:`Engine.call_whole`) in this process, one checkpoint per contig. With a region
  restriction (``-r`` / ``--regions``) the restricted intervals are called one after the
  other with :meth:`Engine.call_region` instead (calling the whole genome to keep a part
  of it would waste the run).

The merge then streams the checkpoints in genomic order, one at a time, into
:func:`varcall.io.vcz.write_outputs` (``OUT/calls.vcf.gz`` + ``.tbi`` and
``OUT/calls.vcz``), so the client holds one region's calls at a time. ``OUT/manifest.json``,
``OUT/audit.jsonl`` and ``OUT/regions.bed`` follow, each written under a temporary name and
renamed into place. ``OUT/work/`` is kept: ``--resume`` reuses every valid checkpoint there
(a checkpoint's name is a hash of region, inputs, parameters, engine and versions, so a
changed input or parameter never reuses a stale one); after a successful run, files in it
that belong to no region of the run are removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import math
import os
import platform
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from varcall import __version__
from varcall.core.callset import FILTER_IDS, CallSet, load_callset
from varcall.core.errors import InputError, RegionError, VarcallError
from varcall.core.params import CallInputs, CallParams
from varcall.core.regions import Region, merge_regions, sort_regions, write_bed
from varcall.engines import Engine, get_engine
from varcall.plan.inputs import dependency_versions, input_checksums
from varcall.plan.regions import DEFAULT_REGION_SIZE, plan_regions
from varcall.run.scatter import (
    ClusterSpec,
    ClusterStarter,
    ProgressReporter,
    audit_event,
    checkpoint_key,
    code_digest,
    engine_version,
    inputs_identity,
    open_client,
    peak_rss_mb,
    read_checkpoint,
    run_sequential,
    scatter_regions,
    write_checkpoint,
    write_json_atomic,
)

__all__ = ["MODES", "RunResult", "run_call", "load_manifest", "default_region_count"]

logger = logging.getLogger(__name__)

MODES = ("distributed", "single")
#: Without a size or count, plan at least this many regions per worker slot.
TASKS_PER_SLOT = 3
#: VCF Zarr chunk length along variants.
DEFAULT_CHUNK_SIZE = 10_000
_KEY_FILE_SUFFIXES = (".npz", ".json", ".audit.jsonl")


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a finished run produced. ``units`` are the checkpointed pieces (regions in
    distributed mode, contigs or restricted intervals in single mode) with their sidecars."""

    out: Path
    mode: str
    n_variants: int
    n_units: int
    wall_seconds: float
    manifest: dict[str, Any]


# ----------------------------------------------------------------------------- helpers
def _versions() -> dict[str, str]:
    out = {"varcall": __version__, "python": platform.python_version()}
    for name in (
        "numpy",
        "dask",
        "distributed",
        "dask-jobqueue",
        "pysam",
        "zarr",
        "numcodecs",
        "sgkit",
        "xarray",
    ):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _file_doc(path: str) -> dict[str, Any]:
    st = os.stat(path)
    mtime = datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc)
    return {"path": path, "size": st.st_size, "mtime": mtime.isoformat()}


def _index_doc(path: str) -> dict[str, Any] | None:
    for cand in (
        f"{path}.bai",
        f"{path}.csi",
        f"{path}.crai",
        str(Path(path).with_suffix(".bai")),
        str(Path(path).with_suffix(".crai")),
    ):
        if Path(cand).is_file():
            return _file_doc(cand)
    return None


def _inputs_doc(inputs: CallInputs) -> dict[str, Any]:
    ref = _file_doc(inputs.reference)
    fai = f"{inputs.reference}.fai"
    if Path(fai).is_file():
        ref["fai"] = _file_doc(fai)
    return {
        "reference": ref,
        "alignments": [{**_file_doc(b), "index": _index_doc(b)} for b in inputs.bams],
        "samples": list(inputs.samples),
        "contigs": [{"name": c, "length": n} for c, n in inputs.contigs],
    }


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def _load_units(
    work: Path, sidecars: Sequence[dict[str, Any]], bar: ProgressReporter | None = None
) -> Iterator[CallSet]:
    """The checkpointed CallSets in the given (genomic) order, one at a time."""
    for side in sidecars:
        path = work / f"{side['key']}.npz"
        try:
            callset = load_callset(path)
        except (OSError, ValueError, KeyError) as e:
            raise VarcallError(
                f"{path}: checkpoint cannot be read ({e}); delete it and rerun with --resume"
            ) from e
        yield callset
        if bar is not None:
            bar.advance(callset.n_variants)


def _collect_audit(
    work: Path,
    keys: Sequence[str],
    run_id: str,
    dest: Path,
    producers: dict[str, str] | None = None,
) -> dict[str, int]:
    """Write ``dest`` (one JSON line per task attempt: run id, start time, end time, worker,
    region, files, outcome) and return the number of attempts per key in this run.

    ``producers`` (key -> run id that wrote the checkpoint in use): attempts of an earlier
    run whose checkpoint this run reuses (``--resume``) are listed too, under their own
    ``run_id``, so the audit names who read every region of the output."""
    producers = producers or {}
    attempts: dict[str, int] = {}
    lines: list[dict[str, Any]] = []
    for key in keys:
        path = work / f"{key}.audit.jsonl"
        if not path.is_file():
            continue
        by_attempt: dict[str, dict[str, Any]] = {}
        for raw in path.read_text().splitlines():
            try:
                ev = json.loads(raw)
            except ValueError:
                continue  # a line cut short by a killed worker
            if ev.get("run_id") not in (run_id, producers.get(key)):
                continue
            rec = by_attempt.setdefault(
                ev["attempt"],
                {k: ev.get(k) for k in ("key", "region", "worker", "bams", "run_id")}
                | {"start": None, "end": None, "outcome": "lost"},
            )
            if ev["event"] == "start":
                rec["start"] = ev["time"]
            else:
                rec["end"] = ev["time"]
                rec["outcome"] = "ok" if ev["event"] == "done" else "error"
                if "error" in ev:
                    rec["error"] = ev["error"]
        attempts[key] = sum(1 for r in by_attempt.values() if r["run_id"] == run_id)
        lines.extend(by_attempt.values())
    lines.sort(key=lambda r: (r["start"] or 0.0, r["key"]))
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        for rec in lines:
            fh.write(json.dumps(rec, sort_keys=True) + "\n")
    os.replace(tmp, dest)
    return attempts


def _prune_work(work: Path, keep: set[str]) -> None:
    """Remove checkpoint files of ``work`` that belong to no key in ``keep``, and temporary
    files (``.<name>.tmp-*``) that interrupted writers left behind."""
    for p in work.iterdir():
        name = p.name
        if name.startswith(".") and ".tmp-" in name and p.is_file():
            p.unlink(missing_ok=True)
            continue
        for suffix in _KEY_FILE_SUFFIXES:
            if name.endswith(suffix) and len(name) == 64 + len(suffix):
                if name[:64] not in keep:
                    p.unlink(missing_ok=True)
                break


def _single_process(
    inputs: CallInputs,
    params: CallParams,
    engine: Engine,
    identity: dict[str, Any],
    engine_ver: str,
    work: Path,
    run_id: str,
    resume: bool,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Run ``engine.call_whole`` and checkpoint one CallSet per contig (empty ones for
    contigs it skipped); all contigs' sidecars in reference order. Each contig gets an
    audit record (start = when the previous contig was done) like a Dask task."""
    keys = {
        name: checkpoint_key(
            None, identity, params, params.engine, engine_ver, kind="whole", contig=name
        )
        for name, _ in inputs.contigs
    }
    done = {name: read_checkpoint(work, k) for name, k in keys.items()} if resume else {}
    if resume and all(done.get(name) is not None for name in keys):
        logger.info("resume: every contig is already done")
        return [{**done[name], "resumed": True} for name in keys]
    order = [name for name, _ in inputs.contigs]
    sidecars: dict[str, dict[str, Any]] = {}
    pending = iter(order)
    t0 = time.time()

    worker = f"single-process@{platform.node()}:{os.getpid()}"
    bar = ProgressReporter(len(order), enabled=progress, description="contigs")

    def save(cs: CallSet, name: str, started: float, seconds: float) -> None:
        length = inputs.contig_length(name)
        base = {
            "key": keys[name],
            "run_id": run_id,
            "attempt": f"{run_id}-{name}",
            "region": str(Region(name, 0, length)),
            "worker": worker,
            "bams": list(inputs.bams),
        }
        audit_event(work, keys[name], {**base, "event": "start", "time": started})
        extra = {
            "region": [name, 0, length],
            "seconds": round(seconds, 6),
            "worker": worker,
            "run_id": run_id,
            "attempt": base["attempt"],
            "peak_rss_mb": peak_rss_mb(),
        }
        sidecars[name] = {**write_checkpoint(work, keys[name], cs, extra), "resumed": False}
        audit_event(
            work,
            keys[name],
            {
                **base,
                "event": "done",
                "time": time.time(),
                "n_variants": cs.n_variants,
                "seconds": extra["seconds"],
            },
        )
        bar.advance(cs.n_variants)

    def empty(name: str) -> CallSet:
        return CallSet.empty(name, inputs.samples, FILTER_IDS)

    with bar:
        try:
            for cs in engine.call_whole(inputs, params):
                now = time.time()
                for name in pending:
                    if name == cs.contig:
                        save(cs, name, t0, now - t0)
                        break
                    save(empty(name), name, now, 0.0)
                else:
                    raise VarcallError(
                        f"engine {params.engine}: call_whole yielded contig {cs.contig!r} out "
                        "of reference order; this is an engine bug, report it"
                    )
                t0 = time.time()
        except VarcallError:
            raise
        except Exception as e:  # e.g. OSError from a damaged BAM: one line, naming the contig
            failed = next((n for n in order if n not in sidecars), order[-1])
            raise RegionError(
                f"contig {failed}: {type(e).__name__}: {e}; fix the cause (a run without "
                "--single-process names the damaged file and region) and run again"
            ) from e
        for name in pending:
            save(empty(name), name, time.time(), 0.0)
    return [sidecars[name] for name in order]


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
    retries: int = 2,
    resume: bool = False,
    overwrite: bool = False,
    build_index: bool = False,
    rename_duplicate_samples: bool = False,
    progress: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    command_line: str | None = None,
) -> RunResult:
    """Call variants from ``bams`` against ``reference`` into the folder ``out``.

    mode: ``distributed`` (Dask tasks per region) or ``single`` (no Dask).
    cluster: where Dask tasks run (default: a LocalCluster, one worker per core);
        ignored when ``client`` (an open ``distributed.Client``) is given.
    engine: an engine object (default: ``get_engine(params.engine)``); it must be picklable
        for process workers.
    region_size / region_count / region_strings / regions_bed: the plan (see
        :func:`varcall.plan.regions.plan_regions`; strings 1-based inclusive, BED 0-based).
        Without a size or count: :func:`default_region_count` (at least
        :data:`TASKS_PER_SLOT` regions per worker slot). A local cluster starts in the
        background once the inputs are valid, while the run is planned.
    regions: an explicit region layout (0-based half-open, no overlaps) instead of planning.
    retries: Dask retries per region. resume: reuse valid checkpoints in ``out/work``.
    overwrite: ``out`` may exist; its outputs are replaced at the end.
    chunk_size: VCF Zarr chunk length along variants.

    Raises :class:`InputError` (bad input, nothing created at ``out``), :class:`RegionError`
    (regions failed; finished checkpoints kept) or :class:`VarcallError`.
    """
    from varcall.plan.validate import validate_call, validate_regions

    started = _now()
    t_start = time.time()
    params = params or CallParams()
    if mode not in MODES:
        raise InputError(f"mode {mode!r}: unknown; use one of {', '.join(MODES)}")
    out = Path(out)
    starter = None
    try:
        inputs = validate_call(
            Path(reference),
            [Path(b) for b in bams],
            out,
            overwrite=overwrite,
            resume=resume,
            build_index=build_index,
            rename_duplicate_samples=rename_duplicate_samples,
            region_strings=tuple(region_strings),
            regions_bed=None if regions_bed is None else Path(regions_bed),
            engine_name=params.engine,
        )
        # valid inputs: a local cluster starts in the background while the run is planned
        if mode == "distributed" and client is None and (cluster or ClusterSpec()).kind == "local":
            starter = ClusterStarter(
                cluster or ClusterSpec(),
                warm=(f"varcall.engines.{params.engine}",),
                client_warm=("varcall.io.vcz", "varcall.io.vcf"),
            )
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
        if mode == "distributed" and client is None:
            (cluster or ClusterSpec()).check()
        contig_order = [c for c, _ in inputs.contigs]
        restrict = validate_regions(region_strings, regions_bed, inputs.contigs) or None
        if regions is not None:
            lengths = dict(inputs.contigs)
            for r in regions:
                if r.contig not in lengths or r.end > lengths[r.contig] or r.length == 0:
                    raise InputError(f"region {r}: empty or outside the reference; fix the layout")
            layout = sort_regions(regions, contig_order)
            if len(merge_regions(layout, contig_order)) != len([r for r in layout if r.length > 0]):
                raise InputError("explicit regions overlap; give a layout where no base is in two")
        elif mode == "distributed":
            planned_count = region_count
            if region_size is None and region_count is None:
                planned_count = default_region_count(
                    inputs, restrict, _worker_slots(cluster or ClusterSpec(), client)
                )
            layout = plan_regions(
                inputs, region_size=region_size, region_count=planned_count, restrict=restrict
            )
        else:
            layout = merge_regions(restrict, contig_order) if restrict else None

        if mode == "distributed" and client is None:
            from varcall.plan.validate import check_cluster

            check_cluster(cluster or ClusterSpec())  # before out/ exists: nothing left behind
    except BaseException:
        if starter is not None:
            starter.close()
        raise

    # ------------------------------------------------------------- run (creates out/)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    # the manifest marks a finished run: drop an earlier run's (--overwrite / --resume) so
    # that a crash of this run never leaves new outputs beside an old, complete-looking one
    (out / "manifest.json").unlink(missing_ok=True)
    run_id = uuid.uuid4().hex
    identity = inputs_identity(inputs)
    engine_ver = engine_version(engine)
    cluster_doc: dict[str, Any] | None = None
    if mode == "single" and layout is None:
        sidecars = _single_process(
            inputs, params, engine, identity, engine_ver, work, run_id, resume, progress
        )
        keys = [s["key"] for s in sidecars]
        bed_regions = [Region(c, 0, n) for c, n in inputs.contigs]
    else:
        assert layout is not None
        keys = [checkpoint_key(r, identity, params, params.engine, engine_ver) for r in layout]
        bed_regions = list(layout)
        if mode == "single":
            sidecars = run_sequential(
                layout,
                keys,
                inputs,
                params,
                work,
                run_id=run_id,
                engine=engine,
                resume=resume,
                progress=progress,
            )
        else:
            if client is not None:
                cluster_doc = {
                    "kind": "client",
                    "scheduler": getattr(client, "scheduler", None) and client.scheduler.address,
                }
                session = contextlib.nullcontext(client)
            else:
                spec = cluster or ClusterSpec()
                cluster_doc = spec.describe()
                session = (
                    starter.attach(record=cluster_doc)
                    if starter is not None
                    else open_client(spec, record=cluster_doc)
                )
            with session as run_client:
                if client is None:
                    cluster_doc["dashboard"] = run_client.dashboard_link
                sidecars = scatter_regions(
                    layout,
                    keys,
                    inputs,
                    params,
                    work,
                    client=run_client,
                    run_id=run_id,
                    engine=engine,
                    retries=retries,
                    resume=resume,
                    progress=progress,
                )
    t_called = time.time()

    # ------------------------------------------------------------- merge
    from varcall.run.merge import write_outputs

    filter_ids = list(FILTER_IDS)
    for side in sidecars:
        for f in side["filter_ids"]:
            if f not in filter_ids:
                filter_ids.append(f)
    max_alleles = max([2, *(int(s["max_alleles"]) for s in sidecars)])
    with ProgressReporter(len(sidecars), enabled=progress, description="merge") as bar:
        merge = write_outputs(
            out,
            _load_units(work, sidecars, bar),
            contigs=inputs.contigs,
            samples=inputs.samples,
            filter_ids=tuple(filter_ids),
            max_alleles=max_alleles,
            header_kwargs={"command_line": command_line, "reference": inputs.reference},
            chunk_size=chunk_size,
        )
    t_merged = time.time()

    # ------------------------------------------------------------- provenance
    attempts = _collect_audit(
        work,
        keys,
        run_id,
        out / "audit.jsonl",
        producers={s["key"]: s.get("run_id") for s in sidecars if s.get("resumed")},
    )
    write_bed(bed_regions, out / "regions.bed")
    n_variants = int(merge.n_variants)
    for side, digest in zip(sidecars, merge.callset_digests):
        if side["digest"] != digest:  # the checkpoint changed between task and merge
            raise VarcallError(
                f"{work / side['key']}.npz: content differs from its sidecar digest; "
                "delete OUT/work and run again"
            )
    wall = time.time() - t_start
    genome_bp = sum(r.length for r in bed_regions)
    unit_docs = [
        {
            "region": str(Region(*side["region"])),
            "contig": side["region"][0],
            "start": side["region"][1],
            "end": side["region"][2],
            "key": side["key"],
            "n_variants": side["n_variants"],
            "digest": side["digest"],
            "seconds": side["seconds"],
            "worker": side["worker"],
            "attempts": attempts.get(side["key"], 0),
            "resumed": side.get("resumed", False),
        }
        for side in sidecars
    ]
    manifest = {
        "varcall_version": __version__,
        "code_digest": code_digest(),
        "units_run_by_other_code": sum(
            1 for side in sidecars if side.get("code", code_digest()) != code_digest()
        ),
        "command_line": command_line,
        "run_id": run_id,
        "started": started,
        "finished": _now(),
        "mode": mode,
        "engine": {
            "name": params.engine,
            "version": engine_ver,
            # why a distributed run of this engine may differ from its single-process run
            "known_differences": getattr(engine, "known_differences", "") or "",
        },
        "params": params.as_dict(),
        "inputs": {**_inputs_doc(inputs), "checksums": input_checksums(inputs)},
        "versions": {**_versions(), **dependency_versions()},
        "host": {"hostname": platform.node(), "cpus": os.cpu_count(), "platform": sys.platform},
        "cluster": cluster_doc,
        "planning": {
            "region_size": region_size,
            "region_count": region_count,
            "regions_planned": len(bed_regions),
            "region_strings": list(region_strings),
            "regions_bed": None if regions_bed is None else str(Path(regions_bed).resolve()),
            "explicit_layout": regions is not None,
            "retries": retries,
            "resume": resume,
        },
        "units": unit_docs,
        "n_units": len(unit_docs),
        "n_variants": n_variants,
        "contig_digests": dict(merge.contig_digests),
        "contig_counts": {c: int(n) for c, n in merge.contig_counts.items()},
        "timing": {
            "wall_seconds": round(wall, 3),
            "call_seconds": round(t_called - t_start, 3),
            "merge_seconds": round(t_merged - t_called, 3),
            "task_seconds_sum": round(sum(s["seconds"] for s in sidecars), 3),
        },
        "memory": {
            "client_peak_rss_mb": peak_rss_mb(),
            "worker_peak_rss_mb": max(
                [float(side.get("peak_rss_mb", 0.0)) for side in sidecars], default=0.0
            ),
        },
        "throughput": {
            "bp_per_second": round(genome_bp / wall, 1) if wall > 0 else None,
            "variants_per_second": round(n_variants / wall, 3) if wall > 0 else None,
        },
        "outputs": {
            "vcf": "calls.vcf.gz",
            "vcf_index": "calls.vcf.gz.tbi",
            "zarr": "calls.vcz",
            "regions": "regions.bed",
            "audit": "audit.jsonl",
            "work": "work",
        },
    }
    write_json_atomic(out / "manifest.json", manifest)
    _prune_work(work, set(keys))
    logger.info("%s: %d variants in %.1f s (%s mode)", out, n_variants, wall, mode)
    return RunResult(
        out=out,
        mode=mode,
        n_variants=n_variants,
        n_units=len(unit_docs),
        wall_seconds=wall,
        manifest=manifest,
    )


def load_manifest(out: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a finished run in folder ``out``."""
    path = Path(out) / "manifest.json"
    if not path.is_file():
        raise InputError(f"{path}: no manifest; is {out} the folder of a finished varcall call?")
    return json.loads(path.read_text())
