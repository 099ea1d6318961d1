"""``varcall call``: its options come from :class:`~varcall.core.params.CallParams` (how to
call), :class:`ClusterSpec` (where Dask tasks run) and the keywords of
:func:`varcall.run.pipeline.run_call`, with their defaults; the command only builds them
and calls :func:`~varcall.run.pipeline.run_call`."""

from __future__ import annotations

import inspect
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from varcall.cli.dataclass_options import FieldOption, OptionGroup, stacked
from varcall.cli.options import (
    FILE,
    bams_argument,
    collect_bams,
    command_body,
    out_option,
    progress_option,
    reference_option,
    region_plan_options,
)
from varcall.core.errors import InputError
from varcall.core.params import CallParams
from varcall.core.privacy import ALL_FORMAT_FIELDS, OutputOptions, parse_format_fields
from varcall.engines import ENGINE_NAMES
from varcall.plan.ploidy import PRESETS
from varcall.run import pipeline
from varcall.run.clusters import JOBQUEUE_KINDS, ClusterSpec
from varcall.run.network import DEFAULT_DASHBOARD

__all__ = ["PARAM_OPTIONS", "CLUSTER_OPTIONS", "OUTPUT_OPTIONS", "call", "parse_ploidy_contig"]


def parse_ploidy_contig(values: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    """``--ploidy-contig`` values (``CONTIG=1`` or ``CONTIG=2``) as (contig, ploidy) pairs."""
    out = []
    for v in values:
        name, sep, num = v.rpartition("=")
        if not sep or not name or num not in ("1", "2"):
            raise InputError(f"--ploidy-contig {v!r}: expected CONTIG=1 or CONTIG=2 (e.g. chrY=1)")
        out.append((name, int(num)))
    return tuple(out)


class PloidyType(click.ParamType):
    """``--ploidy``: 1, 2, or an assembly name with built-in PARs (GRCh37, GRCh38)."""

    name = "1|2|" + "|".join(PRESETS)

    def convert(self, value: Any, param: Any, ctx: Any) -> int | str:
        if isinstance(value, int) and not isinstance(value, bool) and value in (1, 2):
            return value
        text = str(value)
        if text in ("1", "2"):
            return int(text)
        for name in PRESETS:
            if text.lower() == name.lower():
                return name
        self.fail(f"{text!r}: give 1, 2, {' or '.join(PRESETS)}", param, ctx)


#: Help of the native engine's FILTER thresholds (definitions: varcall.core.filters).
FILTER_OPTION_HELP = {
    "min_qd": "LowQD when INFO/QD (QUAL / ALT carriers' AD depth) is below this.",
    "max_fs": "StrandBias when INFO/FS (Fisher strand, phred) is above this (SNV records).",
    "max_sor": "StrandBias when INFO/SOR (symmetric odds ratio) is above this (SNV records).",
    "max_fs_indel": "StrandBias when INFO/FS is above this (records with an indel ALT).",
    "max_sor_indel": "StrandBias when INFO/SOR is above this (records with an indel ALT).",
    "min_allele_balance": "AlleleBalance when INFO/AB (ALT share of het carriers' reads) is "
    "below this, ABQ is above --max-abq and no sample is hom-ALT.",
    "max_abq": "AlleleBalance needs INFO/ABQ (binomial phred of so few ALT reads) above this.",
    "max_mq0f": "MappingQuality when INFO/MQ0F (share of MAPQ-0 reads) is above this.",
    "min_rms_mapq": "MappingQuality when INFO/MQ (RMS MAPQ of the reads used) is below this.",
    "max_alt_mapq_drop": "MappingQuality when INFO/MQMR - MQM (mean MAPQ of REF reads minus "
    "that of ALT reads) is above this.",
    "min_mq_ranksum": "MappingQuality when INFO/MQRankSum (ALT vs REF MAPQ, Z) is below this.",
    "min_readpos_ranksum": "ReadPosBias when INFO/ReadPosRankSum (ALT vs REF distance to "
    "the read end, Z) is below this.",
}


def parse_stutter_table(value: str) -> tuple[float, ...]:
    """``--stutter-table`` "a,b,..." -> a tuple of floats (empty: none given)."""
    if not value:
        return ()
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise InputError(
            f"--stutter-table {value!r}: expected comma-separated numbers (copy "
            "params.stutter_table from a run's manifest.json)"
        ) from None


#: How to call: the fields of CallParams.
PARAM_OPTIONS = OptionGroup(
    CallParams,
    [
        FieldOption(
            "engine", ("--engine",), type=click.Choice(ENGINE_NAMES), show_default=True,
            help="Calling engine: varcall's own, or bcftools / freebayes run per region.",
        ),
        FieldOption(
            "engine_args", ("--engine-args",),
            help="Extra arguments for an external engine, shell-quoted. bcftools: words go to "
            "mpileup; after a bare 'call:' they go to bcftools call (e.g. \"-d 500 call: -P "
            "0.01\"). freebayes: passed to freebayes. Options varcall sets itself are refused.",
        ),
        FieldOption(
            "min_mapq", ("--min-mapq",), type=click.IntRange(min=0), show_default=True,
            help="Ignore reads with a lower mapping quality.",
        ),
        FieldOption(
            "min_baseq", ("--min-baseq",), type=click.IntRange(min=0), show_default=True,
            help="Ignore bases with a lower base quality.",
        ),
        FieldOption(
            "include_supplementary", ("--include-supplementary",),
            help="Use supplementary alignments.",
        ),
        FieldOption(
            "ploidy", ("--ploidy",), type=PloidyType(), show_default=True,
            help="Default ploidy of every contig (1 or 2), or an assembly whose sex "
            "chromosomes and PARs are built in (GRCh37, GRCh38; needs --samples-file).",
        ),
        FieldOption(
            "ploidy_by_contig", ("--ploidy-contig",), multiple=True, parse=parse_ploidy_contig,
            help="Per-contig ploidy for every sample, CONTIG=1 or CONTIG=2 (e.g. chrM=1); "
            "repeatable; wins over the other ploidy options on that contig.",
        ),
        FieldOption(
            "samples_file", ("--samples-file",), type=click.Path(dir_okay=False),
            help="SAMPLE SEX per line (M or F, or the sexes of --ploidy-file), naming every "
            "sample, as bcftools call -S.",
        ),
        FieldOption(
            "ploidy_file", ("--ploidy-file",), type=click.Path(dir_okay=False),
            help="Ploidy by sex and region, bcftools' format: CHROM FROM TO SEX PLOIDY "
            "(1-based inclusive; PLOIDY 0-2); needs --samples-file.",
        ),
        FieldOption(
            "par_bed", ("--par-bed",), type=click.Path(dir_okay=False),
            help="BED of the PARs on X/chrX and Y/chrY (another assembly): males haploid "
            "on X and Y outside them, females without Y; needs --samples-file.",
        ),
        FieldOption(
            "min_qual", ("--min-qual",), type=float, show_default=True,
            help="Records below this QUAL get the LowQual filter.",
        ),
        FieldOption(
            "indel_errors", ("--indel-errors",), type=click.Choice(["estimate", "prior"]),
            show_default=True,
            help="Native engine: estimate the PCR stutter rates of repeats from the run's "
            "reads, or use the built-in prior.",
        ),
        FieldOption(
            "stutter_table", ("--stutter-table",), default="", parse=parse_stutter_table,
            help="Native engine: use this stutter table (the comma-separated params."
            "stutter_table of a run's manifest.json) instead of estimating one.",
        ),
        # the annotation FILTERs of the native engine (varcall.core.filters); inf / -inf: off
        *(
            FieldOption(field, (f"--{field.replace('_', '-')}",), type=float, show_default=True,
                        help=text)
            for field, text in FILTER_OPTION_HELP.items()
        ),
        FieldOption(
            "memory_budget", ("--memory-budget",), type=click.IntRange(min=1),
            show_default=True,
            help="MiB of memory per task (native engine): windows of reads are sized from "
            "the indexes to stay within it at any depth. Calls do not depend on it.",
        ),
    ],
)  # fmt: skip

#: What the outputs carry (patient data): fields of OutputOptions.
OUTPUT_OPTIONS = OptionGroup(
    OutputOptions,
    [
        FieldOption(
            "format_fields", ("--format-fields",), default=",".join(ALL_FORMAT_FIELDS),
            show_default=True, parse=parse_format_fields,
            help="Per-sample FORMAT fields in the VCF and the VCF Zarr store (GT required), "
            "e.g. GT or GT,GQ.",
        ),
        FieldOption(
            "sites_only", ("--sites-only",),
            help="No sample columns and no call_* arrays (INFO AC/AN stay).",
        ),
        FieldOption(
            "pseudonymise_key", ("--pseudonymise-key",), type=click.Path(dir_okay=False),
            help="Key file (mode 600): sample names in every output become P-<HMAC-SHA256 "
            "prefix>, stable per key and name. The file is never copied.",
        ),
        FieldOption(
            "pseudonym_map", ("--pseudonym-map",), type=click.Path(dir_okay=False),
            help="With --pseudonymise-key: write {pseudonym: sample} here (mode 600, outside "
            "OUT).",
        ),
        FieldOption(
            "redact_paths", ("--redact-paths",),
            help="No absolute path, user or host name in any output; inputs named by "
            "basename and digest.",
        ),
    ],
)  # fmt: skip

_cluster_config_option = click.option(
    "--cluster-config",
    type=FILE,
    default=None,
    help="YAML file with cluster settings (keys as the options: queue, account, ...).",
)

#: Where tasks run: fields of ClusterSpec. Their default None means "not given": the
#: cluster config file's value, else the spec's own default, applies.
CLUSTER_OPTIONS = OptionGroup(
    ClusterSpec,
    [
        FieldOption(
            "workers", ("--workers",), type=click.IntRange(min=1),
            help="LocalCluster workers (default: one per core).",
        ),
        FieldOption(
            "threads_per_worker", ("--threads-per-worker",), type=click.IntRange(min=1),
            help="Threads of each LocalCluster worker (regions run in parallel inside it) "
            "[default: {default}].",
        ),
        FieldOption(
            "processes", ("--worker-type",), type=click.Choice(["auto", "process", "thread"]),
            default="auto", show_default=True,
            parse=lambda v: None if v == "auto" else v == "process",
            help="LocalCluster workers as processes or as threads of this process; auto: a "
            "single worker runs as a thread (no process start-up), several as processes.",
        ),
        FieldOption(
            "scheduler_address", ("--scheduler",), help="Address of an existing Dask scheduler."
        ),
        FieldOption(
            "kind", ("--cluster",), type=click.Choice(list(JOBQUEUE_KINDS)),
            help="Start workers as batch jobs (dask-jobqueue).",
        ),
        FieldOption("queue", ("--queue",), help="Batch queue / partition."),
        FieldOption("account", ("--account",), help="Batch account / project."),
        FieldOption(
            "cores", ("--cores",), type=click.IntRange(min=1), help="Cores per batch job."
        ),
        FieldOption("memory", ("--memory",), help="Memory per batch job, e.g. 16GB."),
        FieldOption("walltime", ("--walltime",), help="Wall time per batch job, e.g. 02:00:00."),
        FieldOption(
            "jobs", ("--jobs",), type=click.IntRange(min=1), help="Number of batch jobs."
        ),
        FieldOption(
            "adapt_max", ("--adapt-max",), type=click.IntRange(min=1),
            help="Scale batch jobs adaptively up to this many.",
        ),
        FieldOption(
            "job_extra_directives", ("--job-extra-directives",), multiple=True, parse=tuple,
            help="Extra batch directive (e.g. '--qos=long'); repeatable.",
        ),
        FieldOption(
            "cluster_timeout", ("--cluster-timeout",), type=click.FloatRange(min=0),
            help="Seconds to wait for the first batch-job worker; then stop (default: wait).",
        ),
        FieldOption(
            "fallback_local", ("--fallback-local",), parse=lambda v: v or None,
            help="With --cluster-timeout: when no batch worker started in time, run on a "
            "local cluster instead (said in the log, manifest and report).",
        ),
        FieldOption(
            "dashboard_address", ("--dashboard",), flag_value=DEFAULT_DASHBOARD,
            help="Serve the Dask dashboard at ADDRESS (PORT, :PORT or HOST:PORT; without "
            f"one {DEFAULT_DASHBOARD}; a bare port listens on 127.0.0.1 only). Default: no "
            "dashboard. Every other socket of a local run listens on 127.0.0.1.",
        ),
        FieldOption(
            "tls_ca", ("--tls-ca",), type=click.Path(dir_okay=False),
            help="CA file for a TLS scheduler.",
        ),
        FieldOption(
            "tls_cert", ("--tls-cert",), type=click.Path(dir_okay=False),
            help="Client certificate for a TLS scheduler.",
        ),
        FieldOption(
            "tls_key", ("--tls-key",), type=click.Path(dir_okay=False),
            help="Client key for a TLS scheduler.",
        ),
    ],
    extra={"kind": _cluster_config_option},
    default=None,
)  # fmt: skip


def _run_default(name: str) -> Any:
    """The default of keyword ``name`` of :func:`~varcall.run.pipeline.run_call`."""
    return inspect.signature(pipeline.run_call).parameters[name].default


#: The options of ``run_call``'s own keywords (retries, resume, ... chunk size).
run_options = stacked(
    click.option(
        "--retries", default=_run_default("retries"), show_default=True,
        type=click.IntRange(min=0), help="Retries per failing region.",
    ),
    click.option(
        "--speculate/--no-speculate", default=_run_default("speculate"), show_default=True,
        help="Start a straggling Dask task a second time on another worker; the first "
        "result wins (outputs unchanged). See --straggler-factor.",
    ),
    click.option(
        "--straggler-factor", default=_run_default("straggler_factor"), show_default=True,
        type=click.FloatRange(min=1), metavar="K",
        help="A task is a straggler after K times the median run time of the finished tasks "
        "(and at least --straggler-min-seconds).",
    ),
    click.option(
        "--straggler-min-seconds", default=_run_default("straggler_min_seconds"),
        show_default=True, type=click.FloatRange(min=0), metavar="S",
        help="Never start a second copy of a task before it ran S seconds.",
    ),
    click.option(
        "--pack/--no-pack", default=_run_default("pack"), show_default=True,
        help="Group neighbouring small regions into Dask tasks of similar work (each region "
        "keeps its checkpoint; calls unchanged); --no-pack: one task per region.",
    ),
    click.option("--resume", is_flag=True, help="Reuse finished regions in OUT/work."),
    click.option(
        "--overwrite", is_flag=True,
        help="Replace the outputs of an existing OUT (removed when calling starts).",
    ),
    click.option(
        "--index", "build_index", is_flag=True,
        help="Build missing or stale BAM/CRAM indexes (beside the files).",
    ),
    click.option(
        "--rename-duplicate-samples", is_flag=True,
        help="Rename a sample name repeated across files S -> S.2, S.3, ... (native engine).",
    ),
    click.option(
        "--chunk-size", default=_run_default("chunk_size"), show_default=True,
        type=click.IntRange(min=1), help="VCF Zarr chunk length along variants.",
    ),
)  # fmt: skip


def cluster_spec(kwargs: dict[str, Any], single_process: bool) -> ClusterSpec:
    """The :class:`ClusterSpec` of ``call``'s options (removed from click's ``kwargs``):
    ``--cluster-config`` updated with the cluster options given."""
    config = kwargs.pop("cluster_config")
    values = CLUSTER_OPTIONS.values(kwargs)
    scheduler, cluster = values["scheduler_address"], values["kind"]
    if scheduler and cluster:
        raise InputError("--scheduler and --cluster both given; use one of them")
    if single_process and (scheduler or cluster):
        raise InputError("--single-process runs without Dask; drop --scheduler/--cluster")
    if single_process and values["dashboard_address"] is not None:
        raise InputError("--single-process runs without Dask, so without a dashboard; drop --dashboard")
    values["kind"] = cluster or ("scheduler" if scheduler else None)
    return ClusterSpec.from_config(config, **values)


@click.command()
@reference_option
@bams_argument
@out_option(
    "Output folder (calls.vcf.gz, calls.vcz, manifest.json, regions.bed, work/).", folder=True
)
@click.option(
    "--single-process",
    is_flag=True,
    help="No Dask: the engine's own whole-genome run in this process.",
)
@PARAM_OPTIONS
@region_plan_options
@CLUSTER_OPTIONS
@run_options
@OUTPUT_OPTIONS
@progress_option
@command_body
def call(
    reference: Path,
    bams: tuple[Path, ...],
    out: Path,
    single_process: bool,
    bam_list: Path | None,
    **kwargs: Any,
) -> None:
    """Call germline SNVs and indels: one Dask task per region (default) or --single-process."""
    paths = collect_bams(bams, bam_list)
    spec = cluster_spec(kwargs, single_process)
    params = PARAM_OPTIONS.from_click_kwargs(kwargs)
    output = OUTPUT_OPTIONS.from_click_kwargs(kwargs)
    result = pipeline.run_call(
        reference,
        paths,
        out,
        params=params,
        mode="single" if single_process else "distributed",
        cluster=spec,
        command_line=shlex.join(["varcall", *sys.argv[1:]]),
        output=output,
        **kwargs,  # region planning and run_call's own options, by their keyword names
    )
    shown = Path(out).name if output.redact_paths else out
    click.echo(
        f"wrote {result.n_variants:,} variants from {result.n_units} "
        f"{'regions' if result.mode == 'distributed' else 'units'} to {shown} "
        f"in {result.wall_seconds:.1f} s",
        err=True,
    )
