"""Imported last by the fork server of a local process cluster (see
:func:`varcall.run.forkserver.start_fork_server`): runs the ``warm()`` hook of every varcall
engine module the server imported before it, so that each worker forked from the server
starts with the engine's numba kernels loaded. Never raises: a failed warm-up only makes
the first region of each worker slower (multiprocessing's fork server would die on any
exception other than ImportError)."""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger(__name__)


def _warm_imported_engines() -> None:
    for name, module in list(sys.modules.items()):
        hook = getattr(module, "warm", None)
        if name.startswith("varcall.engines.") and callable(hook):
            try:
                hook()
            except Exception as e:  # an optimisation only
                logger.debug("%s.warm() failed in the fork server: %s", name, e)


_warm_imported_engines()
