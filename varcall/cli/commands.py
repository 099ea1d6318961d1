"""The commands around calling: ``simulate`` (a test cohort), ``regions`` (the region
plan), ``concordance`` (compare call sets) and ``report`` (the HTML page). Each parses its
options, calls one library function and says what it wrote."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from varcall.cli.dataclass_options import FieldOption, OptionGroup
from varcall.cli.options import (
    FILE,
    FOLDER,
    bams_argument,
    collect_bams,
    command_body,
    out_option,
    reference_option,
    region_plan_options,
)
from varcall.core.errors import InputError
from varcall.simulate.config import SimulationConfig

__all__ = ["SIMULATION_OPTIONS", "simulate", "regions", "concordance", "report", "audit"]

#: What to simulate: fields of SimulationConfig.
SIMULATION_OPTIONS = OptionGroup(
    SimulationConfig,
    [
        FieldOption("n_samples", ("--samples",), type=click.IntRange(min=1), show_default=True),
        FieldOption("n_contigs", ("--contigs",), type=click.IntRange(min=1), show_default=True),
        FieldOption(
            "contig_length", ("--length",), type=click.IntRange(min=1000), show_default=True,
            help="Length of each contig in bp.",
        ),
        FieldOption("coverage", ("--coverage",), type=click.FloatRange(min=0.1), show_default=True),
        FieldOption(
            "read_length", ("--read-length",), type=click.IntRange(min=30), show_default=True
        ),
        FieldOption(
            "insert_mean", ("--insert-mean",), type=click.IntRange(min=50), show_default=True
        ),
        FieldOption("insert_sd", ("--insert-sd",), type=click.IntRange(min=0), show_default=True),
        FieldOption(
            "n_haploid_contigs", ("--haploid-contigs",), type=click.IntRange(min=0),
            show_default=True, help="Make the last K contigs haploid (like chrY / MT).",
        ),
        FieldOption(
            "boundary_positions", ("--boundary",), type=int, multiple=True, parse=tuple,
            help="0-based positions on the first contig where variants must be planted "
            "(on, just before and across the point); repeatable.",
        ),
        FieldOption("seed", ("--seed",), type=int, show_default=True),
    ],
)  # fmt: skip


@click.command()
@out_option(folder=True)
@SIMULATION_OPTIONS
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@command_body
def simulate(out: Path, overwrite: bool, **kwargs: Any) -> None:
    """Simulate a deterministic cohort: reference, truth VCF, confident BED and BAMs."""
    from varcall.simulate.cohort import simulate_cohort

    config = SIMULATION_OPTIONS.from_click_kwargs(kwargs)
    result = simulate_cohort(out, config, overwrite=overwrite)
    click.echo(f"wrote {result}")


@click.command()
@reference_option
@bams_argument
@out_option("BED file to write (0-based half-open).", folder=False)
@region_plan_options
@command_body
def regions(
    reference: Path,
    bams: tuple[Path, ...],
    out: Path,
    region_size: int | None,
    region_count: int | None,
    region_strings: tuple[str, ...],
    regions_bed: Path | None,
    bam_list: Path | None,
) -> None:
    """Plan coverage-balanced regions from the reference and the BAM indexes (no reads read)."""
    from varcall.core.regions import write_bed
    from varcall.plan.inputs import resolve_inputs
    from varcall.plan.regions import plan_regions
    from varcall.plan.validate import validate_regions
    from varcall.plan.validate_reference import check_reference

    paths = collect_bams(bams, bam_list)
    check_reference(reference)  # readable, indexed (the .fai built when missing)
    for p in paths:
        if not Path(p).is_file():
            raise InputError(f"{p}: file not found; check the path")
    if not out.parent.is_dir():
        raise InputError(f"{out}: folder {out.parent} does not exist; create it first")
    inputs = resolve_inputs(reference, paths)
    restrict = validate_regions(region_strings, regions_bed, inputs.contigs) or None
    plan = plan_regions(
        inputs, region_size=region_size, region_count=region_count, restrict=restrict
    )
    write_bed(plan, out)
    total = sum(r.length for r in plan)
    click.echo(f"wrote {len(plan)} regions ({total:,} bp) to {out}", err=True)


def _fmt_rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _echo_concordance(m: dict[str, Any]) -> None:
    """The summary lines of concordance metrics ``m`` on stdout."""
    ident = m["identity"]
    if ident["identical"]:
        click.echo(f"identity: A and B are identical ({ident['records_a']:,} records)")
    else:
        click.echo(
            f"identity: {ident['differing']:,} records differ "
            f"({ident['only_in_a']:,} only in A, {ident['only_in_b']:,} only in B, "
            f"{ident['content_differs']:,} with other content; "
            f"{ident['records_a']:,} vs {ident['records_b']:,} records)"
        )
    dig = ident.get("digests") or {}
    if dig.get("method"):
        verdict = "identical" if dig["identical"] else f"{len(dig['differing'])} differ"
        click.echo(f"digests: {dig['compared']} {dig['method']}s compared, {verdict}")
    hap = ident.get("haplotype")
    if hap and hap.get("identical") is not None:
        click.echo(
            f"haplotypes: A and B {'spell the same haplotypes' if hap['identical'] else 'differ'} "
            f"({hap['only_in_a']:,} records of A and {hap['only_in_b']:,} of B unmatched)"
        )
    if m.get("truth") and m.get("match"):
        click.echo(f"truth matching: {m['match']}")
    for label, t in (m.get("truth") or {}).items():
        for vtype in ("SNP", "INDEL"):
            r = t[vtype]
            click.echo(
                f"truth {label} {vtype}: TP {r['TP']:,} FP {r['FP']:,} FN {r['FN']:,} "
                f"precision {_fmt_rate(r['precision'])} recall {_fmt_rate(r['recall'])} "
                f"F1 {_fmt_rate(r['F1'])}"
            )


@click.command()
@reference_option
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path))
@click.option(
    "--truth",
    type=click.Path(path_type=Path),
    default=None,
    help="Truth set (VCF, VCF.gz, BCF or VCF Zarr) to measure A and B against.",
)
@click.option(
    "--bed",
    type=FILE,
    default=None,
    help="Confident regions (BED): only records in it count against the truth (see --match).",
)
@click.option(
    "--include-filtered",
    is_flag=True,
    help="Count filtered (non-PASS) query records against the truth too.",
)
@click.option(
    "--match", type=click.Choice(["haplotype", "exact"]), default=None,
    help="How records are matched against the truth: 'haplotype' (the default: equal haplotype "
    "sequences match, however written; the BED counts records that overlap it) or 'exact' "
    "(normalised records; the BED counts records whose POS is inside). Given as 'haplotype', "
    "A vs B is also compared by haplotype.",
)  # fmt: skip
@click.option("--qc/--no-qc", default=True, show_default=True, help="Add sgkit QC of A and B.")
@click.option(
    "--pseudonymise-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Key file of a 'varcall call --pseudonymise-key' run: the truth's sample names are "
    "pseudonymised with it to meet the run's.",
)  # fmt: skip
@click.option(
    "--require-identical",
    is_flag=True,
    help="Exit with code 1 when A and B are not identical (metrics are still written).",
)
@out_option("Output folder (created; files in it are replaced).", folder=True)
@command_body
def concordance(
    reference: Path,
    a: Path,
    b: Path,
    truth: Path | None,
    bed: Path | None,
    include_filtered: bool,
    match: str | None,
    qc: bool,
    pseudonymise_key: Path | None,
    require_identical: bool,
    out: Path,
) -> None:
    """Compare call sets A and B (VCF, VCF.gz, BCF, VCF Zarr or run folders), and each with a
    truth set; writes OUT/metrics.json, OUT/discordant.tsv and OUT/truth_errors.tsv."""
    from varcall.evaluate.concordance import run_concordance

    m = run_concordance(
        a, b, reference, out, truth=truth, bed=bed, include_filtered=include_filtered, qc=qc,
        **({"match": match} if match is not None else {}),
        # only when given: the keyword is new, callers (and tests) that predate it see no change
        **({"pseudonymise_key": pseudonymise_key} if pseudonymise_key is not None else {}),
    )  # fmt: skip
    _echo_concordance(m)
    click.echo(f"wrote {out / 'metrics.json'}")
    ident = m["identity"]
    if require_identical and not ident["identical"]:
        click.echo(
            f"varcall: error: {a} and {b} are not identical ({ident['differing']:,} records "
            f"differ); see {out / 'discordant.tsv'}",
            err=True,
        )
        sys.exit(1)


@click.command()
@click.argument("runs", nargs=-1, required=True, type=FOLDER)
@click.option(
    "--concordance", "concordance_dirs", multiple=True, type=FOLDER,
    help="Folder written by 'varcall concordance' (its metrics.json is shown); repeatable.",
)  # fmt: skip
@out_option("HTML file to write; metrics.json is written beside it.", folder=False)
@command_body
def report(runs: tuple[Path, ...], concordance_dirs: tuple[Path, ...], out: Path) -> None:
    """Write one self-contained HTML report for run folders RUNS (side by side), with
    metrics.json beside it."""
    from varcall.report.html import write_report

    path = write_report(list(runs), out, concordance_dir=list(concordance_dirs))
    click.echo(f"wrote {path}")


@click.command()
@click.argument("out", type=FOLDER)
@click.option(
    "--json", "as_json", is_flag=True,
    help="Print the summary as JSON (every input with every region read from it).",
)  # fmt: skip
@command_body
def audit(out: Path, as_json: bool) -> None:
    """Summarise OUT/audit.jsonl of run folder OUT: which inputs each task read, on which
    worker and host, when, its attempts and outcomes, and the regions read per input."""
    import json

    from varcall.evaluate.audit import format_audit, summarise_audit

    summary = summarise_audit(out)
    click.echo(json.dumps(summary, indent=2) if as_json else format_audit(summary))
