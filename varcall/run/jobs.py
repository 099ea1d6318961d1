"""Keeping a batch-system (dask-jobqueue) cluster at strength, and giving up on one cleanly.

dask-jobqueue submits one batch job per worker, but it does not replace a job that goes
away (``scancel``, node failure, wall time reached): the run would finish on fewer and
fewer workers, or stall with none. :class:`JobKeeper` runs on the cluster's event loop and
resubmits, under a new name, every job whose worker was lost (or, on SLURM, whose job
left the queue before its worker connected), up to a bound so that a job that can never
start does not loop forever.

:func:`wait_for_first_worker` implements ``--cluster-timeout``: when no worker has
connected within the time, it raises a one-line :class:`~varcall.core.errors.VarcallError`
naming the jobs' state, and the caller may fall back to a local cluster
(``--fallback-local``).

Every replacement and fallback is recorded in a plain dict (``record``) that ends up in the
run's manifest under ``cluster``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time
from typing import Any

from varcall.core.errors import VarcallError

__all__ = ["JobKeeper", "wait_for_first_worker", "job_states"]

logger = logging.getLogger(__name__)


def _job_ids(cluster: Any) -> dict[str, str]:
    """Worker name -> batch job id of every job the cluster has submitted."""
    out = {}
    for name, job in list(getattr(cluster, "workers", {}).items()):
        job_id = getattr(job, "job_id", None)
        if job_id:
            out[str(name)] = str(job_id)
    return out


def _connected_names(cluster: Any) -> set[str]:
    """Names of the workers connected to the cluster's scheduler."""
    info = getattr(cluster, "scheduler_info", None) or {}
    return {str(w.get("name")) for w in info.get("workers", {}).values()}


def job_states(kind: str, job_ids: list[str]) -> dict[str, str]:
    """Job id -> "STATE (reason)" for the given jobs still known to the batch system
    (SLURM only, through ``squeue``; empty for other kinds or when squeue fails)."""
    if kind != "slurm" or not job_ids or shutil.which("squeue") is None:
        return {}
    try:
        r = subprocess.run(
            ["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i|%T|%r"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    out = {}
    for line in r.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            out[parts[0]] = f"{parts[1]} ({parts[2]})"
    return out


async def _squeue_alive(job_ids: list[str]) -> set[str] | None:
    """Ids among ``job_ids`` still in SLURM's queue (pending or running); None when
    squeue cannot tell (then nothing is treated as gone)."""
    if not job_ids or shutil.which("squeue") is None:
        return None
    try:
        proc = await asyncio.create_subprocess_exec(
            "squeue",
            "-h",
            "-o",
            "%i|%T",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=20)
    except (OSError, asyncio.TimeoutError):
        return None
    if proc.returncode != 0:
        return None
    alive = set()
    for line in out.decode(errors="replace").splitlines():
        job, _, state = line.strip().partition("|")
        if state in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED"):
            alive.add(job)
    return alive & set(job_ids)


class JobKeeper:
    """Replace lost worker jobs of a dask-jobqueue cluster.

    Every ``interval`` seconds, on the cluster's event loop: a job is *lost* when its worker
    was connected and has been gone for ``grace`` seconds, or (SLURM) when its job id left
    the queue before its worker ever connected. A lost job is closed (``scancel``, a no-op
    when it is already gone), dropped from ``cluster.workers`` and submitted again under
    a new name with the same spec (so fixed and adaptive scaling both keep their targets).
    At most ``max_replacements`` jobs are replaced in a run (default: 3 per job of the
    cluster's target, plus 2); then an error is logged and the run goes on with the workers
    it has (a job that can never start does not loop forever).

    ``record`` (a dict) receives ``replaced_jobs``: a list of {name, job_id, reason, time,
    replacement (the new worker name), replacement_job_id}.
    """

    def __init__(
        self,
        cluster: Any,
        kind: str,
        record: dict[str, Any] | None = None,
        *,
        interval: float = 1.0,
        grace: float = 2.0,
        max_replacements: int | None = None,
    ) -> None:
        self.cluster = cluster
        self.kind = kind
        self.record = record if record is not None else {}
        self.record.setdefault("replaced_jobs", [])
        self.interval = interval
        self.grace = grace
        n = len(getattr(cluster, "worker_spec", {})) or 1
        self.max_replacements = max_replacements if max_replacements is not None else 3 * n + 2
        self._seen: set[str] = set()  # names whose worker has connected at least once
        self._gone_since: dict[str, float] = {}
        self._job_of: dict[str, str] = {}
        self._names: set[str] = set()  # every worker name the cluster has used
        self._last_squeue = 0.0
        self._pc: Any = None
        self._busy = False

    @property
    def replaced(self) -> list[dict[str, Any]]:
        """The replacements so far (``record["replaced_jobs"]``)."""
        return self.record["replaced_jobs"]

    def start(self) -> None:
        """Check every ``interval`` seconds, on the cluster's event loop."""
        from tornado.ioloop import PeriodicCallback

        self._pc = PeriodicCallback(self._tick, self.interval * 1000)
        self.cluster.periodic_callbacks["varcall-job-keeper"] = self._pc
        self.cluster.loop.add_callback(self._pc.start)

    def stop(self) -> None:
        """Stop checking (a round in progress finishes)."""
        if self._pc is not None:
            self.cluster.loop.add_callback(self._pc.stop)

    async def _tick(self) -> None:
        """One round unless the previous one still runs; never raises."""
        if self._busy:
            return
        self._busy = True
        try:
            await self._check()
        except Exception:  # never let the keeper kill the event loop
            logger.exception("job keeper check failed")
        finally:
            self._busy = False

    async def _check(self) -> None:
        """One round: find the lost jobs and submit a replacement for each (within the
        bound), then record the new jobs' ids."""
        cluster = self.cluster
        if str(getattr(cluster, "status", "")).endswith(("closing", "closed")):
            return
        now = time.monotonic()
        wanted = set(map(str, cluster.worker_spec))
        self._names |= wanted
        jobs = {n: j for n, j in _job_ids(cluster).items() if n in wanted}
        self._job_of.update(jobs)
        lost = self._workers_gone(jobs, now)
        lost.update(await self._left_queue(jobs, now))
        # wanted jobs that dask dropped itself (after distributed's lost-worker-timeout)
        dropped = wanted - set(map(str, cluster.workers))
        for name in dropped & self._seen:
            lost[name] = "worker lost"
        if not lost and not dropped:
            return
        if lost and len(self.replaced) >= self.max_replacements:
            logger.error(
                "%d worker jobs lost but %d were replaced already; not replacing more",
                len(lost),
                len(self.replaced),
            )
            return
        for name, reason in lost.items():
            await self._replace(name, reason)
        await cluster._correct_state()
        self._record_replacement_ids()

    def _workers_gone(self, jobs: dict[str, str], now: float) -> dict[str, str]:
        """Name -> reason for the ``jobs`` (name -> job id) whose worker was connected and
        has been gone for ``grace`` seconds at ``now`` (monotonic seconds); notes which
        workers are connected."""
        connected = _connected_names(self.cluster)
        self._seen |= connected & set(jobs)
        lost: dict[str, str] = {}
        for name in jobs:
            if name in connected:
                self._gone_since.pop(name, None)
            elif name in self._seen:
                since = self._gone_since.setdefault(name, now)
                if now - since >= self.grace:
                    lost[name] = "worker lost"
        return lost

    async def _left_queue(self, jobs: dict[str, str], now: float) -> dict[str, str]:
        """Name -> reason for the SLURM ``jobs`` whose worker never connected and whose job
        left the queue (asks squeue at most every ``3 * interval`` seconds)."""
        never = [n for n in jobs if n not in self._seen]
        lost: dict[str, str] = {}
        if self.kind == "slurm" and never and now - self._last_squeue >= 3 * self.interval:
            self._last_squeue = now
            alive = await _squeue_alive([jobs[n] for n in never])
            if alive is not None:
                for name in never:
                    if jobs[name] not in alive:
                        lost[name] = "job left the queue before its worker started"
        return lost

    async def _replace(self, name: str, reason: str) -> None:
        """Close the lost job ``name`` and put its spec back under a fresh name (the
        cluster submits it at its next correction); records the replacement."""
        cluster = self.cluster
        job_id = self._job_of.get(name, "?")
        logger.warning(
            "%s worker job %s (%s): %s; submitting a replacement",
            self.kind,
            job_id,
            name,
            reason,
        )
        entry = {"name": name, "job_id": job_id, "reason": reason, "time": time.time()}
        self.replaced.append(entry)
        self._seen.discard(name)
        self._gone_since.pop(name, None)
        job = cluster.workers.pop(name, None)
        if job is not None:
            try:
                await job.close()
            except Exception as e:  # the job is gone already
                logger.debug("closing job %s: %s", job_id, e)
        # the replacement gets a new name, so that distributed's own delayed cleanup of
        # the lost worker (lost-worker-timeout) cannot close the new job
        spec = cluster.worker_spec.pop(name, None)
        if spec is not None:
            new = self._fresh_name()
            cluster.worker_spec[new] = spec
            entry["replacement"] = str(new)

    def _record_replacement_ids(self) -> None:
        """Add the batch job id of every replacement job submitted since."""
        for entry in self.replaced:
            if "replacement" in entry and "replacement_job_id" not in entry:
                job = self.cluster.workers.get(entry["replacement"])
                if getattr(job, "job_id", None):
                    entry["replacement_job_id"] = str(job.job_id)
                    logger.info(
                        "%s worker job %s replaces job %s",
                        self.kind,
                        job.job_id,
                        entry["job_id"],
                    )

    def _fresh_name(self) -> str:
        """A worker name the cluster has never used (advances the cluster's counter)."""
        cluster = self.cluster
        i = getattr(cluster, "_i", 0)
        while True:
            i += 1
            name = cluster._new_worker_name(i)
            if str(name) not in self._names and name not in cluster.worker_spec:
                cluster._i = i
                self._names.add(str(name))
                return name


def wait_for_first_worker(client: Any, cluster: Any, kind: str, timeout: float) -> float:
    """Block until at least one worker is connected; return the seconds waited. Raises
    :class:`VarcallError` after ``timeout`` seconds, naming the jobs' state."""
    t0 = time.monotonic()
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (TimeoutError, asyncio.TimeoutError) as e:
        jobs = _job_ids(cluster)
        states = job_states(kind, list(jobs.values()))
        detail = (
            ", ".join(f"job {j}: {states.get(j, 'not in the queue')}" for j in jobs.values())
            or "no job was submitted"
        )
        raise VarcallError(
            f"--cluster {kind}: no worker started within --cluster-timeout {timeout:g} s "
            f"({detail}); check the queue, account and resources with squeue/sinfo, raise "
            "--cluster-timeout, or add --fallback-local to run on this machine instead"
        ) from e
    return time.monotonic() - t0
