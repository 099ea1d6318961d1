"""Imported last by the fork server of a local process cluster (see
:func:`varcall.run.forkserver.start_fork_server`): runs the ``warm()`` hook of every varcall
engine module the server imported before it (and of the VCF writer), so that each worker
forked from the server starts with the engine's and the merge's numba kernels loaded. Never raises: a failed warm-up only makes
the first region of each worker slower (multiprocessing's fork server would die on any
exception other than ImportError)."""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger(__name__)

#: The modules whose ``warm()`` hooks run: the engines', and the VCF writer's (the merge's
#: encode tasks format the VCF records on the workers).
_WARMED = ("varcall.engines.", "varcall.io.vcf_write")


def _workers_leave_interrupts_to_the_driver() -> None:
    """Ctrl-C in a terminal reaches every process of the foreground group: the worker
    processes forked from this server ignore SIGINT (multiprocessing's fork server gives
    each child the handlers this module leaves here) and Dask's task-failure dumps are
    dropped in them (:func:`varcall.run.forkserver.quiet_task_failures`). The driver owns
    shutdown: it cancels the tasks and closes the cluster, whose nanny ends the workers
    with SIGTERM, which keeps its default action."""
    import signal

    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # started with SIGINT blocked (varcall.run.forkserver._sigint_blocked): ignored now
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    except (ValueError, AttributeError):  # not the main thread / no signal masks
        pass
    try:
        from varcall.run.forkserver import quiet_task_failures

        quiet_task_failures()
    except Exception as e:  # never kill the fork server
        logger.debug("quieting task failures failed: %s", e)


def _warm_imported_engines() -> None:
    for name, module in list(sys.modules.items()):
        hook = getattr(module, "warm", None)
        if name.startswith(_WARMED) and callable(hook):
            try:
                hook()
            except Exception as e:  # an optimisation only
                logger.debug("%s.warm() failed in the fork server: %s", name, e)


_workers_leave_interrupts_to_the_driver()
_warm_imported_engines()
