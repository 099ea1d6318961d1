"""The ``varcall`` command line: parses options, calls library functions, reports.

Library functions raise :class:`varcall.errors.VarcallError` (or ``ValueError``) with a
one-line message; here they become ``varcall: error: ...`` on stderr and a non-zero exit
(2 for bad input). No work is done in this module.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import click

from varcall import __version__
from varcall.errors import InputError, VarcallError

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- helpers
def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def handle_errors(func):
    """Turn library errors into a one-line message and an exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except VarcallError as e:
            click.echo(f"varcall: error: {e}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Exit:
            raise
        except KeyboardInterrupt:
            click.echo("varcall: interrupted; finished regions are kept (use --resume)", err=True)
            sys.exit(130)

    return wrapper


verbose_option = click.option("-v", "--verbose", count=True, help="More log output (-v, -vv).")
reference_option = click.option(
    "-f",
    "--reference",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Reference FASTA (indexed with samtools faidx; the .fai is built when missing).",
)
progress_option = click.option(
    "--progress/--no-progress", default=True, show_default=True, help="Show progress bars."
)


def region_plan_options(func):
    """Options shared by `varcall regions` and `varcall call`."""
    opts = [
        click.option(
            "--region-size",
            type=click.IntRange(min=1),
            default=None,
            help="Target region length in bp (default: 5,000,000 / balanced).",
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
            "--regions",
            "regions_bed",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Restrict to the intervals of a BED file (0-based half-open).",
        ),
        click.option(
            "-b",
            "--bam-list",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="File with one BAM/CRAM path per line (as bcftools -b).",
        ),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def _collect_bams(bams: tuple[Path, ...], bam_list: Path | None) -> list[Path]:
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


# ----------------------------------------------------------------------------- root
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="varcall")
def main() -> None:
    """varcall: germline SNV and indel calling from BAM files, exact at any scale."""


# ----------------------------------------------------------------------------- simulate
@main.command()
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--samples", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--contigs", default=2, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--length",
    default=200_000,
    show_default=True,
    type=click.IntRange(min=1000),
    help="Length of each contig in bp.",
)
@click.option("--coverage", default=30.0, show_default=True, type=click.FloatRange(min=0.1))
@click.option("--read-length", default=150, show_default=True, type=click.IntRange(min=30))
@click.option("--insert-mean", default=400, show_default=True, type=click.IntRange(min=50))
@click.option("--insert-sd", default=50, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--haploid-contigs",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Make the last K contigs haploid (like chrY / MT).",
)
@click.option(
    "--boundary",
    "boundaries",
    multiple=True,
    type=int,
    help="0-based positions on the first contig where variants must be planted "
    "(on, just before and across the point); repeatable.",
)
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@verbose_option
@handle_errors
def simulate(
    out,
    samples,
    contigs,
    length,
    coverage,
    read_length,
    insert_mean,
    insert_sd,
    haploid_contigs,
    boundaries,
    seed,
    overwrite,
    verbose,
):
    """Simulate a deterministic cohort: reference, truth VCF, confident BED and BAMs."""
    _setup_logging(verbose)
    from varcall.simulate import SimulationConfig, simulate_cohort

    config = SimulationConfig(
        n_samples=samples,
        n_contigs=contigs,
        contig_length=length,
        coverage=coverage,
        read_length=read_length,
        insert_mean=insert_mean,
        insert_sd=insert_sd,
        n_haploid_contigs=haploid_contigs,
        boundary_positions=tuple(boundaries),
        seed=seed,
    )
    result = simulate_cohort(out, config, overwrite=overwrite)
    click.echo(f"wrote {result}")


if __name__ == "__main__":  # pragma: no cover
    main()
