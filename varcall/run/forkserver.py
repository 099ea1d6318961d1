"""How local Dask worker processes start: multiprocessing's fork server, warmed with Dask's
packages and the engine's modules before the workers are forked, and the environment Dask's
nanny gives every worker (without ``MALLOC_TRIM_THRESHOLD_``, see
:func:`varcall.run.clusters._quiet_local_servers`).

Also the one place that decides whether workers get no ``MALLOC_TRIM_THRESHOLD_``
(:func:`drop_trim_threshold`), for local workers and batch-system jobs alike, and whether
the user set a Dask setting explicitly (:func:`user_dask_setting`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from varcall.core.allocator import worker_environ as allocator_environ

__all__ = [
    "TRIM_THRESHOLD_SETTING",
    "user_dask_setting",
    "drop_trim_threshold",
    "fork_server_usable",
    "start_fork_server",
    "fast_worker_start",
    "quiet_task_failures",
]

logger = logging.getLogger(__name__)

#: What Dask's fork server imports before it forks a worker (``distributed.utils.
#: get_mp_context``: distributed, then its required and optional packages).
_DASK_FORK_PRELOAD = (
    "distributed", "dask", "msgpack", "cloudpickle", "tornado", "toolz", "numpy", "pandas", "lz4",
)  # fmt: skip
_MP_METHOD = "distributed.worker.multiprocessing-method"
TRIM_THRESHOLD_SETTING = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


def drop_trim_threshold() -> bool:
    """Whether workers get no ``MALLOC_TRIM_THRESHOLD_`` (see
    :func:`varcall.run.clusters._quiet_local_servers`): unless the user set it, in the Dask
    config or the environment."""
    return (
        not user_dask_setting(TRIM_THRESHOLD_SETTING) and "MALLOC_TRIM_THRESHOLD_" not in os.environ
    )


def fork_server_usable(processes: bool) -> bool:
    """Whether local worker processes start from a fork server: processes, Dask's default
    ``spawn`` method not changed by the user, and a platform with a fork server."""
    import multiprocessing

    import dask

    return (
        processes
        and dask.config.get(_MP_METHOD, "spawn") == "spawn"
        and "forkserver" in multiprocessing.get_all_start_methods()
    )


def _worker_environ() -> dict[str, str]:
    """The variables Dask's nanny puts into the environment before it starts a worker
    process (``distributed.nanny.pre-spawn-environ``: the user's Dask config and
    environment first, then distributed's defaults; ``MALLOC_TRIM_THRESHOLD_`` dropped as
    :func:`drop_trim_threshold` says, and then :data:`varcall.core.allocator.ENVIRON`
    unless the environment holds ``MALLOC_*`` settings). Read from distributed's default
    config file, without importing distributed (0.4 s)."""
    import importlib.util

    import dask
    import yaml

    spec = importlib.util.find_spec("distributed")
    if spec is None or spec.origin is None:
        return {}
    with open(Path(spec.origin).parent / "distributed.yaml") as fh:
        dask.config.update_defaults(yaml.safe_load(fh))  # as distributed.config does
    cfg = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    if drop_trim_threshold():
        cfg.pop("MALLOC_TRIM_THRESHOLD_", None)
        cfg.update(allocator_environ())  # large arrays reused, not mapped anew
    return {k: os.environ.get(k, str(v)) for k, v in cfg.items() if v is not None}


def start_fork_server(preload: Sequence[str] = ()) -> bool:
    """Start multiprocessing's fork server for a local process cluster now, before this
    process imports distributed: it imports Dask's packages, ``preload`` and then
    :mod:`varcall.run._fork_warm` (the ``warm()`` hook of the engine modules in ``preload``)
    on another core while the client plans the run, so the workers forked from it start
    with everything loaded (measured on 2 cores: the first region starts ~0.6 s earlier
    and runs ~0.4 s faster). Its environment gets the variables Dask's nanny would set
    first (:func:`_worker_environ`). Returns whether a fork server is running; False where
    :func:`fork_server_usable` says no (nothing started)."""
    import importlib.util
    import multiprocessing
    from multiprocessing import forkserver

    if not fork_server_usable(True):
        return False
    names = [m for m in _DASK_FORK_PRELOAD if importlib.util.find_spec(m) is not None]
    names += [m for m in preload if m not in names]
    names.append("varcall.run._fork_warm")
    os.environ.update(_worker_environ())  # as the nanny does before it starts a worker
    multiprocessing.get_context("forkserver").set_forkserver_preload(names)
    with _sigint_blocked():  # the server and its workers never see Ctrl-C
        forkserver.ensure_running()
    return True


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread while the block runs, so that a process started in it
    inherits the blocked signal: Ctrl-C in a terminal goes to the whole foreground process
    group, and the fork server (busy importing for seconds) would die of it with a
    traceback. :mod:`varcall.run._fork_warm` then ignores SIGINT in the server and unblocks
    it; its forked workers inherit that. A Ctrl-C that arrives here meanwhile is delivered
    to this process when the block ends."""
    import signal

    if not hasattr(signal, "pthread_sigmask"):  # Windows: no fork server anyway
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def fast_worker_start(processes: bool, preload: Sequence[str] = ()) -> Iterator[None]:
    """Start LocalCluster worker processes from a fork server instead of a fresh
    interpreter each (Dask's default ``spawn``): about half the start-up time and a
    near-instant shutdown. The fork server (:func:`start_fork_server`, unless already
    running) imports Dask's packages and ``preload`` (e.g. the engine's module) once;
    every worker forked from it starts with them imported and warm. Left alone for thread
    workers, when the user configured another method, or where there is no fork server
    (Windows). Workers restarted later by their nanny come from the same fork server."""
    import dask

    if not fork_server_usable(processes):
        yield
        return
    start_fork_server(preload)  # no-op preload change when it already runs
    with dask.config.set({_MP_METHOD: "forkserver"}):
        yield


class _DropTaskFailureDumps(logging.Filter):
    """Drops Dask's ``Compute Failed`` record (task key, function, every argument, the
    traceback) for varcall's own tasks (keys ``varcall-...``): varcall reports a failed
    region itself, in one line, and its ``audit.jsonl`` keeps the error and traceback.
    The arguments hold every input path and sample name, which do not belong on a
    terminal. Other tasks' failures and every other Dask record pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ""
        if not msg.startswith("Compute Failed"):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        return not (args and str(args[0]).startswith("varcall-"))


def quiet_task_failures() -> None:
    """Install :class:`_DropTaskFailureDumps` on Dask's worker logger in this process
    (idempotent): the driver, for thread workers, and the fork server, whose forked
    worker processes inherit it."""
    dask_worker_logger = logging.getLogger("distributed.worker")
    if not any(isinstance(f, _DropTaskFailureDumps) for f in dask_worker_logger.filters):
        dask_worker_logger.addFilter(_DropTaskFailureDumps())


def user_dask_setting(key: str) -> bool:
    """Whether ``key`` is set by the user (Dask config files or ``DASK_*`` variables)
    rather than Dask's built-in defaults."""
    import dask

    try:
        user = dask.config.collect()
    except Exception:  # unreadable config: behave as if unset
        return False
    node: Any = user
    for part in key.split("."):
        if not isinstance(node, dict):
            return False
        node = node.get(part, node.get(part.replace("-", "_")))
        if node is None:
            return False
    return True
