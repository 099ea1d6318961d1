"""Run an engine region by region: as Dask tasks (local, remote or batch-system cluster,
see :mod:`varcall.run.clusters`) or sequentially in this process, with on-disk checkpoints
(:mod:`varcall.run.checkpoints`).

Every region is one task, :func:`varcall.run.region_task.run_region_task` (re-exported
here), a pure function of (region, inputs, parameters, engine). It writes the region's :class:`~varcall.core.callset.CallSet` and its
sidecar (:func:`~varcall.run.checkpoints.write_checkpoint`) and returns only the sidecar to
the client (client memory stays small whatever the number of calls). Every attempt is
audited (:func:`~varcall.run.checkpoints.audit_event`).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from varcall import __version__
from varcall.core.callset import CallSet
from varcall.core.errors import DamagedInputError, RegionError, VarcallError
from varcall.core.params import CallInputs, CallParams
from varcall.core.regions import Region
from varcall.engines import Engine
from varcall.run.checkpoints import code_digest, read_checkpoint
from varcall.run.progress import ProgressReporter
from varcall.run.region_task import (
    call_together,
    diagnose_failure,
    peak_rss_mb,
    quiet_htslib,
    run_pack_task,
    run_region_task,
)
from varcall.run.speculate import Speculation, TaskRace, announce

__all__ = [
    "diagnose_failure",
    "peak_rss_mb",
    "quiet_htslib",
    "run_pack_task",
    "run_region_task",
    "run_sequential",
    "scatter_regions",
]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- the task


# ----------------------------------------------------------------------------- drivers
def _split_resumed(
    regions: Sequence[Region], keys: Sequence[str], work: Path, resume: bool
) -> tuple[dict[str, dict], list[int]]:
    done: dict[str, dict] = {}
    todo: list[int] = []
    for i, key in enumerate(keys):
        side = read_checkpoint(work, key) if resume else None
        if side is not None:
            done[key] = {**side, "resumed": True}
        else:
            todo.append(i)
    if resume:
        logger.info("resume: %d of %d regions already done", len(done), len(regions))
    return done, todo


def _failure_error(
    failed: list[tuple[Region, str]], work: Path, damaged: bool = False
) -> RegionError:
    """One line for the failed regions (the first named, the others counted); a
    :class:`DamagedInputError` (exit 2) when ``damaged``: an input file is damaged."""
    first_region, first_msg = failed[0]
    more = f" (and {len(failed) - 1} more regions)" if len(failed) > 1 else ""
    cls = DamagedInputError if damaged else RegionError
    # a task's error names its region already (in a pack, the region that failed)
    named = first_msg.startswith("region ") or str(first_region) in first_msg
    return cls(
        f"{first_msg if named else f'region {first_region}: {first_msg}'}"
        f"{more}; finished regions are kept in {work}, fix the cause and rerun with --resume"
    )


#: Regions :func:`run_sequential` calls together at a time (bounds the calls held).
SEQUENTIAL_BATCH = 256


def run_sequential(
    regions: Sequence[Region],
    keys: Sequence[str],
    inputs: CallInputs,
    params: CallParams,
    work_dir: str | os.PathLike,
    *,
    run_id: str,
    engine: Engine | None = None,
    resume: bool = False,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Run the regions one after the other in this process (no Dask); same checkpoints and
    sidecars as :func:`scatter_regions`. Stops at the first failing region. Runs of
    :data:`SEQUENTIAL_BATCH` regions are called together first where the engine can
    (:func:`call_together`: neighbours share their reads)."""
    work = Path(work_dir)
    done, todo = _split_resumed(regions, keys, work, resume)
    with ProgressReporter(len(regions), enabled=progress) as bar:
        bar.advance(sum(d["n_variants"] for d in done.values()), len(done))
        pre: dict[int, tuple[CallSet, float]] = {}
        for n, i in enumerate(todo):
            if n % SEQUENTIAL_BATCH == 0:
                batch = todo[n : n + SEQUENTIAL_BATCH]
                together = call_together([regions[j] for j in batch], inputs, params, engine, None)
                pre = dict(zip(batch, together)) if together is not None else {}
            try:
                side = run_region_task(
                    regions[i], inputs, params, str(work), keys[i], run_id, engine,
                    precalled=pre.pop(i, None),
                )  # fmt: skip
            except VarcallError as e:
                damaged = isinstance(e, DamagedInputError)
                raise _failure_error([(regions[i], str(e))], work, damaged) from e
            done[keys[i]] = {**side, "resumed": False}
            bar.advance(side["n_variants"])
    return [done[k] for k in keys]


def scatter_regions(
    regions: Sequence[Region],
    keys: Sequence[str],
    inputs: CallInputs,
    params: CallParams,
    work_dir: str | os.PathLike,
    *,
    client: Any,
    run_id: str,
    engine: Engine | None = None,
    retries: int = 2,
    resume: bool = False,
    progress: bool = False,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    packs: Sequence[Sequence[int]] | None = None,
    speculation: Speculation | None = None,
) -> list[dict[str, Any]]:
    """Run the regions as Dask tasks on ``client``; return the sidecars in ``regions`` order.

    packs: the region indexes of every task (see :func:`varcall.plan.regions.pack_regions`;
    default one task per region); a task calls its regions one after the other
    (:func:`run_pack_task`), each into its own checkpoint, so the results are those of one
    task per region. Regions with a valid checkpoint are skipped when ``resume``. A task is retried up to
    ``retries`` times; regions that still fail are named in the :class:`RegionError`
    raised after every other region finished (their checkpoints are kept). On any
    exception in the client (e.g. KeyboardInterrupt) the pending tasks are cancelled.

    speculation: when a straggling task gets a second copy on another worker (see
    :mod:`varcall.run.speculate`; None: never); the sidecars of its regions carry
    ``speculated: True``.
    """
    # absolute before any task leaves: workers may run in another folder
    work = Path(work_dir).absolute()
    done, todo = _split_resumed(regions, keys, work, resume)
    failed: list[tuple[Region, str]] = []
    damaged = False
    with ProgressReporter(len(regions), enabled=progress) as bar:
        _announce_cluster(client, bar)
        bar.advance(sum(d["n_variants"] for d in done.values()), len(done))
        if not todo:
            return [done[k] for k in keys]
        units = _todo_packs(packs, todo)
        unit_regions = [[regions[i] for i in unit] for unit in units]
        unit_keys = [[keys[i] for i in unit] for unit in units]
        with TaskRace(client, speculation) as race:
            task_kw = {"work_dir": str(work), "run_id": run_id, "topic": race.topic}
            shared, futures = _submit(
                client, unit_regions, unit_keys, (inputs, params, engine), task_kw, retries
            )
            race.track(futures, _copier(client, futures, shared, unit_regions, unit_keys, task_kw))
            try:
                for u, fut in race.settled():
                    region = regions[units[u][0]]
                    if fut.status == "finished":
                        for side in fut.result():
                            done[side["key"]] = {
                                **side, "resumed": False, "speculated": u in race.copied
                            }  # fmt: skip
                            bar.advance(side["n_variants"])
                            if on_result is not None:
                                on_result(side)
                    else:
                        msg, bad_input = _failure_message(fut, region)
                        failed.append((region, msg))
                        damaged = damaged or bad_input
                        bar.advance(0, len(units[u]))
                    fut.release()
            except BaseException:
                race.cancel()
                raise
            finally:
                shared.release()
    if failed:
        order = {r: i for i, r in enumerate(regions)}
        failed.sort(key=lambda x: order[x[0]])
        raise _failure_error(failed, work, damaged)
    return [done[k] for k in keys]


def _announce_cluster(client: Any, bar: ProgressReporter) -> None:
    """Log (and show) the Dask dashboard's address, and warn when no worker is there yet."""
    link = getattr(client, "dashboard_link", None)
    if link:
        logger.info("Dask dashboard: %s", link)
        bar.print(f"Dask dashboard: {link}")
    try:
        n_threads = sum(client.nthreads().values())
    except Exception:  # not every client-like object answers this
        n_threads = None
    if n_threads == 0:
        logger.warning("the Dask scheduler has no workers yet; regions wait for workers")
        bar.print("waiting for Dask workers ...")


def _todo_packs(packs: Sequence[Sequence[int]] | None, todo: Sequence[int]) -> list[list[int]]:
    """The tasks still to run: ``packs`` (region indexes per task; None: one per region)
    restricted to the regions in ``todo``, empty ones dropped, in order."""
    if packs is None:
        return [[i] for i in todo]
    wanted = set(todo)
    units = [[i for i in pack if i in wanted] for pack in packs]
    units = [u for u in units if u]
    missing = wanted - {i for u in units for i in u}
    if missing:  # a pack list that leaves regions out: they run alone
        units.extend([i] for i in sorted(missing))
    return units


def _submit(
    client: Any,
    regions: Sequence[Sequence[Region]],
    keys: Sequence[Sequence[str]],
    shared_args: tuple[CallInputs, CallParams, Engine | None],
    task_kw: dict[str, Any],
    retries: int,
) -> tuple[Any, list[Any]]:
    """Submit the shared task (inputs, params, engine, client's code) and one task per
    pack of regions (``regions``/``keys``: per task; ``task_kw``: the keywords of
    :func:`_run_bundled` they share); returns (the shared future, the tasks' futures in
    order)."""
    # inputs/params/engine travel once, as a task the scheduler can recompute if the
    # worker holding it dies (unlike scattered data)
    token = uuid.uuid4().hex[:12]  # Dask keys unique per call, even on a shared scheduler
    shared = client.submit(
        _bundle,
        *shared_args,
        (__version__, code_digest()),
        key=f"varcall-shared-{token}",
        pure=False,
    )
    futures = client.map(
        _run_bundled,
        [list(r) for r in regions],
        [list(k) for k in keys],
        shared=shared,
        **task_kw,
        key=[f"varcall-region-{token}-{k[0]}" for k in keys],
        retries=retries,
        pure=False,
    )
    return shared, futures


def _copier(
    client: Any,
    futures: Sequence[Any],
    shared: Any,
    regions: Sequence[list[Region]],
    keys: Sequence[list[str]],
    task_kw: dict[str, Any],
) -> Callable[[int, list[str] | None], Any]:
    """``copy_of(i, workers)`` for :meth:`TaskRace.track`: submit a second copy of task
    ``futures[i]`` (``regions[i]`` into checkpoints ``keys[i]``; no retries; ahead of
    queued tasks), preferring ``workers`` (elsewhere when none of them is left)."""

    def copy_of(i: int, workers: list[str] | None) -> Any:
        return client.submit(
            _run_bundled, regions[i], keys[i], shared=shared, copy=1, **task_kw,
            key=f"{futures[i].key}-copy", workers=workers, allow_other_workers=True,
            retries=0, priority=1, pure=False,
        )  # fmt: skip

    return copy_of


def _failure_message(fut: Any, region: Region) -> tuple[str, bool]:
    """The error of a failed (or cancelled) future, logged with its region as one line at
    INFO (the attempts' errors and tracebacks are in ``audit.jsonl``), and whether it names a
    damaged input file (:class:`DamagedInputError`)."""
    damaged = False
    try:
        exc = fut.exception()
        msg = str(exc) or type(exc).__name__
        damaged = isinstance(exc, DamagedInputError)
    except Exception as e:  # cancelled futures raise here
        msg = f"{type(e).__name__}: {e}"
    msg = " ".join(msg.split())  # one line on the terminal
    # INFO (-v): the run ends in one line naming the first failure and counting the others
    logger.info("region %s failed: %s", region, msg)
    return msg, damaged


def _bundle(
    inputs: CallInputs, params: CallParams, engine: Engine | None, code: tuple[str, str]
) -> tuple:
    return inputs, params, engine, code


def _run_bundled(
    regions: list[Region],
    keys: list[str],
    *,
    shared: tuple,
    work_dir: str,
    run_id: str,
    topic: str | None = None,
    copy: int = 0,
) -> list[dict[str, Any]]:
    """A Dask task: :func:`run_pack_task`, its start and end announced on ``topic`` (for
    the straggler watch, :mod:`varcall.run.speculate`)."""
    announce(topic, "start")
    try:
        inputs, params, engine, code = shared
        return run_pack_task(regions, keys, inputs, params, work_dir, run_id, engine, code, copy)
    finally:
        announce(topic, "end")
