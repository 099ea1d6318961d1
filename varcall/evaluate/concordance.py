"""Compare call sets: A against B (identity), and each against a truth set (GA4GH-style).

Every input (VCF, VCF.gz, BCF, VCF Zarr store, or a ``varcall call`` run folder) is first
normalised with ``bcftools norm`` from pysam: multi-allelic records are split into biallelic
ones (``-m -any``), indels are left-aligned and trimmed against the reference, and every REF
is checked against the reference (a mismatch stops with an error naming the file). The
comparisons then run on the normalised records, keyed by (contig, 0-based POS, REF, ALT).

What is computed (all counts are exact; nothing is sampled):

- **identity**: records present in only one set, and records present in both whose content
  differs (QUAL, FILTER, the INFO fields both headers define, GT of every shared sample and the
  FORMAT fields both headers define). Unphased genotypes are compared as unordered.
- **sites**: site concordance (shared / union of the record keys).
- **genotypes**: for each shared sample a matrix GT-in-A x GT-in-B over the union of records,
  classes ``absent`` (no record), ``./.`` (missing or partial), ``0/0``, ``0/1``, ``1/1``
  (haploid calls count as ``0/0`` / ``1/1``).
- **truth** (when a truth set is given): GA4GH counting (hap.py with the vcfeval engine) of
  each set against the truth, by haplotype-aware matching (``match="haplotype"``, the
  default: equal haplotype sequences match whatever their representation) or record-exact
  matching (``match="exact"``); see :mod:`varcall.evaluate.truth` for the rules, the BED
  semantics of each and the strata.
- **haplotype identity** (only with ``match="haplotype"`` given explicitly): A measured
  against B by haplotype matching, so that representation differences do not count; the
  record-exact ``identity`` verdict stays as it is.
- **digests** (fast path): when both inputs are varcall run folders whose manifests carry
  per-region digests over the same region layout, identity is also checked region by region
  (per contig otherwise), naming the regions that differ.

Coordinates are 0-based inside; positions written to TSV/JSON for people are 1-based VCF POS
(field ``pos``).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pysam

from varcall import __version__
from varcall.core.errors import InputError
from varcall.core.files import write_json_atomic, write_tsv_atomic
from varcall.core.privacy import ALL_FORMAT_FIELDS, pseudonym, read_key
from varcall.evaluate.bed import BedIntervals, read_bed
from varcall.evaluate.identity import MAX_LISTED, compare_identity, compare_manifests
from varcall.evaluate.normalise import NormalisedSet, load_normalised, normalise
from varcall.evaluate.qc_normalised import qc_normalised
from varcall.evaluate.sources import ResolvedInput, as_vcf, resolve_input
from varcall.evaluate.truth import MATCH_METHODS, BamDepth, compare_truth

__all__ = ["run_concordance"]

logger = logging.getLogger(__name__)

#: Columns of ``discordant.tsv`` (A vs B) and ``truth_errors.tsv``.
DISCORDANT_COLUMNS = ("contig", "pos", "ref", "alt", "status", "differences")
TRUTH_ERROR_COLUMNS = (
    "set", "sample", "contig", "pos", "ref", "alt", "type", "call", "truth_gt", "query_gt",
    "depth",
)  # fmt: skip


def _prepare(
    path: str | os.PathLike, reference: Path, workdir: Path, label: str
) -> tuple[ResolvedInput, NormalisedSet]:
    resolved = resolve_input(path)
    vcf = as_vcf(resolved, workdir, label)
    out = workdir / f"{label}.norm.vcf.gz"
    stats = normalise(vcf, reference, out)
    logger.info(
        "%s: %d records, %d split, %d realigned",
        vcf,
        stats["total"],
        stats["split"],
        stats["realigned"],
    )
    ns = load_normalised(out, label, str(path), stats)
    return resolved, ns


def run_concordance(
    a: str | os.PathLike,
    b: str | os.PathLike | None,
    reference: str | os.PathLike,
    out_dir: str | os.PathLike,
    truth: str | os.PathLike | None = None,
    bed: str | os.PathLike | None = None,
    include_filtered: bool = False,
    qc: bool = True,
    match: str | None = None,
    pseudonymise_key: str | os.PathLike | None = None,
) -> dict:
    """Compare ``a`` with ``b`` (and each with ``truth``); write ``out_dir``/metrics.json,
    ``discordant.tsv`` (A vs B) and, with a truth set, ``truth_errors.tsv``. Returns the
    metrics dict (as written). With ``b`` None, ``a`` is measured against ``truth`` alone:
    no identity/sites/genotypes sections and no ``discordant.tsv``.

    ``match``: how records are matched against the truth, ``"haplotype"`` (None means this)
    or ``"exact"``; given as ``"haplotype"``, A vs B is also compared by haplotype
    (``identity["haplotype"]``).
    ``pseudonymise_key``: see :func:`_truth_set`. Minimised inputs: see :func:`_qc_section`."""
    if match is not None and match not in MATCH_METHODS:
        raise InputError(f"--match {match}: unknown method; use one of {', '.join(MATCH_METHODS)}")
    truth_match = match or "haplotype"
    reference = Path(reference)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    bed_ivs = read_bed(bed) if bed is not None else None
    workdir = Path(tempfile.mkdtemp(prefix=".concordance-", dir=out_dir))
    try:
        ra, na = _prepare(a, reference, workdir, "A")
        rb, nb = _prepare(b, reference, workdir, "B") if b is not None else (None, None)
        nt = _truth_set(truth, reference, workdir, pseudonymise_key)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    result: dict[str, Any] = {}
    if rb is not None and nb is not None:
        result = compare_identity(na, nb)
        discordant = result.pop("_discordant")
        result["identity"]["digests"] = _digests(ra, rb, result["identity"]["identical"], a, b)
        if match == "haplotype":
            with _Reference(reference) as fetch:
                result["identity"]["haplotype"] = _haplotype_identity(na, nb, fetch)
    metrics: dict[str, Any] = {
        "varcall_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "inputs": {
            "A": _input_info(ra, na),
            "B": _input_info(rb, nb) if rb is not None and nb is not None else None,
            "reference": str(reference),
            "truth": str(truth) if truth is not None else None,
            "bed": str(bed) if bed is not None else None,
            "include_filtered": include_filtered,
        },
        "match": truth_match,
        **result,
    }
    errors: list[dict] = []
    if nt is not None:
        sets = [("A", na, ra)] + ([("B", nb, rb)] if rb is not None and nb is not None else [])
        with _Reference(reference) as fetch:
            errors = _truth_section(
                metrics, sets, nt, bed_ivs, include_filtered, truth_match, fetch
            )
    if qc:
        _qc_section(
            metrics,
            [("A", ra, na)] + ([("B", rb, nb)] if rb is not None and nb is not None else []),
        )
    if rb is not None:
        write_tsv_atomic(out_dir / "discordant.tsv", discordant, DISCORDANT_COLUMNS)
    if nt is not None:
        write_tsv_atomic(out_dir / "truth_errors.tsv", errors, TRUTH_ERROR_COLUMNS)
        metrics["truth_errors"] = errors[:MAX_LISTED]
        metrics["truth_errors_truncated"] = len(errors) > MAX_LISTED
    write_json_atomic(out_dir / "metrics.json", metrics, indent=1, sort_keys=False)
    return metrics


def _truth_set(
    truth: str | os.PathLike | None,
    reference: Path,
    workdir: Path,
    pseudonymise_key: str | os.PathLike | None,
) -> NormalisedSet | None:
    """The normalised truth (None without one). ``pseudonymise_key``: the key file of a
    ``varcall call --pseudonymise-key`` run; the truth's sample names become the pseudonyms
    that key gives, so that they meet the run's."""
    if truth is None:
        return None
    nt = _prepare(truth, reference, workdir, "T")[1]
    if pseudonymise_key is not None:
        key = read_key(pseudonymise_key)
        nt = dataclasses.replace(nt, samples=tuple(pseudonym(key, s) for s in nt.samples))
    return nt


def _qc_section(
    metrics: dict[str, Any], inputs: list[tuple[str, ResolvedInput, NormalisedSet]]
) -> None:
    """sgkit QC of each labelled input, on its normalised PASS records (see
    :mod:`varcall.evaluate.qc_normalised`), into ``metrics["qc"]``; a sites-only input (no
    genotypes) gets a line in ``metrics["qc_skipped"]`` instead (and ``truth_skipped``
    in the truth section); ``inputs.X.missing_format_fields`` name what a minimised
    input lacks."""
    metrics["qc"] = {}
    for label, r, ns in inputs:
        try:
            metrics["qc"][label] = qc_normalised(r, ns)
        except InputError as e:
            if "sites-only" not in str(e):
                raise
            metrics.setdefault("qc_skipped", {})[label] = str(e)


def _digests(ra: ResolvedInput, rb: ResolvedInput, identical: bool, a: Any, b: Any) -> dict:
    """The digest fast path of two inputs; a warning when it disagrees with the records."""
    digests = compare_manifests(ra.manifest, rb.manifest)
    if digests["identical"] is not None and digests["identical"] != identical:
        logger.warning(
            "digest comparison (%s) and record comparison disagree on identity of %s and %s",
            digests["method"], a, b,
        )  # fmt: skip
    return digests


def _truth_section(
    metrics: dict[str, Any],
    sets: list[tuple[str, NormalisedSet, ResolvedInput]],
    nt: NormalisedSet,
    bed_ivs: BedIntervals | None,
    include_filtered: bool,
    match: str,
    fetch: Any,
) -> list[dict]:
    """Compare each labelled set with the truth ``nt`` into ``metrics["truth"]`` (and the
    truth's normalisation and the BED size into ``metrics["inputs"]``); returns the error
    rows of all sets, each with its ``set`` label."""
    metrics["inputs"]["truth_normalisation"] = nt.norm_stats
    metrics["truth"] = {}
    errors: list[dict] = []
    for label, ns, res in sets:
        if not ns.samples:  # varcall call --sites-only: no genotypes
            metrics.setdefault("truth_skipped", {})[label] = (
                "sites-only call set: no genotypes to compare with the truth"
            )
            continue
        bam_depth = BamDepth(res.manifest) if res.manifest is not None else None
        try:
            t = compare_truth(
                ns, nt, bed_ivs, include_filtered, depth_at=bam_depth or None, match=match,
                fetch=fetch,
            )  # fmt: skip
        finally:
            if bam_depth is not None:
                bam_depth.close()
        t["depth_source"] = (
            "FORMAT/DP of the call; read depth in the run's BAMs where there is no call"
            if bam_depth
            else "FORMAT/DP of the call (or of the truth record); 'unknown' where neither has one"
        )
        for e in t.pop("_errors"):
            errors.append({"set": label, **e})
        metrics["truth"][label] = t
    if bed_ivs is not None:
        metrics["inputs"]["bed_bp"] = sum(e - s for ivs in bed_ivs.values() for s, e in ivs)
    return errors


class _Reference:
    """``fetch(contig, start, end)``: upper-case reference bases of a 0-based half-open span
    (a context manager that closes the FASTA)."""

    def __init__(self, path: Path) -> None:
        self._fa = pysam.FastaFile(str(path))

    def __enter__(self) -> _Reference:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fa.close()

    def __call__(self, contig: str, start: int, end: int) -> str:
        return self._fa.fetch(contig, start, end).upper()


def _haplotype_identity(na: NormalisedSet, nb: NormalisedSet, fetch: _Reference) -> dict:
    """A against B by haplotype matching (every record, filtered ones too): the records of
    each set with no haplotype-equivalent in the other, summed over the shared samples
    (``identical`` None with a ``reason`` when they share no sample)."""
    try:
        t = compare_truth(na, nb, include_filtered=True, match="haplotype", fetch=fetch)
    except InputError as e:
        return {"identical": None, "reason": str(e)}
    blocks = [t[k] for k in ("SNP", "INDEL", "OTHER") if k in t]
    only_a = sum(b["FP"] for b in blocks)
    only_b = sum(b["FN"] for b in blocks)
    return {
        "identical": only_a == 0 and only_b == 0,
        "only_in_a": only_a,
        "only_in_b": only_b,
        "genotype_differs_a": sum(b["FP_gt"] for b in blocks),
        "genotype_differs_b": sum(b["FN_gt"] for b in blocks),
        "matched_a": sum(b["TP_call"] for b in blocks),
        "matched_b": sum(b["TP_baseline"] for b in blocks),
        "clusters": t["matching"]["clusters"],
        "samples": t["samples"],
    }


def _input_info(r: ResolvedInput, ns: NormalisedSet) -> dict:
    m = r.manifest
    return {
        "path": str(r.path),
        "vcf": str(r.vcf) if r.vcf else None,
        "vcz": str(r.vcz) if r.vcz else None,
        "run_folder": m is not None,
        "mode": m.mode if m is not None else None,
        "engine": dataclasses.asdict(m.engine) if m is not None else None,
        "samples": list(ns.samples),
        "format_fields": [f for f in ALL_FORMAT_FIELDS if f in ns.format_ids],
        "missing_format_fields": [f for f in ALL_FORMAT_FIELDS if f not in ns.format_ids],
        "output_options": dict(m.output_options) if m is not None else None,
        "normalisation": ns.norm_stats,
        "records_normalised": ns.n_records,
    }
