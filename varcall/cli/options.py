"""Options several commands share (reference, region planning, progress, verbosity), the
logging ``-v`` sets up, and the BAM list of a command (arguments plus ``--bam-list``)."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from varcall.cli.dataclass_options import stacked
from varcall.cli.errors import handle_errors
from varcall.core.errors import InputError
from varcall.plan.regions import DEFAULT_REGION_SIZE
from varcall.run.prepare import TASKS_PER_SLOT

__all__ = [
    "FILE",
    "FOLDER",
    "out_option",
    "verbose_option",
    "reference_option",
    "progress_option",
    "bams_argument",
    "region_plan_options",
    "setup_logging",
    "command_body",
    "collect_bams",
]

#: Path types: an existing or new file, or folder (as a Path).
FILE = click.Path(dir_okay=False, path_type=Path)
FOLDER = click.Path(file_okay=False, path_type=Path)


def out_option(help: str | None = None, *, folder: bool) -> Callable[[Callable], Callable]:
    """The required ``-o/--out`` of a command: a folder or a file."""
    return click.option("-o", "--out", required=True, type=FOLDER if folder else FILE, help=help)


verbose_option = click.option("-v", "--verbose", count=True, help="More log output (-v, -vv).")
reference_option = click.option(
    "-f",
    "--reference",
    required=True,
    type=FILE,
    help="Reference FASTA (indexed with samtools faidx; the .fai is built when missing).",
)
progress_option = click.option(
    "--progress/--no-progress", default=True, show_default=True, help="Show progress bars."
)
bams_argument = click.argument("bams", nargs=-1, type=FILE)

#: Options shared by `varcall regions` and `varcall call`: region size or count, ``-r``
#: regions, a ``--regions`` BED and ``--bam-list``.
region_plan_options = stacked(
    click.option(
        "--region-size",
        type=click.IntRange(min=1),
        default=None,
        help=f"Target mean region length in bp (default: {DEFAULT_REGION_SIZE:,}; `call` plans "
        f"at least {TASKS_PER_SLOT} regions per worker). Regions are balanced by coverage.",
    ),
    click.option(
        "--region-count",
        type=click.IntRange(min=1),
        default=None,
        help="Plan about this many regions instead of a size.",
    ),
    click.option(
        "-r",
        "--region",
        "region_strings",
        multiple=True,
        help="Restrict to chr, chr:start-end (1-based, inclusive); repeatable.",
    ),
    click.option(
        "--regions", "regions_bed", type=FILE, default=None,
        help="Restrict to the intervals of a BED file (0-based half-open).",
    ),
    click.option(
        "-b", "--bam-list", type=FILE, default=None,
        help="File with one BAM/CRAM path per line (as bcftools -b).",
    ),
)  # fmt: skip


def setup_logging(verbose: int) -> None:
    """Log to stderr: warnings, or info with ``-v``, debug with ``-vv``."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def command_body(func: Callable[..., Any]) -> Callable[..., Any]:
    """What every command shares: the ``-v/--verbose`` option, logging set up from it
    before ``func`` runs, and :func:`~varcall.cli.errors.handle_errors` around it."""

    @functools.wraps(func)
    def run(*args: Any, verbose: int, **kwargs: Any) -> Any:
        setup_logging(verbose)
        return func(*args, **kwargs)

    return verbose_option(handle_errors(run))


def collect_bams(bams: tuple[Path, ...], bam_list: Path | None) -> list[Path]:
    """The alignment files of a command: its arguments, then the lines of ``bam_list``
    (blank and ``#`` lines skipped; relative paths are relative to the list's folder)."""
    out = list(bams)
    if bam_list is not None:
        if not bam_list.is_file():
            raise InputError(f"{bam_list}: BAM list not found; give an existing file to --bam-list")
        for line in bam_list.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                p = Path(line)
                out.append(p if p.is_absolute() else bam_list.parent / p)
    if not out:
        raise InputError("no BAM/CRAM files given; pass them as arguments or with --bam-list")
    return out
