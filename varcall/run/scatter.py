"""Run an engine region by region: as Dask tasks (local, remote or batch-system cluster) or
sequentially in this process, with on-disk checkpoints.

Every region is one task, :func:`run_region_task`, a pure function of (region, inputs,
parameters, engine). It writes the region's :class:`~varcall.core.callset.CallSet` to
``WORK/<key>.npz`` (atomically) and a small JSON sidecar ``WORK/<key>.json`` written after
it, and returns only the sidecar to the client (client memory stays small whatever the
number of calls). ``key`` is the SHA-256 of the region, the inputs' identity (paths, sizes,
modification times, samples, contigs), the parameters, the engine and its version, the
varcall version and a digest of varcall's source (:func:`checkpoint_key`): a checkpoint is
valid for exactly one computation, so ``--resume`` can skip a region whose sidecar and
file are present and consistent (:func:`read_checkpoint`).

Where tasks run: :func:`open_client` (an embedded LocalCluster bound to 127.0.0.1, an
existing scheduler, or dask-jobqueue batch jobs) from a :class:`ClusterSpec`;
:class:`ClusterStarter` starts it in the background while the client plans.

Each task attempt also appends JSON lines to ``WORK/<key>.audit.jsonl`` (start, then the
outcome), from which the run's ``audit.jsonl`` and attempt counts are assembled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from varcall import __version__
from varcall.core.callset import CallSet, save_callset
from varcall.core.errors import InputError, RegionError, VarcallError
from varcall.core.params import CallInputs, CallParams
from varcall.core.regions import Region
from varcall.engines import Engine, get_engine

__all__ = [
    "CLUSTER_KINDS",
    "ClusterSpec",
    "ClusterStarter",
    "inputs_identity",
    "engine_version",
    "checkpoint_key",
    "code_digest",
    "read_checkpoint",
    "write_checkpoint",
    "write_json_atomic",
    "peak_rss_mb",
    "audit_event",
    "run_region_task",
    "open_client",
    "scatter_regions",
    "run_sequential",
    "ProgressReporter",
]

logger = logging.getLogger(__name__)

#: Batch systems reachable through dask-jobqueue.
JOBQUEUE_KINDS = ("slurm", "pbs", "lsf", "sge")
CLUSTER_KINDS = ("local", "scheduler", *JOBQUEUE_KINDS)


# ----------------------------------------------------------------------------- cluster spec
@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """Where Dask tasks run.

    kind: ``local`` (embedded LocalCluster on 127.0.0.1), ``scheduler`` (an existing
        scheduler at ``scheduler_address``) or a batch system (``slurm``, ``pbs``, ``lsf``,
        ``sge``) through dask-jobqueue.
    workers: LocalCluster workers (default: the number of cores).
    threads_per_worker: threads per LocalCluster worker (default 1).
    processes: LocalCluster workers are processes (True) or threads in this process;
        None (auto): threads for a single worker, processes for several. Use
        :attr:`use_processes` for the resolved value.
    queue, account, cores, memory, walltime, job_extra_directives, interface,
    local_directory, log_directory: dask-jobqueue job settings (``memory`` like "16GB",
        ``walltime`` like "02:00:00"; ``cores`` per job).
    jobs: fixed number of batch jobs; adapt_max: adaptive scaling up to this many jobs.
    tls_ca, tls_cert, tls_key: TLS files for a remote scheduler (a Dask ``Security``).
    connect_timeout: seconds to wait for a remote scheduler.
    cluster_timeout: seconds to wait for the first batch-job worker (None: no limit);
        then stop with a clear message, or with ``fallback_local`` continue on a
        LocalCluster (recorded in the log and the manifest).
    """

    kind: str = "local"
    workers: int | None = None
    threads_per_worker: int = 1
    processes: bool | None = None
    scheduler_address: str | None = None
    queue: str | None = None
    account: str | None = None
    cores: int | None = None
    memory: str | None = None
    walltime: str | None = None
    jobs: int | None = None
    adapt_max: int | None = None
    job_extra_directives: tuple[str, ...] = ()
    interface: str | None = None
    local_directory: str | None = None
    log_directory: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    connect_timeout: float = 30.0
    cluster_timeout: float | None = None
    fallback_local: bool = False

    def __post_init__(self) -> None:
        if self.kind not in CLUSTER_KINDS:
            raise InputError(
                f"cluster kind {self.kind!r} is not supported; choose one of "
                f"{', '.join(CLUSTER_KINDS)}"
            )
        if self.kind == "scheduler" and not self.scheduler_address:
            raise InputError("--scheduler needs an address such as tcp://host:8786")
        for flag, tls_path in (
            ("--tls-ca", self.tls_ca),
            ("--tls-cert", self.tls_cert),
            ("--tls-key", self.tls_key),
        ):
            if tls_path and not Path(tls_path).is_file():
                raise InputError(f"{tls_path}: TLS file not found; check {flag}")
        if self.fallback_local and self.cluster_timeout is None:
            raise InputError(
                "--fallback-local needs --cluster-timeout SECONDS (how long to wait for "
                "the first batch worker before running locally)"
            )

    @property
    def use_processes(self) -> bool:
        """Whether LocalCluster workers are processes (``processes``, or auto: several
        workers are processes, a single one is a thread of this process)."""
        if self.processes is not None:
            return bool(self.processes)
        return (self.workers or os.cpu_count() or 1) > 1

    @classmethod
    def from_config(cls, path: str | os.PathLike | None, **overrides: Any) -> ClusterSpec:
        """A spec from a YAML file with the option names as keys (``queue``, ``account``,
        ``cores``, ``memory``, ``walltime``, ``jobs``, ``adapt_max``,
        ``job_extra_directives`` (a list), ...; dashes or underscores), updated with the
        ``overrides`` that are not None / empty."""
        values: dict[str, Any] = {}
        if path is not None:
            import yaml

            p = Path(path)
            if not p.is_file():
                raise InputError(f"{p}: cluster config not found; check --cluster-config")
            try:
                loaded = yaml.safe_load(p.read_text()) or {}
            except yaml.YAMLError as e:
                raise InputError(f"{p}: not valid YAML ({e}); fix the cluster config") from e
            if not isinstance(loaded, dict):
                raise InputError(f"{p}: expected a mapping of option: value; fix the config")
            known = {f.name for f in dataclasses.fields(cls)}
            for key, value in loaded.items():
                name = str(key).replace("-", "_")
                if name == "cluster":
                    name = "kind"
                if name == "scheduler":
                    name = "scheduler_address"
                if name not in known:
                    raise InputError(
                        f"{p}: unknown key {key!r}; use {', '.join(sorted(known - {'kind'}))}"
                    )
                if name == "job_extra_directives":
                    value = tuple(value if isinstance(value, list) else [value])
                values[name] = value
        for key, value in overrides.items():
            if value is None or value == ():
                continue
            if key == "job_extra_directives":
                value = tuple(values.get(key, ())) + tuple(value)
            values[key] = value
        try:
            return cls(**values)
        except TypeError as e:
            raise InputError(f"{path}: bad cluster settings ({e}); fix the config") from e

    def check(self) -> None:
        """Raise :class:`InputError` for settings that cannot work (a batch system without
        cores/memory, a missing TLS file) before anything is started or created."""
        if self.kind in JOBQUEUE_KINDS:
            _jobqueue_kwargs(self)
        _security(self)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for the manifest (no TLS key paths)."""
        d = dataclasses.asdict(self)
        d.pop("tls_key")
        d["job_extra_directives"] = list(self.job_extra_directives)
        if self.kind == "local":
            d["processes"] = self.use_processes
        return d


def _security(spec: ClusterSpec):
    if not (spec.tls_ca or spec.tls_cert or spec.tls_key):
        return None
    from distributed.security import Security

    for p in (spec.tls_ca, spec.tls_cert, spec.tls_key):
        if p and not Path(p).is_file():
            raise InputError(f"{p}: TLS file not found; check --tls-ca/--tls-cert/--tls-key")
    return Security(
        tls_ca_file=spec.tls_ca,
        tls_client_cert=spec.tls_cert,
        tls_client_key=spec.tls_key,
        require_encryption=True,
    )


def _jobqueue_kwargs(spec: ClusterSpec) -> dict[str, Any]:
    """Keyword arguments of the dask-jobqueue cluster class for ``spec``."""
    if not spec.cores or not spec.memory:
        raise InputError(
            f"--cluster {spec.kind} needs --cores and --memory (or set them in --cluster-config)"
        )
    kwargs: dict[str, Any] = {
        "cores": spec.cores,
        "memory": spec.memory,
        "processes": 1,
        "job_extra_directives": list(spec.job_extra_directives),
        "scheduler_options": {"dashboard_address": ":0"},
    }
    if spec.kind == "slurm" and shutil.which("sbatch") is None:
        raise InputError(
            "--cluster slurm: sbatch is not on PATH; run varcall on a SLURM login node "
            "(or install slurm-client)"
        )
    for name in ("queue", "walltime", "interface", "local_directory", "log_directory"):
        value = getattr(spec, name)
        if value is not None:
            kwargs[name] = value
    if spec.account is not None:
        kwargs["account" if spec.kind in ("slurm", "pbs") else "project"] = spec.account
    if _drop_trim_threshold():
        # as for local workers (see _quiet_local_servers): Dask's nanny in the job must not
        # set MALLOC_TRIM_THRESHOLD_ for its worker; the dict merges into Dask's defaults
        kwargs["job_script_prologue"] = [
            "export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON=\"{'MALLOC_TRIM_THRESHOLD_': None}\""
        ]
    return kwargs


def _jobqueue_cluster(spec: ClusterSpec):
    import dask_jobqueue

    classes = {
        "slurm": dask_jobqueue.SLURMCluster,
        "pbs": dask_jobqueue.PBSCluster,
        "lsf": dask_jobqueue.LSFCluster,
        "sge": dask_jobqueue.SGECluster,
    }
    cluster = classes[spec.kind](**_jobqueue_kwargs(spec))
    if spec.adapt_max:
        cluster.adapt(minimum_jobs=0, maximum_jobs=spec.adapt_max)
    else:
        cluster.scale(jobs=spec.jobs or 1)
    logger.info("%s job script:\n%s", spec.kind, cluster.job_script())
    return cluster


#: What Dask's fork server imports before it forks a worker (``distributed.utils.
#: get_mp_context``: distributed, then its required and optional packages).
_DASK_FORK_PRELOAD = (
    "distributed", "dask", "msgpack", "cloudpickle", "tornado", "toolz", "numpy", "pandas", "lz4",
)  # fmt: skip
_MP_METHOD = "distributed.worker.multiprocessing-method"
_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


def _drop_trim_threshold() -> bool:
    """Whether workers get no ``MALLOC_TRIM_THRESHOLD_`` (see :func:`_quiet_local_servers`):
    unless the user set it, in the Dask config or the environment."""
    return not _user_dask_setting(_TRIM) and "MALLOC_TRIM_THRESHOLD_" not in os.environ


def _fork_server_usable(processes: bool) -> bool:
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
    in :func:`_quiet_local_servers`). Read from distributed's default config file, without
    importing distributed (0.4 s)."""
    import importlib.util

    import dask
    import yaml

    spec = importlib.util.find_spec("distributed")
    if spec is None or spec.origin is None:
        return {}
    with open(Path(spec.origin).parent / "distributed.yaml") as fh:
        dask.config.update_defaults(yaml.safe_load(fh))  # as distributed.config does
    cfg = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    if _drop_trim_threshold():
        cfg.pop("MALLOC_TRIM_THRESHOLD_", None)
    return {k: os.environ.get(k, str(v)) for k, v in cfg.items() if v is not None}


def start_fork_server(preload: Sequence[str] = ()) -> bool:
    """Start multiprocessing's fork server for a local process cluster now, before this
    process imports distributed: it imports Dask's packages, ``preload`` and then
    :mod:`varcall.run._fork_warm` (the ``warm()`` hook of the engine modules in ``preload``)
    on another core while the client plans the run, so the workers forked from it start
    with everything loaded (measured on 2 cores: the first region starts ~0.6 s earlier
    and runs ~0.4 s faster). Its environment gets the variables Dask's nanny would set
    first (:func:`_worker_environ`). Returns whether a fork server is running; False where
    :func:`_fork_server_usable` says no (nothing started)."""
    import importlib.util
    import multiprocessing
    from multiprocessing import forkserver

    if not _fork_server_usable(True):
        return False
    names = [m for m in _DASK_FORK_PRELOAD if importlib.util.find_spec(m) is not None]
    names += [m for m in preload if m not in names]
    names.append("varcall.run._fork_warm")
    os.environ.update(_worker_environ())  # as the nanny does before it starts a worker
    multiprocessing.get_context("forkserver").set_forkserver_preload(names)
    forkserver.ensure_running()
    return True


@contextlib.contextmanager
def _fast_worker_start(processes: bool, preload: Sequence[str] = ()) -> Iterator[None]:
    """Start LocalCluster worker processes from a fork server instead of a fresh
    interpreter each (Dask's default ``spawn``): about half the start-up time and a
    near-instant shutdown. The fork server (:func:`start_fork_server`, unless already
    running) imports Dask's packages and ``preload`` (e.g. the engine's module) once;
    every worker forked from it starts with them imported and warm. Left alone for thread
    workers, when the user configured another method, or where there is no fork server
    (Windows). Workers restarted later by their nanny come from the same fork server."""
    import dask

    if not _fork_server_usable(processes):
        yield
        return
    start_fork_server(preload)  # no-op preload change when it already runs
    with dask.config.set({_MP_METHOD: "forkserver"}):
        yield


#: Dask settings of a LocalCluster's servers (see :func:`_quiet_local_servers`).
_LOCAL_SETTINGS: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "500ms",
    "distributed.admin.system-monitor.interval": "2s",
}


@contextlib.contextmanager
def _quiet_local_servers() -> Iterator[None]:
    """Settings for the scheduler and workers of a LocalCluster, each unless the user's
    Dask config (or, for the variable, the environment) sets it explicitly:

    - Dask's statistical profiler off: its thread samples every thread's stack each
      10 ms, about 4-5% of the CPU of a 2-core run (py-spy), for the dashboard's Profile
      page only;
    - the event-loop tick every 500 ms instead of 20 ms (it only measures how long the
      loop was blocked, for a warning) and the system monitor every 2 s instead of 0.5 s
      (dashboard graphs): with 2 idle workers, scheduler, nannies and workers then use
      0.35 instead of 0.96 CPU-s per 10 s, CPU the workers' regions get on a small
      machine. The memory monitor keeps its interval (it enforces the memory limit);
    - no ``MALLOC_TRIM_THRESHOLD_`` for worker processes (Dask sets 65536 through
      ``distributed.nanny.pre-spawn-environ``): any fixed glibc trim threshold also turns
      off glibc's dynamic mmap threshold, so every array over 128 KiB a region allocates
      is a fresh mmap whose pages fault in again. That made each region ~30% slower in a
      worker process than in this process (measured: 0.55-0.65 s vs 0.40-0.44 s per
      250 kb region of 4 samples; 0.6 s more system time per 1.3 Mb). Worker memory stays
      bounded by the region (``make bench`` reports it)."""
    import dask

    settings: dict[str, Any] = {}
    for key, value in _LOCAL_SETTINGS.items():
        if not _user_dask_setting(key):
            settings[key] = value
    if _drop_trim_threshold():
        settings[_TRIM] = None  # None: Dask leaves the variable unset
    with dask.config.set(settings):
        yield


def _user_dask_setting(key: str) -> bool:
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


@contextlib.contextmanager
def open_client(
    spec: ClusterSpec, record: dict[str, Any] | None = None, preload: Sequence[str] = ()
) -> Iterator[Any]:
    """A ``distributed.Client`` for ``spec``; the cluster it started (if any) is closed on
    exit. The LocalCluster's scheduler and dashboard listen on 127.0.0.1 only.

    Batch-system clusters: lost worker jobs are replaced (:class:`varcall.run.jobs.JobKeeper`);
    with ``spec.cluster_timeout`` the first worker must connect in time, else a
    :class:`VarcallError` (or, with ``spec.fallback_local``, a LocalCluster instead). What
    happened (``replaced_jobs``, ``fell_back_to_local``) is added to ``record`` when given."""
    from distributed import Client, LocalCluster

    record = record if record is not None else {}
    # Dask's own INFO lines (workers starting and closing) only when varcall logs INFO too
    dask_logger = logging.getLogger("distributed")
    dask_level = dask_logger.level
    if not logger.isEnabledFor(logging.INFO):
        dask_logger.setLevel(logging.ERROR)
    cluster = None
    client = None
    keeper = None
    try:
        if spec.kind in JOBQUEUE_KINDS:
            from varcall.run.jobs import JobKeeper, wait_for_first_worker

            cluster = _jobqueue_cluster(spec)
            client = Client(cluster)
            target = spec.adapt_max or spec.jobs or 1
            keeper = JobKeeper(cluster, spec.kind, record, max_replacements=3 * target + 2)
            keeper.start()
            if spec.cluster_timeout is not None:
                try:
                    waited = wait_for_first_worker(client, cluster, spec.kind, spec.cluster_timeout)
                    record["first_worker_seconds"] = round(waited, 3)
                except VarcallError as e:
                    if not spec.fallback_local:
                        raise
                    logger.warning("%s; --fallback-local: continuing on a local cluster", e)
                    record["fell_back_to_local"] = {"reason": str(e), "time": time.time()}
                    keeper.stop()
                    keeper = None
                    client.close()
                    cluster.close()
                    cluster = None
                    spec = dataclasses.replace(spec, kind="local")
        if spec.kind == "local":
            n = spec.workers or os.cpu_count() or 1
            with _fast_worker_start(spec.use_processes, preload), _quiet_local_servers():
                cluster = LocalCluster(
                    n_workers=n,
                    threads_per_worker=spec.threads_per_worker,
                    processes=spec.use_processes,
                    protocol="tcp://",
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",
                    silence_logs=logging.ERROR,
                    local_directory=spec.local_directory,
                )
            client = Client(cluster)
        elif spec.kind == "scheduler":
            try:
                client = Client(
                    spec.scheduler_address,
                    security=_security(spec),
                    timeout=f"{spec.connect_timeout}s",
                )
            except (OSError, TimeoutError) as e:
                raise InputError(
                    f"{spec.scheduler_address}: cannot reach the Dask scheduler ({e}); "
                    "check the address and that the scheduler is running"
                ) from e
    except Exception:
        if keeper is not None:
            keeper.stop()
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        dask_logger.setLevel(dask_level)
        raise
    try:
        yield client
    finally:
        if keeper is not None:
            keeper.stop()
        client.close()
        if cluster is not None:
            cluster.close()
        dask_logger.setLevel(dask_level)


class ClusterStarter:
    """:func:`open_client` entered in a background thread, so that starting the cluster
    overlaps the client's own work (validation, planning). ``warm``: modules the workers
    import up front, and whose ``warm()`` hook every worker runs once (a local process
    cluster's fork server, started at once here, runs it before it forks the workers;
    thread workers: once, in this process, at once); ``client_warm``: modules this process
    imports and warms at once, while the workers start (e.g. the merge's). :meth:`attach` waits for the start and hands
    over the client as a context manager; :meth:`close` shuts it down if it was never attached
    (or after an error). Errors of the start are raised by :meth:`attach`."""

    def __init__(
        self, spec: ClusterSpec, warm: Sequence[str] = (), client_warm: Sequence[str] = ()
    ) -> None:
        import threading

        self.spec = spec
        self.record: dict[str, Any] = {}
        self._cm: Any = None  # open_client(...), made in the background thread
        self._client: Any = None
        self._error: BaseException | None = None
        self._warm = tuple(warm)
        self._client_warm = tuple(client_warm)
        self._entered = False
        self._ready = threading.Event()
        if spec.kind == "local" and spec.use_processes:
            try:  # first, here: the server warms up on another core while the client plans
                start_fork_server(self._warm)
            except Exception as e:  # an optimisation only; open_client starts it otherwise
                logger.debug("starting the fork server early failed: %s", e)
        self._thread = threading.Thread(target=self._start, name="varcall-cluster", daemon=True)
        self._thread.start()
        # this process warms up now, while the workers start: later, in a 2-core run, its
        # CPU would come out of the workers' regions
        self._warm_thread = threading.Thread(target=self._warm_here, name="varcall-warm")
        self._warm_thread.daemon = True
        self._warm_thread.start()

    def _threads_here(self) -> bool:
        return self.spec.kind == "local" and not self.spec.use_processes

    def _warm_here(self) -> None:
        try:
            if self._warm and self._threads_here():
                _warm_modules(self._warm)  # thread workers live in this process
            _warm_modules(self._client_warm)
        except Exception as e:  # warming is an optimisation only
            logger.debug("warming this process failed: %s", e)

    def _start(self) -> None:
        try:
            self._cm = open_client(self.spec, record=self.record, preload=self._warm)
            self._client = self._cm.__enter__()
            self._entered = True
        except BaseException as e:  # handed to the main thread by attach()
            self._error = e
            return
        finally:
            self._ready.set()
        try:
            if self._warm and not self._threads_here():
                # no-op for workers forked warm from the fork server
                self._client.run(_warm_modules, self._warm)
        except Exception as e:  # warming is an optimisation only
            logger.debug("warming the workers failed: %s", e)

    @contextlib.contextmanager
    def attach(self, record: dict[str, Any] | None = None) -> Iterator[Any]:
        """The started client; the cluster is closed when the block ends (workers may
        still be importing the ``warm`` modules when it is handed over)."""
        self._ready.wait()
        if self._error is not None:
            raise self._error
        try:
            yield self._client
        except BaseException:
            self._exit(*sys.exc_info())
            raise
        else:
            self._exit(None, None, None)
        finally:
            if record is not None:
                record.update(self.record)

    def _exit(self, *exc_info: Any) -> None:
        self._ready.wait()
        self._thread.join(timeout=30)  # warming; closing the cluster ends it anyway
        self._warm_thread.join(timeout=30)
        if self._entered:
            self._entered = False
            self._cm.__exit__(*exc_info)

    def close(self) -> None:
        """Shut the cluster down unless :meth:`attach` already did (idempotent)."""
        self._exit(None, None, None)


def _warm_modules(names: Sequence[str]) -> None:
    """Import ``names`` and run each one's ``warm()`` hook, if it has one (e.g.
    :func:`varcall.engines.native.warm`): the first task of a worker starts warm."""
    import importlib

    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        hook = getattr(module, "warm", None)
        if callable(hook):
            hook()


# ----------------------------------------------------------------------------- identity
def _file_identity(path: str) -> dict[str, Any]:
    st = os.stat(path)
    return {"path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def inputs_identity(inputs: CallInputs) -> dict[str, Any]:
    """What identifies the inputs of a run for checkpoints: every file's path, size and
    modification time, the samples and the contigs."""
    return {
        "reference": _file_identity(inputs.reference),
        "bams": [_file_identity(b) for b in inputs.bams],
        "samples": list(inputs.samples),
        "contigs": [[c, n] for c, n in inputs.contigs],
    }


def engine_version(engine: Engine) -> str:
    """The engine's version string (``engine.version`` if it has one, else varcall's)."""
    v = getattr(engine, "version", None)
    if callable(v):
        v = v()
    return str(v) if v else __version__


def checkpoint_key(
    region: Region | None,
    identity: dict[str, Any],
    params: CallParams,
    engine_name: str,
    engine_ver: str,
    *,
    kind: str = "region",
    contig: str | None = None,
) -> str:
    """SHA-256 (hex) naming a checkpoint. ``kind`` is ``region`` (one region of a
    distributed run) or ``whole`` (one contig of the engine's single-process run, then
    ``contig`` names it and ``region`` is None)."""
    doc = {
        "kind": kind,
        "region": None if region is None else [region.contig, region.start, region.end],
        "contig": contig,
        "inputs": identity,
        "params": params.as_dict(),
        "engine": engine_name,
        "engine_version": engine_ver,
        "varcall": __version__,
        "code": code_digest(),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 of varcall's own source: every ``.py`` file of the installed package, by
    relative path. Part of every checkpoint key (a patched install never reuses
    checkpoints of another), and compared on every worker with the client's (a worker
    running another varcall version stops the run; other code of the same version is
    recorded in the sidecar as ``code``). Computed once per process, so it describes the
    code that process loaded."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()


# ----------------------------------------------------------------------------- checkpoints
def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json_atomic(path: str | os.PathLike, doc: Any) -> None:
    """Write ``doc`` as JSON to ``path`` atomically (temporary name, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w") as fh:
        json.dump(doc, fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_checkpoint(
    work_dir: str | os.PathLike,
    key: str,
    callset: CallSet,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Save ``callset`` to ``WORK/<key>.npz`` and then its sidecar ``WORK/<key>.json``
    (both atomically); return the sidecar: key, contig, n_variants, max_alleles,
    filter_ids, digest (records), file_sha256, file_size plus ``extra``."""
    work = Path(work_dir)
    npz = work / f"{key}.npz"
    save_callset(callset, npz)
    sidecar = {
        **extra,
        "key": key,
        "contig": callset.contig,
        "n_variants": callset.n_variants,
        "max_alleles": callset.max_alleles,
        "filter_ids": list(callset.filter_ids),
        "digest": callset.digest(),
        "file_sha256": _sha256_file(npz),
        "file_size": npz.stat().st_size,
    }
    write_json_atomic(work / f"{key}.json", sidecar)
    return sidecar


def read_checkpoint(work_dir: str | os.PathLike, key: str) -> dict[str, Any] | None:
    """The sidecar of a valid checkpoint, or None: the sidecar parses, names ``key``, and
    the ``.npz`` exists with the recorded size and SHA-256."""
    work = Path(work_dir)
    side, npz = work / f"{key}.json", work / f"{key}.npz"
    try:
        doc = json.loads(side.read_text())
        if doc.get("key") != key or not npz.is_file():
            return None
        if npz.stat().st_size != doc.get("file_size"):
            return None
        if _sha256_file(npz) != doc.get("file_sha256"):
            return None
    except (OSError, ValueError):
        return None
    return doc


def audit_event(work: str | os.PathLike, key: str, event: dict[str, Any]) -> None:
    """Append one JSON line to ``WORK/<key>.audit.jsonl`` (one event of a task attempt)."""
    line = json.dumps(event, sort_keys=True) + "\n"
    with open(Path(work) / f"{key}.audit.jsonl", "a") as fh:
        fh.write(line)


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


# ----------------------------------------------------------------------------- the task
def _diagnose(inputs: CallInputs, region: Region) -> str | None:
    """The input file that makes ``region`` fail, as a one-line message (see
    :func:`varcall.plan.validate.diagnose_region`), or None; never raises."""
    from varcall.plan.validate import diagnose_region

    try:
        return diagnose_region(inputs, region)
    except Exception:  # the diagnosis must never hide the original error
        logger.debug("diagnosis of %s failed", region, exc_info=True)
        return None


def run_region_task(
    region: Region,
    inputs: CallInputs,
    params: CallParams,
    work_dir: str,
    key: str,
    run_id: str,
    engine: Engine | None = None,
    code: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Call one region and checkpoint it; returns the sidecar (see :func:`write_checkpoint`)
    with ``region``, ``seconds``, ``worker``, ``run_id`` and ``attempt``.

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
    }
    t0 = time.time()
    audit_event(work, key, {**base, "event": "start", "time": t0})
    try:
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
        eng = engine if engine is not None else get_engine(params.engine)
        callset = eng.call_region(inputs, region, params)
        if callset.contig != region.contig:
            raise RegionError(f"region {region}: engine returned calls of {callset.contig}")
        if callset.n_variants and (
            int(callset.position[0]) < region.start or int(callset.position[-1]) >= region.end
        ):
            raise RegionError(
                f"region {region}: engine returned calls outside the region; "
                "this is an engine bug, report it"
            )
        seconds = time.time() - t0
        sidecar = write_checkpoint(
            work,
            key,
            callset,
            {
                "region": [region.contig, region.start, region.end],
                "seconds": round(seconds, 6),
                "worker": worker,
                "run_id": run_id,
                "attempt": attempt,
                "code": code_digest(),
                "peak_rss_mb": peak_rss_mb(),
            },
        )
    except BaseException as e:
        # name the damaged input file, if any (reads the region once more, only on failure)
        culprit = None
        if isinstance(e, Exception) and not isinstance(e, InputError):
            culprit = _diagnose(inputs, region)
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
            raise
        if culprit is not None:
            raise RegionError(f"region {region}: {culprit}") from e
        if isinstance(e, VarcallError):
            raise
        raise RegionError(f"region {region}: {type(e).__name__}: {e}") from e
    audit_event(
        work,
        key,
        {
            **base,
            "event": "done",
            "time": time.time(),
            "n_variants": sidecar["n_variants"],
            "seconds": sidecar["seconds"],
        },
    )
    return sidecar


# ----------------------------------------------------------------------------- progress
class ProgressReporter:
    """A rich progress bar on stderr: regions done / total, variants found, ETA.
    Disabled (no output) when ``enabled`` is False."""

    def __init__(self, total: int, *, enabled: bool = True, description: str = "regions"):
        self.enabled = enabled
        self.variants = 0
        self._progress = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.console = Console(stderr=True)
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[variants]:,} variants"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._task = self._progress.add_task(description, total=total, variants=0)

    def print(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(message, highlight=False, markup=False)

    def __enter__(self) -> ProgressReporter:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, n_variants: int, n: int = 1) -> None:
        self.variants += n_variants
        if self._progress is not None:
            self._progress.update(self._task, advance=n, variants=self.variants)


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


def _failure_error(failed: list[tuple[Region, str]], work: Path) -> RegionError:
    first_region, first_msg = failed[0]
    more = f" (and {len(failed) - 1} more regions)" if len(failed) > 1 else ""
    return RegionError(
        f"{first_msg if str(first_region) in first_msg else f'region {first_region}: {first_msg}'}"
        f"{more}; finished regions are kept in {work}, fix the cause and rerun with --resume"
    )


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
    sidecars as :func:`scatter_regions`. Stops at the first failing region."""
    work = Path(work_dir)
    done, todo = _split_resumed(regions, keys, work, resume)
    with ProgressReporter(len(regions), enabled=progress) as bar:
        bar.advance(sum(d["n_variants"] for d in done.values()), len(done))
        for i in todo:
            try:
                side = run_region_task(
                    regions[i], inputs, params, str(work), keys[i], run_id, engine
                )
            except VarcallError as e:
                raise _failure_error([(regions[i], str(e))], work) from e
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
) -> list[dict[str, Any]]:
    """Run one Dask task per region on ``client``; return the sidecars in ``regions`` order.

    Regions with a valid checkpoint are skipped when ``resume``. A task is retried up to
    ``retries`` times; regions that still fail are named in the :class:`RegionError`
    raised after every other region finished (their checkpoints are kept). On any
    exception in the client (e.g. KeyboardInterrupt) the pending tasks are cancelled.
    """
    from distributed import as_completed

    work = Path(work_dir)
    done, todo = _split_resumed(regions, keys, work, resume)
    link = getattr(client, "dashboard_link", None)
    failed: list[tuple[Region, str]] = []
    with ProgressReporter(len(regions), enabled=progress) as bar:
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
        bar.advance(sum(d["n_variants"] for d in done.values()), len(done))
        if not todo:
            return [done[k] for k in keys]
        # inputs/params/engine travel once, as a task the scheduler can recompute if the
        # worker holding it dies (unlike scattered data)
        token = uuid.uuid4().hex[:12]  # Dask keys unique per call, even on a shared scheduler
        shared = client.submit(
            _bundle,
            inputs,
            params,
            engine,
            (__version__, code_digest()),
            key=f"varcall-shared-{token}",
            pure=False,
        )
        futures = client.map(
            _run_bundled,
            [regions[i] for i in todo],
            [keys[i] for i in todo],
            shared=shared,
            work_dir=str(work),
            run_id=run_id,
            key=[f"varcall-region-{token}-{keys[i]}" for i in todo],
            retries=retries,
            pure=False,
        )
        region_of = {f.key: regions[i] for f, i in zip(futures, todo)}
        try:
            completed = as_completed(futures)
            for fut in completed:
                if fut.status in ("lost", "pending"):
                    # its result died with its worker (e.g. a cancelled batch job) after
                    # it finished; the scheduler computes it again
                    logger.warning(
                        "region %s: result lost with its worker; recomputing", region_of[fut.key]
                    )
                    completed.add(fut)
                    continue
                if fut.status == "finished":
                    side = fut.result()
                    done[side["key"]] = {**side, "resumed": False}
                    bar.advance(side["n_variants"])
                    if on_result is not None:
                        on_result(side)
                else:
                    region = region_of[fut.key]
                    try:
                        exc = fut.exception()
                        msg = str(exc) or type(exc).__name__
                    except Exception as e:  # cancelled futures raise here
                        msg = f"{type(e).__name__}: {e}"
                    logger.error("region %s failed: %s", region, msg)
                    failed.append((region, msg))
                    bar.advance(0)
                fut.release()
        except BaseException:
            client.cancel(futures)
            raise
        finally:
            shared.release()
    if failed:
        order = {r: i for i, r in enumerate(regions)}
        failed.sort(key=lambda x: order[x[0]])
        raise _failure_error(failed, work)
    return [done[k] for k in keys]


def _bundle(
    inputs: CallInputs, params: CallParams, engine: Engine | None, code: tuple[str, str]
) -> tuple:
    return inputs, params, engine, code


def _run_bundled(
    region: Region, key: str, *, shared: tuple, work_dir: str, run_id: str
) -> dict[str, Any]:
    inputs, params, engine, code = shared
    return run_region_task(region, inputs, params, work_dir, key, run_id, engine, code)
