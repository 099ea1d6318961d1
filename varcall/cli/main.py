"""The ``varcall`` command line: the command group and the console entry point.

The commands live in :mod:`varcall.cli.call` and :mod:`varcall.cli.commands`; they parse
options, call library functions and report. Library errors become ``varcall: error: ...``
on stderr and a non-zero exit (2 for bad input; see :mod:`varcall.cli.errors`). No work is
done in this package.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import sys
import threading

import click

from varcall import __version__
from varcall.cli.call import call
from varcall.cli.commands import audit, concordance, regions, report, simulate
from varcall.core.allocator import keep_freed_memory, no_huge_pages

__all__ = ["main", "entry"]

logger = logging.getLogger(__name__)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="varcall")
def main() -> None:
    """varcall: germline SNV and indel calling from BAM files, exact at any scale."""


for _command in (simulate, regions, call, concordance, report, audit):
    main.add_command(_command)


def _run_main() -> int | str | None:
    """:func:`main` on the process' arguments; its exit status. A usage error (an unknown
    option, a bad option value, a missing argument) ends in one line, as every other
    failure does: ``varcall: error: <what>; see 'varcall <command> --help'`` and exit 2,
    instead of click's usage block."""
    try:
        main.main(standalone_mode=False)
    except click.exceptions.UsageError as e:
        where = e.ctx.command_path if e.ctx is not None else "varcall"
        message = " ".join(e.format_message().split()).rstrip(".")
        click.echo(f"varcall: error: {message}; see '{where} --help'", err=True)
        return e.exit_code
    except click.exceptions.ClickException as e:  # e.g. a file that cannot be opened
        click.echo(f"varcall: error: {' '.join(e.format_message().split())}", err=True)
        return e.exit_code
    except click.exceptions.Abort:  # Ctrl-C while click prompts or parses
        click.echo("varcall: interrupted", err=True)
        return 130
    return 0


def entry() -> None:
    """The ``varcall`` console script: :func:`main`, then a quick exit.

    Every output is written and closed when a command returns. The interpreter's own
    teardown after that (the cyclic collector's last walk over numba's typing context,
    Dask and zarr objects, then freeing every module and LLVM's compiled code) took
    0.3-0.45 s, then still 0.11 s with ``gc.freeze()``: a tenth of a small single-process
    run. So once the command has ended, the exit functions run as usual (``atexit``:
    temporary folders, logging, Dask), the standard streams are flushed, and the process
    ends with ``os._exit`` (same exit status) unless a non-daemon thread is still running,
    in which case the interpreter exits the usual way.

    First, freed large arrays are kept for reuse rather than unmapped
    (:func:`varcall.core.allocator.keep_freed_memory`: fewer page faults per window), and
    numpy asks for no huge pages (:func:`varcall.core.allocator.no_huge_pages`)."""
    keep_freed_memory()
    no_huge_pages()
    try:
        code = _run_main()
    except SystemExit as e:
        code = e.code
    gc.freeze()
    if isinstance(code, str):  # what Python does with a message as the exit code
        print(code, file=sys.stderr)
        code = 1
    status = 0 if code is None else int(code)
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if any(not t.daemon for t in others):
        sys.exit(status)
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing left to say
            pass
    os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    entry()
