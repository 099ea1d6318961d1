"""GA4GH-style comparison of a query call set against a truth set (as hap.py counts).

Two matching methods (``match``):

- ``"haplotype"`` (the default): :mod:`varcall.evaluate.haplotype` groups each sample's
  variants into local clusters and compares the haplotype sequences the query and the truth
  spell, so that one haplotype written two ways (an MNP and two SNVs, a complex allele and
  an SNV plus an indel, an insertion placed elsewhere in a repeat) matches. Records are
  counted as in hap.py with the vcfeval engine: each truth record is ``TP_baseline``, FN or
  (allele right, genotype wrong) FN+``FN_gt``; each query record ``TP_call``, FP or
  FP+``FP_gt``. A split multi-allelic record counts once. With a BED file, matching uses all
  records and a record counts when its span overlaps the BED.
- ``"exact"``: records match on their normalised key (contig, POS, REF, ALT); the same key
  with the same genotype class is a TP (``TP_baseline`` = ``TP_call``), with another
  genotype once FP and once FN (also counted as ``FP_gt``/``FN_gt``). With a BED file,
  records whose POS lies outside it are ignored (bcftools ``-T`` semantics).

In both, per sample a variant is a record whose genotype carries the ALT allele; only
PASS/unfiltered query records count unless ``include_filtered``; recall is
TP_baseline / (TP_baseline + FN), precision TP_call / (TP_call + FP); ``TP`` is
``TP_baseline``; the allele-level counts (``TP_allele`` ...) ignore the genotype. SNP means
SNVs and MNPs (equal-length REF and ALT), INDEL the rest. Counts are summed over the shared
samples and stratified by contig, type, indel length and read depth (the query's FORMAT/DP
for the sample when the query has a record at the site, else the truth's, else, for varcall
run folders, the read depth in the run's BAMs (:class:`BamDepth`); ``unknown`` when none is
available).

Keys are 0-based; ``pos`` in the error rows is the 1-based VCF POS.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pysam

from varcall.core.errors import InputError
from varcall.core.manifest import Manifest
from varcall.evaluate.bed import BedIntervals, in_bed, overlaps_bed
from varcall.evaluate.haplotype import DEFAULT_WINDOW, RefFetch, Unit, match_units, units_of
from varcall.evaluate.normalise import NormalisedSet, gt_class

__all__ = [
    "DEPTH_BINS",
    "DEPTH_LABELS",
    "INDEL_BINS",
    "MATCH_METHODS",
    "BamDepth",
    "compare_truth",
    "depth_bin",
    "indel_bin",
    "variant_type",
]

logger = logging.getLogger(__name__)

#: Read-depth bins (lower bounds, inclusive) used for truth stratification.
DEPTH_BINS: tuple[int, ...] = (0, 10, 20, 30, 50)

#: Truth matching methods (see the module docstring).
MATCH_METHODS: tuple[str, ...] = ("haplotype", "exact")

#: depth_at(sample, contig, 0-based pos) -> read depth, or None where unknown.
DepthAt = Callable[[str, str, int], int | None]


def variant_type(ref: str, alt: str) -> str:
    """``SNP`` (SNV or MNP: REF and ALT of equal length), ``INDEL`` (lengths differ) or
    ``OTHER`` (symbolic, spanning deletion)."""
    if alt.startswith("<") or alt in ("*", ".") or "[" in alt or "]" in alt:
        return "OTHER"
    return "SNP" if len(ref) == len(alt) else "INDEL"


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
    tpb, tpc, fp, fn = c["TP_baseline"], c["TP_call"], c["FP"], c["FN"]
    fp_gt, fn_gt = c["FP_gt"], c["FN_gt"]
    out = {"TP": tpb, "TP_baseline": tpb, "TP_call": tpc, "FP": fp, "FN": fn}
    out.update(_prf(tpb, tpc, fp, fn))
    tpa, fpa, fna = tpb + fn_gt, fp - fp_gt, fn - fn_gt
    out.update(
        {"FP_gt": fp_gt, "FN_gt": fn_gt, "TP_allele": tpa, "FP_allele": fpa, "FN_allele": fna}
    )
    out.update({f"{k}_allele": v for k, v in _prf(tpa, tpc + fp_gt, fpa, fna).items()})
    return out


def _prf(tp_base: int, tp_call: int, fp: int, fn: int) -> dict:
    """Precision (from the query side), recall (from the truth side) and F1."""
    p = tp_call / (tp_call + fp) if tp_call + fp else None
    r = tp_base / (tp_base + fn) if tp_base + fn else None
    f1 = 2 * p * r / (p + r) if p is not None and r is not None and (p + r) > 0 else None
    if p is not None and r is not None and p + r == 0:
        f1 = 0.0
    return {"precision": p, "recall": r, "F1": f1}


def _variants_of(
    ns: NormalisedSet, sample_index: int, bed: BedIntervals | None, include_filtered: bool
) -> dict[tuple, tuple[str, int | None]]:
    """Key -> (genotype class, DP) of the records where sample carries the ALT allele."""
    out: dict[tuple, tuple[str, int | None]] = {}
    for key, (_q, filters, _info, fmt) in ns.records.items():
        if not include_filtered and filters not in ((), ("PASS",)):
            continue
        if variant_type(key[2], key[3]) == "OTHER" and key[3] in ("*", "."):
            continue
        if bed is not None and not in_bed(bed, key[0], key[1]):
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


def _sample_pairs(query: NormalisedSet, truth: NormalisedSet) -> list[tuple[str, int, int]]:
    """(sample, index in query, index in truth) of the samples both share; the only samples
    of each when they share no name but hold one each (a warning says so)."""
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
    return pairs


@dataclasses.dataclass
class _Tally:
    """Event counters (TP, FP, FN, FP_gt, FN_gt) by variant type, overall and by stratum,
    and the rows of every non-TP event."""

    total: dict[str, Counter] = dataclasses.field(default_factory=lambda: defaultdict(Counter))
    per_sample: dict[str, dict[str, Counter]] = dataclasses.field(default_factory=dict)
    by_contig: dict[str, dict[str, Counter]] = dataclasses.field(
        default_factory=lambda: defaultdict(lambda: defaultdict(Counter))
    )
    by_indel: dict[str, Counter] = dataclasses.field(default_factory=lambda: defaultdict(Counter))
    by_depth: dict[str, dict[str, Counter]] = dataclasses.field(
        default_factory=lambda: defaultdict(lambda: defaultdict(Counter))
    )
    errors: list[dict] = dataclasses.field(default_factory=list)
    clusters: Counter = dataclasses.field(default_factory=Counter)


def _depth_of(
    key: tuple,
    qv: tuple | None,
    tv: tuple | None,
    query: NormalisedSet,
    qi: int,
    sample: str,
    depth_at: DepthAt | None,
) -> int | None:
    """Depth of a site for stratification: the query variant's DP, else the query record's,
    else the truth variant's, else ``depth_at``."""
    if qv is not None:
        return qv[1]
    qrec = query.records.get(key)
    dp = _dp_of(qrec[3], qi) if qrec is not None else None
    if dp is None:
        dp = tv[1] if tv is not None else None
    if dp is None and depth_at is not None:
        dp = depth_at(sample, key[0], key[1])
    return dp


def _count(
    tally: _Tally,
    ps: dict[str, Counter],
    key: tuple,
    vtype: str,
    ibin: str | None,
    events: list[str],
    dp: int | None,
) -> None:
    """Add ``events`` of one record (``key``: contig, 0-based POS, ...) to every counter."""
    for counter in (
        tally.total[vtype],
        ps[vtype],
        tally.by_contig[key[0]][vtype],
        tally.by_depth[depth_bin(dp)][vtype],
    ):
        counter.update(events)
    if vtype == "INDEL" and ibin is not None:
        tally.by_indel[ibin].update(events)


def _tally_sample(
    tally: _Tally,
    sample: str,
    q: dict[tuple, tuple],
    t: dict[tuple, tuple],
    depth: Callable[[tuple, tuple | None, tuple | None], int | None],
) -> None:
    """Count the events of one sample's query variants ``q`` against truth variants ``t``
    (record-exact matching)."""
    ps: dict[str, Counter] = defaultdict(Counter)
    for key in set(q) | set(t):
        qv, tv = q.get(key), t.get(key)
        vtype = variant_type(key[2], key[3])
        dp = depth(key, qv, tv)
        events: list[str]
        if qv is not None and tv is not None:
            same = qv[0] == tv[0]
            events = ["TP_baseline", "TP_call"] if same else ["FP", "FN", "FP_gt", "FN_gt"]
        elif qv is not None:
            events = ["FP"]
        else:
            events = ["FN"]
        ibin = indel_bin(key[2], key[3]) if vtype == "INDEL" else None
        _count(tally, ps, key, vtype, ibin, events, dp)
        if events[0] != "TP_baseline":
            tally.errors.append(
                {
                    "sample": sample, "contig": key[0], "pos": key[1] + 1, "ref": key[2],
                    "alt": key[3], "type": vtype,
                    "call": "FP_gt/FN_gt" if "FP_gt" in events else events[0],
                    "truth_gt": tv[0] if tv else "", "query_gt": qv[0] if qv else "",
                    "depth": dp if dp is not None else "",
                }
            )  # fmt: skip
    tally.per_sample[sample] = ps


#: Events of a unit's verdict, by side.
_UNIT_EVENTS = {
    "TP": (["TP_call"], ["TP_baseline"]),
    "FP": (["FP"], None),
    "FP_gt": (["FP", "FP_gt"], None),
    "FN": (None, ["FN"]),
    "FN_gt": (None, ["FN", "FN_gt"]),
}


def _unit_type(u: Unit) -> tuple[str, str | None]:
    """(type, indel-length bin) of a unit: SNP when every part keeps its length."""
    for p in u.parts:
        if len(p[2]) != len(p[3]):
            return "INDEL", indel_bin(p[2], p[3])
    return "SNP", None


def _tally_units(
    tally: _Tally,
    sample: str,
    q: list[Unit],
    t: list[Unit],
    fetch: RefFetch,
    window: int,
    bed: BedIntervals | None,
    depth: Callable[[tuple, tuple | None, tuple | None], int | None],
) -> None:
    """Count the events of one sample's query units ``q`` against truth units ``t``
    (haplotype matching; the BED is applied to the matched records)."""
    ps: dict[str, Counter] = defaultdict(Counter)
    for res in match_units(q, t, fetch, window):
        tally.clusters[res.method] += 1
        for side, units, calls in (
            (0, res.query, res.query_calls),
            (1, res.truth, res.truth_calls),
        ):
            for u, call in zip(units, calls):
                if bed is not None and not overlaps_bed(bed, u.contig, *u.span):
                    continue
                events = _UNIT_EVENTS[call][side]
                assert events is not None
                key = u.keys[0]
                vtype, ibin = _unit_type(u)
                v = (u.gt, u.dp)
                dp = depth(key, v, None) if side == 0 else depth(key, None, v)
                _count(tally, ps, key, vtype, ibin, events, dp)
                if call != "TP":
                    tally.errors.append(
                        {
                            "sample": sample, "contig": u.contig, "pos": key[1] + 1,
                            "ref": key[2], "alt": ",".join(p[3] for p in u.parts),
                            "type": vtype, "call": call,
                            "truth_gt": u.gt if side else "", "query_gt": "" if side else u.gt,
                            "depth": dp if dp is not None else "",
                        }
                    )  # fmt: skip
    tally.per_sample[sample] = ps


def compare_truth(
    query: NormalisedSet,
    truth: NormalisedSet,
    bed: BedIntervals | None = None,
    include_filtered: bool = False,
    depth_at: DepthAt | None = None,
    match: str = "exact",
    fetch: RefFetch | None = None,
    window: int = DEFAULT_WINDOW,
) -> dict:
    """GA4GH-style comparison of ``query`` against ``truth`` (see the module docstring).

    ``depth_at(sample, contig, pos0)`` gives the read depth where neither the query nor the
    truth carries FORMAT/DP (e.g. :class:`BamDepth` over the run's alignments), so that FNs
    without a call land in a depth bin too. ``match`` is ``"haplotype"`` or ``"exact"``;
    haplotype matching needs ``fetch(contig, start, end)``, the reference bases of a 0-based
    half-open span, and groups variants closer than ``window`` bp.

    Returns ``{"SNP": {...}, "INDEL": {...}, ["OTHER": {...}], "samples": [...],
    "per_sample": {...}, "strata": {"contig"|"indel_length"|"depth": {...}}, "matching":
    {...}, "_errors": [...]}`` where each block holds TP (= TP_baseline), TP_baseline,
    TP_call, FP, FN, precision, recall, F1, FP_gt, FN_gt and allele-level counterparts;
    ``matching`` names the method and, for haplotype matching, counts the clusters by how
    they were resolved (``record``, ``haplotype``, ``exact`` fallback).
    """
    if match not in MATCH_METHODS:
        raise ValueError(f"match must be one of {MATCH_METHODS}, not {match!r}")
    if match == "haplotype" and fetch is None:
        raise ValueError("haplotype matching needs the reference (fetch)")
    pairs = _sample_pairs(query, truth)
    tally = _Tally()
    for sample, qi, ti in pairs:
        depth = functools.partial(_depth_of, query=query, qi=qi, sample=sample, depth_at=depth_at)
        if match == "haplotype":
            assert fetch is not None
            q_units = units_of(query, qi, include_filtered)
            t_units = units_of(truth, ti, include_filtered=True)
            _tally_units(tally, sample, q_units, t_units, fetch, window, bed, depth)
        else:
            q = _variants_of(query, qi, bed, include_filtered)
            t = _variants_of(truth, ti, bed, include_filtered=True)
            _tally_sample(tally, sample, q, t, depth)
    out = _truth_metrics(tally, [p[0] for p in pairs], query, truth)
    out["matching"] = {"method": match}
    if match == "haplotype":
        out["matching"].update(
            window=window,
            clusters={k: tally.clusters.get(k, 0) for k in ("record", "haplotype", "exact")},
        )
    order = {c: i for i, c in enumerate(truth.contigs)}
    errors = tally.errors
    errors.sort(
        key=lambda e: (order.get(e["contig"], len(order)), e["contig"], e["pos"], e["sample"])
    )
    out["_errors"] = errors
    return out


def _truth_metrics(
    tally: _Tally, samples: list[str], query: NormalisedSet, truth: NormalisedSet
) -> dict[str, Any]:
    """The metric blocks of a tally: per type, ``samples``, ``per_sample`` and ``strata``."""
    types = ["SNP", "INDEL"] + (["OTHER"] if tally.total.get("OTHER") else [])
    out: dict[str, Any] = {t: _metric_block(tally.total[t]) for t in types}
    out["samples"] = samples
    out["per_sample"] = {
        s: {t: _metric_block(c[t]) for t in types} for s, c in tally.per_sample.items()
    }
    out["strata"] = {
        "contig": {
            c: {t: _metric_block(tally.by_contig[c][t]) for t in types}
            for c in _ordered(tally.by_contig, query, truth)
        },
        "indel_length": {
            b: _metric_block(tally.by_indel[b]) for b in INDEL_BINS if b in tally.by_indel
        },
        "depth": {
            d: {t: _metric_block(tally.by_depth[d][t]) for t in types}
            for d in DEPTH_LABELS
            if d in tally.by_depth
        },
    }
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

    def __init__(self, manifest: Manifest) -> None:
        inputs = manifest.inputs or {}
        paths = [
            a.get("path") if isinstance(a, dict) else a
            for a in (inputs.get("alignments") or inputs.get("bams") or [])
        ]
        self.min_mapq = int((manifest.params or {}).get("min_mapq", 0) or 0)
        self.files: dict[str, list[pysam.AlignmentFile]] = defaultdict(list)
        self._cache: dict[tuple[str, str, int], int | None] = {}
        for p in paths:
            f = _open_indexed(p)
            if f is None:
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
            self._cache[key] = self._count(files, contig, pos) if files else None
        return self._cache[key]

    def _count(self, files: list[pysam.AlignmentFile], contig: str, pos: int) -> int:
        n = 0
        for f in files:
            try:
                for read in f.fetch(contig, pos, pos + 1):
                    if not read.flag & self._SKIP and read.mapping_quality >= self.min_mapq:
                        n += 1
            except ValueError:  # contig not in this file
                continue
        return n

    def close(self) -> None:
        seen = set()
        for fs in self.files.values():
            for f in fs:
                if id(f) not in seen:
                    seen.add(id(f))
                    f.close()


def _open_indexed(path: Any) -> pysam.AlignmentFile | None:
    """The alignment file at ``path`` opened, when it exists, is readable and has an index."""
    if not path or not Path(path).is_file():
        return None
    try:
        f = pysam.AlignmentFile(str(path))
        if not f.has_index():
            f.close()
            return None
    except (OSError, ValueError):
        return None
    return f
