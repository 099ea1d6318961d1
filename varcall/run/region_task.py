"""One region task: call a region with an engine and checkpoint it
(:func:`run_region_task`), or a pack of regions one after the other
(:func:`run_pack_task`, neighbours called together where the engine can). Pure functions
of (region, inputs, parameters, engine) that write the region's
:class:`~varcall.core.callset.CallSet` and sidecar
(:func:`~varcall.run.checkpoints.write_checkpoint`) and return only the sidecar; every
attempt is audited (:func:`~varcall.run.checkpoints.audit_event`). Scheduling them (Dask
or in this process) is :mod:`varcall.run.tasks`.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import traceback
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from varcall import __version__
from varcall.core.callset import CallSet
from varcall.core.errors import DamagedInputError, InputError, RegionError, VarcallError
from varcall.core.params import CallInputs, CallParams
from varcall.core.regions import Region
from varcall.engines import Engine, get_engine
from varcall.run.checkpoints import audit_event, code_digest, read_checkpoint, write_checkpoint

__all__ = [
    "call_together",
    "diagnose_failure",
    "peak_rss_mb",
    "quiet_htslib",
    "run_pack_task",
    "run_region_task",
]

logger = logging.getLogger(__name__)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (0.0 where unknown)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def _worker_name() -> str:
    try:
        from distributed import get_worker

        w = get_worker()
        return f"{w.name}@{w.address}"
    except (ImportError, ValueError):
        return f"local@{socket.gethostname()}:{os.getpid()}"


def diagnose_failure(inputs: CallInputs, region: Region) -> str | None:
    """The input file that makes ``region`` fail, as a one-line message (see
    :func:`varcall.plan.diagnose.diagnose_region`), or None; never raises. htslib's own
    ``[E::...]`` lines while it rereads the damage are kept off the terminal."""
    from varcall.plan.checks import htslib_quiet
    from varcall.plan.diagnose import diagnose_region

    try:
        with htslib_quiet():
            return diagnose_region(inputs, region)
    except Exception:  # the diagnosis must never hide the original error
        logger.debug("diagnosis of %s failed", region, exc_info=True)
        return None


def quiet_htslib() -> None:
    """Turn htslib's own stderr lines (``[E::bgzf_read] ...``) off in this process unless
    varcall logs at INFO (``-v``): a failing region is reported by varcall, in one line
    that names the damaged file (:func:`diagnose_failure`)."""
    if logger.isEnabledFor(logging.INFO):
        return
    try:
        import pysam

        pysam.set_verbosity(0)
    except Exception:  # pragma: no cover - cosmetic only
        logger.debug("cannot set htslib's verbosity", exc_info=True)


def run_region_task(
    region: Region,
    inputs: CallInputs,
    params: CallParams,
    work_dir: str,
    key: str,
    run_id: str,
    engine: Engine | None = None,
    code: tuple[str, str] | None = None,
    copy: int = 0,
    precalled: tuple[CallSet, float] | None = None,
) -> dict[str, Any]:
    """Call one region and checkpoint it; returns the sidecar (see :func:`write_checkpoint`)
    with ``region``, ``seconds``, ``worker``, ``run_id`` and ``attempt``.

    ``precalled``: the region's calls and seconds when its pack called its regions
    together (:func:`run_pack_task`); they are checked and checkpointed as a call's.

    ``copy``: 1 in the second copy of a straggling task (:mod:`varcall.run.speculate`, in
    the audit). When another copy checkpointed the region first, the result is discarded
    (identical by construction) and that checkpoint's sidecar returned.

    ``code``: the client's (varcall version, :func:`code_digest`); a worker running
    another version raises a :class:`RegionError` (mixed versions would break identity);
    the worker's own digest goes into the sidecar (``code``) and the audit.

    A pure function of (region, inputs, params, engine): the checkpoint name ``key`` is
    derived from them by the client. Exceptions propagate (Dask retries them); a
    :class:`VarcallError` keeps its message, any other exception is wrapped in a
    :class:`RegionError` naming the region.
    """
    work = Path(work_dir)
    worker = _worker_name()
    attempt = uuid.uuid4().hex
    base = {
        "key": key,
        "run_id": run_id,
        "attempt": attempt,
        "region": str(region),
        "worker": worker,
        "bams": list(inputs.bams),
        **({"copy": copy} if copy else {}),
    }
    t0 = time.time()
    quiet_htslib()
    audit_event(work, key, {**base, "event": "start", "time": t0})
    try:
        _check_code(region, worker, code)
        if precalled is None:
            callset = _call_checked(region, inputs, params, engine)
            seconds = time.time() - t0
        else:
            callset, seconds = _checked(region, precalled[0]), precalled[1]
        first = _written_by_other_copy(work, key, run_id, attempt)
        if first is not None:
            return first
        extra = {"region": [region.contig, region.start, region.end],
                 "seconds": round(seconds, 6), "worker": worker, "run_id": run_id,
                 "attempt": attempt, "code": code_digest(), "peak_rss_mb": peak_rss_mb()}  # fmt: skip
        sidecar = write_checkpoint(work, key, callset, extra)
    except BaseException as e:
        error = _audit_failure(e, region, inputs, work, key, base)
        if error is None:
            raise
        raise error from e
    done = {"event": "done", "time": time.time(), "n_variants": sidecar["n_variants"]}
    audit_event(work, key, {**base, **done, "seconds": sidecar["seconds"]})
    return sidecar


def _written_by_other_copy(work: Path, key: str, run_id: str, attempt: str) -> dict | None:
    """The sidecar of region ``key`` when another copy of this run's task checkpointed it
    first (:mod:`varcall.run.speculate`): this attempt is then audited as ``cancelled``
    and writes nothing; else None."""
    first = read_checkpoint(work, key)
    if first is None or first.get("run_id") != run_id:
        return None
    # no paths or hosts here: this line may come after the run minimised OUT/work
    event = {"key": key, "run_id": run_id, "attempt": attempt, "event": "cancelled"}
    audit_event(work, key, {**event, "time": time.time()})
    return first


def _check_code(region: Region, worker: str, code: tuple[str, str] | None) -> None:
    """Raise a :class:`RegionError` when this worker runs another varcall version than the
    client's ``code`` (version, digest); warn when only the source digest differs."""
    if code is not None and code[0] != __version__:
        raise RegionError(
            f"region {region}: worker {worker} runs varcall {__version__}, the client "
            f"{code[0]}; install the same varcall on every worker"
        )
    if code is not None and code[1] != code_digest():
        logger.warning(
            "worker %s: varcall source differs from the client's (%s vs %s)",
            worker,
            code_digest()[:12],
            code[1][:12],
        )


def _call_checked(
    region: Region, inputs: CallInputs, params: CallParams, engine: Engine | None
) -> CallSet:
    """The engine's calls of ``region``, checked by :func:`_checked`."""
    eng = engine if engine is not None else get_engine(params.engine)
    return _checked(region, eng.call_region(inputs, region, params))


def _checked(region: Region, callset: CallSet) -> CallSet:
    """``callset``; a :class:`RegionError` when it holds calls of another contig than
    ``region``'s or outside ``[region.start, region.end)`` (0-based)."""
    if callset.contig != region.contig:
        raise RegionError(f"region {region}: engine returned calls of {callset.contig}")
    if callset.n_variants and (
        int(callset.position[0]) < region.start or int(callset.position[-1]) >= region.end
    ):
        raise RegionError(
            f"region {region}: engine returned calls outside the region; "
            "this is an engine bug, report it"
        )
    return callset


def _audit_failure(
    e: BaseException,
    region: Region,
    inputs: CallInputs,
    work: Path,
    key: str,
    base: dict[str, Any],
) -> RegionError | None:
    """Audit the failed attempt (called while ``e`` is being handled); return the error to
    raise from ``e`` instead, or None to raise ``e`` itself (not an :class:`Exception`, or
    a :class:`VarcallError` whose message already says what to do)."""
    # name the damaged input file, if any (reads the region once more, only on failure)
    culprit = None
    if isinstance(e, Exception) and not isinstance(e, InputError):
        culprit = diagnose_failure(inputs, region)
    audit_event(
        work,
        key,
        {
            **base,
            "event": "error",
            "time": time.time(),
            "error": f"{type(e).__name__}: {e}" + (f" [{culprit}]" if culprit else ""),
            "trace": traceback.format_exc(limit=5),
        },
    )
    if not isinstance(e, Exception):
        return None
    if culprit is not None:  # a damaged input file: bad input (exit 2), named with its region
        return DamagedInputError(f"region {region}: {culprit}")
    if isinstance(e, VarcallError):
        return None
    return RegionError(f"region {region}: {type(e).__name__}: {e}")


def call_together(
    regions: Sequence[Region],
    inputs: CallInputs,
    params: CallParams,
    engine: Engine | None,
    code: tuple[str, str] | None,
) -> list[tuple[CallSet, float]] | None:
    """The calls of ``regions`` made in one engine call (``call_regions``), each with its
    share of the seconds (by length); None when there are fewer than two regions, the
    engine has no ``call_regions``, or that call fails: each region is then called on its
    own, so a failure stays the failing region's (its error, audit and retry)."""
    if len(regions) < 2:
        return None
    eng = engine if engine is not None else get_engine(params.engine)
    call_regions = getattr(eng, "call_regions", None)
    if call_regions is None:
        return None
    try:
        _check_code(regions[0], _worker_name(), code)
        quiet_htslib()
        t0 = time.time()
        callsets = call_regions(inputs, list(regions), params)
        seconds = time.time() - t0
    except Exception as e:  # noqa: BLE001 - each region is called (and fails) on its own
        logger.debug("%d regions called together failed (%s); calling them one by one",
                     len(regions), type(e).__name__)  # fmt: skip
        return None
    total = sum(max(1, r.end - r.start) for r in regions)
    return [(cs, seconds * max(1, r.end - r.start) / total) for r, cs in zip(regions, callsets)]


def run_pack_task(
    regions: Sequence[Region],
    keys: Sequence[str],
    inputs: CallInputs,
    params: CallParams,
    work_dir: str,
    run_id: str,
    engine: Engine | None = None,
    code: tuple[str, str] | None = None,
    copy: int = 0,
) -> list[dict[str, Any]]:
    """Call several regions (:func:`run_region_task` each: its own checkpoint
    ``keys[i]``, its own audit); returns their sidecars in order. Where the engine has a
    ``call_regions`` (the native engine), the regions still to call are called together
    first, so that neighbours share their reads (:func:`call_together`).

    A region already checkpointed by an earlier attempt of this run (``run_id``: a Dask
    retry of the task) is not called again. When regions fail the others are still
    called, then the first failure is raised (Dask retries the task: only the failed
    regions run again). The worker's open files are reused from region to region
    (:mod:`varcall.io.handles`). copy: see :func:`run_region_task`."""
    done: dict[int, dict[str, Any]] = {}
    for i, key in enumerate(keys):
        side = read_checkpoint(work_dir, key)
        if side is not None and side.get("run_id") == run_id:
            done[i] = side
    todo = [i for i in range(len(regions)) if i not in done]
    together = call_together([regions[i] for i in todo], inputs, params, engine, code)
    pre = dict(zip(todo, together)) if together is not None else {}
    sidecars: list[dict[str, Any]] = []
    first_error: Exception | None = None
    for i, (region, key) in enumerate(zip(regions, keys)):
        if i in done:
            sidecars.append(done[i])
            continue
        try:
            sidecars.append(
                run_region_task(
                    region, inputs, params, work_dir, key, run_id, engine, code, copy, pre.get(i)
                )
            )
        except Exception as e:  # audited by run_region_task; the rest of the pack goes on
            first_error = first_error or e
    if first_error is not None:
        raise first_error
    return sidecars
