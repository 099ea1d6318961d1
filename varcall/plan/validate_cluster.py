"""Cluster checks: refuse a Dask scheduler that cannot be reached or a batch system whose
submit command is missing, before anything is created."""

from __future__ import annotations

import logging
import os
import shutil
import socket
from typing import Any
from urllib.parse import urlsplit

from varcall.core.errors import InputError

__all__ = ["SUBMIT_COMMANDS", "check_cluster", "check_tls"]

logger = logging.getLogger(__name__)

#: The command each batch system submits jobs with (dask-jobqueue calls it).
SUBMIT_COMMANDS = {"slurm": "sbatch", "pbs": "qsub", "sge": "qsub", "lsf": "bsub"}


def check_cluster(spec: Any, *, probe_seconds: float = 10.0) -> None:
    """Refuse a cluster that cannot work before anything is created: a remote scheduler
    that does not accept TCP connections (probed for at most ``probe_seconds``), or a batch
    system whose submit command is not on PATH (unless ``spec.fallback_local``).
    ``spec`` is a :class:`varcall.run.scatter.ClusterSpec`; a LocalCluster needs nothing."""
    kind = getattr(spec, "kind", "local")
    if kind == "scheduler":
        address = str(spec.scheduler_address)
        parts = urlsplit(address if "://" in address else f"tcp://{address}")
        if parts.scheme not in ("tcp", "tls"):
            return  # other comms (ucx, inproc, ws): left to Dask
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise InputError(
                f"--scheduler {address}: not an address with a port; give tcp://HOST:PORT "
                f"(Dask's default port is 8786)"
            )
        timeout = min(probe_seconds, float(getattr(spec, "connect_timeout", probe_seconds)))
        try:
            with socket.create_connection((parts.hostname, port), timeout=timeout):
                pass
        except OSError as e:
            raise InputError(
                f"{address}: cannot reach the Dask scheduler ({e.strerror or e}); check the "
                f"address and that the scheduler is running"
            ) from e
    elif kind in SUBMIT_COMMANDS:
        cmd = SUBMIT_COMMANDS[kind]
        if shutil.which(cmd) is None:
            if getattr(spec, "fallback_local", False):
                logger.warning("%s not found on PATH; --fallback-local will apply", cmd)
                return
            raise InputError(
                f"--cluster {kind}: {cmd} not found on PATH; run varcall on a {kind} submit "
                f"host, or use --scheduler or the local cluster"
            )


def check_tls(spec: Any) -> None:
    """Raise a one-line :class:`InputError` when a ``tls://`` scheduler comes without
    ``--tls-ca`` and ``--tls-cert``, or when the TLS files cannot be read or loaded (Dask
    would fail later with a raw ``TypeError``/``SSLError``); nothing is contacted.
    ``spec`` is a :class:`varcall.run.clusters.ClusterSpec`."""
    import ssl

    address = str(spec.scheduler_address or "")
    if (
        spec.kind == "scheduler"
        and address.startswith("tls://")
        and not (spec.tls_ca and spec.tls_cert)
    ):
        raise InputError(
            f"--scheduler {address}: a TLS scheduler needs --tls-ca and --tls-cert (and "
            "--tls-key unless the certificate file holds the key); give the files of the "
            "cluster's certificate authority and client certificate"
        )
    files = (("--tls-ca", spec.tls_ca), ("--tls-cert", spec.tls_cert), ("--tls-key", spec.tls_key))
    for flag, path in files:
        if path and not os.access(path, os.R_OK):
            raise InputError(f"{path}: TLS file cannot be read; check {flag} and its permissions")
    if not (spec.tls_ca or spec.tls_cert):
        return
    try:
        context = ssl.create_default_context(cafile=spec.tls_ca)
        if spec.tls_cert:
            context.load_cert_chain(spec.tls_cert, spec.tls_key)
    except (ssl.SSLError, OSError, ValueError) as e:
        raise InputError(
            f"{spec.tls_cert or spec.tls_ca}: TLS files cannot be loaded "
            f"({' '.join(str(e).split())}); check --tls-ca/--tls-cert/--tls-key"
        ) from e
