"""Accuracy per dataset and per stratum (the hard datasets' ``strata/*.bed``).

For one call set: ``varcall concordance --truth --bed`` once over the confident BED and
once per stratum BED (each already inside the confident BED, written by
``build_dataset.py``), on the records with FILTER PASS/. and QUAL at or above a threshold.
A tool may be measured at several thresholds (freebayes: QUAL >= 0 and >= 20); per variant
type the threshold with the higher F1 over the confident BED is kept, and its strata are
reported. F1 is the genotype-aware F1 of ``metrics.json`` (``truth.A.<type>.F1``); the
genotype concordance is TP / TP_allele over SNPs and indels (each at its threshold).
"""

from __future__ import annotations

import bisect
import json
import logging
import shutil
import subprocess
from pathlib import Path

import pysam

logger = logging.getLogger("benchmarks.strata_accuracy")

TYPES = ("SNP", "INDEL")
KEYS = ("TP", "FP", "FN", "TP_allele", "precision", "recall", "F1")


def filter_vcf(vcf: Path, min_qual: float) -> Path:
    """``vcf`` restricted to FILTER PASS/. and QUAL >= ``min_qual`` (bgzipped, indexed)."""
    out = vcf.with_name(vcf.name.replace(".vcf.gz", "") + f".q{min_qual:g}.vcf.gz")
    cmd = ["bcftools", "view", "-i", f"QUAL>={min_qual:g}", "-f", "PASS,.", "-Oz", "-o"]
    subprocess.run([*cmd, str(out), str(vcf)], check=True, capture_output=True)
    subprocess.run(["tabix", "-f", "-p", "vcf", str(out)], check=True, capture_output=True)
    return out


def strata_beds(ds: Path) -> dict[str, Path]:
    """Stratum name -> BED of a dataset (empty when it has none); empty BEDs are left out."""
    folder = ds / "strata"
    return {
        p.stem: p for p in sorted(folder.glob("*.bed")) if p.stat().st_size > 0
    } if folder.is_dir() else {}  # fmt: skip


def concordance(varcall: Path, ds: Path, vcf: Path, bed: Path, out: Path) -> dict:
    """SNP/INDEL counts and F1 of ``vcf`` vs the dataset's truth inside ``bed``."""
    shutil.rmtree(out, ignore_errors=True)
    truth = ds / "truth.vcf.gz"
    cmd = [str(varcall), "concordance", "--reference", str(ds / "reference.fa"), str(vcf)]
    cmd += [str(truth), "--truth", str(truth), "--bed", str(bed), "--no-qc", "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    metrics = out / "metrics.json"
    if r.returncode != 0 or not metrics.is_file():
        msg = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        return {"status": "failed", "reason": f"varcall concordance: {msg}"}
    t = json.loads(metrics.read_text()).get("truth", {}).get("A", {})
    res: dict = {"status": "ok"}
    contigs = (t.get("strata") or {}).get("contig") or {}
    for kind in TYPES:
        block = t.get(kind) or {}
        res[kind] = {k: block.get(k) for k in KEYS}
        res[kind]["contigs"] = {
            c: {k: (v.get(kind) or {}).get(k) for k in KEYS} for c, v in contigs.items()
        }
    return res


def measure(varcall: Path, ds: Path, vcf: Path, quals: tuple[float, ...] = (20.0,)) -> dict:
    """Accuracy of one call set over the confident BED and every stratum, at each QUAL
    threshold of ``quals``; per type the threshold with the higher confident-BED F1 is
    kept (the first on ties). Returns ``{"status", "SNP": {..., "min_qual", "strata":
    {name: {...}}}, "INDEL": ..., "genotype_concordance"}``."""
    beds = {"confident": ds / "confident.bed", **strata_beds(ds)}
    by_qual: dict[float, dict[str, dict]] = {}
    for q in quals:
        fvcf = filter_vcf(vcf, q)
        by_qual[q] = {}
        for name, bed in beds.items():
            out = vcf.parent.with_name(f"{vcf.parent.name}.q{q:g}.{name}.concordance")
            by_qual[q][name] = concordance(varcall, ds, fvcf, bed, out)
            if by_qual[q][name]["status"] != "ok":
                return by_qual[q][name]
    res: dict = {"status": "ok"}
    for kind in TYPES:
        best = max(quals, key=lambda q: (by_qual[q]["confident"][kind].get("F1") or -1.0, -q))
        res[kind] = {
            **by_qual[best]["confident"][kind],
            "min_qual": best,
            "strata": {n: by_qual[best][n][kind] for n in beds if n != "confident"},
        }
    num = sum(res[k].get("TP") or 0 for k in TYPES)
    den = sum(res[k].get("TP_allele") or 0 for k in TYPES)
    res["genotype_concordance"] = num / den if den else None
    res["snv_in_het_deletion"] = snv_in_deletion(
        ds / "truth.vcf.gz", filter_vcf(vcf, res["SNP"]["min_qual"])
    )
    return res


def _gt(rec: pysam.VariantRecord, sample: str) -> tuple:
    return tuple(a for a in (rec.samples[sample].get("GT") or ()) if a is not None)


def snv_in_deletion(truth: Path, query: Path) -> dict:
    """Truth SNVs that lie inside a deletion of the truth (carried on the other haplotype
    of the same sample): of the (sample, SNV) carriers, how many the query calls
    heterozygous (one copy of an ALT allele carrying the SNV's base in a diploid GT, from
    any record that covers the SNV with an allele as long as its REF: an SNV, MNP or
    complex record), homozygous for such alleles, or not at all. ``{"carriers", "het", "hom_alt", "missed", "het_share"}``."""
    with pysam.VariantFile(str(truth)) as vf:
        samples = list(vf.header.samples)
        recs = list(vf)
    dels: dict[str, list[tuple[int, int]]] = {}
    for r in recs:
        if len(r.ref) > len(r.alts[0]):
            dels.setdefault(r.chrom, []).append((r.start + len(r.alts[0]), r.start + len(r.ref)))
    snvs = {}
    for r in recs:
        if len(r.ref) == len(r.alts[0]) == 1 and any(
            s <= r.start < e for s, e in dels.get(r.chrom, ())
        ):
            carriers = [x for x in samples if 1 in _gt(r, x)]
            snvs[(r.chrom, r.start)] = (r.ref, r.alts[0], carriers)
    out = {"carriers": 0, "het": 0, "hom_alt": 0, "missed": 0}
    called: dict[tuple[str, int], dict[str, int]] = {}
    by_chrom: dict[str, list[int]] = {}
    for c, p in sorted(snvs):
        by_chrom.setdefault(c, []).append(p)
    with pysam.VariantFile(str(query)) as vf:
        qsamples = list(vf.header.samples)
        for r in vf:
            pos = by_chrom.get(r.chrom, [])
            for p in pos[bisect.bisect_left(pos, r.start) : bisect.bisect_left(pos, r.stop)]:
                ref, alt, _ = snvs[(r.chrom, p)]
                o = p - r.start
                hits = [
                    i + 1
                    for i, a in enumerate(r.alts or ())
                    if len(a) == len(r.ref) and a[o] == alt and r.ref[o] == ref
                ]
                if not hits:
                    continue
                counts = called.setdefault((r.chrom, p), {})
                for x in qsamples:
                    gt = _gt(r, x)
                    n = sum(g in hits for g in gt) if len(gt) == 2 else 0
                    counts[x] = max(counts.get(x, 0), n)
    for key, (_, _, carriers) in snvs.items():
        for x in carriers:
            out["carriers"] += 1
            n = called.get(key, {}).get(x, 0)
            out["het" if n == 1 else "hom_alt" if n == 2 else "missed"] += 1
    out["het_share"] = out["het"] / out["carriers"] if out["carriers"] else None
    return out


# ----------------------------------------------------------------------------- report
def _f1(block: dict | None) -> str:
    if not block or block.get("F1") is None:
        return "–"
    return f"{block['F1']:.4f}"


def _truth_n(block: dict | None) -> int:
    return (block.get("TP") or 0) + (block.get("FN") or 0) if block else 0


def dataset_markdown(entry: dict) -> list[str]:
    """The markdown table of one dataset of the accuracy section (with a column per deep
    contig: its F1 over the confident BED)."""
    d = entry["dataset"]
    rows = entry["rows"]
    deep = list(d.get("deep_contigs") or ())
    strata = []
    for r in rows:
        for name in (r.get("accuracy") or {}).get("SNP", {}).get("strata", {}):
            if name not in strata:
                strata.append(name)
    lines = [
        f"#### `{d['name']}`: {d['length_bp'] / 1000:.0f} kb, {len(d['samples'])} samples, "
        f"{d['coverage']:g}x" + (f" ({d['note']})" if d.get("note") else ""),
        "",
    ]
    ok = next((r for r in rows if (r.get("accuracy") or {}).get("status") == "ok"), None)
    if ok:
        a = ok["accuracy"]
        sizes = ", ".join(
            f"{s} {_truth_n(a['SNP']['strata'].get(s))} / {_truth_n(a['INDEL']['strata'].get(s))}"
            for s in strata
        )
        lines += [
            f"Truth (sample, variant) pairs inside the confident BED, SNP / INDEL: all "
            f"{_truth_n(a['SNP'])} / {_truth_n(a['INDEL'])}; {sizes}.",
            "",
        ]
    head = "| tool | SNP F1 | INDEL F1 | GT conc. | " + " | ".join(
        f"{s} SNP / INDEL F1" for s in strata
    )
    head += "".join(f" | {c} (deep) SNP / INDEL F1" for c in deep)
    head += " | SNVs in het deletions: het / hom-alt / missed"
    lines += [head + " |", "|---|---:|---:|---:|" + "---|" * (len(strata) + len(deep) + 1)]
    for r in rows:
        a = r.get("accuracy") or {}
        if r.get("status") != "ok" or a.get("status") != "ok":
            why = r.get("reason") or a.get("reason") or r.get("status")
            lines.append(f"| {r['name']} | {why} |" + " |" * (3 + len(strata) + len(deep)))
            continue
        name = r["name"]
        qs = {a[k]["min_qual"] for k in TYPES}
        if r.get("quals") and len(r["quals"]) > 1:
            name += " (QUAL >= " + ", ".join(f"{a[k]['min_qual']:g} {k}" for k in TYPES) + ")"
        elif qs != {20.0}:
            name += f" (QUAL >= {qs.pop():g})"
        gt = a.get("genotype_concordance")
        cells = [
            f"{_f1(a['SNP']['strata'].get(s))} / {_f1(a['INDEL']['strata'].get(s))}" for s in strata
        ]
        cells += [
            f"{_f1(a['SNP'].get('contigs', {}).get(c))} / "
            f"{_f1(a['INDEL'].get('contigs', {}).get(c))}"
            for c in deep
        ]
        hd = a.get("snv_in_het_deletion") or {}
        cells.append(
            f"{hd['het']} / {hd['hom_alt']} / {hd['missed']} of {hd['carriers']}"
            if hd.get("carriers")
            else "–"
        )
        lines.append(
            f"| {name} | {_f1(a['SNP'])} | {_f1(a['INDEL'])} | "
            f"{'–' if gt is None else f'{gt:.4f}'} | " + " | ".join(cells) + " |"
        )
    lines += ["", *_speed_lines(rows)]
    return lines


def _speed_lines(rows: list[dict]) -> list[str]:
    """One sentence with each run's wall time (and its ratio to bcftools' and peak RSS),
    as measured for the table above; none when no run has a wall time."""
    timed = [r for r in rows if r.get("status") == "ok" and r.get("wall_s")]
    if not timed:
        return []
    base = next((r["wall_s"] for r in timed if r["name"] == "bcftools"), None)
    parts = []
    for r in timed:
        ratio = f", {r['wall_s'] / base:.2f} x bcftools" if base and r["name"] != "bcftools" else ""
        rss = f", peak RSS {r['peak_tree_rss_mb']:.0f} MB" if r.get("peak_tree_rss_mb") else ""
        walls = r.get("walls_s") or []
        spread = f" (median of {', '.join(f'{w:.1f}' for w in walls)})" if len(walls) > 1 else ""
        parts.append(f"{r['name']} {r['wall_s']:.1f} s{spread}{ratio}{rss}")
    return ["Wall time of these runs (this machine): " + "; ".join(parts) + ".", ""]


def section_markdown(section: dict) -> list[str]:
    """The accuracy section (every dataset) as markdown lines."""
    lines = [
        "### Accuracy on hard and low-coverage data, per stratum",
        "",
        "Side by side on the same BAMs: bcftools (`mpileup | call -m`), freebayes and "
        "varcall's native engine (single-process). F1 is genotype-aware ((sample, variant) "
        "pairs, as `varcall concordance` counts them) on records with FILTER PASS/. and "
        "QUAL >= 20; for freebayes QUAL >= 0 or >= 20, whichever scores higher for that "
        "type (the threshold is given). Strata partition the confident BED: tandem repeat "
        "(planted and natural arrays), segdup (both copies of each planted segmental "
        "duplication), clustered (SNV/MNP clusters, SNVs in het deletions), other.",
        "",
    ]
    for entry in section.get("datasets", []):
        lines += dataset_markdown(entry)
    return lines
