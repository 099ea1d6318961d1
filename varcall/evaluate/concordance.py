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
- **truth** (when a truth set is given): per sample, a variant is a record whose genotype
  carries the ALT allele. A query variant with the same key as a truth variant is an *allele
  match*; with the same genotype class as well, a *genotype match*. As in GA4GH benchmarking
  (hap.py), TP counts genotype matches, and an allele match with the wrong genotype counts
  once as FP and once as FN (reported apart as ``FP_gt``/``FN_gt``); the allele-level counts
  (``TP_allele`` ...) ignore the genotype. Only PASS/unfiltered records count unless
  ``include_filtered``. With a BED file, records whose POS lies outside it are ignored in the
  truth and the query (bcftools ``-T`` semantics). Counts are summed over the shared samples
  and stratified by contig, type, indel length and read depth (the query's FORMAT/DP for the
  sample when the query has a record at the site, else the truth's, else, for varcall run
  folders, the read depth in the run's BAMs; ``unknown`` when none is available).
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

from varcall import __version__
from varcall.core.errors import InputError
from varcall.core.files import write_json_atomic, write_tsv_atomic
from varcall.evaluate.bed import BedIntervals, read_bed
from varcall.evaluate.identity import MAX_LISTED, compare_identity, compare_manifests
from varcall.evaluate.normalise import NormalisedSet, load_normalised, normalise
from varcall.evaluate.qc import qc_for_input
from varcall.evaluate.sources import ResolvedInput, as_vcf, resolve_input
from varcall.evaluate.truth import BamDepth, compare_truth

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
    b: str | os.PathLike,
    reference: str | os.PathLike,
    out_dir: str | os.PathLike,
    truth: str | os.PathLike | None = None,
    bed: str | os.PathLike | None = None,
    include_filtered: bool = False,
    qc: bool = True,
) -> dict:
    """Compare ``a`` with ``b`` (and each with ``truth``); write ``out_dir``/metrics.json,
    ``discordant.tsv`` (A vs B) and, with a truth set, ``truth_errors.tsv``. Returns the
    metrics dict (as written)."""
    reference = Path(reference)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    bed_ivs = read_bed(bed) if bed is not None else None
    workdir = Path(tempfile.mkdtemp(prefix=".concordance-", dir=out_dir))
    try:
        ra, na = _prepare(a, reference, workdir, "A")
        rb, nb = _prepare(b, reference, workdir, "B")
        nt = _prepare(truth, reference, workdir, "T")[1] if truth is not None else None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    result = compare_identity(na, nb)
    discordant = result.pop("_discordant")
    result["identity"]["digests"] = _digests(ra, rb, result["identity"]["identical"], a, b)
    metrics: dict[str, Any] = {
        "varcall_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "inputs": {
            "A": _input_info(ra, na),
            "B": _input_info(rb, nb),
            "reference": str(reference),
            "truth": str(truth) if truth is not None else None,
            "bed": str(bed) if bed is not None else None,
            "include_filtered": include_filtered,
        },
        **result,
    }
    errors: list[dict] = []
    if nt is not None:
        errors = _truth_section(
            metrics, [("A", na, ra), ("B", nb, rb)], nt, bed_ivs, include_filtered
        )
    if qc:
        metrics["qc"] = {"A": qc_for_input(ra), "B": qc_for_input(rb)}
    write_tsv_atomic(out_dir / "discordant.tsv", discordant, DISCORDANT_COLUMNS)
    if nt is not None:
        write_tsv_atomic(out_dir / "truth_errors.tsv", errors, TRUTH_ERROR_COLUMNS)
        metrics["truth_errors"] = errors[:MAX_LISTED]
        metrics["truth_errors_truncated"] = len(errors) > MAX_LISTED
    write_json_atomic(out_dir / "metrics.json", metrics, indent=1, sort_keys=False)
    return metrics


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
) -> list[dict]:
    """Compare each labelled set with the truth ``nt`` into ``metrics["truth"]`` (and the
    truth's normalisation and the BED size into ``metrics["inputs"]``); returns the error
    rows of all sets, each with its ``set`` label."""
    metrics["inputs"]["truth_normalisation"] = nt.norm_stats
    metrics["truth"] = {}
    errors: list[dict] = []
    for label, ns, res in sets:
        bam_depth = BamDepth(res.manifest) if res.manifest is not None else None
        try:
            t = compare_truth(ns, nt, bed_ivs, include_filtered, depth_at=bam_depth or None)
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
        "normalisation": ns.norm_stats,
        "records_normalised": ns.n_records,
    }
