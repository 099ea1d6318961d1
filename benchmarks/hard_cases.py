"""Human-like hard cases for the benchmark datasets (``DatasetSpec.hard``).

Pure Python/numpy building blocks used by ``build_dataset.py``:

- :func:`plant_segdups`: segmental duplications: 2-10 kb stretches copied elsewhere in the
  same contig (either strand) at 0.5-3 % divergence, overwriting what was there, so that
  reads from one copy mismap to the other;
- :func:`insert_repeats`: homopolymers and 2-6 bp STR arrays of many lengths written into
  the reference;
- :func:`repeat_sites`: true expansions/contractions (whole units) of some of those arrays;
- :func:`cluster_sites`: clustered SNVs and MNPs (adjacent SNVs, written to the truth as
  separate phased SNVs), linked on one haplotype or split;
- :func:`hetdel_sites`: SNVs inside a heterozygous deletion (the SNV on the other
  haplotype of the same sample);
- :func:`long_indel_sites`: 15-40 bp indels, which bwa soft-clips near read ends;
- PCR stutter in the reads: ``stutter.py``;
- :func:`strata_intervals`: the strata BED (tandem repeat, segmental duplication,
  clustered, other), a partition of every contig.

Coordinates are 0-based half-open throughout; 1-based only in VCF text.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger("benchmarks.hard_cases")

STRATA = ("tandem_repeat", "segdup", "clustered", "other")
_COMP = str.maketrans("ACGTN", "TGCAN")


def revcomp(seq: str) -> str:
    """Reverse complement of an upper-case DNA string."""
    return seq.translate(_COMP)[::-1]


@dataclasses.dataclass(frozen=True)
class HardSpec:
    """How many hard cases to plant, per Mb of contig (rounded), and the stutter model.
    ``deep_contigs`` (contig names of the spec's cuts) get reads at ``deep_coverage``
    (total over both haplotypes) instead of the spec's coverage."""

    repeats_per_mb: float = 400.0
    repeat_changed: float = 0.5
    segdups_per_mb: float = 6.0
    segdup_length: tuple[int, int] = (2000, 10000)
    segdup_divergence: tuple[float, float] = (0.005, 0.03)
    clusters_per_mb: float = 120.0
    hetdels_per_mb: float = 100.0
    long_indels_per_mb: float = 60.0
    stutter_at_10bp: float = 0.01
    stutter_at_30bp: float = 0.15
    stutter_max: float = 0.2
    stutter_deletion_share: float = 0.7
    deep_contigs: tuple[str, ...] = ()
    deep_coverage: float = 300.0


@dataclasses.dataclass(frozen=True)
class Repeat:
    """A tandem-repeat array ``[start, end)`` of whole copies of ``unit``."""

    contig: str
    start: int
    end: int
    unit: str

    @property
    def copies(self) -> int:
        return (self.end - self.start) // len(self.unit)


@dataclasses.dataclass(frozen=True)
class SegDup:
    """``[dst_start, dst_end)`` is a copy of ``[src_start, src_end)`` (reverse complement
    when ``reverse``) with substitutions and small indels at ``divergence`` per bp."""

    contig: str
    src_start: int
    src_end: int
    dst_start: int
    dst_end: int
    reverse: bool
    divergence: float


def _count(length: int, per_mb: float) -> int:
    return int(round(length * per_mb / 1e6))


def _overlaps(s: int, e: int, taken: Iterable[tuple[int, int]]) -> bool:
    return any(s < te and ts < e for ts, te in taken)


def _free_position(
    rng: np.random.Generator,
    seq: str,
    size: int,
    taken: list[tuple[int, int]],
    pad: int,
    edge: int,
    tries: int = 200,
) -> int | None:
    """A start for ``size`` bp, ``pad`` bp clear of ``taken`` and ``edge`` bp clear of the
    contig ends, without N; None after ``tries`` draws."""
    hi = len(seq) - edge - size
    if hi <= edge:
        return None
    for _ in range(tries):
        p = int(rng.integers(edge, hi))
        if not _overlaps(p - pad, p + size + pad, taken) and "N" not in seq[p : p + size]:
            return p
    return None


def mutate(seq: str, rate: float, rng: np.random.Generator) -> str:
    """``seq`` with substitutions (90 %) and 1-3 bp indels (10 %) at ``rate`` per bp."""
    out = []
    i = 0
    while i < len(seq):
        b = seq[i]
        if rng.random() < rate:
            if rng.random() < 0.9:
                out.append(str(rng.choice([x for x in "ACGT" if x != b])))
            elif rng.random() < 0.5:  # deletion of 1-3 bases
                i += int(rng.integers(1, 4))
                continue
            else:
                out.append(b + "".join(rng.choice(list("ACGT"), int(rng.integers(1, 4)))))
        else:
            out.append(b)
        i += 1
    return "".join(out)


def plant_segdups(
    contig: str, seq: str, hs: HardSpec, rng: np.random.Generator, edge: int
) -> tuple[str, list[SegDup]]:
    """Copy stretches of ``seq`` over other places of it (the contig length is kept: the
    diverged copy overwrites exactly its own length). Returns the new sequence and the
    duplications."""
    dups: list[SegDup] = []
    taken: list[tuple[int, int]] = []
    for _ in range(_count(len(seq), hs.segdups_per_mb)):
        n = int(rng.integers(hs.segdup_length[0], hs.segdup_length[1] + 1))
        src = _free_position(rng, seq, n, taken, 2000, edge)
        if src is None:
            continue
        taken.append((src, src + n))
        div = float(rng.uniform(*hs.segdup_divergence))
        reverse = bool(rng.random() < 0.5)
        body = seq[src : src + n]
        copy = mutate(revcomp(body) if reverse else body, div, rng)
        dst = _free_position(rng, seq, len(copy), taken, 2000, edge)
        if dst is None:
            taken.pop()
            continue
        seq = seq[:dst] + copy + seq[dst + len(copy) :]
        taken.append((dst, dst + len(copy)))
        dups.append(SegDup(contig, src, src + n, dst, dst + len(copy), reverse, round(div, 4)))
    return seq, dups


def _primitive(unit: str) -> bool:
    """True when ``unit`` is not itself a repeat of a shorter unit (``ATAT`` is not)."""
    n = len(unit)
    return not any(n % k == 0 and unit[:k] * (n // k) == unit for k in range(1, n))


def random_repeat(rng: np.random.Generator) -> tuple[str, int]:
    """(unit, copies): homopolymers of 6-40 bp (35 %), else 2-6 bp units in arrays of
    about 8-60 bp (at least 3 copies)."""
    u = int(rng.choice([1, 2, 3, 4, 5, 6], p=[0.35, 0.25, 0.15, 0.1, 0.08, 0.07]))
    while True:
        unit = "".join(rng.choice(list("ACGT"), u))
        if _primitive(unit):
            break
    if u == 1:
        return unit, int(rng.integers(6, 41))
    lo = max(3, -(-8 // u))
    return unit, int(rng.integers(lo, max(lo + 1, 60 // u + 1)))


def insert_repeats(
    contig: str,
    seq: str,
    hs: HardSpec,
    rng: np.random.Generator,
    avoid: list[tuple[int, int]],
    edge: int,
) -> tuple[str, list[Repeat]]:
    """Write tandem-repeat arrays over ``seq`` (length kept), at least 150 bp from each
    other and from ``avoid``. Returns the new sequence and the arrays, sorted."""
    taken = list(avoid)
    arrays = []
    for _ in range(_count(len(seq), hs.repeats_per_mb)):
        unit, copies = random_repeat(rng)
        size = len(unit) * copies
        p = _free_position(rng, seq, size, taken, 150, edge)
        if p is None:
            continue
        seq = seq[:p] + unit * copies + seq[p + size :]
        taken.append((p, p + size))
        arrays.append(Repeat(contig, p, p + size, unit))
    return seq, sorted(arrays, key=lambda r: r.start)


# ----------------------------------------------------------------------------- variants
@dataclasses.dataclass(frozen=True)
class Site:
    """A planted variant (the plain sites of build_dataset.py and the hard cases alike).
    ``pos`` is 0-based (first base of ``ref``); ``haps`` holds one allele index (0/1) per
    haplotype, two per sample in sample order."""

    contig: str
    pos: int
    ref: str
    alt: str
    haps: tuple[int, ...]

    @property
    def end(self) -> int:
        return self.pos + len(self.ref)


def _haps(rng: np.random.Generator, n_haps: int, lo: float = 0.1, hi: float = 0.9) -> tuple:
    af = rng.uniform(lo, hi)
    haps = (rng.random(n_haps) < af).astype(int)
    if not haps.any():
        haps[rng.integers(n_haps)] = 1
    return tuple(int(h) for h in haps)


def repeat_sites(
    seq: str, arrays: Sequence[Repeat], hs: HardSpec, rng: np.random.Generator, n_haps: int
) -> list[Site]:
    """True expansions/contractions of a share ``hs.repeat_changed`` of ``arrays`` by 1
    (70 %), 2 (20 %) or 3 (10 %) whole units. The anchor is the last base of the array's
    first unit, so the change lies inside the array on every haplotype."""
    out = []
    for r in arrays:
        if rng.random() >= hs.repeat_changed:
            continue
        u, k = len(r.unit), int(rng.choice([1, 2, 3], p=[0.7, 0.2, 0.1]))
        anchor = r.start + u - 1
        if r.copies >= k + 2 and rng.random() < 0.5:
            ref, alt = seq[anchor : anchor + 1 + k * u], seq[anchor]
        else:
            ref, alt = seq[anchor], seq[anchor] + seq[r.start : r.start + u] * k
        out.append(Site(r.contig, anchor, ref, alt, _haps(rng, n_haps)))
    return out


def _snv(rng: np.random.Generator, base: str) -> str:
    return str(rng.choice([b for b in "ACGT" if b != base]))


def cluster_sites(
    contig: str,
    seq: str,
    n: int,
    rng: np.random.Generator,
    taken: list[tuple[int, int]],
    n_haps: int,
    edge: int,
) -> list[Site]:
    """``n`` clusters of 2-4 SNVs 1-10 bp apart (1 bp: an MNP), all on the same haplotypes
    (70 %) or each on its own. Each cluster's footprint is appended to ``taken``."""
    out = []
    for _ in range(n):
        gaps = rng.integers(1, 11, int(rng.integers(1, 4)))
        size = int(gaps.sum()) + 1
        p = _free_position(rng, seq, size, taken, 30, edge)
        if p is None:
            continue
        taken.append((p, p + size))
        linked = rng.random() < 0.7
        haps = _haps(rng, n_haps)
        for pos in [p, *(p + np.cumsum(gaps)).tolist()]:
            h = haps if linked else _haps(rng, n_haps)
            out.append(Site(contig, int(pos), seq[pos], _snv(rng, seq[pos]), h))
    return out


def hetdel_sites(
    contig: str,
    seq: str,
    n: int,
    rng: np.random.Generator,
    taken: list[tuple[int, int]],
    n_samples: int,
    edge: int,
) -> list[Site]:
    """``n`` deletions of 5-40 bp, each with an SNV inside the deleted stretch; in every
    carrier sample one haplotype has the deletion and the other the SNV (so the sample
    is heterozygous for both)."""
    out = []
    for _ in range(n):
        length = int(rng.integers(5, 41))
        p = _free_position(rng, seq, length + 1, taken, 30, edge)
        if p is None:
            continue
        taken.append((p, p + length + 1))
        carriers = rng.random(n_samples) < 0.5
        if not carriers.any():
            carriers[rng.integers(n_samples)] = True
        dh, sh = [0] * (2 * n_samples), [0] * (2 * n_samples)
        for i in np.flatnonzero(carriers).tolist():
            d = int(rng.integers(2))
            dh[2 * i + d], sh[2 * i + 1 - d] = 1, 1
        q = p + 1 + int(rng.integers(length))
        out.append(Site(contig, p, seq[p : p + length + 1], seq[p], tuple(dh)))
        out.append(Site(contig, q, seq[q], _snv(rng, seq[q]), tuple(sh)))
    return out


def long_indel_sites(
    contig: str,
    seq: str,
    n: int,
    rng: np.random.Generator,
    taken: list[tuple[int, int]],
    n_haps: int,
    edge: int,
) -> list[Site]:
    """``n`` 15-40 bp insertions (random sequence) or deletions: reads that end in them are
    soft-clipped by bwa rather than aligned with the indel."""
    out = []
    for _ in range(n):
        length = int(rng.integers(15, 41))
        p = _free_position(rng, seq, length + 1, taken, 30, edge)
        if p is None:
            continue
        taken.append((p, p + length + 1))
        if rng.random() < 0.5:
            ref, alt = seq[p : p + length + 1], seq[p]
        else:
            ref, alt = seq[p], seq[p] + "".join(rng.choice(list("ACGT"), length))
        out.append(Site(contig, p, ref, alt, _haps(rng, n_haps)))
    return out


def merge_sites(background: Sequence, hard: Sequence, pad: int = 20) -> list:
    """The hard sites plus the background sites (``build_dataset.plant_sites``) that lie
    ``pad`` bp clear of every hard site, sorted by position. Raises ValueError when two
    sites that share a haplotype overlap (the haplotypes would be ill-defined)."""
    hard = sorted(hard, key=lambda s: s.pos)
    spans = sorted((s.pos - pad, s.end + pad) for s in hard)
    starts = [s for s, _ in spans]
    reach = np.maximum.accumulate([e for _, e in spans]).tolist() if spans else []
    kept = []
    for s in background:
        i = bisect.bisect_left(starts, s.end + pad)  # spans starting before s's end
        if i and reach[i - 1] > s.pos - pad:
            continue
        kept.append(s)
    out = sorted([*kept, *hard], key=lambda s: (s.pos, s.end))
    check_sites(out)
    return out


def check_sites(sites: Sequence) -> None:
    """Raise ValueError when two sites carried by one haplotype overlap."""
    if not sites:
        return
    last_end = [-1] * len(sites[0].haps)
    for s in sites:
        for h, a in enumerate(s.haps):
            if a:
                if s.pos < last_end[h]:
                    raise ValueError(f"{s.contig}:{s.pos}: overlaps an earlier site on hap {h}")
                last_end[h] = s.end


def lift(sites: Sequence, hap: int, positions: Sequence[int]) -> list[int]:
    """Reference positions -> positions on haplotype ``hap``: each shifted by the length
    change of the sites carried by ``hap`` that end at or before it."""
    ends, deltas = [], []
    total = 0
    for s in sorted((s for s in sites if s.haps[hap]), key=lambda s: s.end):
        total += len(s.alt) - len(s.ref)
        ends.append(s.end)
        deltas.append(total)
    out = []
    for p in positions:
        i = bisect.bisect_right(ends, p)
        out.append(p + (deltas[i - 1] if i else 0))
    return out


# ----------------------------------------------------------------------------- strata
def natural_repeats(seq: str, min_hp: int = 7, min_str: int = 12) -> list[tuple[int, int]]:
    """Tandem repeats already in ``seq``: homopolymers of at least ``min_hp`` bp and 2-6 bp
    unit arrays of at least ``min_str`` bp (at least 3 copies)."""
    out = [(m.start(), m.end()) for m in re.finditer(rf"([ACGT])\1{{{min_hp - 1},}}", seq)]
    for u in range(2, 7):
        copies = max(3, -(-min_str // u))
        pat = re.compile(rf"([ACGT]{{{u}}})\1{{{copies - 1},}}")
        out += [(m.start(), m.end()) for m in pat.finditer(seq) if _primitive(m.group(1))]
    return sorted(out)


def strata_intervals(
    length: int,
    confident: Sequence[tuple[int, int]],
    tandem: Sequence[tuple[int, int]],
    segdup: Sequence[tuple[int, int]],
    clustered: Sequence[tuple[int, int]],
) -> dict[str, list[tuple[int, int]]]:
    """The strata of one contig inside ``confident``: a partition, where a base in several
    goes to the first of tandem repeat, segmental duplication, clustered; the rest is
    ``other``. Intervals are clipped to the contig."""
    label = np.full(length, 3, np.int8)
    for k, ivs in ((2, clustered), (1, segdup), (0, tandem)):
        for s, e in ivs:
            label[max(0, s) : min(length, e)] = k
    keep = np.zeros(length, bool)
    for s, e in confident:
        keep[s:e] = True
    out = {}
    for k, name in enumerate(STRATA):
        m = (label == k) & keep
        d = np.diff(np.concatenate([[0], m.astype(np.int8), [0]]))
        out[name] = list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))
    return out


# ----------------------------------------------------------------------------- assembly
@dataclasses.dataclass
class Planted:
    """What :func:`plant_contig` planted on one contig (reference coordinates)."""

    repeats: list[Repeat]
    segdups: list[SegDup]
    clusters: list[tuple[int, int]]  # footprints of SNV clusters and het-deletion pairs

    def unmask(self) -> list[tuple[int, int]]:
        """Planted stretches where the truth is known although k-mers repeat."""
        out = [(r.start, r.end) for r in self.repeats]
        for d in self.segdups:
            out += [(d.src_start, d.src_end), (d.dst_start, d.dst_end)]
        return out


def plant_contig(
    contig: str,
    seq: str,
    hs: HardSpec,
    rng: np.random.Generator,
    n_samples: int,
    edge: int,
    background,
) -> tuple[str, list, Planted]:
    """Segmental duplications and repeat arrays written into ``seq``, then the truth:
    ``background(seq)`` (a list of sites) merged with repeat expansions/contractions,
    SNV/MNP clusters, SNVs in het deletions and long indels. Returns (new sequence,
    sorted sites, what was planted)."""
    seq, dups = plant_segdups(contig, seq, hs, rng, edge)
    seq, arrays = insert_repeats(contig, seq, hs, rng, [(d.dst_start, d.dst_end) for d in dups], edge)
    n_haps = 2 * n_samples
    taken = [(r.start, r.end) for r in arrays]
    hard = repeat_sites(seq, arrays, hs, rng, n_haps)
    n = len(taken)
    hard += cluster_sites(
        contig, seq, _count(len(seq), hs.clusters_per_mb), rng, taken, n_haps, edge
    )
    hard += hetdel_sites(
        contig, seq, _count(len(seq), hs.hetdels_per_mb), rng, taken, n_samples, edge
    )
    clusters = taken[n:]
    hard += long_indel_sites(
        contig, seq, _count(len(seq), hs.long_indels_per_mb), rng, taken, n_haps, edge
    )
    sites = merge_sites(background(seq), hard)
    return seq, sites, Planted(arrays, dups, clusters)


def hap_arrays(
    planted: dict[str, Planted], sites: dict[str, list], hap: int, suffix: str
) -> dict[str, list[tuple[int, int, int]]]:
    """Every planted array on haplotype ``hap``: contig name +
    ``suffix`` -> (start, end, unit length) in haplotype coordinates."""
    out = {}
    for name, p in planted.items():
        pos = [x for r in p.repeats for x in (r.start, r.end)]
        lifted = lift(sites[name], hap, pos)
        out[name + suffix] = [
            (lifted[2 * i], lifted[2 * i + 1], len(r.unit)) for i, r in enumerate(p.repeats)
        ]
    return out


def write_strata(
    folder: Path,
    contigs: Sequence[tuple[str, str]],
    confident: dict[str, list[tuple[int, int]]],
    planted: dict[str, Planted],
    pad: int = 5,
) -> dict[str, int]:
    """``folder/strata/<stratum>.bed`` (inside the confident BED) for every contig; returns
    the bp of each stratum. Tandem repeats: planted arrays and natural ones
    (:func:`natural_repeats`), ``pad`` bp either side; segmental duplications: both copies;
    clustered: the clusters and het-deletion pairs, ``pad`` bp either side."""
    (folder / "strata").mkdir(exist_ok=True)
    fhs = {s: open(folder / "strata" / f"{s}.bed", "w") for s in STRATA}
    size = dict.fromkeys(STRATA, 0)
    try:
        for name, seq in contigs:
            p = planted.get(name, Planted([], [], []))
            tr = [(r.start, r.end) for r in p.repeats] + natural_repeats(seq)
            sd = [iv for d in p.segdups for iv in ((d.src_start, d.src_end), (d.dst_start, d.dst_end))]
            st = strata_intervals(
                len(seq),
                confident.get(name, []),
                [(s - pad, e + pad) for s, e in tr],
                sd,
                [(s - pad, e + pad) for s, e in p.clusters],
            )
            for s, ivs in st.items():
                for a, b in ivs:
                    fhs[s].write(f"{name}\t{a}\t{b}\n")
                    size[s] += b - a
    finally:
        for fh in fhs.values():
            fh.close()
    return size
