"""The Python API: ``varcall.call``, ``varcall.open_dataset`` and ``varcall.concordance``.

For notebooks and scripts, especially with a Dask ``Client`` already open. The functions
take the same parameters as the ``varcall call`` / ``varcall concordance`` commands (the
option names with underscores: ``--min-mapq`` is ``min_mapq=``) and check them the same way;
bad input raises :class:`~varcall.core.errors.InputError` (a ``ValueError``) with the same
one-line message the command prints, an unknown or mistyped keyword a ``TypeError``.

Regions given as strings are 1-based inclusive (``"chr1:1001-2000"``, as samtools); BED
files are 0-based half-open. ``varcall`` itself stays light to import: it loads this module
(and Dask, numba, sgkit) on first use of one of the three names.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from varcall.core.errors import InputError
from varcall.core.params import CallParams
from varcall.core.privacy import OutputOptions, parse_format_fields
from varcall.core.regions import Region
from varcall.plan.ploidy import PRESETS
from varcall.run.clusters import ClusterSpec
from varcall.run.pipeline import RunResult, run_call

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["CALL_OPTIONS", "RunResult", "call", "open_dataset", "concordance"]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

#: ``call`` keywords that are named differently from the dataclass field they set (the
#: command-line option's name, with underscores, on the left).
_ALIASES = {
    "ploidy_contig": "ploidy_by_contig",
    "scheduler": "scheduler_address",
    "cluster": "kind",
    "worker_type": "processes",
    "index": "build_index",
}

#: run_call keywords that ``call`` sets itself (or takes as ``regions=``).
_RUN_OWN = {
    "params", "mode", "cluster", "client", "engine", "region_strings", "regions_bed",
    "regions", "command_line", "output",
}  # fmt: skip
#: The other keywords of :func:`run_call` (``retries``, ``resume``, ``chunk_size``, ...),
#: passed on as they are (``progress`` is off by default).
_RUN_OPTIONS = {
    name: p.default
    for name, p in inspect.signature(run_call).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in _RUN_OWN
}

#: (type, lowest, highest) of the options with a range, as the command line checks them.
_RANGES: dict[str, tuple[type, float | None, float | None]] = {
    "min_mapq": (int, 0, None),
    "min_baseq": (int, 0, None),
    "ploidy": (int, 1, 2),
    "min_qual": (float, None, None),
    "memory_budget": (int, 1, None),
    "workers": (int, 1, None),
    "threads_per_worker": (int, 1, None),
    "cores": (int, 1, None),
    "jobs": (int, 1, None),
    "adapt_max": (int, 1, None),
    "cluster_timeout": (float, 0, None),
    "region_size": (int, 1, None),
    "region_count": (int, 1, None),
    "retries": (int, 0, None),
    "straggler_factor": (float, 1, None),
    "straggler_min_seconds": (float, 0, None),
    "chunk_size": (int, 1, None),
}

_PARAM_FIELDS = {f.name for f in dataclasses.fields(CallParams)} - {"engine", *CallParams.RESOLVED}
_CLUSTER_FIELDS = {f.name for f in dataclasses.fields(ClusterSpec)} - {"workers"}
_OUTPUT_FIELDS = {f.name for f in dataclasses.fields(OutputOptions)}

#: Every keyword ``call`` accepts in ``**options``.
CALL_OPTIONS = frozenset(
    _PARAM_FIELDS | _CLUSTER_FIELDS | _OUTPUT_FIELDS | set(_RUN_OPTIONS) | set(_ALIASES)
    | {"single_process", "cluster_config"}
)  # fmt: skip


def _unknown(name: str, known: frozenset[str] | set[str]) -> TypeError:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "; see help(varcall.call)"
    return TypeError(f"varcall.call() got an unexpected keyword argument {name!r}{hint}")


def _checked(name: str, value: Any) -> Any:
    """``value`` of option ``name`` checked against its type and range, as the CLI does."""
    kind, low, high = _RANGES[name]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise TypeError(f"{name}={value!r}: expected {kind.__name__}")
    flag = "--" + name.replace("_", "-")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"{low} to {high}" if high is not None else f"at least {low}"
        raise InputError(f"{flag} {value}: out of range; give a value {bounds}")
    return kind(value)


def _ploidy(value: Any) -> int | str:
    """``ploidy``: 1, 2 or an assembly name (``"GRCh38"``), as ``--ploidy`` takes it."""
    if isinstance(value, str):
        for name in PRESETS:
            if value.lower() == name.lower():
                return name
        if value not in ("1", "2"):
            raise InputError(f"--ploidy {value}: give 1, 2 or one of {', '.join(PRESETS)}")
        value = int(value)
    return _checked("ploidy", value)


def _path_or_none(name: str, value: Any) -> str | None:
    """A file option (``samples_file``, ``ploidy_file``, ``par_bed``) as a string path."""
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike):
        raise TypeError(f"{name}={value!r}: expected a path")
    return os.fspath(value)


def _ploidy_pairs(value: Any) -> tuple[tuple[str, int], ...]:
    """``ploidy_contig`` as (contig, ploidy) pairs: a mapping ``{"chrY": 1}``, pairs, or
    ``"CONTIG=1"`` strings as on the command line."""
    items = value.items() if isinstance(value, Mapping) else value
    if isinstance(items, str):
        items = [items]
    out = []
    for item in items:
        if isinstance(item, str):
            name, sep, num = item.rpartition("=")
            item = (name, num) if sep else (item, "")
        name, num = item
        if not name or str(num) not in ("1", "2"):
            raise InputError(
                f"--ploidy-contig {item!r}: expected CONTIG=1 or CONTIG=2 (e.g. chrY=1)"
            )
        out.append((str(name), int(num)))
    return tuple(out)


def _processes(value: Any) -> bool | None:
    """``worker_type`` ("auto", "process", "thread") or ``processes`` (bool/None)."""
    if value is None or isinstance(value, bool):
        return value
    if value in ("auto", "process", "thread"):
        return None if value == "auto" else value == "process"
    raise InputError(f"--worker-type {value!r}: choose auto, process or thread")


def _region_args(regions: Any) -> dict[str, Any]:
    """``regions`` as run_call keywords: a BED path (a ``Path``, or a string ending in
    ``.bed``), region strings (1-based inclusive), or :class:`Region` objects (0-based)."""
    if regions is None:
        return {}
    if isinstance(regions, os.PathLike) or (
        isinstance(regions, str) and regions.lower().endswith((".bed", ".bed.gz"))
    ):
        return {"regions_bed": Path(regions)}
    items = [regions] if isinstance(regions, str | Region) else list(regions)
    if items and all(isinstance(r, Region) for r in items):
        return {"regions": items}
    if not all(isinstance(r, str) for r in items):
        raise TypeError(
            "regions: expected region strings ('chr1', 'chr1:1001-2000'), a BED path or "
            "varcall Region objects"
        )
    return {"region_strings": tuple(items)}


def _split_options(options: dict[str, Any]) -> tuple[dict, dict, dict, dict]:
    """``call``'s options as CallParams, ClusterSpec, OutputOptions and run_call keywords
    (checked)."""
    params: dict[str, Any] = {}
    cluster: dict[str, Any] = {}
    output: dict[str, Any] = {}
    run: dict[str, Any] = {}
    for key, value in options.items():
        if key not in CALL_OPTIONS:
            raise _unknown(key, CALL_OPTIONS)
        name = _ALIASES.get(key, key)
        if name == "ploidy":
            value = _ploidy(value)
        elif name in _RANGES:
            value = _checked(name, value)
        if name in ("samples_file", "ploidy_file", "par_bed"):
            value = _path_or_none(name, value)
        elif name == "ploidy_by_contig":
            value = _ploidy_pairs(value)
        elif name == "processes":
            value = _processes(value)
        elif name == "format_fields":
            value = parse_format_fields(value)
        elif name == "stutter_table":  # "a,b,..." as on the command line, or numbers
            value = tuple(float(v) for v in (value.split(",") if isinstance(value, str) else value))
        elif name == "job_extra_directives" and isinstance(value, str):
            value = (value,)
        elif name == "job_extra_directives":
            value = tuple(value)
        target = (
            params if name in _PARAM_FIELDS
            else cluster if name in _CLUSTER_FIELDS
            else output if name in _OUTPUT_FIELDS
            else run
        )  # fmt: skip
        if name in target:
            raise TypeError(f"varcall.call(): {key!r} given twice (as {name!r} too)")
        target[name] = value
    return params, cluster, output, run


def _cluster(
    cluster: dict[str, Any], config: PathLike | None, workers: int | None, client: Any, single: bool
) -> ClusterSpec | None:
    """The ClusterSpec of the options (None with a client or ``single_process``)."""
    scheduler, kind = cluster.get("scheduler_address"), cluster.get("kind")
    if scheduler and kind:
        raise InputError("--scheduler and --cluster both given; use one of them")
    placed = scheduler or kind or config is not None or workers is not None
    if single and (placed or client is not None):
        raise InputError(
            "--single-process runs without Dask; drop client/workers/scheduler/cluster"
        )
    if client is not None and placed:
        raise InputError(
            "client= given with workers/scheduler/cluster; the client's workers run the "
            "regions, drop the others"
        )
    if kind is None and scheduler:
        cluster["kind"] = "scheduler"
    spec = ClusterSpec.from_config(config, workers=workers, **cluster)
    return None if single else spec


def _is_vcz_store(path: Path) -> bool:
    """Whether ``path`` is a Zarr store (format 2 or 3) folder."""
    return path.is_dir() and any((path / n).exists() for n in (".zgroup", ".zattrs", "zarr.json"))


def call(
    reference: PathLike,
    bams: PathLike | Sequence[PathLike],
    out: PathLike,
    *,
    regions: PathLike | Sequence[str] | Sequence[Region] | None = None,
    engine: str = "native",
    client: Any = None,
    workers: int | None = None,
    **options: Any,
) -> RunResult:
    """Call germline SNVs and indels of ``bams`` against ``reference`` into the folder ``out``.

    The same run as ``varcall call -f REFERENCE BAMS... -o OUT``: ``out`` gets
    ``calls.vcf.gz`` (+ ``.tbi``), ``calls.vcz``, ``manifest.json``, ``audit.jsonl``,
    ``regions.bed`` and ``work/``; the result does not depend on how the work is spread.

    reference: FASTA (plain or bgzip), ``.fai`` beside it or buildable there.
    bams: BAM/CRAM paths (indexed; samples from ``@RG SM``); one path is one file.
    regions: restrict the run: region strings (``"chr1"``, ``"chr1:1001-2000"``; 1-based
        inclusive), a BED file (a ``Path`` or a ``.bed`` string; 0-based half-open), or
        :class:`~varcall.core.regions.Region` objects (0-based half-open, not overlapping:
        the exact region layout, no planning).
    engine: ``native``, ``bcftools`` or ``freebayes``.
    client: an open ``distributed.Client``; its workers run the regions (they need this
        varcall and the same file paths). Not closed afterwards.
    workers: LocalCluster workers when there is no ``client`` (default: one per core).
    options: the other ``varcall call`` options with underscores: ``min_mapq``,
        ``min_baseq``, ``include_supplementary``, ``ploidy`` (1, 2, ``"GRCh37"`` or
        ``"GRCh38"``), ``ploidy_contig`` (``{"chrY": 1}`` or ``["chrY=1"]``),
        ``samples_file``, ``ploidy_file``, ``par_bed`` (paths), ``min_qual``,
        ``memory_budget`` (MiB per task), ``engine_args``, ``indel_errors`` (``"estimate"``
        or ``"prior"``), ``stutter_table`` (28 numbers), ``region_size``
        (bp), ``region_count``, ``single_process``, ``threads_per_worker``, ``worker_type``,
        ``scheduler``, ``tls_ca``/``tls_cert``/``tls_key``, ``cluster``, ``cluster_config``,
        ``queue``, ``account``, ``cores``, ``memory``, ``walltime``, ``jobs``, ``adapt_max``,
        ``job_extra_directives``, ``cluster_timeout`` (s), ``fallback_local``, ``retries``,
        ``speculate``, ``straggler_factor``, ``straggler_min_seconds``, ``resume``, ``overwrite``, ``index``, ``rename_duplicate_samples``, ``chunk_size``,
        ``progress`` (default False), ``format_fields`` (``"GT,GQ"`` or a list),
        ``sites_only``, ``pseudonymise_key``, ``pseudonym_map``, ``redact_paths``. See
        :data:`CALL_OPTIONS`.

    Returns the :class:`~varcall.run.pipeline.RunResult` (``out``, ``n_variants``,
    ``n_units``, ``wall_seconds``, ``manifest``). Raises ``TypeError`` for an unknown or
    mistyped keyword, :class:`InputError` for bad input (nothing created at ``out``),
    :class:`~varcall.core.errors.RegionError` when regions failed (finished ones are kept in
    ``out/work``; rerun with ``resume=True``) or :class:`~varcall.core.errors.VarcallError`.
    """
    if isinstance(bams, str | os.PathLike):
        bams = [bams]
    bams = [Path(b) for b in bams]
    workers = _checked("workers", workers)
    single = bool(options.pop("single_process", False))
    config = options.pop("cluster_config", None)
    param_kw, cluster_kw, output_kw, run_kw = _split_options(options)
    params = CallParams(engine=engine, **param_kw)
    spec = _cluster(cluster_kw, config, workers, client, single)
    logger.info("varcall.call: %d alignment file(s) -> %s", len(bams), out)
    return run_call(
        Path(reference),
        bams,
        Path(out),
        params=params,
        mode="single" if single else "distributed",
        cluster=spec,
        client=client,
        output=OutputOptions(**output_kw),
        **_region_args(regions),
        **run_kw,
    )


def open_dataset(path: PathLike) -> xr.Dataset:
    """The sgkit dataset (an ``xarray.Dataset``, lazy Dask arrays) of a ``varcall call``
    output folder (its ``calls.vcz``) or of a VCF Zarr store.

    Variables follow the VCF Zarr spec: ``variant_contig``, ``variant_position`` (the VCF
    POS, 1-based), ``variant_allele``, ``call_genotype`` (-1 missing, -2 fill for haploid
    calls), ``call_DP``, ``call_GQ``, ``call_AD``, ``call_PL``, ``sample_id``, ...
    Raises :class:`InputError` when ``path`` is neither.
    """
    from varcall.evaluate.qc import open_dataset as _open

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: not found; give a varcall output folder or a VCF Zarr store")
    store = p if _is_vcz_store(p) else p / "calls.vcz"
    if not _is_vcz_store(store):
        raise InputError(
            f"{p}: neither a VCF Zarr store nor a finished varcall output folder (no "
            "calls.vcz); give OUT of a finished run, or rerun it with resume=True"
        )
    return _open(store)


def concordance(
    a: PathLike,
    b: PathLike | None = None,
    *,
    reference: PathLike,
    truth: PathLike | None = None,
    bed: PathLike | None = None,
    out: PathLike | None = None,
    include_filtered: bool = False,
    qc: bool = True,
    match: str | None = None,
    pseudonymise_key: PathLike | None = None,
) -> dict[str, Any]:
    """Compare call set ``a`` with ``b``, and each with ``truth``: ``varcall concordance``.

    a, b: run folders, VCF/VCF.gz/BCF files or VCF Zarr stores. Without ``b``, ``a`` is
        measured against ``truth`` alone (then ``truth`` is required).
    reference: the FASTA the calls were made against (inputs are normalised with it).
    truth: a truth VCF/VCF.gz/BCF/VCF Zarr; bed: confident regions (0-based half-open);
        with haplotype matching a record counts when it overlaps them (hap.py), with
        ``match="exact"`` when its POS lies inside.
    match: ``"haplotype"`` (the default for the truth comparison; given explicitly, A vs B
        is also compared by haplotype) or ``"exact"`` (record-exact after normalisation).
    pseudonymise_key: the key a run was pseudonymised with, so the truth's sample names match.
    out: folder for ``metrics.json``, ``discordant.tsv`` and ``truth_errors.tsv``; None
        writes them to a temporary folder that is removed afterwards.
    include_filtered: count non-PASS records against the truth. qc: add sgkit QC.

    Returns the metrics dict, as ``metrics.json`` holds it: ``identity``, ``sites`` and
    ``genotypes`` (A vs B), ``truth`` (per set, ``SNP``/``INDEL`` TP/FP/FN, precision,
    recall, F1, strata), ``qc``. Raises :class:`InputError` for bad input.
    """
    from varcall.evaluate.concordance import run_concordance

    if b is None and truth is None:
        raise InputError("concordance: give b (a second call set) or truth (a truth VCF)")
    kwargs: dict[str, Any] = {
        "truth": truth, "bed": bed, "include_filtered": include_filtered, "qc": qc, "match": match
    }
    if pseudonymise_key is not None:
        kwargs["pseudonymise_key"] = pseudonymise_key
    if out is not None:
        return run_concordance(a, b, reference, out, **kwargs)
    with tempfile.TemporaryDirectory(prefix="varcall-concordance-") as tmp:
        return run_concordance(a, b, reference, tmp, **kwargs)
