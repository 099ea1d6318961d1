"""Where the servers of the Dask cluster varcall starts listen: on loopback.

A local cluster's scheduler, nannies and workers (their comms and their HTTP servers with
``/health`` and ``/metrics``) all listen on 127.0.0.1 (:func:`local_network_kwargs`);
without an address Dask would bind each worker's HTTP server to every interface. The
Dask dashboard is served only on request (``--dashboard [ADDRESS]``, 127.0.0.1 unless
ADDRESS names another host: :func:`dashboard_listen_address`). A batch cluster's scheduler
must be reachable by its workers on other nodes, but its HTTP server stays on loopback
too (:func:`scheduler_http_options`).
"""

from __future__ import annotations

import logging
from typing import Any

from varcall.core.errors import InputError

__all__ = [
    "LOOPBACK",
    "DEFAULT_DASHBOARD",
    "dashboard_listen_address",
    "check_dashboard",
    "scheduler_http_options",
    "local_network_kwargs",
    "unannounce_http_server",
    "batch_worker_args",
]

logger = logging.getLogger(__name__)

#: The address every server of a local cluster listens on.
LOOPBACK = "127.0.0.1"
#: ``--dashboard`` without an address.
DEFAULT_DASHBOARD = f"{LOOPBACK}:8787"
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def dashboard_listen_address(address: str | int) -> str:
    """``--dashboard`` ADDRESS as ``host:port``: a bare ``port`` or ``:port`` listens on
    127.0.0.1 (Dask itself would take every interface), ``host:port`` as given (port 0:
    a free port; a number, as a cluster YAML may give, is a port). Raises
    :class:`InputError` for anything else."""
    text = str(address).strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    if ":" in host or "[" in host:  # Dask's dashboard takes no IPv6 literal
        raise InputError(
            f"--dashboard {address!r}: an IPv6 address cannot be given; use a host name or "
            f"an IPv4 address (e.g. {DEFAULT_DASHBOARD})"
        )
    if not port.isdigit() or int(port) > 65535:
        raise InputError(
            f"--dashboard {address!r}: expected PORT, :PORT or HOST:PORT (e.g. {DEFAULT_DASHBOARD})"
        )
    return f"{host or LOOPBACK}:{int(port)}"


def check_dashboard(kind: str, address: str | int | None) -> None:
    """Refuse a dashboard where varcall starts no scheduler (``kind`` ``scheduler``) and a
    malformed ``address`` (:class:`InputError`); warn when it listens beyond loopback."""
    if address is None:
        return
    if kind == "scheduler":
        raise InputError(
            "--dashboard: an existing scheduler serves its own dashboard (its "
            "--dashboard-address); drop --dashboard with --scheduler"
        )
    host = dashboard_listen_address(address).rpartition(":")[0]
    if host not in _LOOPBACK_HOSTS:
        logger.warning(
            "the Dask dashboard listens on %s: reachable from other hosts, without a login",
            host,
        )


def scheduler_http_options(dashboard: str | int | None) -> dict[str, Any]:
    """Scheduler keywords for its HTTP server, which Dask always starts (``/health``,
    ``/metrics``): on a free 127.0.0.1 port without a dashboard when ``dashboard`` is None,
    else at :func:`dashboard_listen_address` of it, with the dashboard."""
    if dashboard is None:
        return {"dashboard_address": f"{LOOPBACK}:0", "dashboard": False}
    return {"dashboard_address": dashboard_listen_address(dashboard), "dashboard": True}


def local_network_kwargs(dashboard: str | int | None) -> dict[str, Any]:
    """``LocalCluster`` keywords that keep every socket of a local cluster on 127.0.0.1:
    the comms of scheduler, nannies and workers (``host``), the scheduler's HTTP server
    (:func:`scheduler_http_options`; the dashboard only when ``dashboard`` is given) and
    each worker's HTTP server (a free loopback port; Dask's Bokeh pages of a worker load
    there only when Bokeh is installed, which varcall does not require)."""
    scheduler = scheduler_http_options(dashboard)
    return {
        "host": LOOPBACK,
        "dashboard_address": scheduler["dashboard_address"],
        "scheduler_kwargs": {"dashboard": scheduler["dashboard"]},
        "worker_dashboard_address": f"{LOOPBACK}:0",
    }


def unannounce_http_server(cluster: Any, dashboard: str | int | None) -> None:
    """Without a requested ``dashboard``, make ``cluster.dashboard_link`` (and so the
    client's, the log line and the manifest) empty: Dask lists the scheduler's plain HTTP
    server, which serves no dashboard then, as its "dashboard" service. The server itself
    keeps running on loopback (and is stopped with the scheduler)."""
    if dashboard is not None:
        return
    info = getattr(cluster, "scheduler_info", None)
    services = info.get("services") if isinstance(info, dict) else None
    if isinstance(services, dict):
        services.pop("dashboard", None)


def batch_worker_args(kind: str) -> list[str]:
    """``worker_extra_args`` of a dask-jobqueue cluster of ``kind``: each batch-job worker's
    HTTP server (``/health``, ``/metrics``) on the compute node's loopback, no worker
    dashboard; then the user's own ``jobqueue.<kind>.worker-extra-args`` (Dask config),
    which win where they set the same options. The worker's comm still listens where the
    scheduler can reach it (``interface``)."""
    import dask

    user = dask.config.get(f"jobqueue.{kind}.worker-extra-args", None) or []
    return ["--dashboard-address", f"{LOOPBACK}:0", "--no-dashboard", *map(str, user)]
