"""Identity of two normalised call sets, and the digest fast path over run manifests.

- :func:`compare_identity`: records present in only one set, and records present in both
  whose content differs (QUAL, FILTER, the INFO fields both headers define, GT of every
  shared sample and the FORMAT fields both headers define; unphased genotypes compared as
  unordered); site concordance (shared / union of the record keys); per shared sample a
  matrix GT-in-A x GT-in-B over the union of records (classes of
  :data:`~varcall.evaluate.normalise.GT_CLASSES`).
- :func:`compare_manifests`: when both inputs are varcall run folders whose manifests carry
  per-region digests over the same region layout, identity region by region (per contig
  otherwise), naming the regions that differ.

Record keys are 0-based; ``pos`` in the rows written for people is the 1-based VCF POS.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from varcall.core.manifest import Manifest, UnitRecord, same_digest_scheme
from varcall.evaluate.normalise import GT_CLASSES, NormalisedSet, gt_class

__all__ = [
    "MAX_LISTED",
    "compare_identity",
    "compare_manifests",
]

#: Maximum number of discordant records kept inside metrics.json (all go to the TSVs).
MAX_LISTED = 1000


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
    genotypes = _genotype_matrices(a, b, shared_samples, ia, ib, keys)
    return {
        "identity": identity,
        "sites": _site_concordance(a, b),
        "genotypes": genotypes,
        "_discordant": discordant,
    }


def _site_concordance(a: NormalisedSet, b: NormalisedSet) -> dict:
    """The ``sites`` section: record keys (without occurrence) shared and apart."""
    sites_a = {k[:4] for k in a.records}
    sites_b = {k[:4] for k in b.records}
    union = len(sites_a | sites_b)
    shared = len(sites_a & sites_b)
    return {
        "sites_a": len(sites_a),
        "sites_b": len(sites_b),
        "shared": shared,
        "only_in_a": len(sites_a - sites_b),
        "only_in_b": len(sites_b - sites_a),
        "concordance": shared / union if union else 1.0,
    }


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


# ----------------------------------------------------------------------------- digests
def _region_layout(m: Manifest) -> list[tuple] | None:
    """(contig, start, end) of every unit, or None when a unit has no digest (or none)."""
    if not m.units or any(u.digest is None for u in m.units):
        return None
    return [(u.contig, u.start, u.end) for u in m.units]


def _unit_name(u: UnitRecord) -> str:
    """The unit's ``region`` string as written, else contig:start-end (1-based)."""
    start = u.start if u.start is not None else 0
    return u.region or f"{u.contig}:{start + 1}-{u.end}"


def _contig_digests(m: Manifest) -> dict[str, str]:
    digests = m.contig_digests
    if not isinstance(digests, dict):
        return {}
    return {str(k): str(x) for k, x in digests.items()}


def compare_manifests(
    ma: Manifest | Mapping[str, Any] | None, mb: Manifest | Mapping[str, Any] | None
) -> dict:
    """The digest fast path: compare per-region digests when both manifests list the same
    regions with digests, else per-contig digests. ``identical`` is None when no digests can
    be compared. Regions are reported as written in the manifest (``region`` strings).

    ``ma``/``mb``: run manifests (:class:`~varcall.core.manifest.Manifest`; a manifest.json
    document is read with :meth:`Manifest.from_dict`), None for inputs that are no run
    folder. Returns ``{"method": "region"|"contig"|None, "identical", "compared",
    "differing": [...], ["reason"]}``.
    """
    out: dict[str, Any] = {"method": None, "identical": None, "compared": 0, "differing": []}
    if not ma or not mb:
        out["reason"] = "not both inputs are varcall run folders with a manifest"
        return out
    ma = ma if isinstance(ma, Manifest) else Manifest.from_dict(dict(ma))
    mb = mb if isinstance(mb, Manifest) else Manifest.from_dict(dict(mb))
    if not same_digest_scheme(ma, mb):
        out["reason"] = "the manifests' digests are computed differently (manifest versions)"
        return out
    la, lb = _region_layout(ma), _region_layout(mb)
    if la is not None and la == lb:
        diff = [_unit_name(ua) for ua, ub in zip(ma.units, mb.units) if ua.digest != ub.digest]
        out.update(method="region", identical=not diff, compared=len(la), differing=diff)
        return out
    ca, cb = _contig_digests(ma), _contig_digests(mb)
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
