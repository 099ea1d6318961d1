"""How the command line ends: library errors as one line on stderr and an exit code,
SIGINT / SIGTERM as a clean stop.

Library functions raise :class:`varcall.core.errors.VarcallError` with a one-line message;
:func:`handle_errors` prints it as ``varcall: error: ...`` and exits with its code (2 for
bad input). Ctrl-C exits 130 and SIGTERM 143, both after the run stopped cleanly.
"""

from __future__ import annotations

import functools
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


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into a one-line message and an exit code; SIGINT exits 130,
    SIGTERM 143, both after a clean stop."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _raise_terminated)
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
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper
