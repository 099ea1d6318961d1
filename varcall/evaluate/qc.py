"""Call-set QC computed with sgkit on a genotype dataset.

The dataset is the run's VCF Zarr store opened with ``sgkit.load_dataset`` or, for a plain
VCF/BCF, one built with :func:`dataset_from_vcf` from the CallSets that
:func:`varcall.io.vcf_read.read_vcf` reads (same variable names). sgkit's
``sample_stats``/``variant_stats`` do not accept mixed ploidy, so variants whose calls are all
haploid (second genotype slot FILL = -2) are measured as a ploidy-1 dataset and the counts are
added to those of the diploid variants.

Reported (see :func:`qc_stats`): per sample call rate, counts of het / hom-alt calls, their
ratio, mean depth (FORMAT/DP, missing values skipped) and Ti/Tv; per variant the alternate
allele frequency spectrum, allele count spectrum and missingness; the distribution of
per-call depth. Nothing here looks at reads.
"""

from __future__ import annotations

import logging
import math
import os
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from varcall.core.callset import FILL
from varcall.core.errors import InputError
from varcall.io.vcf_header import header_contigs
from varcall.io.vcf_read import read_vcf, read_vcf_header

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

    from varcall.evaluate.sources import ResolvedInput

__all__ = ["dataset_from_vcf", "open_dataset", "qc_stats", "qc_for_input"]

logger = logging.getLogger(__name__)

#: A ``##FORMAT`` header line defining DP.
_FORMAT_DP_RE = re.compile(r"^##FORMAT=<(?:[^>]*?,)?ID=DP[,>]")
_TRANSITIONS = ["AG", "GA", "CT", "TC"]


def dataset_from_vcf(path: str | os.PathLike) -> xr.Dataset:
    """An sgkit genotype-call dataset (``call_genotype``, ``call_DP`` when the header defines
    FORMAT/DP) from a VCF/VCF.gz/BCF file, read with :func:`varcall.io.vcf_read.read_vcf`.
    ``variant_position`` holds VCF POS (1-based); haploid calls have FILL (-2) in the second
    ploidy slot, missing alleles MISSING (-1)."""
    import sgkit

    header = read_vcf_header(path)
    contigs = [name for name, _ in header_contigs(header)]
    has_dp = any(_FORMAT_DP_RE.match(line) for line in header.splitlines())
    samples: list[str] | None = None
    cidx, pos, alleles, gts, dps = [], [], [], [], []
    for cs in read_vcf(path):
        samples = list(cs.samples)
        if cs.contig not in contigs:
            contigs.append(cs.contig)
        cidx.append(np.full(cs.n_variants, contigs.index(cs.contig), np.int32))
        pos.append(cs.position + 1)
        alleles.append(cs.alleles.astype(object))
        gts.append(cs.genotype)
        dps.append(cs.DP)
    if samples is None:
        samples = list(_vcf_samples(header))
    n_var = sum(len(p) for p in pos)
    width = max((a.shape[1] for a in alleles), default=2)
    allele_arr = np.full((n_var, max(width, 2)), "", dtype=object)
    row = 0
    for a in alleles:
        allele_arr[row : row + a.shape[0], : a.shape[1]] = a
        row += a.shape[0]
    ds = sgkit.create_genotype_call_dataset(
        variant_contig_names=contigs,
        variant_contig=_concat(cidx, (0,), np.int32),
        variant_position=_concat(pos, (0,), np.int32),
        variant_allele=allele_arr,
        sample_id=np.array(samples, dtype=object),
        call_genotype=_concat(gts, (0, len(samples), 2), np.int8),
    )
    if has_dp:
        ds["call_DP"] = (("variants", "samples"), _concat(dps, (0, len(samples)), np.int32))
    return ds


def _concat(parts: list[np.ndarray], empty_shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """``parts`` joined along the first axis as ``dtype``; an empty array when there are none."""
    if not parts:
        return np.zeros(empty_shape, dtype=dtype)
    return np.concatenate(parts).astype(dtype)


def _vcf_samples(header: str) -> list[str]:
    """The sample names of a VCF header text (the #CHROM line's columns after FORMAT)."""
    for line in header.splitlines():
        if line.startswith("#CHROM"):
            return line.rstrip("\n").split("\t")[9:]
    return []


def open_dataset(vcz: str | os.PathLike) -> xr.Dataset:
    """Open a VCF Zarr store with sgkit."""
    import sgkit

    try:
        return sgkit.load_dataset(str(vcz))
    except Exception as e:  # zarr/xarray raise many kinds of errors for a bad store
        raise InputError(f"{vcz}: cannot open as a VCF Zarr store ({e}); check the store") from e


def _split_ploidy(ds: xr.Dataset) -> list[tuple[np.ndarray, np.ndarray, xr.Dataset]]:
    """(variant indexes, sample indexes, dataset) parts of one ploidy each: records are
    grouped by which samples are haploid (GT slot 1 FILL: sex chromosomes, ploidy 0 too),
    and each group split into its diploid samples and its haploid ones reduced to one
    ploidy slot, so that sgkit sees no mixed-ploidy call (either part may be absent)."""
    gt = np.asarray(ds["call_genotype"].values)
    n_var, n_s = gt.shape[:2]
    if gt.shape[2] < 2:
        return [(np.arange(n_var), np.arange(n_s), ds)]
    haploid = gt[:, :, 1] == FILL
    keep = [v for v in ("call_genotype", "variant_allele", "sample_id") if v in ds]
    base = ds[keep].copy()  # new variables: dropping an attribute must not touch ``ds``
    base["call_genotype"].attrs = {
        k: v for k, v in base["call_genotype"].attrs.items() if k != "mixed_ploidy"
    }
    parts = []
    patterns, group = np.unique(haploid, axis=0, return_inverse=True)
    for k, pattern in enumerate(patterns):
        rows = np.flatnonzero(group.reshape(-1) == k)
        for hap in (False, True):
            cols = np.flatnonzero(pattern == hap)
            if cols.size:
                part = base.isel(variants=rows, samples=cols)
                parts.append((rows, cols, part.isel(ploidy=slice(0, 1)) if hap else part))
    return parts


def _ratio(a: float, b: float) -> float | None:
    return float(a) / float(b) if b else None


def _hist(values: np.ndarray, edges: np.ndarray) -> dict:
    counts, _ = np.histogram(values, bins=edges)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def qc_stats(ds: xr.Dataset) -> dict:
    """QC numbers of a genotype dataset (see the module docstring). Rates are fractions in
    [0, 1]; depths are read counts; ``None`` where undefined (e.g. Ti/Tv without SNPs)."""
    import sgkit

    samples = [str(s) for s in np.asarray(ds["sample_id"].values)]
    n_var = int(ds.sizes.get("variants", 0))
    out: dict[str, Any] = {"n_variants": n_var, "n_samples": len(samples)}
    zeros = np.zeros(len(samples), np.int64)
    called, het, hom_alt, hom_ref = zeros.copy(), zeros.copy(), zeros.copy(), zeros.copy()
    n_alleles = int(ds.sizes.get("alleles", 0))
    allele_count = np.zeros((n_var, n_alleles), np.int64)
    allele_total = np.zeros(n_var, np.int64)
    n_called_v = np.zeros(n_var, np.int64)
    if n_var:
        for rows, cols, part in _split_ploidy(ds):
            ss = sgkit.sample_stats(part, merge=False).compute()
            called[cols] += ss["sample_n_called"].values.astype(np.int64)
            het[cols] += ss["sample_n_het"].values.astype(np.int64)
            hom_alt[cols] += ss["sample_n_hom_alt"].values.astype(np.int64)
            hom_ref[cols] += ss["sample_n_hom_ref"].values.astype(np.int64)
            vs = sgkit.variant_stats(part, merge=False).compute()
            allele_count[rows] += np.asarray(vs["variant_allele_count"].values, np.int64)
            allele_total[rows] += np.asarray(vs["variant_allele_total"].values, np.int64)
            n_called_v[rows] += np.asarray(vs["variant_n_called"].values, np.int64)
    af_values: list[np.ndarray] = []
    ac_values: list[np.ndarray] = []
    call_rate_v: list[np.ndarray] = []
    if n_var:
        allele = np.asarray(ds["variant_allele"].values)
        real = ((allele != "") & (allele != b"") & (allele != "."))[:, 1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            af = allele_count[:, 1:] / allele_total[:, None]
        af_values.append(af[real & ~np.isnan(af)])
        ac_values.append(allele_count[:, 1:][real])
        if samples:
            call_rate_v.append(n_called_v / len(samples))
    titv_s, titv_all = _ti_tv(ds)
    mean_dp = _mean_depth(ds)
    out["samples"] = {
        s: {
            "n_called": int(called[i]),
            "call_rate": _ratio(called[i], n_var),
            "n_hom_ref": int(hom_ref[i]),
            "n_het": int(het[i]),
            "n_hom_alt": int(hom_alt[i]),
            "het_hom_alt_ratio": _ratio(het[i], hom_alt[i]),
            "mean_depth": mean_dp[i] if mean_dp is not None else None,
            "ti": int(titv_s[i][0]),
            "tv": int(titv_s[i][1]),
            "ti_tv": _ratio(titv_s[i][0], titv_s[i][1]),
        }
        for i, s in enumerate(samples)
    }
    out["ti_tv"] = {"ti": titv_all[0], "tv": titv_all[1], "ratio": _ratio(*titv_all)}
    af = np.concatenate(af_values) if af_values else np.zeros(0)
    ac = np.concatenate(ac_values) if ac_values else np.zeros(0, np.int64)
    out["af_spectrum"] = _hist(af, np.linspace(0.0, 1.0, 11))
    max_ac = int(ac.max()) if ac.size else 0
    out["allele_count_spectrum"] = {
        "allele_count": list(range(1, max_ac + 1)),
        "counts": [int(np.sum(ac == k)) for k in range(1, max_ac + 1)],
    }
    rate = np.concatenate(call_rate_v) if call_rate_v else np.zeros(0)
    miss = 1.0 - rate
    out["missingness"] = {
        "mean": float(miss.mean()) if miss.size else None,
        "variants_with_missing": int(np.sum(miss > 0)),
        "histogram": _hist(miss, np.linspace(0.0, 1.0, 11)),
    }
    out["depth"] = _depth_hist(ds)
    return out


def _mean_depth(ds: xr.Dataset) -> list[float | None] | None:
    if "call_DP" not in ds:
        return None
    dp = np.asarray(ds["call_DP"].values, dtype=float)
    dp[dp < 0] = np.nan
    res: list[float | None] = []
    for i in range(dp.shape[1] if dp.ndim == 2 else 0):
        col = dp[:, i]
        col = col[~np.isnan(col)]
        res.append(float(col.mean()) if col.size else None)
    return res


def _depth_hist(ds: xr.Dataset) -> dict | None:
    if "call_DP" not in ds:
        return None
    dp = np.asarray(ds["call_DP"].values).ravel()
    dp = dp[dp >= 0]
    if not dp.size:
        return {"edges": [], "counts": [], "mean": None, "median": None}
    top = float(np.percentile(dp, 99.5))
    width = max(1, math.ceil((top + 1) / 40))
    edges = np.arange(0, top + width + 1, width, dtype=float)
    clipped = np.minimum(dp, edges[-1] - 0.5)
    res = _hist(clipped, edges)
    res.update(mean=float(dp.mean()), median=float(np.median(dp)), clipped_at=float(edges[-1]))
    return res


def _ti_tv(ds: xr.Dataset) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """Per-sample (Ti, Tv): each distinct SNP alt allele in a sample's genotype counts once per
    variant; overall: each SNP alt allele carried by any sample counts once."""
    allele = np.char.upper(np.asarray(ds["variant_allele"].values).astype(str))
    gt = np.asarray(ds["call_genotype"].values).astype(np.int64)
    n_samp = gt.shape[1]
    ref = allele[:, :1]
    bases = list("ACGT")
    snv = (
        (np.char.str_len(allele) == 1)
        & (np.char.str_len(ref) == 1)
        & np.isin(allele, bases)
        & np.isin(ref, bases)
        & (allele != ref)
    )
    transition = snv & np.isin(np.char.add(ref, allele), _TRANSITIONS)
    cls = np.where(transition, 1, np.where(snv, 2, 0)).astype(np.int8)  # 0 none, 1 ti, 2 tv
    cls[:, 0] = 0
    per = []
    seen_any = np.zeros(allele.shape, bool)
    for s in range(n_samp):
        ti = tv = 0
        g = gt[:, s, :]
        for p in range(g.shape[1]):
            a = g[:, p]
            ok = a > 0
            if p > 0:
                ok &= np.all(g[:, :p] != a[:, None], axis=1)
            idx = np.flatnonzero(ok)
            c = cls[idx, a[idx]]
            ti += int(np.sum(c == 1))
            tv += int(np.sum(c == 2))
            seen_any[idx, a[idx]] = True
        per.append((ti, tv))
    total = (int(np.sum((cls == 1) & seen_any)), int(np.sum((cls == 2) & seen_any)))
    return per, total


def qc_for_input(resolved: ResolvedInput) -> dict:
    """QC of one concordance input: its VCF Zarr store with sgkit when there is one, else a
    dataset built from its VCF. Adds ``source`` (the path measured)."""
    ds = None
    source = None
    if resolved.vcz is not None:
        try:
            ds = open_dataset(resolved.vcz)
            source = str(resolved.vcz)
        except InputError as e:
            if resolved.vcf is None:
                raise
            logger.warning("%s; measuring %s instead", e, resolved.vcf)
    if ds is None:
        assert resolved.vcf is not None
        ds = dataset_from_vcf(resolved.vcf)
        source = str(resolved.vcf)
    if "call_genotype" not in ds:  # a sites-only output (varcall call --sites-only)
        raise InputError(
            f"{source}: sites-only call set (no FORMAT/GT); per-sample QC needs genotypes, "
            "call without --sites-only for it"
        )
    res = qc_stats(ds)
    res["source"] = source
    return res
