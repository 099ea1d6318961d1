"""Every socket a local run opens listens on loopback only; the dashboard only on request.

During a local distributed run (2 worker processes forked from the fork server), a thread
lists the listening TCP sockets (and bound UDP sockets) of this process and all its
descendants (psutil, which reads ``/proc/net/tcp``, ``tcp6`` and ``/proc/PID/fd``) and
every one must be bound to 127.0.0.1 or ::1.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from varcall.cli.main import main
from varcall.core.errors import InputError
from varcall.run.clusters import ClusterSpec, open_client
from varcall.run.network import (
    DEFAULT_DASHBOARD,
    dashboard_listen_address,
    local_network_kwargs,
    scheduler_http_options,
)
from varcall.run.pipeline import run_call

psutil = pytest.importorskip("psutil")

LOOPBACK_IPS = {"127.0.0.1", "::1"}


def _bound_sockets() -> list[tuple[int, str, int]]:
    """(pid, ip, port) of every listening TCP or bound UDP socket of this process tree."""
    me = psutil.Process(os.getpid())
    found = []
    for proc in [me, *me.children(recursive=True)]:
        try:
            # psutil >= 6 names it net_connections; it reads /proc/net/tcp*, udp* and
            # the process's socket inodes in /proc/PID/fd
            conns = getattr(proc, "net_connections", proc.connections)(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue  # a process that just ended
        for c in conns:
            listening = c.status == psutil.CONN_LISTEN
            udp = c.type == socket.SOCK_DGRAM and c.laddr
            if listening or udp:
                found.append((proc.pid, c.laddr.ip, c.laddr.port))
    return found


class _SocketWatch:
    """Lists the bound sockets of the process tree every 50 ms until stopped."""

    def __init__(self) -> None:
        self.seen: set[tuple[int, str, int]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.update(_bound_sockets())
            self._stop.wait(0.05)

    def __enter__(self) -> _SocketWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_local_distributed_run_listens_on_loopback_only(small_cohort: Path, tmp_path: Path):
    bams = sorted(small_cohort.glob("S*.bam"))
    with _SocketWatch() as watch:
        result = run_call(
            small_cohort / "reference.fa",
            bams,
            tmp_path / "run",
            cluster=ClusterSpec(workers=2, processes=True),
            region_count=6,
        )
    assert result.n_units >= 2
    assert result.manifest.cluster["dashboard"] == ""  # none without --dashboard
    outside = sorted(s for s in watch.seen if s[1] not in LOOPBACK_IPS)
    assert not outside, f"sockets listening beyond loopback: {outside}"
    # not vacuous: the worker processes (not this one) had their comm + HTTP sockets
    worker_pids = {pid for pid, _, _ in watch.seen if pid != os.getpid()}
    assert len(worker_pids) >= 2, watch.seen
    listening_here = [s for s in watch.seen if s[0] == os.getpid()]
    assert len(listening_here) >= 3  # scheduler comm + its HTTP server + nannies


def test_dashboard_only_on_request_and_on_loopback():
    with open_client(ClusterSpec(workers=1, processes=False)) as client:
        ports = {port for _, ip, port in _bound_sockets() if ip in LOOPBACK_IPS}
        assert all(ip in LOOPBACK_IPS for _, ip, _ in _bound_sockets())
        scheduler = client.cluster.scheduler
        assert scheduler.http_server is not None  # Dask's /health, /metrics: loopback
        assert 8787 not in ports
        assert client.dashboard_link == ""  # nothing announced: no dashboard served
    with open_client(ClusterSpec(workers=1, processes=False, dashboard_address="0")) as client:
        link = client.dashboard_link
        assert link.startswith("http://127.0.0.1:")
        assert all(ip in LOOPBACK_IPS for _, ip, _ in _bound_sockets())


@pytest.mark.parametrize(
    "given, expected",
    [
        ("8787", "127.0.0.1:8787"),
        (":8790", "127.0.0.1:8790"),
        ("127.0.0.1:0", "127.0.0.1:0"),
        ("0.0.0.0:8787", "0.0.0.0:8787"),
        ("localhost:9000", "localhost:9000"),
        (8787, "127.0.0.1:8787"),  # a number from a cluster YAML
    ],
)
def test_dashboard_listen_address(given: str | int, expected: str):
    assert dashboard_listen_address(given) == expected


@pytest.mark.parametrize(
    "bad", ["", "host:", "abc", "1:2:x", "127.0.0.1:70000", "[::1]:8787", "::1:8787"]
)
def test_dashboard_listen_address_refuses_malformed(bad: str):
    with pytest.raises(InputError, match="--dashboard"):
        dashboard_listen_address(bad)


def test_network_kwargs_keep_everything_on_loopback():
    kw = local_network_kwargs(None)
    assert kw["host"] == "127.0.0.1"
    assert kw["dashboard_address"].startswith("127.0.0.1:")
    assert kw["worker_dashboard_address"].startswith("127.0.0.1:")
    assert kw["scheduler_kwargs"] == {"dashboard": False}
    assert scheduler_http_options("8787") == {
        "dashboard_address": "127.0.0.1:8787",
        "dashboard": True,
    }


def test_dashboard_refused_with_existing_scheduler():
    with pytest.raises(InputError, match="existing scheduler"):
        ClusterSpec(kind="scheduler", scheduler_address="tcp://h:8786", dashboard_address="8787")


def test_dashboard_beyond_loopback_warns(caplog: pytest.LogCaptureFixture):
    with caplog.at_level("WARNING", logger="varcall.run.network"):
        ClusterSpec(dashboard_address="0.0.0.0:8787")
    assert "reachable from other hosts" in caplog.text


def test_cli_dashboard_option_without_and_with_address(monkeypatch: pytest.MonkeyPatch):
    seen = []

    def fake_run_call(*args, cluster=None, **kwargs):
        seen.append(cluster.dashboard_address)
        raise InputError("stop here")

    monkeypatch.setattr("varcall.run.pipeline.run_call", fake_run_call)
    runner = CliRunner()
    base = ["call", "-f", "ref.fa", "a.bam", "-o", "out"]
    for extra in ([], ["--dashboard"], ["--dashboard", ":9999"]):
        res = runner.invoke(main, [*base, *extra])
        assert res.exit_code == 2, res.output
    assert seen == [None, DEFAULT_DASHBOARD, ":9999"]
    res = runner.invoke(main, [*base, "--scheduler", "tcp://h:8786", "--dashboard"])
    assert res.exit_code == 2 and "existing scheduler" in res.output
    res = runner.invoke(main, [*base, "--single-process", "--dashboard"])
    assert res.exit_code == 2 and "drop --dashboard" in res.output
    assert seen == [None, DEFAULT_DASHBOARD, ":9999"]  # neither reached run_call


def test_batch_workers_serve_http_on_loopback(monkeypatch: pytest.MonkeyPatch):
    import dask

    from varcall.run.clusters import _jobqueue_kwargs

    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    kw = _jobqueue_kwargs(ClusterSpec(kind="slurm", cores=1, memory="2GB"))
    assert kw["worker_extra_args"][:3] == ["--dashboard-address", "127.0.0.1:0", "--no-dashboard"]
    assert kw["scheduler_options"] == {"dashboard_address": "127.0.0.1:0", "dashboard": False}
    with dask.config.set({"jobqueue.slurm.worker-extra-args": ["--lifetime", "1h"]}):
        kw = _jobqueue_kwargs(ClusterSpec(kind="slurm", cores=1, memory="2GB"))
    assert kw["worker_extra_args"][-2:] == ["--lifetime", "1h"]  # the user's, kept last

