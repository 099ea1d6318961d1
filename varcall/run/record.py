"""Stage 4 of a ``varcall call`` run: the provenance of the merged outputs.

``OUT/audit.jsonl`` (every task attempt), ``OUT/regions.bed`` (the units, 0-based
half-open); ``OUT/work`` loses the files of no unit of this run; with
``--pseudonymise-key`` / ``--redact-paths`` the audit, the manifest and the files in
``OUT/work`` are minimised (:mod:`varcall.run.minimise`) and the ``--pseudonym-map`` is
written; last ``OUT/manifest.json`` (:class:`varcall.core.manifest.Manifest`, the mark of a
finished run), each written atomically.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from varcall import __version__
from varcall.core.errors import VarcallError
from varcall.core.files import find_index, write_text_atomic
from varcall.core.manifest import (
    RUN_OUTPUTS,
    EngineInfo,
    Manifest,
    Memory,
    Planning,
    Throughput,
    Timing,
    UnitRecord,
)
from varcall.core.params import CallInputs
from varcall.core.privacy import Privacy
from varcall.core.regions import Region, write_bed
from varcall.plan.inputs import dependency_versions, input_checksums
from varcall.run.checkpoints import code_digest
from varcall.run.empty import called_sidecars
from varcall.run.execute import ExecutedRun
from varcall.run.merge import MergeResult
from varcall.run.minimise import minimise_audit_lines, minimise_manifest, minimise_work
from varcall.run.prepare import PreparedRun
from varcall.run.tasks import peak_rss_mb

__all__ = ["RunClock", "now_iso", "record"]

logger = logging.getLogger(__name__)

_KEY_FILE_SUFFIXES = (".npz", ".json", ".audit.jsonl")
def now_iso() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


@dataclasses.dataclass
class RunClock:
    """When the run started (``started``: ISO 8601 UTC) and its stage ends (epoch seconds)."""

    started: str
    t_start: float
    t_called: float = 0.0
    t_merged: float = 0.0

    @classmethod
    def start(cls) -> RunClock:
        return cls(now_iso(), time.time())


# ----------------------------------------------------------------------------- inputs
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


def _file_doc(path: str | os.PathLike) -> dict[str, Any]:
    st = os.stat(path)
    mtime = datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc)
    return {"path": str(path), "size": st.st_size, "mtime": mtime.isoformat()}


def _inputs_doc(inputs: CallInputs) -> dict[str, Any]:
    """The input files (path, size, mtime; the alignments' indexes), samples and contigs."""
    ref = _file_doc(inputs.reference)
    fai = f"{inputs.reference}.fai"
    if Path(fai).is_file():
        ref["fai"] = _file_doc(fai)
    alignments = []
    for b in inputs.bams:
        index = find_index(b)
        alignments.append({**_file_doc(b), "index": None if index is None else _file_doc(index)})
    return {
        "reference": ref,
        "alignments": alignments,
        "samples": list(inputs.samples),
        "contigs": [{"name": c, "length": n} for c, n in inputs.contigs],
    }


# ----------------------------------------------------------------------------- audit
#: The outcome of an attempt by its last event (``error`` for any other; ``lost``: none).
_OUTCOMES = {"done": "ok", "cancelled": "cancelled"}


def _race_outcomes(by_attempt: dict[str, dict[str, Any]], run_id: str, winner: str) -> None:
    """Label the attempts of run ``run_id`` of a region whose task got a second copy
    (:mod:`varcall.run.speculate`), when the copy (``"copy": 1``) attempted the region:
    attempt ``winner`` (the checkpoint in use) ``won``, the others ``cancelled`` unless
    they failed."""
    ours = {a: r for a, r in by_attempt.items() if r["run_id"] == run_id}
    if not any(r.get("copy") for r in ours.values()):
        return
    for attempt, rec in ours.items():
        if attempt == winner:
            rec["outcome"] = "won"
        elif rec["outcome"] != "error":
            rec["outcome"] = "cancelled"


def _key_attempts(
    path: Path, run_ids: tuple[str, str | None]
) -> dict[str, dict[str, Any]]:
    """The attempts (by attempt id) in one key's ``.audit.jsonl`` of the given run ids."""
    by_attempt: dict[str, dict[str, Any]] = {}
    for raw in path.read_text().splitlines():
        try:
            ev = json.loads(raw)
        except ValueError:
            continue  # a line cut short by a killed worker
        if ev.get("run_id") not in run_ids:
            continue
        rec = by_attempt.setdefault(
            ev["attempt"],
            {k: ev.get(k) for k in ("key", "region", "worker", "bams", "run_id")}
            | {"start": None, "end": None, "outcome": "lost"},
        )
        if ev.get("copy"):
            rec["copy"] = ev["copy"]
        if ev["event"] == "start":
            rec["start"] = ev["time"]
        else:
            rec["end"] = ev["time"]
            rec["outcome"] = _OUTCOMES.get(ev["event"], "error")
            if "error" in ev:
                rec["error"] = ev["error"]
    return by_attempt


def _collect_audit(
    work: Path,
    keys: Sequence[str],
    run_id: str,
    dest: Path,
    producers: dict[str, str] | None = None,
    privacy: Privacy | None = None,
    winners: dict[str, str] | None = None,
) -> dict[str, int]:
    """Write ``dest`` (one JSON line per task attempt: run id, start time, end time, worker,
    region, files, outcome) and return the number of attempts per key in this run.

    ``producers`` (key -> run id that wrote the checkpoint in use): attempts of an earlier
    run whose checkpoint this run reuses (``--resume``) are listed too, under their own
    ``run_id``, so the audit names who read every region of the output. ``privacy``: the
    lines are minimised as the manifest (pseudonyms, redacted paths and hosts). ``winners``
    (key -> attempt id of the checkpoint in use) for the regions whose task got a second
    copy: when a copy (``"copy": 1``) attempted the region, the attempts are labelled
    ``won`` / ``cancelled``."""
    producers = producers or {}
    winners = winners or {}
    attempts: dict[str, int] = {}
    lines: list[dict[str, Any]] = []
    for key in keys:
        path = work / f"{key}.audit.jsonl"
        if not path.is_file():
            continue
        by_attempt = _key_attempts(path, (run_id, producers.get(key)))
        attempts[key] = sum(1 for r in by_attempt.values() if r["run_id"] == run_id)
        if key in winners:
            _race_outcomes(by_attempt, run_id, winners[key])
        lines.extend(by_attempt.values())
    lines.sort(key=lambda r: (r["start"] or 0.0, r["key"]))
    if privacy is not None:
        lines = minimise_audit_lines(lines, privacy)
    write_text_atomic(dest, "".join(json.dumps(rec, sort_keys=True) + "\n" for rec in lines))
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


# ----------------------------------------------------------------------------- manifest
def _units(sidecars: Sequence[dict[str, Any]], attempts: dict[str, int]) -> list[UnitRecord]:
    return [
        UnitRecord(
            region=str(Region(*side["region"])),
            contig=side["region"][0],
            start=side["region"][1],
            end=side["region"][2],
            key=side["key"],
            n_variants=side["n_variants"],
            digest=side["digest"],
            seconds=side["seconds"],
            worker=side["worker"],
            attempts=attempts.get(side["key"], 0),
            resumed=side.get("resumed", False),
            speculated=side.get("speculated", False),
            empty_by_index=side.get("empty_by_index", False),
        )
        for side in sidecars
    ]


def _planning(prep: PreparedRun, run: ExecutedRun, retries: int) -> Planning:
    plan = prep.plan
    return Planning(
        region_size=plan.region_size,
        region_count=plan.region_count,
        regions_planned=len(run.bed_regions),
        region_strings=list(plan.region_strings),
        regions_bed=None if plan.regions_bed is None else str(Path(plan.regions_bed).resolve()),
        explicit_layout=plan.regions is not None,
        pack=plan.pack,
        regions_empty_by_index=len(prep.empty_regions),
        retries=retries,
        resume=prep.flags.resume,
        speculation=run.speculation,
    )


def _performance(
    run: ExecutedRun, merged: MergeResult, clock: RunClock, wall: float
) -> tuple[Timing, Memory, Throughput]:
    """Seconds of the stages (the merge's serial part and its encode tasks apart), peak
    memory (MB), bases and variants per second."""
    n_variants = int(merged.n_variants)
    sidecars = run.sidecars
    genome_bp = sum(r.length for r in run.bed_regions)
    timing = Timing(
        wall_seconds=round(wall, 3),
        call_seconds=round(clock.t_called - clock.t_start, 3),
        merge_seconds=round(clock.t_merged - clock.t_called - merged.encode_seconds, 3),
        encode_seconds=round(merged.encode_seconds, 3),
        task_seconds_sum=round(sum(s["seconds"] for s in sidecars), 3),
    )
    memory = Memory(
        client_peak_rss_mb=peak_rss_mb(),
        worker_peak_rss_mb=max([float(s.get("peak_rss_mb", 0.0)) for s in sidecars], default=0.0),
    )
    throughput = Throughput(
        bp_per_second=round(genome_bp / wall, 1) if wall > 0 else None,
        variants_per_second=round(n_variants / wall, 3) if wall > 0 else None,
    )
    return timing, memory, throughput


def _manifest(
    prep: PreparedRun,
    run: ExecutedRun,
    merged: MergeResult,
    attempts: dict[str, int],
    clock: RunClock,
    wall: float,
    retries: int,
    command_line: str | None,
) -> Manifest:
    """The manifest of the finished run (see the README's "Outputs" section)."""
    units = _units(run.sidecars, attempts)
    n_variants = int(merged.n_variants)
    digest = code_digest()
    engine = prep.engine
    timing, memory, throughput = _performance(run, merged, clock, wall)
    return Manifest(
        varcall_version=__version__,
        code_digest=digest,
        units_run_by_other_code=sum(1 for s in run.sidecars if s.get("code", digest) != digest),
        command_line=command_line,
        run_id=run.run_id,
        started=clock.started,
        finished=now_iso(),
        mode=prep.mode,
        # known_differences: why a distributed run of this engine may differ from its
        # single-process run
        engine=EngineInfo(
            prep.params.engine, run.engine_ver, getattr(engine, "known_differences", "") or ""
        ),
        params=prep.params.as_dict(),
        inputs={**_inputs_doc(prep.inputs), "checksums": input_checksums(prep.inputs)},
        versions={**_versions(), **dependency_versions()},
        host={"hostname": platform.node(), "cpus": os.cpu_count(), "platform": sys.platform},
        cluster=run.cluster_doc,
        planning=_planning(prep, run, retries),
        units=units,
        n_units=len(units),
        n_variants=n_variants,
        contig_digests=dict(merged.contig_digests),
        contig_counts={c: int(n) for c, n in merged.contig_counts.items()},
        timing=timing,
        memory=memory,
        throughput=throughput,
        outputs=dict(RUN_OUTPUTS),
    )


def record(
    prep: PreparedRun,
    run: ExecutedRun,
    merged: MergeResult,
    clock: RunClock,
    *,
    retries: int,
    command_line: str | None,
) -> tuple[Manifest, float]:
    """Write ``OUT/audit.jsonl``, ``OUT/regions.bed`` and ``OUT/manifest.json``, then prune
    ``OUT/work``; returns the manifest and the run's wall time (seconds since
    ``clock.t_start``). Raises :class:`VarcallError` when a checkpoint changed between its
    task and the merge (no manifest written)."""
    out, work = prep.out, run.work
    attempts = _collect_audit(
        work,
        run.keys,
        run.run_id,
        out / "audit.jsonl",
        producers={s["key"]: s.get("run_id") for s in run.sidecars if s.get("resumed")},
        privacy=prep.privacy,
        winners={s["key"]: s["attempt"] for s in run.sidecars if s.get("speculated")},
    )
    write_bed(run.bed_regions, out / "regions.bed")
    for side, digest in zip(called_sidecars(run.sidecars), merged.callset_digests):
        if side["digest"] != digest:  # the checkpoint changed between task and merge
            raise VarcallError(
                f"{work / side['key']}.npz: content differs from its sidecar digest; "
                "delete OUT/work and run again"
            )
    wall = time.time() - clock.t_start
    manifest = _manifest(prep, run, merged, attempts, clock, wall, retries, command_line)
    manifest = minimise_manifest(manifest, prep.privacy)
    _prune_work(work, set(run.keys))
    minimise_work(work, run.keys, prep.privacy)
    prep.privacy.write_map()
    manifest.write(out)
    return manifest, wall
