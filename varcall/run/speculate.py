"""Straggler re-execution: a Dask task running far longer than its finished peers is
started a second time on another worker, and the first result wins.

A task (a pack of regions, :func:`varcall.run.tasks.scatter_regions`) that has run more
than ``max(factor x median, min_seconds)`` seconds, the median taken over the tasks
finished so far, gets one copy (:class:`Speculation`). Both copies compute the same
checkpoints (a task is a pure function of its arguments; a region already checkpointed
by this run is skipped, and a copy that finishes a region another copy already wrote
discards its result, :func:`varcall.run.tasks.run_region_task`), so which copy wins never
changes the outputs. The driver takes the first copy to finish and cancels the other; a
unit fails only when every copy failed. Both copies' attempts are in ``audit.jsonl``
(outcome ``won`` / ``cancelled``, the copy with ``"copy": 1``).

A running Python task cannot be stopped, so a straggler keeps its worker's thread busy
after its copy won, and Dask may have queued further tasks on that worker behind it
(a worker holds a few more tasks than it has threads): a task queued on a worker whose
threads all run stragglers gets a copy elsewhere too.

Start and end times come from the workers: each task logs Dask events on a topic of its
own run (:func:`announce`) that :class:`TaskRace` receives; times are taken on the
client's clock when an event arrives, so clocks of other hosts never matter.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from varcall.core.errors import InputError

__all__ = [
    "DEFAULT_FACTOR",
    "DEFAULT_MIN_SECONDS",
    "Speculation",
    "TaskRace",
    "announce",
    "straggling",
]

logger = logging.getLogger(__name__)

#: A task is a straggler after this many times the median of the finished tasks ...
DEFAULT_FACTOR = 5.0
#: ... and never before this many seconds.
DEFAULT_MIN_SECONDS = 60.0
#: Seconds between two looks for stragglers while no task finishes.
_TICK = 0.05
#: Seconds between two questions to the scheduler for tasks queued behind stragglers.
_QUEUE_CHECK = 1.0


@dataclasses.dataclass(frozen=True)
class Speculation:
    """When a running task gets a second copy: ``enabled``; after ``factor`` times the
    median run time of the tasks finished so far, and at least ``min_seconds`` (s)."""

    enabled: bool = True
    factor: float = DEFAULT_FACTOR
    min_seconds: float = DEFAULT_MIN_SECONDS

    def __post_init__(self) -> None:
        if not self.factor >= 1.0:
            raise InputError(
                f"--straggler-factor {self.factor}: out of range; give a value of at least 1"
            )
        if not self.min_seconds >= 0.0:
            raise InputError(
                f"--straggler-min-seconds {self.min_seconds}: out of range; give a value of "
                "at least 0"
            )

    def threshold(self, finished: Sequence[float]) -> float | None:
        """Seconds after which a running task is a straggler, given the run times (s) of
        the finished tasks; None while none finished or when speculation is off."""
        if not self.enabled or not finished:
            return None
        return max(self.factor * statistics.median(finished), self.min_seconds)

    def describe(self) -> dict[str, Any]:
        """The policy as the manifest records it."""
        return dataclasses.asdict(self)


def straggling(running: dict[str, float], threshold: float | None, now: float) -> list[str]:
    """The keys of ``running`` (key -> start time, s) that have run longer than
    ``threshold`` seconds at time ``now``, oldest first; none without a threshold."""
    if threshold is None:
        return []
    late = [(t0, key) for key, t0 in running.items() if now - t0 > threshold]
    return [key for _, key in sorted(late)]


def announce(topic: str | None, what: str) -> None:
    """On a Dask worker: log ``what`` (``start`` or ``end``) of the current task on
    ``topic``, with its key and the worker's address, for the client's
    :class:`TaskRace`. Never raises."""
    if topic is None:
        return
    try:
        from distributed import get_worker

        worker = get_worker()
        msg = {"key": worker.get_current_task(), "worker": worker.address, "what": what}
        worker.log_event(topic, msg)
    except Exception:  # outside a worker, or an old scheduler: no speculation, same calls
        logger.debug("cannot announce the task's %s", what, exc_info=True)


class TaskRace:
    """Wait for Dask tasks, one unit each, and race a copy of every straggler.

    Use as a context manager (it subscribes to the tasks' events on ``topic`` on enter),
    :meth:`track` the submitted futures, then iterate :meth:`settled`. ``policy`` None or
    disabled: no copies, the tasks are only waited for."""

    def __init__(self, client: Any, policy: Speculation | None) -> None:
        self.client = client
        self.policy = policy if policy is not None and policy.enabled else None
        self.topic = f"varcall-tasks-{uuid.uuid4().hex[:12]}" if self.policy else None
        self.copied: set[int] = set()  # units that got a second copy
        self._lock = threading.Lock()
        self._t0: dict[str, float] = {}  # future key -> last start (client clock)
        self._running: dict[str, str] = {}  # started, not ended: future key -> worker
        self._unit: dict[str, int] = {}  # future key -> unit index
        self._originals: set[str] = set()  # the first copy's future keys
        self._copies: dict[int, list[Any]] = {}
        self._ended: set[str] = set()  # futures seen finished or failed
        self._failed: dict[int, Any] = {}  # first failed copy of a unit still racing
        self._settled: set[int] = set()
        self._finished: list[float] = []
        self._threshold: float | None = None
        self._queue_checked = 0.0
        self._copy_of: Callable[[int, list[str] | None], Any] | None = None
        self._completed: Any = None

    def __enter__(self) -> TaskRace:
        if self.topic is not None:
            self.client.subscribe_topic(self.topic, self._on_event)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.topic is not None:
            try:
                self.client.unsubscribe_topic(self.topic)
            except Exception:  # the client may be closing
                logger.debug("cannot unsubscribe from %s", self.topic, exc_info=True)

    def _on_event(self, event: tuple[float, dict[str, Any]]) -> None:
        """A task started or ended on a worker (called on the client's event loop)."""
        msg = event[1]
        key = str(msg.get("key"))
        with self._lock:
            if msg.get("what") == "end":
                self._running.pop(key, None)
            else:
                self._t0[key] = time.time()
                self._running[key] = str(msg.get("worker"))

    def track(
        self, futures: Sequence[Any], copy_of: Callable[[int, list[str] | None], Any]
    ) -> None:
        """The tasks to wait for (unit ``i`` is ``futures[i]``); ``copy_of(i, workers)``
        submits a copy of unit ``i`` preferring ``workers`` (addresses; None: any)."""
        from distributed import as_completed

        for i, fut in enumerate(futures):
            self._unit[fut.key] = i
            self._copies[i] = [fut]
            self._originals.add(fut.key)
        self._copy_of = copy_of
        self._completed = as_completed(futures)

    def settled(self) -> Iterator[tuple[int, Any]]:
        """(unit index, future) as each unit is decided: its first copy that finished, or,
        when every copy failed, the first failure. A result lost with its worker is waited
        for again (the scheduler recomputes it)."""
        completed, looked = self._completed, 0.0
        while not completed.is_empty():
            if self.policy is not None:
                if time.monotonic() - looked >= _TICK:  # also while results flow in
                    self._look_for_stragglers()
                    looked = time.monotonic()
                if not completed.has_ready():
                    time.sleep(_TICK)
                    continue
            try:
                fut = next(completed)
            except StopIteration:
                return
            decided = self._decide(fut)
            if decided is not None:
                yield decided

    def cancel(self) -> None:
        """Cancel every copy of every unit (on an error in the client)."""
        self.client.cancel([f for copies in self._copies.values() for f in copies])

    def _decide(self, fut: Any) -> tuple[int, Any] | None:
        i = self._unit[fut.key]
        if i in self._settled:  # the cancelled loser of a race
            fut.release()
            return None
        if fut.status in ("lost", "pending"):
            # its result died with its worker (e.g. a cancelled batch job) after it
            # finished; the scheduler computes it again
            logger.warning("task %s: result lost with its worker; recomputing", fut.key)
            self._completed.add(fut)
            return None
        self._ended.add(fut.key)
        if fut.status == "finished":
            self._note_finished(fut.key)
        elif any(f.key not in self._ended for f in self._copies[i]):
            self._failed.setdefault(i, fut)  # another copy may still succeed
            return None
        else:
            fut = self._failed.pop(i, fut)  # report the first failure
        self._settled.add(i)
        for other in self._copies[i]:
            if other is fut:
                continue
            if other.key in self._ended:
                other.release()
            else:
                other.cancel()
        return i, fut

    def _note_finished(self, key: str) -> None:
        with self._lock:
            t0 = self._t0.get(key)
        if t0 is not None and self.policy is not None:
            self._finished.append(time.time() - t0)
            self._threshold = self.policy.threshold(self._finished)

    def _open(self, key: str) -> bool:
        """Whether ``key``'s unit may still get a copy."""
        i = self._unit.get(key)
        return i is not None and i not in self._settled and i not in self.copied

    def _look_for_stragglers(self) -> None:
        """Copy every task running longer than the threshold, and, now and then, every
        task queued on a worker whose running tasks are all stragglers."""
        if self._threshold is None:
            return
        now = time.time()
        with self._lock:
            running = {k: (self._t0[k], w) for k, w in self._running.items() if k in self._t0}
        late = straggling({k: t for k, (t, _) in running.items()}, self._threshold, now)
        for key in late:
            if key in self._originals and self._open(key):
                self._start_copy(key, running[key][1], "running")
        slow = {running[k][1] for k in late} - {w for k, (_, w) in running.items() if k not in late}
        if slow and now - self._queue_checked >= _QUEUE_CHECK:
            self._queue_checked = now
            self._copy_queued(slow)

    def _copy_queued(self, slow: set[str]) -> None:
        """Copy the tasks the scheduler queued on the ``slow`` workers (all their running
        tasks are stragglers) that have not started."""
        try:
            queued = self.client.processing(workers=sorted(slow))
        except Exception:  # pragma: no cover - an unanswering scheduler: try again later
            logger.debug("cannot ask the scheduler for queued tasks", exc_info=True)
            return
        with self._lock:
            started = set(self._t0)
        for worker, keys in queued.items():
            for key in keys:
                if key in self._originals and key not in started and self._open(key):
                    self._start_copy(str(key), worker, "queued behind a straggler")

    def _start_copy(self, key: str, slow_worker: str, why: str) -> None:
        i = self._unit[key]
        try:
            workers = [w for w in self.client.scheduler_info()["workers"] if w != slow_worker]
        except Exception:  # pragma: no cover - an unanswering scheduler: any worker
            workers = []
        assert self._copy_of is not None and self.policy is not None
        copy = self._copy_of(i, workers or None)
        self.copied.add(i)
        self._unit[copy.key] = i
        self._copies[i].append(copy)
        self._completed.add(copy)
        logger.warning(
            "task %s on %s %s (more than %.1f s: %g x the median of %d finished tasks, at "
            "least %g s); started a second copy%s",
            key, slow_worker, why, self._threshold, self.policy.factor, len(self._finished),
            self.policy.min_seconds, " on another worker" if workers else "",
        )  # fmt: skip
