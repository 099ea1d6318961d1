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

import bisect
import dataclasses
import datetime
import json
import logging
import math
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pysam
import pysam.bcftools
from pysam.utils import SamtoolsError

from varcall import __version__
from varcall.core.errors import InputError
from varcall.evaluate.sources import ResolvedInput, _as_vcf, resolve_input

__all__ = [
    "GT_CLASSES",
    "NormalisedSet",
    "normalise",
    "load_normalised",
    "read_bed",
    "compare_identity",
    "compare_truth",
    "compare_manifests",
    "BamDepth",
    "manifest_units",
    "manifest_contig_digests",
    "run_concordance",
    "write_json_atomic",
]

logger = logging.getLogger(__name__)

#: Genotype classes of the concordance matrix, in display order.
GT_CLASSES: tuple[str, ...] = ("absent", "./.", "0/0", "0/1", "1/1")
#: Read-depth bins (lower bounds, inclusive) used for truth stratification.
DEPTH_BINS: tuple[int, ...] = (0, 10, 20, 30, 50)
#: Maximum number of discordant records kept inside metrics.json (all go to discordant.tsv).
MAX_LISTED = 1000

Key = tuple[str, int, str, str]  # contig, 0-based POS, REF, ALT (after normalisation)


# ----------------------------------------------------------------------------- inputs










def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


def normalise(vcf: str | os.PathLike, reference: str | os.PathLike, out: str | os.PathLike) -> dict:
    """``bcftools norm -m -any -f REF --check-ref e`` of ``vcf`` into ``out`` (BGZF VCF).

    Returns bcftools' own counts: ``{"total", "split", "realigned", "skipped"}``. Raises
    :class:`InputError` naming ``vcf`` when a REF disagrees with the reference or the file is
    unreadable.
    """
    vcf, reference, out = Path(vcf), Path(reference), Path(out)
    if not reference.is_file():
        raise InputError(f"{reference}: reference FASTA not found; pass an existing --reference")
    if not Path(f"{reference}.fai").is_file():
        pysam.faidx(str(reference))
    try:
        pysam.bcftools.norm(
            "-m", "-any", "-f", str(reference), "--check-ref", "e", "--no-version",
            "-W", "-O", "z", "-o", str(out), str(vcf), catch_stdout=False,
        )  # fmt: skip
    except SamtoolsError as e:
        detail = _one_line(str(e).split("stderr=")[-1].replace("\\n", "\n").strip("'\""))
        if "allele mismatch" in detail:
            raise InputError(
                f"{vcf}: REF allele does not match {reference.name} ({detail}); "
                "pass the reference the calls were made against"
            ) from e
        raise InputError(
            f"{vcf}: bcftools norm cannot read it ({detail}); give a valid VCF, VCF.gz or BCF"
        ) from e
    stats = {"total": 0, "split": 0, "realigned": 0, "skipped": 0}
    for line in (pysam.bcftools.norm.stderr or "").splitlines():
        # "Lines   total/split/realigned/skipped:	10/1/1/0" (newer bcftools add more fields)
        if line.startswith("Lines") and ":" in line:
            names, values = line.split(":", 1)
            names = names.split()[-1].split("/")
            for n, v in zip(names, values.strip().split("/")):
                if n in stats:
                    stats[n] = int(v)
    return stats


@dataclasses.dataclass
class NormalisedSet:
    """Normalised records of one input, keyed by (contig, 0-based POS, REF, ALT).

    A repeated key gets an occurrence suffix in ``records`` (key + (n,), n = 0, 1, ...).
    Each value is ``(qual, filters, info, fmt)``: qual float or None; filters a sorted tuple
    (``()`` for unfiltered ``.``); info a dict; fmt a dict field -> tuple over ``samples``
    (``GT`` is a tuple (alleles, phased) per sample, unphased alleles sorted).
    """

    label: str
    source: str
    samples: tuple[str, ...]
    contigs: tuple[str, ...]
    info_ids: frozenset[str]
    format_ids: frozenset[str]
    records: dict[tuple, tuple]
    norm_stats: dict

    @property
    def n_records(self) -> int:
        return len(self.records)


def _gt_of(sample: Any) -> tuple:
    alleles = tuple(sample["GT"] or ())
    phased = bool(sample.phased) if alleles else False
    if not phased:
        alleles = tuple(sorted(alleles, key=lambda a: (a is None, a or 0)))
    return (alleles, phased)


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    return value


def load_normalised(
    path: str | os.PathLike, label: str, source: str, norm_stats: dict
) -> NormalisedSet:
    """Read a normalised VCF (see :func:`normalise`) into a :class:`NormalisedSet`."""
    records: dict[tuple, tuple] = {}
    seen: Counter = Counter()
    with pysam.VariantFile(str(path)) as vf:
        samples = tuple(vf.header.samples)
        info_ids = frozenset(vf.header.info.keys())
        format_ids = frozenset(vf.header.formats.keys())
        contigs = tuple(vf.header.contigs.keys())
        for rec in vf:
            alt = rec.alts[0] if rec.alts else "."
            base: Key = (rec.chrom, rec.pos - 1, rec.ref, alt)
            n = seen[base]
            seen[base] += 1
            fmt: dict[str, tuple] = {}
            if samples:
                present = list(rec.format.keys())
                for field in present:
                    if field == "GT":
                        fmt["GT"] = tuple(_gt_of(rec.samples[s]) for s in samples)
                    else:
                        fmt[field] = tuple(_freeze(rec.samples[s][field]) for s in samples)
            info = {k: _freeze(v) for k, v in rec.info.items()}
            filters = tuple(sorted(k for k in rec.filter.keys()))
            records[base + (n,)] = (rec.qual, filters, info, fmt)
    return NormalisedSet(label, source, samples, contigs, info_ids, format_ids, records, norm_stats)


# ----------------------------------------------------------------------------- BED
def read_bed(path: str | os.PathLike) -> dict[str, list[tuple[int, int]]]:
    """BED intervals per contig, sorted and merged (0-based half-open)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: BED file not found; pass an existing file to --bed")
    raw: dict[str, list[tuple[int, int]]] = defaultdict(list)
    opener = pysam.BGZFile if path.name.endswith(".gz") else open
    with opener(str(path), "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.decode() if isinstance(line, bytes) else line
            if not text.strip() or text.startswith(("#", "track", "browser")):
                continue
            fields = text.split("\t") if "\t" in text else text.split()
            try:
                contig, start, end = fields[0], int(fields[1]), int(fields[2])
            except (IndexError, ValueError) as e:
                raise InputError(
                    f"{path}: line {lineno} is not 'contig<TAB>start<TAB>end'; fix the BED file"
                ) from e
            if end < start:
                raise InputError(f"{path}: line {lineno} has end < start; fix the BED file")
            raw[contig].append((start, end))
    merged: dict[str, list[tuple[int, int]]] = {}
    for contig, ivs in raw.items():
        ivs.sort()
        out: list[tuple[int, int]] = []
        for s, e in ivs:
            if out and s <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], e))
            else:
                out.append((s, e))
        merged[contig] = out
    return merged


def _in_bed(bed: dict[str, list[tuple[int, int]]], contig: str, pos: int) -> bool:
    ivs = bed.get(contig)
    if not ivs:
        return False
    i = bisect.bisect_right(ivs, (pos, math.inf)) - 1
    return i >= 0 and ivs[i][0] <= pos < ivs[i][1]


# ----------------------------------------------------------------------------- identity
def gt_class(gt: tuple) -> str:
    """Class of a normalised (biallelic) genotype ``(alleles, phased)`` for the matrix."""
    alleles = gt[0]
    if not alleles or any(a is None for a in alleles):
        return "./."
    n_alt = sum(1 for a in alleles if a != 0)
    if n_alt == 0:
        return "0/0"
    return "1/1" if n_alt == len(alleles) else "0/1"


def _fmt_value(v: Any) -> str:
    if v is None:
        return "."
    if isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], bool) and isinstance(v[0], tuple):
        sep = "|" if v[1] else "/"
        return sep.join("." if a is None else str(a) for a in v[0]) or "."
    if isinstance(v, tuple):
        return ",".join(_fmt_value(x) for x in v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _sort_key(contig_order: dict[str, int]):
    def key(k: tuple) -> tuple:
        return (contig_order.get(k[0], len(contig_order)), k[0], k[1], k[2], k[3], k[4])

    return key


def compare_identity(a: NormalisedSet, b: NormalisedSet) -> dict:
    """Record-level identity, site concordance and per-sample GT matrices of ``a`` vs ``b``.

    Returns the ``identity``, ``sites`` and ``genotypes`` sections of metrics.json plus
    ``_discordant``: every differing record as a dict (contig, pos [1-based], ref, alt, status,
    differences).
    """
    shared_info = a.info_ids & b.info_ids
    shared_fmt = a.format_ids & b.format_ids
    shared_samples = [s for s in a.samples if s in set(b.samples)]
    ia = [a.samples.index(s) for s in shared_samples]
    ib = [b.samples.index(s) for s in shared_samples]
    order = {c: i for i, c in enumerate(a.contigs)}
    for c in b.contigs:
        order.setdefault(c, len(order))

    keys = sorted(set(a.records) | set(b.records), key=_sort_key(order))
    discordant: list[dict] = []
    n_only_a = n_only_b = n_content = 0
    field_counts: Counter = Counter()
    for key in keys:
        ra, rb = a.records.get(key), b.records.get(key)
        row = {"contig": key[0], "pos": key[1] + 1, "ref": key[2], "alt": key[3]}
        if rb is None:
            n_only_a += 1
            discordant.append({**row, "status": "only_in_A", "differences": ""})
            continue
        if ra is None:
            n_only_b += 1
            discordant.append({**row, "status": "only_in_B", "differences": ""})
            continue
        diffs = _record_diffs(ra, rb, shared_info, shared_fmt, shared_samples, ia, ib)
        if diffs:
            n_content += 1
            field_counts.update(d.split("[")[0].split("=")[0] for d in diffs)
            discordant.append({**row, "status": "differs", "differences": "; ".join(diffs)})

    same_samples = tuple(a.samples) == tuple(b.samples)
    differing = n_only_a + n_only_b + n_content
    identity = {
        "identical": differing == 0 and same_samples,
        "records_a": a.n_records,
        "records_b": b.n_records,
        "differing": differing,
        "only_in_a": n_only_a,
        "only_in_b": n_only_b,
        "content_differs": n_content,
        "differing_fields": dict(sorted(field_counts.items())),
        "same_samples": same_samples,
        "samples_a": list(a.samples),
        "samples_b": list(b.samples),
        "compared_info": sorted(shared_info),
        "compared_format": sorted(shared_fmt),
        "discordant_records": discordant[:MAX_LISTED],
        "discordant_truncated": len(discordant) > MAX_LISTED,
    }
    sites_a = {k[:4] for k in a.records}
    sites_b = {k[:4] for k in b.records}
    union = len(sites_a | sites_b)
    shared = len(sites_a & sites_b)
    sites = {
        "sites_a": len(sites_a),
        "sites_b": len(sites_b),
        "shared": shared,
        "only_in_a": len(sites_a - sites_b),
        "only_in_b": len(sites_b - sites_a),
        "concordance": shared / union if union else 1.0,
    }
    genotypes = _genotype_matrices(a, b, shared_samples, ia, ib, keys)
    return {"identity": identity, "sites": sites, "genotypes": genotypes, "_discordant": discordant}


def _record_diffs(
    ra: tuple,
    rb: tuple,
    shared_info: frozenset[str],
    shared_fmt: frozenset[str],
    samples: Sequence[str],
    ia: Sequence[int],
    ib: Sequence[int],
) -> list[str]:
    qa, fa, info_a, fmt_a = ra
    qb, fb, info_b, fmt_b = rb
    out: list[str] = []
    if not _same(qa, qb):
        out.append(f"QUAL={_fmt_value(qa)}|{_fmt_value(qb)}")
    if fa != fb:
        out.append(f"FILTER={';'.join(fa) or '.'}|{';'.join(fb) or '.'}")
    for k in sorted(shared_info):
        va, vb = info_a.get(k), info_b.get(k)
        if not _same(va, vb):
            out.append(f"INFO/{k}={_fmt_value(va)}|{_fmt_value(vb)}")
    for field in ["GT"] + sorted(shared_fmt - {"GT"}):
        if field not in shared_fmt:
            continue
        ca, cb = fmt_a.get(field), fmt_b.get(field)
        for s, i, j in zip(samples, ia, ib):
            va = ca[i] if ca is not None else None
            vb = cb[j] if cb is not None else None
            if field == "GT":
                va = va if va is not None else ((), False)
                vb = vb if vb is not None else ((), False)
            if not _same(va, vb):
                out.append(f"{field}[{s}]={_fmt_value(va)}|{_fmt_value(vb)}")
    return out


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float):
        return x == y or (math.isnan(x) and math.isnan(y))
    if isinstance(x, tuple) and isinstance(y, tuple):
        return len(x) == len(y) and all(_same(p, q) for p, q in zip(x, y))
    return x == y


def _genotype_matrices(
    a: NormalisedSet,
    b: NormalisedSet,
    samples: Sequence[str],
    ia: Sequence[int],
    ib: Sequence[int],
    keys: Iterable[tuple],
) -> dict:
    idx = {c: i for i, c in enumerate(GT_CLASSES)}
    n = len(GT_CLASSES)
    mats = {s: [[0] * n for _ in range(n)] for s in samples}
    for key in keys:
        ra, rb = a.records.get(key), b.records.get(key)
        gta = ra[3].get("GT") if ra is not None else None
        gtb = rb[3].get("GT") if rb is not None else None
        for s, i, j in zip(samples, ia, ib):
            ca = "absent" if ra is None else (gt_class(gta[i]) if gta else "./.")
            cb = "absent" if rb is None else (gt_class(gtb[j]) if gtb else "./.")
            mats[s][idx[ca]][idx[cb]] += 1
    per_sample = {}
    total = [[0] * n for _ in range(n)]
    for s, m in mats.items():
        for r in range(n):
            for c in range(n):
                total[r][c] += m[r][c]
        per_sample[s] = {"matrix": m, **_gt_rates(m)}
    return {
        "classes": list(GT_CLASSES),
        "samples": per_sample,
        "all": {"matrix": total, **_gt_rates(total)},
    }


def _gt_rates(m: list[list[int]]) -> dict:
    """``concordance``: equal calls / cells where both sets call a genotype (not absent, not
    missing). ``non_ref_concordance``: equal non-ref calls / cells where either side is non-ref
    (0/1 or 1/1), absent or missing on the other side counting as a mismatch."""
    c = {name: i for i, name in enumerate(GT_CLASSES)}
    called = [c["0/0"], c["0/1"], c["1/1"]]
    both = sum(m[r][k] for r in called for k in called)
    equal = sum(m[r][r] for r in called)
    nonref = [c["0/1"], c["1/1"]]
    either = sum(
        m[r][k]
        for r in range(len(GT_CLASSES))
        for k in range(len(GT_CLASSES))
        if r in nonref or k in nonref
    )
    equal_nonref = sum(m[r][r] for r in nonref)
    return {
        "compared": both,
        "concordant": equal,
        "concordance": equal / both if both else None,
        "non_ref_compared": either,
        "non_ref_concordant": equal_nonref,
        "non_ref_concordance": equal_nonref / either if either else None,
    }


# ----------------------------------------------------------------------------- truth
def variant_type(ref: str, alt: str) -> str:
    """``SNP``, ``INDEL`` (lengths differ) or ``OTHER`` (MNP, symbolic, spanning deletion)."""
    if alt.startswith("<") or alt in ("*", ".") or "[" in alt or "]" in alt:
        return "OTHER"
    if len(ref) == 1 and len(alt) == 1:
        return "SNP"
    if len(ref) != len(alt):
        return "INDEL"
    return "OTHER"


def indel_bin(ref: str, alt: str) -> str:
    """Length bin of an indel: ``del 1``, ``del 2-5``, ``del 6-15``, ``del >15`` and the same
    for ``ins`` (length = |len(ALT) - len(REF)| in bp)."""
    d = len(alt) - len(ref)
    n = abs(d)
    label = "1" if n == 1 else "2-5" if n <= 5 else "6-15" if n <= 15 else ">15"
    return f"{'ins' if d > 0 else 'del'} {label}"


INDEL_BINS: tuple[str, ...] = tuple(
    [f"del {x}" for x in (">15", "6-15", "2-5", "1")]
    + [f"ins {x}" for x in ("1", "2-5", "6-15", ">15")]
)


def depth_bin(dp: int | None) -> str:
    """Read-depth bin label (``0-9``, ``10-19``, ``20-29``, ``30-49``, ``50+``, ``unknown``)."""
    if dp is None or dp < 0:
        return "unknown"
    label = "unknown"
    for i, lo in enumerate(DEPTH_BINS):
        if dp >= lo:
            hi = DEPTH_BINS[i + 1] - 1 if i + 1 < len(DEPTH_BINS) else None
            label = f"{lo}-{hi}" if hi is not None else f"{lo}+"
    return label


DEPTH_LABELS: tuple[str, ...] = tuple(depth_bin(lo) for lo in DEPTH_BINS) + ("unknown",)


def _metric_block(c: Counter) -> dict:
    tp, fp, fn = c["TP"], c["FP"], c["FN"]
    fp_gt, fn_gt = c["FP_gt"], c["FN_gt"]
    out = {"TP": tp, "FP": fp, "FN": fn, **_prf(tp, fp, fn)}
    tpa, fpa, fna = tp + fp_gt, fp - fp_gt, fn - fn_gt
    out.update(
        {"FP_gt": fp_gt, "FN_gt": fn_gt, "TP_allele": tpa, "FP_allele": fpa, "FN_allele": fna}
    )
    out.update({f"{k}_allele": v for k, v in _prf(tpa, fpa, fna).items()})
    return out


def _prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else None
    r = tp / (tp + fn) if tp + fn else None
    f1 = 2 * p * r / (p + r) if p is not None and r is not None and (p + r) > 0 else None
    if p is not None and r is not None and p + r == 0:
        f1 = 0.0
    return {"precision": p, "recall": r, "F1": f1}


def _variants_of(
    ns: NormalisedSet, sample_index: int, bed: dict | None, include_filtered: bool
) -> dict[tuple, tuple[str, int | None]]:
    """Key -> (genotype class, DP) of the records where sample carries the ALT allele."""
    out: dict[tuple, tuple[str, int | None]] = {}
    for key, (_q, filters, _info, fmt) in ns.records.items():
        if not include_filtered and filters not in ((), ("PASS",)):
            continue
        if variant_type(key[2], key[3]) == "OTHER" and key[3] in ("*", "."):
            continue
        if bed is not None and not _in_bed(bed, key[0], key[1]):
            continue
        gts = fmt.get("GT")
        if not gts:
            continue
        gt = gts[sample_index]
        if not any(a is not None and a > 0 for a in gt[0]):
            continue
        out[key] = (gt_class(gt), _dp_of(fmt, sample_index))
    return out


def _dp_of(fmt: dict, i: int) -> int | None:
    dps = fmt.get("DP")
    if not dps:
        return None
    v = dps[i]
    return v if isinstance(v, int) else None


def compare_truth(
    query: NormalisedSet,
    truth: NormalisedSet,
    bed: dict[str, list[tuple[int, int]]] | None = None,
    include_filtered: bool = False,
    depth_at: Callable[[str, str, int], int | None] | None = None,
) -> dict:
    """GA4GH-style comparison of ``query`` against ``truth`` (see the module docstring).

    ``depth_at(sample, contig, pos0)`` gives the read depth where neither the query nor the
    truth carries FORMAT/DP (e.g. :class:`BamDepth` over the run's alignments), so that FNs
    without a call land in a depth bin too.

    Returns ``{"SNP": {...}, "INDEL": {...}, ["OTHER": {...}], "samples": [...],
    "per_sample": {...}, "strata": {"contig"|"indel_length"|"depth": {...}}, "_errors": [...]}``
    where each block holds TP, FP, FN, precision, recall, F1, FP_gt, FN_gt and allele-level
    counterparts.
    """
    shared = [s for s in truth.samples if s in set(query.samples)]
    pairs = [(s, query.samples.index(s), truth.samples.index(s)) for s in shared]
    if not pairs:
        if len(query.samples) == 1 and len(truth.samples) == 1:
            pairs = [(query.samples[0], 0, 0)]
            logger.warning(
                "%s and %s share no sample name; comparing their only samples (%s vs %s)",
                query.source, truth.source, query.samples[0], truth.samples[0],
            )  # fmt: skip
        else:
            raise InputError(
                f"{query.source}: no sample in common with the truth set {truth.source}; "
                "compare call sets of the same samples"
            )
    total: dict[str, Counter] = defaultdict(Counter)
    per_sample: dict[str, dict[str, Counter]] = {}
    by_contig: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    by_indel: dict[str, Counter] = defaultdict(Counter)
    by_depth: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    errors: list[dict] = []
    for sample, qi, ti in pairs:
        q = _variants_of(query, qi, bed, include_filtered)
        t = _variants_of(truth, ti, bed, include_filtered=True)
        ps: dict[str, Counter] = defaultdict(Counter)
        for key in set(q) | set(t):
            qv, tv = q.get(key), t.get(key)
            vtype = variant_type(key[2], key[3])
            if qv is not None:
                dp = qv[1]
            else:
                qrec = query.records.get(key)
                dp = _dp_of(qrec[3], qi) if qrec is not None else None
                if dp is None:
                    dp = tv[1] if tv is not None else None
                if dp is None and depth_at is not None:
                    dp = depth_at(sample, key[0], key[1])
            events: list[str]
            if qv is not None and tv is not None:
                events = ["TP"] if qv[0] == tv[0] else ["FP", "FN", "FP_gt", "FN_gt"]
            elif qv is not None:
                events = ["FP"]
            else:
                events = ["FN"]
            for counter in (
                total[vtype],
                ps[vtype],
                by_contig[key[0]][vtype],
                by_depth[depth_bin(dp)][vtype],
            ):
                counter.update(events)
            if vtype == "INDEL":
                by_indel[indel_bin(key[2], key[3])].update(events)
            if events != ["TP"]:
                errors.append(
                    {
                        "sample": sample, "contig": key[0], "pos": key[1] + 1, "ref": key[2],
                        "alt": key[3], "type": vtype,
                        "call": "FP_gt/FN_gt" if "FP_gt" in events else events[0],
                        "truth_gt": tv[0] if tv else "", "query_gt": qv[0] if qv else "",
                        "depth": dp if dp is not None else "",
                    }
                )  # fmt: skip
        per_sample[sample] = ps
    types = ["SNP", "INDEL"] + (["OTHER"] if total.get("OTHER") else [])
    out: dict[str, Any] = {t: _metric_block(total[t]) for t in types}
    out["samples"] = [p[0] for p in pairs]
    out["per_sample"] = {s: {t: _metric_block(c[t]) for t in types} for s, c in per_sample.items()}
    out["strata"] = {
        "contig": {
            c: {t: _metric_block(by_contig[c][t]) for t in types}
            for c in _ordered(by_contig, query, truth)
        },
        "indel_length": {b: _metric_block(by_indel[b]) for b in INDEL_BINS if b in by_indel},
        "depth": {
            d: {t: _metric_block(by_depth[d][t]) for t in types}
            for d in DEPTH_LABELS
            if d in by_depth
        },
    }
    order = {c: i for i, c in enumerate(truth.contigs)}
    errors.sort(
        key=lambda e: (order.get(e["contig"], len(order)), e["contig"], e["pos"], e["sample"])
    )
    out["_errors"] = errors
    return out


def _ordered(names: Iterable[str], *sets: NormalisedSet) -> list[str]:
    order: dict[str, int] = {}
    for ns in sets:
        for c in ns.contigs:
            order.setdefault(c, len(order))
    return sorted(names, key=lambda c: (order.get(c, len(order)), c))


class BamDepth:
    """Read depth at single positions from the alignment files a run read (its manifest's
    ``inputs.alignments``): reads overlapping the 0-based position with MAPQ >= the run's
    ``min_mapq``, skipping unmapped, secondary, supplementary, QC-fail and duplicate reads.
    Returns None for samples whose files are not readable here."""

    _SKIP = 0x4 | 0x100 | 0x200 | 0x400 | 0x800

    def __init__(self, manifest: dict) -> None:
        inputs = manifest.get("inputs") or {}
        paths = [
            a.get("path") if isinstance(a, dict) else a
            for a in (inputs.get("alignments") or inputs.get("bams") or [])
        ]
        self.min_mapq = int((manifest.get("params") or {}).get("min_mapq", 0) or 0)
        self.files: dict[str, list[pysam.AlignmentFile]] = defaultdict(list)
        self._cache: dict[tuple[str, str, int], int | None] = {}
        for p in paths:
            if not p or not Path(p).is_file():
                continue
            try:
                f = pysam.AlignmentFile(str(p))
                if not f.has_index():
                    f.close()
                    continue
            except (OSError, ValueError):
                continue
            samples = {rg.get("SM") for rg in f.header.to_dict().get("RG", []) if rg.get("SM")}
            for sm in samples or {Path(p).name.split(".")[0]}:
                self.files[sm].append(f)

    def __bool__(self) -> bool:
        return bool(self.files)

    def __call__(self, sample: str, contig: str, pos: int) -> int | None:
        key = (sample, contig, pos)
        if key not in self._cache:
            files = self.files.get(sample)
            if not files:
                self._cache[key] = None
            else:
                n = 0
                for f in files:
                    try:
                        for read in f.fetch(contig, pos, pos + 1):
                            if not read.flag & self._SKIP and read.mapping_quality >= self.min_mapq:
                                n += 1
                    except ValueError:  # contig not in this file
                        continue
                self._cache[key] = n
        return self._cache[key]

    def close(self) -> None:
        seen = set()
        for fs in self.files.values():
            for f in fs:
                if id(f) not in seen:
                    seen.add(id(f))
                    f.close()


# ----------------------------------------------------------------------------- digests
def manifest_units(m: dict) -> list[dict]:
    """The per-region (unit) entries of a run manifest (``units``, or ``regions`` in older
    manifests); [] when absent."""
    for key in ("units", "regions"):
        v = m.get(key)
        if isinstance(v, list):
            return [u for u in v if isinstance(u, dict)]
    return []


def manifest_contig_digests(m: dict) -> dict[str, str]:
    """Per-contig digests of a run manifest ({} when absent)."""
    for v in (
        m.get("contig_digests"),
        (m.get("contigs") or {}).get("contig_digests")
        if isinstance(m.get("contigs"), dict)
        else None,
    ):
        if isinstance(v, dict) and v:
            return {str(k): str(x) for k, x in v.items()}
    return {}


def compare_manifests(ma: dict | None, mb: dict | None) -> dict:
    """The digest fast path: compare per-region digests when both manifests list the same
    regions with digests, else per-contig digests. ``identical`` is None when no digests can
    be compared. Regions are reported as written in the manifest (``region`` strings)."""
    out: dict[str, Any] = {"method": None, "identical": None, "compared": 0, "differing": []}
    if not ma or not mb:
        out["reason"] = "not both inputs are varcall run folders with a manifest"
        return out

    def layout(m: dict) -> list[tuple] | None:
        regs = manifest_units(m)
        if not regs or any(r.get("digest") is None for r in regs):
            return None
        return [(r.get("contig"), r.get("start"), r.get("end")) for r in regs]

    la, lb = layout(ma), layout(mb)
    if la is not None and la == lb:
        diff = [
            ra.get("region") or f"{ra.get('contig')}:{ra.get('start', 0) + 1}-{ra.get('end')}"
            for ra, rb in zip(manifest_units(ma), manifest_units(mb))
            if ra.get("digest") != rb.get("digest")
        ]
        out.update(method="region", identical=not diff, compared=len(la), differing=diff)
        return out
    ca, cb = manifest_contig_digests(ma), manifest_contig_digests(mb)
    if ca and cb:
        names = list(dict.fromkeys(list(ca) + list(cb)))
        diff = [c for c in names if ca.get(c) != cb.get(c)]
        out.update(method="contig", identical=not diff, compared=len(names), differing=diff)
        if la is None or lb is None:
            out["reason"] = "per-region digests missing; compared per contig"
        else:
            out["reason"] = "region layouts differ; compared per contig"
        return out
    out["reason"] = "manifests carry no digests"
    return out


# ----------------------------------------------------------------------------- driver
def write_json_atomic(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as JSON to ``path`` via a temporary file and a rename (NaN and
    infinities become null: JSON has no spelling for them)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        json.dump(_finite(obj), fh, indent=1, default=_json_default, allow_nan=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _finite(o: Any) -> Any:
    if getattr(o, "ndim", None) == 0 and hasattr(o, "item"):  # numpy scalar
        o = o.item()
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    return o


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _write_tsv_atomic(rows: Sequence[dict], columns: Sequence[str], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write("\t".join(columns) + "\n")
        for r in rows:
            fh.write("\t".join(str(r.get(c, "")) for c in columns) + "\n")
    os.replace(tmp, path)


def _prepare(
    path: str | os.PathLike, reference: Path, workdir: Path, label: str
) -> tuple[ResolvedInput, NormalisedSet]:
    resolved = resolve_input(path)
    vcf = _as_vcf(resolved, workdir, label)
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
    digests = compare_manifests(ra.manifest, rb.manifest)
    result["identity"]["digests"] = digests
    if digests["identical"] is not None and digests["identical"] != result["identity"]["identical"]:
        logger.warning(
            "digest comparison (%s) and record comparison disagree on identity of %s and %s",
            digests["method"], a, b,
        )  # fmt: skip
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
        metrics["inputs"]["truth_normalisation"] = nt.norm_stats
        metrics["truth"] = {}
        for label, ns, res in (("A", na, ra), ("B", nb, rb)):
            bam_depth = BamDepth(res.manifest) if res.manifest else None
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
    if qc:
        from varcall.evaluate.qc import qc_for_input

        metrics["qc"] = {"A": qc_for_input(ra), "B": qc_for_input(rb)}
    _write_tsv_atomic(
        discordant,
        ["contig", "pos", "ref", "alt", "status", "differences"],
        out_dir / "discordant.tsv",
    )
    if nt is not None:
        cols = [
            "set",
            "sample",
            "contig",
            "pos",
            "ref",
            "alt",
            "type",
            "call",
            "truth_gt",
            "query_gt",
            "depth",
        ]
        _write_tsv_atomic(errors, cols, out_dir / "truth_errors.tsv")
        metrics["truth_errors"] = errors[:MAX_LISTED]
        metrics["truth_errors_truncated"] = len(errors) > MAX_LISTED
    write_json_atomic(metrics, out_dir / "metrics.json")
    return metrics


def _input_info(r: ResolvedInput, ns: NormalisedSet) -> dict:
    m = r.manifest or {}
    return {
        "path": str(r.path),
        "vcf": str(r.vcf) if r.vcf else None,
        "vcz": str(r.vcz) if r.vcz else None,
        "run_folder": r.manifest is not None,
        "mode": m.get("mode"),
        "engine": m.get("engine"),
        "samples": list(ns.samples),
        "normalisation": ns.norm_stats,
        "records_normalised": ns.n_records,
    }
