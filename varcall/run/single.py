"""A single-process run of the whole genome: the engine's own whole-genome call
(:meth:`Engine.call_whole`) in this process, no Dask, one checkpoint per contig.

Each contig gets a checkpoint ``WORK/<key>.npz`` with its sidecar and an audit record like
a Dask task (start = when the previous contig was done); contigs the engine skipped get
empty CallSets. Units span whole contigs (0-based half-open ``[0, length)``).
"""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from varcall.core.callset import FILTER_IDS, CallSet
from varcall.core.errors import DamagedInputError, RegionError, VarcallError
from varcall.core.params import CallInputs, CallParams
from varcall.core.regions import Region
from varcall.engines import Engine
from varcall.run.checkpoints import (
    audit_event,
    checkpoint_keys,
    read_checkpoint,
    write_checkpoint,
)
from varcall.run.empty import empty_unit
from varcall.run.progress import ProgressReporter
from varcall.run.tasks import diagnose_failure, peak_rss_mb, quiet_htslib

__all__ = ["run_whole_genome"]

logger = logging.getLogger(__name__)


class _ContigSaver:
    """Checkpoints one contig's CallSet at a time (with its audit records) and keeps the
    sidecars by contig name."""

    def __init__(
        self,
        inputs: CallInputs,
        keys: dict[str, str],
        work: Path,
        run_id: str,
        bar: ProgressReporter,
    ) -> None:
        self.inputs = inputs
        self.keys = keys
        self.work = work
        self.run_id = run_id
        self.bar = bar
        self.worker = f"single-process@{platform.node()}:{os.getpid()}"
        self.sidecars: dict[str, dict[str, Any]] = {}
        self.empty: frozenset[str] = frozenset()

    def save(self, cs: CallSet, name: str, started: float, seconds: float) -> None:
        """Checkpoint ``cs`` as contig ``name``: started (epoch seconds) and seconds
        (calling time) go into the audit and the sidecar."""
        key, run_id, worker = self.keys[name], self.run_id, self.worker
        length = self.inputs.contig_length(name)
        if name in self.empty and cs.n_variants == 0:  # no read in any index: no checkpoint
            self.sidecars[name] = empty_unit(Region(name, 0, length))
            self.bar.advance(0)
            return
        base = {
            "key": key,
            "run_id": run_id,
            "attempt": f"{run_id}-{name}",
            "region": str(Region(name, 0, length)),
            "worker": worker,
            "bams": list(self.inputs.bams),
        }
        audit_event(self.work, key, {**base, "event": "start", "time": started})
        extra = {
            "region": [name, 0, length],
            "seconds": round(seconds, 6),
            "worker": worker,
            "run_id": run_id,
            "attempt": base["attempt"],
            "peak_rss_mb": peak_rss_mb(),
        }
        self.sidecars[name] = {**write_checkpoint(self.work, key, cs, extra), "resumed": False}
        done = {"event": "done", "time": time.time(), "n_variants": cs.n_variants}
        audit_event(self.work, key, {**base, **done, "seconds": extra["seconds"]})
        self.bar.advance(cs.n_variants)

    def save_empty(self, name: str, now: float) -> None:
        """Checkpoint an empty CallSet for contig ``name`` (the engine skipped it)."""
        self.save(CallSet.empty(name, self.inputs.samples, FILTER_IDS), name, now, 0.0)


def _save_stream(
    saver: _ContigSaver,
    callsets: Iterable[CallSet],
    pending: Iterator[str],
    engine_name: str,
    t0: float,
) -> None:
    """Checkpoint the engine's per-contig CallSets as they come (t0: epoch seconds when
    the call began); contigs skipped before each one get empty ones. Raises
    :class:`VarcallError` on a contig out of reference order."""
    for cs in callsets:
        now = time.time()
        for name in pending:
            if name == cs.contig:
                saver.save(cs, name, t0, now - t0)
                break
            saver.save_empty(name, now)
        else:
            raise VarcallError(
                f"engine {engine_name}: call_whole yielded contig {cs.contig!r} out "
                "of reference order; this is an engine bug, report it"
            )
        t0 = time.time()


def _failed_unit(inputs: CallInputs, order: list[str], saver: _ContigSaver) -> Region:
    """The whole contig being called when the engine failed: the first without a result."""
    failed = next((n for n in order if n not in saver.sidecars), order[-1])
    return Region(failed, 0, inputs.contig_length(failed))


def _raise_if_damaged(inputs: CallInputs, unit: Region, work: Path, error: Exception) -> None:
    """Raise :class:`DamagedInputError` (bad input, exit 2) naming the file when
    :func:`diagnose_failure` finds a damaged or mismatched input behind ``error`` in
    ``unit``; return otherwise."""
    culprit = diagnose_failure(inputs, unit)
    if culprit is not None:
        raise DamagedInputError(
            f"region {unit}: {culprit}; finished contigs are kept in {work}, "
            "rerun with --resume once the file is fixed"
        ) from error


def run_whole_genome(
    inputs: CallInputs,
    params: CallParams,
    engine: Engine,
    identity: dict[str, Any],
    engine_ver: str,
    work: Path,
    run_id: str,
    resume: bool,
    progress: bool = False,
    empty: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """Run ``engine.call_whole`` and checkpoint one CallSet per contig (empty ones for
    contigs it skipped); all contigs' sidecars in reference order. Contigs of ``empty``
    (no read in any index) that come without calls get no checkpoint, only their unit
    (:func:`varcall.run.empty.empty_unit`). With ``resume`` and every other contig's
    checkpoint valid, nothing is called. Raises :class:`RegionError` naming the contig on
    a failure of the engine."""
    units = [Region(name, 0, length) for name, length in inputs.contigs]
    whole = checkpoint_keys(units, identity, params, params.engine, engine_ver, kind="whole")
    keys = {u.contig: k for u, k in zip(units, whole)}
    done = {name: read_checkpoint(work, k) for name, k in keys.items()} if resume else {}
    if resume and all(done.get(name) is not None for name in keys if name not in empty):
        logger.info("resume: every contig is already done")
        return [
            empty_unit(u) if u.contig in empty else {**done[u.contig], "resumed": True}
            for u in units
        ]
    order = [name for name, _ in inputs.contigs]
    pending = iter(order)
    t0 = time.time()
    bar = ProgressReporter(len(order), enabled=progress, description="contigs")
    saver = _ContigSaver(inputs, keys, work, run_id, bar)
    saver.empty = empty
    quiet_htslib()  # a damaged file is named by varcall, in one line
    with bar:
        try:
            _save_stream(saver, engine.call_whole(inputs, params), pending, params.engine, t0)
        except VarcallError as e:
            if isinstance(e, RegionError) and not isinstance(e, DamagedInputError):
                # e.g. a read past the contig end: name the file when the inputs are bad
                _raise_if_damaged(inputs, _failed_unit(inputs, order, saver), work, e)
            raise
        except Exception as e:  # e.g. OSError from a damaged BAM: one line, naming the contig
            unit = _failed_unit(inputs, order, saver)
            _raise_if_damaged(inputs, unit, work, e)
            raise RegionError(
                f"contig {unit.contig}: {type(e).__name__}: {e}; fix the cause (a run "
                "without --single-process names the damaged file and region) and run again"
            ) from e
        for name in pending:
            saver.save_empty(name, time.time())
    return [saver.sidecars[name] for name in order]
