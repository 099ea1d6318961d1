"""Population variants of a simulated contig: normalisation (left-align and trim), the
:class:`TruthRecord`, the planner that places non-overlapping records (boundary patterns,
contig ends, clusters, multi-allelic sites, random indels and SNVs), genotypes, and the
truth VCF text. Positions are 0-based inside; VCF POS adds 1."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from varcall import __version__
from varcall.core.errors import VarcallError
from varcall.simulate.config import SimulationConfig, keyed_rng, sample_names
from varcall.simulate.reference import ContigTexture

__all__ = ["TruthRecord", "normalize_allele", "simulate_variants", "truth_vcf_text"]


def normalize_allele(ref_seq: str, pos: int, ref: str, alt: str) -> tuple[int, str, str]:
    """Left-align and trim one REF/ALT pair against ``ref_seq`` (vt/bcftools norm rules).

    ``pos`` is the 0-based position of ``ref``'s first base; ``ref`` must equal
    ``ref_seq[pos:pos+len(ref)]``. Returns the normalised (pos, ref, alt): no shared last
    base, no shared first base unless an allele would become empty, leftmost position
    (an indel that slides to position 0 is anchored on the base after it, as VCF says).
    """
    if ref_seq[pos : pos + len(ref)] != ref:
        raise ValueError(f"REF {ref!r} does not match the reference at {pos}")
    if ref == alt:
        raise ValueError("REF equals ALT")
    changed = True
    while changed:
        changed = False
        if ref and alt and ref[-1] == alt[-1]:
            ref, alt = ref[:-1], alt[:-1]
            changed = True
        if (not ref or not alt) and pos > 0:
            pos -= 1
            ref, alt = ref_seq[pos] + ref, ref_seq[pos] + alt
            changed = True
    if not ref or not alt:  # slid to the contig start: anchor on the base after instead
        nxt = ref_seq[pos + len(ref)]
        ref, alt = ref + nxt, alt + nxt
    while len(ref) >= 2 and len(alt) >= 2 and ref[0] == alt[0]:
        ref, alt, pos = ref[1:], alt[1:], pos + 1
    return pos, ref, alt


def _right_extent(ref_seq: str, pos: int, ref: str, alt: str) -> int:
    """How many bases a normalised anchored indel could slide right (0 for SNVs/MNPs)."""
    if len(ref) == len(alt):
        return 0
    if len(ref) > len(alt):  # deletion of ref[1:]
        d = ref[len(alt) :]
        start = pos + len(alt)
        k = 0
        while (
            start + len(d) + k < len(ref_seq) and ref_seq[start + k] == ref_seq[start + len(d) + k]
        ):
            k += 1
        return k
    ins = alt[len(ref) :]
    start = pos + len(ref)
    k = 0
    while start + k < len(ref_seq) and ref_seq[start + k] == ins[k % len(ins)]:
        k += 1
    return k


# ----------------------------------------------------------------------------- variants
@dataclasses.dataclass
class TruthRecord:
    """One truth VCF record. ``pos`` is 0-based (VCF POS - 1); ``alleles[0]`` is REF.

    genotypes: (n_samples, ploidy) allele indices. afs: population frequency of each ALT.
    tags: variant classes (snv, insertion, deletion, multiallelic, homopolymer, str,
    cluster, contig_end, boundary).
    """

    contig: str
    pos: int
    alleles: list[str]
    afs: list[float]
    tags: set[str]
    genotypes: np.ndarray | None = None

    @property
    def end(self) -> int:
        """0-based exclusive end of REF."""
        return self.pos + len(self.alleles[0])

    def class_tags(self) -> list[str]:
        """Sorted tags, with the allele-type tags derived from the alleles."""
        tags = set(self.tags)
        ref = self.alleles[0]
        for alt in self.alleles[1:]:
            if len(alt) == len(ref):
                tags.add("snv" if len(ref) == 1 else "mnp")
            elif len(alt) > len(ref):
                tags.add("insertion")
            else:
                tags.add("deletion")
        if len(self.alleles) > 2:
            tags.add("multiallelic")
        return sorted(tags)


class _Planner:
    """Places non-overlapping records on one contig (keeps >=1 free base between records
    unless placed as a group)."""

    def __init__(self, tex: ContigTexture, read_length: int, rng: np.random.Generator):
        self.tex = tex
        self.seq = tex.seq
        self.rng = rng
        n = len(tex.seq)
        self.occ = np.zeros(n, dtype=bool)
        bad = np.frombuffer(tex.seq.encode(), dtype=np.uint8) == ord("N")
        # keep variants a read length away from N runs; never at the first/last base
        idx = np.flatnonzero(bad)
        if idx.size:
            cs = np.concatenate([[0], np.cumsum(bad)])
            lo = np.clip(np.arange(n) - read_length, 0, n)
            hi = np.clip(np.arange(n) + read_length + 1, 0, n)
            bad = (cs[hi] - cs[lo]) > 0
        bad[:1] = True
        bad[-1:] = True
        self.bad = bad
        self.records: list[TruthRecord] = []

    def free(self, lo: int, hi: int) -> bool:
        return 0 <= lo < hi <= len(self.seq) and not (
            self.occ[lo:hi].any() or self.bad[lo:hi].any()
        )

    def snv(self, pos: int, tags: set[str]) -> TruthRecord:
        ref = self.seq[pos]
        alts = [b for b in "ACGT" if b != ref]
        alt = alts[int(self.rng.integers(3))]
        return TruthRecord(self.tex.name, pos, [ref, alt], [], set(tags))

    def indel(self, pos: int, size: int, insertion: bool, tags: set[str]) -> TruthRecord | None:
        """An indel anchored at ``pos``, normalised; None when it would touch N."""
        s = self.seq
        if insertion:
            if self.rng.random() < 0.5:
                ins = s[pos + 1 : pos + 1 + size]  # tandem duplication
            else:
                ins = "".join("ACGT"[i] for i in self.rng.integers(0, 4, size=size))
            if len(ins) != size:
                return None
            ref, alt = s[pos], s[pos] + ins
        else:
            ref, alt = s[pos : pos + 1 + size], s[pos]
        if "N" in ref or "N" in alt or len(ref) < 1:
            return None
        p, r, a = normalize_allele(s, pos, ref, alt)
        return TruthRecord(self.tex.name, p, [r, a], [], set(tags))

    def span(self, rec: TruthRecord) -> tuple[int, int]:
        """Reference stretch the record's representation depends on (incl. slide right)."""
        ext = max(_right_extent(self.seq, rec.pos, rec.alleles[0], a) for a in rec.alleles[1:])
        return rec.pos, rec.end + ext

    def add(self, rec: TruthRecord | None, gap: int = 1) -> bool:
        if rec is None:
            return False
        lo, hi = self.span(rec)
        if not self.free(lo - gap, hi + gap):
            return False
        self.occ[lo:hi] = True
        self.records.append(rec)
        return True

    def add_group(self, recs: Sequence[TruthRecord | None]) -> bool:
        """Add records together (adjacent allowed) if the whole group fits."""
        if any(r is None for r in recs) or not recs:
            return False
        spans = [self.span(r) for r in recs]  # type: ignore[arg-type]
        for (_lo, hi), (lo2, _hi2) in zip(spans, spans[1:]):
            if lo2 < hi:
                return False
        if not all(
            self.free(lo - 1 if i == 0 else lo, hi + 1 if i == len(spans) - 1 else hi)
            for i, (lo, hi) in enumerate(spans)
        ):
            return False
        for (lo, hi), r in zip(spans, recs):
            self.occ[lo:hi] = True
            self.records.append(r)  # type: ignore[arg-type]
        return True

    def stable_indel(
        self, pos: int, size: int, insertion: bool, tags: set[str]
    ) -> TruthRecord | None:
        """An indel that normalises to exactly ``pos`` and cannot slide (else None)."""
        rec = self.indel(pos, size, insertion, tags)
        if rec is None or rec.pos != pos:
            return None
        if _right_extent(self.seq, rec.pos, rec.alleles[0], rec.alleles[1]) != 0:
            return None
        return rec


def _indel_size(rng: np.random.Generator) -> int:
    """Indel length in bp: mostly short, a tail up to 30."""
    if rng.random() < 0.12:
        return int(rng.integers(5, 31))
    return int(min(30, rng.geometric(0.45)))


def _draw_afs(rng: np.random.Generator, n_alts: int) -> list[float]:
    """Population allele frequencies: rare, common and high-frequency alleles."""
    afs = []
    for _ in range(n_alts):
        u = rng.random()
        if u < 0.4:
            afs.append(float(rng.uniform(0.002, 0.05)))
        elif u < 0.85:
            afs.append(float(rng.uniform(0.05, 0.5)))
        else:
            afs.append(float(rng.uniform(0.5, 0.95)))
    total = sum(afs)
    if total > 0.95:
        afs = [a * 0.95 / total for a in afs]
    return [round(a, 4) for a in afs]


def _plant_boundaries(pl: _Planner, config: SimulationConfig) -> None:
    """Variants at fixed offsets around each boundary position (first contig only)."""
    for i, b in enumerate(config.boundary_positions):
        tags = {"boundary", "cluster"}
        if i % 2 == 0:
            group: list[TruthRecord | None] = [
                pl.snv(b - 4, tags),
                pl.snv(b - 1, tags),
                pl.snv(b, tags),
            ]
            tail = None
            for size in (2, 1, 3):
                tail = pl.stable_indel(b + 3, size, False, tags)
                if tail is not None:
                    break
            group.append(tail if tail is not None else pl.snv(b + 3, tags))
        else:
            dele = None
            for start in range(b - 3, b - 8, -1):
                for size in range(b - start + 2, b - start + 9):
                    dele = pl.stable_indel(start, size, False, tags)
                    if dele is not None and dele.pos < b < dele.end:
                        break
                    dele = None
                if dele is not None:
                    break
            if dele is None:  # pragma: no cover - the boundary neighbourhood is random sequence
                raise VarcallError(f"could not plant a deletion across boundary {b}")
            ins = None
            for size in (1, 2, 3):
                ins = pl.stable_indel(dele.end + 2, size, True, tags)
                if ins is not None:
                    break
            group = [
                pl.snv(dele.pos - 3, tags),
                dele,
                ins if ins is not None else pl.snv(dele.end + 2, tags),
            ]
        if not pl.add_group(group):
            raise VarcallError(f"could not plant the variants at boundary {b}; move it")
        for r in group:
            r.afs = [0.5]  # type: ignore[union-attr]


def simulate_variants(
    config: SimulationConfig, tex: ContigTexture, contig_index: int
) -> list[TruthRecord]:
    """Population variants of one contig with genotypes, sorted by position.

    Every record has at least one carrier of each ALT; genotypes are (n_samples, ploidy)
    allele indices, ploidy 1 for the last ``n_haploid_contigs`` contigs."""
    rng = keyed_rng(config, 2, contig_index)
    pl = _Planner(tex, config.read_length, rng)
    length = len(tex.seq)
    rl = config.read_length

    if contig_index == 0:
        _plant_boundaries(pl, config)
    _plant_contig_ends(pl, rng, length, rl)
    _plant_clusters(pl, rng, length, rl)
    _plant_multiallelic(pl, rng, tex, rl)
    _plant_random(pl, rng, config, length)

    records = sorted(pl.records, key=lambda r: r.pos)
    _draw_genotypes(records, rng, tex, config.n_samples, config.ploidy(contig_index))
    records.sort(key=lambda r: r.pos)
    return records


def _plant_contig_ends(pl: _Planner, rng: np.random.Generator, length: int, rl: int) -> None:
    """An SNV and an indel within one read length ``rl`` of each contig end."""
    for lo, hi in ((rl // 4, rl), (length - rl, length - rl // 4 - 1)):
        placed_snv = placed_indel = False
        for _ in range(200):
            p = int(rng.integers(lo, hi))
            if not placed_snv:
                placed_snv = pl.add(pl.snv(p, {"contig_end"}))
            elif not placed_indel:
                placed_indel = pl.add(
                    pl.indel(p, int(rng.integers(1, 6)), bool(rng.random() < 0.5), {"contig_end"})
                )
            else:
                break


def _plant_clusters(pl: _Planner, rng: np.random.Generator, length: int, rl: int) -> None:
    """Clusters: 2-4 records, each starting <=10 bp after the previous one."""
    for _ in range(max(2, int(length * 5e-5))):
        for _try in range(20):
            p = int(rng.integers(rl, length - rl))
            group = []
            q = p
            for _k in range(int(rng.integers(2, 5))):
                rec = None
                if rng.random() < 0.3:
                    rec = pl.stable_indel(
                        q, int(rng.integers(1, 4)), bool(rng.random() < 0.5), {"cluster"}
                    )
                if rec is None:
                    rec = pl.snv(q, {"cluster"})
                group.append(rec)
                q = rec.end + int(rng.integers(1, 8))
            if pl.add_group(group):
                break


def _plant_multiallelic(
    pl: _Planner, rng: np.random.Generator, tex: ContigTexture, rl: int
) -> None:
    """Multi-allelic sites: triallelic SNVs and +/- one unit at homopolymers and STRs
    (elsewhere at repeats, half the time, a one-ALT gain or loss of 1-2 units)."""
    length = len(tex.seq)
    for _ in range(max(2, int(length * 1e-4))):
        p = int(rng.integers(rl, length - rl))
        ref = tex.seq[p]
        if ref == "N":
            continue
        alts = [b for b in "ACGT" if b != ref]
        rng.shuffle(alts)
        pl.add(TruthRecord(tex.name, p, [ref, alts[0], alts[1]], [], set()))
    repeats = [(s, e, b, "homopolymer") for s, e, b in tex.homopolymers] + [
        (s, e, u, "str") for s, e, u in tex.strs
    ]
    order = rng.permutation(len(repeats))
    n_multi = max(2, len(repeats) // 6)
    for j, k in enumerate(order):
        s, e, unit, kind = repeats[k]
        anchor = s - 1
        if anchor < 1:
            continue
        if j < n_multi:
            ref = tex.seq[anchor] + unit
            alleles = [ref, tex.seq[anchor], ref + unit]
            ok = (
                all(normalize_allele(tex.seq, anchor, ref, a)[0] == anchor for a in alleles[1:])
                and tex.seq[anchor] != unit[-1]
            )
            if ok:
                pl.add(TruthRecord(tex.name, anchor, alleles, [], {kind}))
        elif rng.random() < 0.5:
            copies = int(rng.integers(1, 3))
            if rng.random() < 0.5 and (e - s) > copies * len(unit):
                ref, alt = tex.seq[anchor : anchor + 1 + copies * len(unit)], tex.seq[anchor]
            else:
                ref, alt = tex.seq[anchor], tex.seq[anchor] + unit * copies
            p, r, a = normalize_allele(tex.seq, anchor, ref, alt)
            pl.add(TruthRecord(tex.name, p, [r, a], [], {kind}))


def _plant_random(
    pl: _Planner, rng: np.random.Generator, config: SimulationConfig, length: int
) -> None:
    """Random indels and SNVs at the configured densities (those that fit)."""
    tex = pl.tex
    for _ in range(int(rng.poisson(length * config.indel_rate))):
        p = int(rng.integers(1, length - 32))
        pl.add(pl.indel(p, _indel_size(rng), bool(rng.random() < 0.5), set()))
    for p in rng.integers(1, length - 1, size=int(rng.poisson(length * config.snv_rate))):
        p = int(p)
        if tex.seq[p] != "N":
            pl.add(pl.snv(p, set()))


def _draw_genotypes(
    records: list[TruthRecord],
    rng: np.random.Generator,
    tex: ContigTexture,
    n_samples: int,
    ploidy: int,
) -> None:
    """Draw each record's genotypes ((n_samples, ploidy) allele indices) from its allele
    frequencies, with at least one carrier of each ALT; multi-allelic records need two
    haplotypes, else they keep one ALT."""
    n_haps = n_samples * ploidy
    for rec in records:
        if len(rec.alleles) > 2 and n_haps < 2:
            p, r, a = normalize_allele(tex.seq, rec.pos, rec.alleles[0], rec.alleles[1])
            rec.pos, rec.alleles = p, [r, a]
        n_alts = len(rec.alleles) - 1
        if len(rec.afs) != n_alts:
            rec.afs = _draw_afs(rng, n_alts)
        probs = np.array([1.0 - sum(rec.afs), *rec.afs])
        haps = rng.choice(n_alts + 1, size=n_haps, p=probs / probs.sum())
        for allele in range(1, n_alts + 1):
            if not (haps == allele).any():
                cand = np.flatnonzero(haps == 0)
                if cand.size == 0:
                    counts = np.bincount(haps, minlength=n_alts + 1)
                    cand = np.flatnonzero(counts[haps] > 1)
                haps[int(cand[rng.integers(cand.size)])] = allele
        rec.genotypes = haps.reshape(n_samples, ploidy).astype(np.int8)


def truth_vcf_text(
    config: SimulationConfig, textures: list[ContigTexture], records: list[list[TruthRecord]]
) -> str:
    """The truth VCF (uncompressed text): header, then every contig's records (1-based POS)."""
    samples = sample_names(config.n_samples)
    head = [
        "##fileformat=VCFv4.2",
        f"##source=varcall-simulate {__version__} (seed={config.seed})",
        "##reference=reference.fa",
    ]
    head += [f"##contig=<ID={t.name},length={len(t.seq)}>" for t in textures]
    head += [
        '##INFO=<ID=AF,Number=A,Type=Float,Description="Population allele frequency the genotypes were drawn from">',
        '##INFO=<ID=SIMCLASS,Number=.,Type=String,Description="Simulated variant classes">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples),
    ]
    lines = head
    for recs in records:
        for r in recs:
            assert r.genotypes is not None
            gts = ["/".join(str(a) for a in sorted(g.tolist())) for g in r.genotypes]
            info = (
                "AF=" + ",".join(f"{a:g}" for a in r.afs) + ";SIMCLASS=" + ",".join(r.class_tags())
            )
            lines.append(
                f"{r.contig}\t{r.pos + 1}\t.\t{r.alleles[0]}\t{','.join(r.alleles[1:])}\t.\tPASS\t{info}\tGT\t"
                + "\t".join(gts)
            )
    return "\n".join(lines) + "\n"
