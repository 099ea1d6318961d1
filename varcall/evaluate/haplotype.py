"""Haplotype-aware matching of a query call set against a truth set, per sample (the idea of
``rtg vcfeval``; implemented here from the description, not from its code).

A *unit* is one input record as it appears in one sample: its normalised parts (a split
multi-allelic record has several, see :attr:`NormalisedSet.origin`), each with the number of
haplotypes that carry it. Units of the query and the truth are grouped into local clusters:
a unit joins a cluster when it starts less than ``window`` bp after the cluster's end.
Within a cluster every side may include or leave out each unit and, for an included unit,
place its alleles on the two haplotypes in every genotype-consistent way (no two overlapping
alleles on one haplotype); each choice spells two haplotype sequences over the cluster.
The choice pair whose sequences agree (as an unordered pair) and that includes the most units
is the match: its included units are TP (``TP_call`` on the query side, ``TP_baseline`` on
the truth side), the others FP / FN. A second, haploid pass (each unit contributes at most
one allele to one sequence, genotypes ignored) finds the FP / FN units whose allele is right
and only the genotype wrong: those count as ``FP_gt`` / ``FN_gt`` too.

Genotypes are taken as unphased (as vcfeval does by default): phase sets are not used.
Clusters whose units match record for record (same parts, same allele counts) skip the
search: that is the common case and costs one comparison. Clusters whose search space would
exceed :data:`MAX_STATES` fall back to exact matching of their normalised records (counted).

Coordinates are 0-based half-open. A part is kept without the padding base of an indel
(``REF=GCT ALT=G`` at 0-based 10 is the deletion of ``[11, 13)``; ``REF=G ALT=GA`` the
insertion of ``A`` at the empty span ``[11, 11)``), so that an SNV on the padding base and
the indel after it can share a haplotype. An insertion conflicts with a part it falls
strictly inside and with another insertion at the same point.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator

from varcall.evaluate.normalise import NormalisedSet, gt_class

__all__ = ["DEFAULT_WINDOW", "MAX_STATES", "Unit", "ClusterResult", "units_of", "match_units"]

logger = logging.getLogger(__name__)

#: Variants closer than this (bp, end to start) share a cluster.
DEFAULT_WINDOW = 30
#: Most genotype-consistent choices one side of a cluster may have before the cluster falls
#: back to exact matching (3 ** 8: eight heterozygous units).
MAX_STATES = 6561

#: One normalised part: (start, end, REF, ALT, copies), [start, end) 0-based, the padding
#: base of an indel removed (REF or ALT may be empty).
Part = tuple[int, int, str, str, int]
#: reference(contig, start, end) -> the reference bases of [start, end).
RefFetch = Callable[[str, int, int], str]


@dataclasses.dataclass
class Unit:
    """One input record of one sample: its normalised parts and their record keys.

    ``start``/``end``: the span of the parts (without indel padding); ``span``: the span of
    the records as written (with it), which the BED is tested against. ``gt`` is the genotype shown in error rows (``0/1``, ``1/1``, ``1/2`` ...), ``dp`` the
    sample's FORMAT/DP of the first part (None when absent)."""

    contig: str
    start: int
    end: int
    parts: tuple[Part, ...]
    keys: tuple[tuple, ...]
    gt: str
    dp: int | None
    span: tuple[int, int]

    def signature(self) -> tuple:
        """What must be equal for two units to match record for record."""
        return self.parts


def _carried(gt: tuple) -> int:
    """Number of haplotypes of a normalised genotype ``(alleles, phased)`` that carry ALT."""
    return sum(1 for a in gt[0] if a is not None and a > 0)


def _dp(fmt: dict, i: int) -> int | None:
    dps = fmt.get("DP")
    v = dps[i] if dps else None
    return v if isinstance(v, int) else None


def _part(pos: int, ref: str, alt: str, copies: int) -> Part:
    """A part from a normalised record at 0-based ``pos``, the indel padding base removed."""
    if len(ref) != len(alt) and ref and alt and ref[0] == alt[0]:
        return (pos + 1, pos + len(ref), ref[1:], alt[1:], copies)
    return (pos, pos + len(ref), ref, alt, copies)


def units_of(ns: NormalisedSet, sample_index: int, include_filtered: bool) -> list[Unit]:
    """The units of one sample (see the module docstring), in file order: records whose
    genotype carries the ALT, PASS/unfiltered ones only unless ``include_filtered``; symbolic
    and ``*`` alleles are left out."""
    groups: dict[tuple, list[tuple[tuple, Part, tuple, dict]]] = {}
    for key, (_q, filters, _info, fmt) in ns.records.items():
        if not include_filtered and filters not in ((), ("PASS",)):
            continue
        alt = key[3]
        if alt in ("*", ".") or alt.startswith("<") or "[" in alt or "]" in alt:
            continue
        gts = fmt.get("GT")
        if not gts:
            continue
        gt = gts[sample_index]
        copies = _carried(gt)
        if not copies:
            continue
        # only split multi-allelic records are grouped; anything else is its own unit
        origin = ns.origin.get(key, "").split("|")  # contig|POS|REF|ALTS
        group = (key[0], *origin) if len(origin) >= 4 and "," in origin[3] else key
        part = _part(key[1], key[2], alt, copies)
        groups.setdefault(group, []).append((key, part, gt, fmt))
    units = []
    for members in groups.values():
        members.sort(key=lambda m: m[1])
        parts = tuple(m[1] for m in members)
        keys = tuple(m[0] for m in members)
        if len(members) == 1:
            shown = gt_class(members[0][2])
        else:
            alleles = [i + 1 for i, p in enumerate(parts) for _ in range(p[4])]
            shown = "/".join(str(a) for a in ([0] * (2 - len(alleles)) + alleles))
        units.append(
            Unit(
                keys[0][0], min(p[0] for p in parts), max(p[1] for p in parts), parts, keys,
                shown, _dp(members[0][3], sample_index),
                (min(k[1] for k in keys), max(k[1] + len(k[2]) for k in keys)),
            )
        )  # fmt: skip
    units.sort(key=lambda u: (u.contig, u.start, u.end, u.parts))
    return units


@dataclasses.dataclass
class ClusterResult:
    """The verdict on the units of one cluster: ``query``/``truth`` hold, per unit in the
    cluster's order, ``"TP"``, ``"FP"``/``"FN"`` or ``"FP_gt"``/``"FN_gt"`` (allele right,
    genotype wrong); ``method`` is ``"record"`` (matched record for record), ``"haplotype"``,
    or ``"exact"`` (search too large: record-exact fallback)."""

    query: list[Unit]
    truth: list[Unit]
    query_calls: list[str]
    truth_calls: list[str]
    method: str


def clusters(
    query: list[Unit], truth: list[Unit], window: int
) -> Iterator[tuple[list[Unit], list[Unit]]]:
    """Local clusters of the units of both sides (each list sorted as :func:`units_of`
    sorts): a unit starting less than ``window`` bp after the cluster's end joins it."""
    tagged = sorted(
        [(u.contig, u.start, 0, i) for i, u in enumerate(query)]
        + [(u.contig, u.start, 1, i) for i, u in enumerate(truth)]
    )
    sides = (query, truth)
    cur: tuple[list[Unit], list[Unit]] = ([], [])
    contig, end = None, -1
    for c, start, side, i in tagged:
        u = sides[side][i]
        if cur[0] or cur[1]:
            if c != contig or start - end >= window:
                yield cur
                cur = ([], [])
                end = -1
        contig = c
        cur[side].append(u)
        end = max(end, u.end)
    if cur[0] or cur[1]:
        yield cur


def _placements(u: Unit) -> list[tuple[tuple[Part, ...], tuple[Part, ...]]]:
    """The ways of putting a unit's allele copies on two haplotypes (empty when the unit
    claims more copies than two haplotypes hold)."""
    copies = [p for p in u.parts for _ in range(p[4])]
    if len(copies) == 1:
        return [((copies[0],), ()), ((), (copies[0],))]
    if len(copies) == 2:
        a, b = copies
        return [((a,), (b,))] if a == b else [((a,), (b,)), ((b,), (a,))]
    return []


def _fits(hap: tuple[Part, ...], new: tuple[Part, ...]) -> bool:
    """Whether ``new`` parts conflict with none of ``hap``'s (nor with each other): spans
    overlap, an insertion (empty span) lies strictly inside a part, or two insertions meet."""
    for i, p in enumerate(new):
        for q in hap + new[:i]:
            if p[0] < q[1] and q[0] < p[1]:
                return False
            if p[0] == p[1] and (q[0] < p[0] < q[1] or q == p or (q[0] == q[1] == p[0])):
                return False
            if q[0] == q[1] and p[0] < q[0] < p[1]:
                return False
    return True


def _spell(ref: str, start: int, parts: tuple[Part, ...]) -> str:
    """The haplotype over the cluster's reference ``ref`` (from 0-based ``start``) with the
    non-overlapping ``parts`` applied."""
    out = []
    cur = start
    for p in sorted(parts):
        out.append(ref[cur - start : p[0] - start])
        out.append(p[3])
        cur = p[1]
    out.append(ref[cur - start :])
    return "".join(out)


def _search(
    units: list[Unit], options: list[list[tuple[tuple[Part, ...], ...]]], ref: str, start: int
) -> dict[tuple[str, ...], tuple[int, int]]:
    """Every haplotype tuple the units can spell (each unit left out or placed by one of its
    ``options``), sorted, -> (most units included, bit mask of them): first found wins ties."""
    best: dict[tuple[str, ...], tuple[int, int]] = {}
    n_hap = len(options[0][0]) if options and options[0] else 1

    def walk(i: int, haps: tuple[tuple[Part, ...], ...], mask: int, n: int) -> None:
        if i == len(units):
            key = tuple(sorted(_spell(ref, start, h) for h in haps))
            if key not in best or n > best[key][0]:
                best[key] = (n, mask)
            return
        walk(i + 1, haps, mask, n)
        for opt in options[i]:
            if all(_fits(h, o) for h, o in zip(haps, opt)):
                walk(i + 1, tuple(h + o for h, o in zip(haps, opt)), mask | 1 << i, n + 1)

    walk(0, ((),) * n_hap, 0, 0)
    return best


def _best(q: dict, t: dict) -> tuple[int, int]:
    """The (query mask, truth mask) of the shared haplotype tuple with the most units."""
    top, masks = -1, (0, 0)
    for key, (nq, mq) in q.items():
        hit = t.get(key)
        if hit is not None and nq + hit[0] > top:
            top, masks = nq + hit[0], (mq, hit[1])
    return masks


def _n_states(options: list[list]) -> int:
    n = 1
    for o in options:
        n *= 1 + len(o)
    return n


def _exact(query: list[Unit], truth: list[Unit]) -> ClusterResult:
    """Record-exact verdicts: a unit is TP when the other side has a unit with the same
    parts and allele counts, FP_gt/FN_gt when one with the same alleles only."""

    def verdict(units: list[Unit], other: list[Unit], miss: str) -> list[str]:
        sigs = [o.signature() for o in other]
        alleles = [tuple(p[:4] for p in o.parts) for o in other]
        out = []
        for u in units:
            if u.signature() in sigs:
                out.append("TP")
            else:
                out.append(f"{miss}_gt" if tuple(p[:4] for p in u.parts) in alleles else miss)
        return out

    return ClusterResult(
        query, truth, verdict(query, truth, "FP"), verdict(truth, query, "FN"), "exact"
    )


def match_cluster(query: list[Unit], truth: list[Unit], fetch: RefFetch) -> ClusterResult:
    """Verdicts on the units of one cluster (see the module docstring)."""
    if sorted(u.signature() for u in query) == sorted(u.signature() for u in truth):
        n_q, n_t = ["TP"] * len(query), ["TP"] * len(truth)
        return ClusterResult(query, truth, n_q, n_t, "record")
    if not query or not truth:
        return ClusterResult(query, truth, ["FP"] * len(query), ["FN"] * len(truth), "record")
    q_opt = [_placements(u) for u in query]
    t_opt = [_placements(u) for u in truth]
    if _n_states(q_opt) > MAX_STATES or _n_states(t_opt) > MAX_STATES:
        return _exact(query, truth)
    if any(not o for o in q_opt + t_opt):  # a unit with more copies than two haplotypes
        return _exact(query, truth)
    start = min(u.start for u in query + truth)
    end = max(u.end for u in query + truth)
    ref = fetch(query[0].contig, start, end)
    mq, mt = _best(_search(query, q_opt, ref, start), _search(truth, t_opt, ref, start))
    # haploid pass over the units the genotype pass left out: is the allele right?
    q_left = [i for i in range(len(query)) if not mq >> i & 1]
    t_left = [i for i in range(len(truth)) if not mt >> i & 1]
    aq, at = 0, 0
    if q_left and t_left:
        qa = [[((p[:4] + (1,),),) for p in dict.fromkeys(query[i].parts)] for i in q_left]
        ta = [[((p[:4] + (1,),),) for p in dict.fromkeys(truth[i].parts)] for i in t_left]
        aq, at = _best(
            _search([query[i] for i in q_left], qa, ref, start),
            _search([truth[i] for i in t_left], ta, ref, start),
        )
    q_calls = ["TP"] * len(query)
    for j, i in enumerate(q_left):
        q_calls[i] = "FP_gt" if aq >> j & 1 else "FP"
    t_calls = ["TP"] * len(truth)
    for j, i in enumerate(t_left):
        t_calls[i] = "FN_gt" if at >> j & 1 else "FN"
    return ClusterResult(query, truth, q_calls, t_calls, "haplotype")


def match_units(
    query: list[Unit], truth: list[Unit], fetch: RefFetch, window: int = DEFAULT_WINDOW
) -> Iterator[ClusterResult]:
    """The verdicts of every cluster of one sample's ``query`` and ``truth`` units."""
    for q, t in clusters(query, truth, window):
        yield match_cluster(q, t, fetch)
