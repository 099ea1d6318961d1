"""Where Dask tasks run: a :class:`ClusterSpec` (an embedded LocalCluster bound to 127.0.0.1,
an existing scheduler, or dask-jobqueue batch jobs), :func:`open_client` for it, and
:class:`ClusterStarter`, which starts it in the background while the client plans.

LocalCluster servers run with quieter Dask settings (:func:`_quiet_local_servers`) and
their worker processes are forked warm from a fork server (:mod:`varcall.run.forkserver`);
lost batch jobs are replaced by :class:`varcall.run.jobs.JobKeeper`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from varcall.core.allocator import worker_environ as allocator_environ
from varcall.core.errors import InputError, VarcallError
from varcall.run.forkserver import (
    TRIM_THRESHOLD_SETTING,
    drop_trim_threshold,
    fast_worker_start,
    quiet_task_failures,
    start_fork_server,
    user_dask_setting,
)
from varcall.run.network import (
    batch_worker_args,
    check_dashboard,
    local_network_kwargs,
    scheduler_http_options,
    unannounce_http_server,
)

__all__ = [
    "JOBQUEUE_KINDS",
    "CLUSTER_KINDS",
    "ClusterSpec",
    "ClusterStarter",
    "open_client",
    "default_batch_memory",
    "with_batch_defaults",
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
    dashboard_address: serve the Dask dashboard of the scheduler varcall starts at this
        ``host:port`` (a bare ``port`` or ``:port`` means 127.0.0.1, see
        :func:`varcall.run.network.dashboard_listen_address`); None: no dashboard. Every
        server of a local cluster listens on 127.0.0.1 either way.
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
    #: the batch-job settings varcall chose because none were given (see
    #: :func:`with_batch_defaults`); recorded in the manifest, not an option
    defaults_applied: tuple[str, ...] = ()
    dashboard_address: str | None = None

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
        check_dashboard(self.kind, self.dashboard_address)

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
            known = {f.name for f in dataclasses.fields(cls)} - {"defaults_applied"}
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
        from varcall.plan.validate_cluster import check_tls

        check_tls(self)
        _security(self)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for the manifest (no TLS key paths)."""
        d = dataclasses.asdict(self)
        d.pop("tls_key")
        d["job_extra_directives"] = list(self.job_extra_directives)
        d["defaults_applied"] = list(self.defaults_applied)
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


#: Memory of a batch job without ``--memory``: a base for Python, Dask and the engine of
#: one calling thread, plus a per-sample allowance for each calling thread (``--cores``).
#: Measured peak RSS of a worker: 250-700 MB on 32 samples (``make bench``).
BATCH_BASE_MB = 2048
BATCH_THREAD_MB = 1024
BATCH_SAMPLE_MB = 32


def default_batch_memory(n_samples: int, cores: int = 1) -> str:
    """The memory request (a dask-jobqueue string in MB, e.g. ``"2144MB"``) of a batch job
    with ``cores`` calling threads on a cohort of ``n_samples``: :data:`BATCH_BASE_MB`, plus
    :data:`BATCH_THREAD_MB` for each thread after the first, plus :data:`BATCH_SAMPLE_MB`
    per sample and thread, rounded up to 64 MB."""
    cores = max(1, int(cores))
    mb = BATCH_BASE_MB + BATCH_THREAD_MB * (cores - 1) + BATCH_SAMPLE_MB * max(0, n_samples) * cores
    return f"{-(-mb // 64) * 64}MB"


def with_batch_defaults(spec: ClusterSpec, n_samples: int) -> ClusterSpec:
    """``spec`` with 1 core and :func:`default_batch_memory` per batch job where
    ``--cores`` / ``--memory`` were not given (the names go to ``defaults_applied``, for the
    manifest; the request is logged). Other kinds are returned as they are."""
    if spec.kind not in JOBQUEUE_KINDS or (spec.cores and spec.memory):
        return spec
    cores = spec.cores or 1
    memory = spec.memory or default_batch_memory(n_samples, cores)
    applied = tuple(n for n in ("cores", "memory") if not getattr(spec, n))
    logger.warning(
        "--cluster %s: each job requests %d core(s) and %s (%s: varcall's default for %d "
        "samples; set --cores/--memory to change)",
        spec.kind, cores, memory, " and ".join(applied), n_samples,
    )  # fmt: skip
    return dataclasses.replace(spec, cores=cores, memory=memory, defaults_applied=applied)


def _jobqueue_kwargs(spec: ClusterSpec) -> dict[str, Any]:
    """Keyword arguments of the dask-jobqueue cluster class for ``spec`` (without
    cores/memory: :func:`with_batch_defaults` for an unknown cohort)."""
    if not spec.cores or not spec.memory:
        spec = with_batch_defaults(spec, 0)
    kwargs: dict[str, Any] = {
        "cores": spec.cores,
        "memory": spec.memory,
        "processes": 1,
        "job_extra_directives": list(spec.job_extra_directives),
        "scheduler_options": scheduler_http_options(spec.dashboard_address),
        "worker_extra_args": batch_worker_args(spec.kind),
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
    if drop_trim_threshold():
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
      bounded by the region (``make bench`` reports it). Instead, unless the environment
      holds ``MALLOC_*`` settings, workers get :data:`varcall.core.allocator.ENVIRON` (no
      mmap for large blocks, a 1 GiB trim threshold): a window's freed arrays are reused
      by the next one rather than faulted in again."""
    import dask

    settings: dict[str, Any] = {}
    for key, value in _LOCAL_SETTINGS.items():
        if not user_dask_setting(key):
            settings[key] = value
    if drop_trim_threshold():
        settings[TRIM_THRESHOLD_SETTING] = None  # None: Dask leaves the variable unset
        for key, value in allocator_environ().items():  # large arrays reused, not mapped anew
            settings[f"distributed.nanny.pre-spawn-environ.{key}"] = value
    with dask.config.set(settings):
        yield


@dataclasses.dataclass
class _Opened:
    """What :func:`open_client` started so far, closed in reverse order by :meth:`close`."""

    cluster: Any = None
    client: Any = None
    keeper: Any = None

    def close(self) -> None:
        if self.keeper is not None:
            self.keeper.stop()
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


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
    import distributed  # noqa: F401  (its import sets the "distributed" log level: first)

    record = record if record is not None else {}
    # Dask's own INFO lines (workers starting and closing) only when varcall logs INFO too
    dask_logger = logging.getLogger("distributed")
    dask_level = dask_logger.level
    if not logger.isEnabledFor(logging.INFO):
        dask_logger.setLevel(logging.ERROR)
    opened = _Opened()
    try:
        if spec.kind in JOBQUEUE_KINDS:
            spec = _start_batch(spec, record, opened)
        if spec.kind == "local":
            _start_local(spec, preload, opened)
        elif spec.kind == "scheduler":
            opened.client = _connect_scheduler(spec)
    except Exception:
        opened.close()
        dask_logger.setLevel(dask_level)
        raise
    try:
        yield opened.client
    finally:
        opened.close()
        dask_logger.setLevel(dask_level)


def _start_batch(spec: ClusterSpec, record: dict[str, Any], opened: _Opened) -> ClusterSpec:
    """Submit the batch jobs of ``spec`` and keep them at strength; wait for the first
    worker when ``spec.cluster_timeout`` is set. Returns ``spec``, or a ``local`` copy of it
    when the wait failed and ``spec.fallback_local`` says to continue locally (the batch
    cluster is closed then)."""
    from distributed import Client

    from varcall.run.jobs import JobKeeper, wait_for_first_worker

    opened.cluster = _jobqueue_cluster(spec)
    unannounce_http_server(opened.cluster, spec.dashboard_address)
    opened.client = Client(opened.cluster)
    target = spec.adapt_max or spec.jobs or 1
    opened.keeper = JobKeeper(opened.cluster, spec.kind, record, max_replacements=3 * target + 2)
    opened.keeper.start()
    if spec.cluster_timeout is None:
        return spec
    try:
        waited = wait_for_first_worker(
            opened.client, opened.cluster, spec.kind, spec.cluster_timeout
        )
        record["first_worker_seconds"] = round(waited, 3)
    except VarcallError as e:
        if not spec.fallback_local:
            raise
        logger.warning("%s; --fallback-local: continuing on a local cluster", e)
        record["fell_back_to_local"] = {"reason": str(e), "time": time.time()}
        opened.close()
        opened.keeper = opened.client = opened.cluster = None
        return dataclasses.replace(spec, kind="local")
    return spec


def _start_local(spec: ClusterSpec, preload: Sequence[str], opened: _Opened) -> None:
    """Start a LocalCluster on 127.0.0.1 for ``spec`` and a client of it."""
    from distributed import Client, LocalCluster

    n = spec.workers or os.cpu_count() or 1
    quiet_task_failures()  # thread workers log in this process
    with fast_worker_start(spec.use_processes, preload), _quiet_local_servers():
        opened.cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=spec.threads_per_worker,
            processes=spec.use_processes,
            protocol="tcp://",
            # worker processes: Dask's ERROR records too only with -v (varcall reports a
            # failed region itself; a worker outliving the scheduler at Ctrl-C logs one)
            silence_logs=logging.ERROR if logger.isEnabledFor(logging.INFO) else logging.CRITICAL,
            local_directory=spec.local_directory,
            **local_network_kwargs(spec.dashboard_address),
        )
    unannounce_http_server(opened.cluster, spec.dashboard_address)
    opened.client = Client(opened.cluster)


def _connect_scheduler(spec: ClusterSpec) -> Any:
    """A client of the existing scheduler at ``spec.scheduler_address`` (TLS when set)."""
    from distributed import Client

    try:
        return Client(
            spec.scheduler_address,
            security=_security(spec),
            timeout=f"{spec.connect_timeout}s",
        )
    except (OSError, TimeoutError) as e:
        raise InputError(
            f"{spec.scheduler_address}: cannot reach the Dask scheduler ({e}); "
            "check the address and that the scheduler is running"
        ) from e


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
        # numba imported (through varcall.core.jit) here, before the
        # warm thread: that thread and this one (the engine check, planning) would
        # otherwise import it at the same time, and Python's import-deadlock detection
        # then leaves numba half-imported in one of them ("module 'numba' has no
        # attribute 'core'" at the merge)
        import varcall.core.jit  # noqa: F401

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
