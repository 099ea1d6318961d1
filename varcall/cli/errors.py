"""How the command line ends: library errors as one line on stderr and an exit code,
SIGINT / SIGTERM as a clean stop.

Library functions raise :class:`varcall.core.errors.VarcallError` with a one-line message;
:func:`handle_errors` prints it as ``varcall: error: ...`` and exits with its code (2 for
bad input). Ctrl-C exits 130 and SIGTERM 143, both after the run stopped cleanly.
"""

from __future__ import annotations

import functools
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import click

from varcall.core.errors import VarcallError

__all__ = ["Terminated", "handle_errors"]


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM so a run stops as on Ctrl-C (pending tasks
    cancelled, cluster closed, checkpoints kept); the exit code is 143 (128 + SIGTERM)."""

    exit_code = 143


def _stop(signum: int, frame: object) -> None:
    """SIGINT / SIGTERM handler: quiet Dask's loggers, then raise KeyboardInterrupt /
    :class:`Terminated` in the main thread. From here on the run is stopping: the
    scheduler's complaints about the tasks and keys the stop cancels ("Couldn't gather
    keys ... forgotten") are not errors of the run, and would break the promise of one
    line on stderr."""
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt


def _install_stop_handlers() -> dict[int, Any]:
    """:func:`_stop` for SIGTERM, and for SIGINT where Python's default handler is in place
    (an ignored SIGINT, as in a background job, stays ignored); returns the handlers it
    replaced."""
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _stop)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _stop)
    return previous


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into a one-line message and an exit code; SIGINT exits 130,
    SIGTERM 143, both after a clean stop."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            previous = _install_stop_handlers()
        try:
            return func(*args, **kwargs)
        except VarcallError as e:
            click.echo(f"varcall: error: {e}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Exit:
            raise
        except KeyboardInterrupt as e:
            what = "terminated" if isinstance(e, Terminated) else "interrupted"
            click.echo(f"varcall: {what}; finished regions are kept (use --resume)", err=True)
            sys.exit(getattr(e, "exit_code", 130))
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    return wrapper
