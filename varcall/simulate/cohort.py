"""Deterministic cohort simulator: reference, population variants, truth VCF, BAMs.

``simulate_cohort(out, SimulationConfig(...))`` writes into ``out``::

    reference.fa (+ .fai)     contigs chr1..chrK; GC variation, homopolymers, STRs, N runs,
                              one soft-masked (lower-case) stretch per contig
    truth.vcf.gz (+ .tbi)     multi-sample truth, normalised (left-aligned, parsimonious),
                              sorted, GT per sample (haploid GTs on haploid contigs)
    confident.bed             0-based half-open intervals where every sample has reads
                              (N runs and uncovered contig ends excluded)
    <SAMPLE>.bam (+ .bai)     paired-end reads per sample (S01, S02, ...), coordinate sorted
    bams.txt                  one BAM file name per line, relative to ``out``
    simulation.json           the configuration, counts (records per class, reads per sample,
                              confident bp), contigs (ploidy, N runs, soft-masked stretch,
                              0-based half-open), boundary patterns and records; written last

Everything is a pure function of the configuration (``seed`` included): the same
configuration gives the same reference, truth VCF body and BAM records, byte for byte.

Coordinates are 0-based half-open inside this module; VCF text (POS) and SAM text (POS,
PNEXT) add 1. Reads are simulated from each sample's haplotypes (two per diploid contig,
one per haploid contig); a read's CIGAR is computed from the haplotype-to-reference
alignment, then every read indel is shifted left as far as the read and the reference
allow, as aligners do (:func:`read_cigar`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pysam

from varcall import __version__
from varcall.core.errors import InputError, VarcallError

__all__ = [
    "SimulationConfig",
    "TruthRecord",
    "simulate_cohort",
    "simulate_reference",
    "simulate_variants",
    "normalize_allele",
    "read_cigar",
    "left_align",
    "cigar_from_refpos",
    "haplotype",
    "sample_names",
    "contig_names",
]

logger = logging.getLogger(__name__)

#: Illumina TruSeq adapter: the bases a read runs into past the end of a short fragment.
ADAPTER = "AGATCGGAAGAGCACACGTCTGAACTCCAGTCACATCGATCTCGTATGCCGTCTTCTGCTTG"
_COMP = bytes.maketrans(b"ACGTNacgtn", b"TGCANtgcan")
_ASCII_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
# base (ASCII) -> code 0..3 (anything else -> 0; only called on A/C/G/T)
_CODE = np.zeros(256, dtype=np.uint8)
for _i, _b in enumerate(b"ACGT"):
    _CODE[_b] = _i
# Phred quality -> error probability scaled to 2**16 (for uint16 uniform draws)
_ERR_THRESHOLD = np.rint(10.0 ** (-np.arange(94) / 10.0) * 65536).astype(np.uint32)
_ERR_THRESHOLD[_ERR_THRESHOLD > 65536] = 65536

# read-level constants (fractions are per read pair unless said otherwise)
_DUPLICATE_RATE = 0.03
_LOW_MAPQ_RATE = 0.02
_SOFT_CLIP_RATE = 0.01  # per read
_INDEL_ERROR_RATE = 0.002  # per read
_QUALITY_PROFILES = 512
_WRITE_BLOCK = 100_000  # reads per block when drawing errors and writing SAM text
_FLAG_PAIRED, _FLAG_PROPER, _FLAG_REV, _FLAG_MREV = 0x1, 0x2, 0x10, 0x20
_FLAG_READ1, _FLAG_READ2, _FLAG_DUP = 0x40, 0x80, 0x400


# ----------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Lengths in bp, coverage in mean read depth per sample.

    n_samples: samples S01..SNN.
    n_contigs, contig_length: contigs chr1..chrK, each ``contig_length`` bp.
    coverage: mean depth of each sample (all haplotypes together), duplicates excluded.
    read_length, insert_mean, insert_sd: paired-end layout (fragment length ~ normal,
        at least one read length).
    n_haploid_contigs: the last K contigs are haploid (one haplotype per sample).
    boundary_positions: 0-based positions on the first contig where variants are planted
        at fixed offsets; even-indexed positions b get SNVs at b-1 and b plus a cluster
        around them, odd-indexed ones a deletion spanning b plus a cluster around it.
    snv_rate, indel_rate: population density of random SNVs / indels per bp.
    confident_min_depth: confident.bed keeps positions where every sample has at least
        this many non-duplicate reads (see :meth:`min_depth` for shallow coverage).
    seed: everything derives from it.
    """

    n_samples: int = 3
    n_contigs: int = 2
    contig_length: int = 200_000
    coverage: float = 30.0
    read_length: int = 150
    insert_mean: int = 400
    insert_sd: int = 50
    n_haploid_contigs: int = 0
    boundary_positions: tuple[int, ...] = ()
    snv_rate: float = 1.0e-3
    indel_rate: float = 1.5e-4
    confident_min_depth: int = 5
    seed: int = 1

    def ploidy(self, contig_index: int) -> int:
        """Ploidy of contig ``contig_index`` (0-based): 1 for the last ``n_haploid_contigs``."""
        return 1 if contig_index >= self.n_contigs - self.n_haploid_contigs else 2

    def min_depth(self) -> int:
        """Depth every sample needs at a position for confident.bed: ``confident_min_depth``,
        lowered to a quarter of the coverage (at least 1) for shallow cohorts."""
        return max(1, min(self.confident_min_depth, int(self.coverage / 4)))

    def validate(self) -> None:
        """Raise :class:`InputError` for a configuration that cannot be simulated."""
        if self.n_samples < 1 or self.n_samples > 999:
            raise InputError(f"--samples {self.n_samples}: must be 1..999; give another count")
        if self.n_contigs < 1:
            raise InputError(f"--contigs {self.n_contigs}: must be at least 1; give another count")
        if self.read_length < 30:
            raise InputError(f"--read-length {self.read_length}: must be >= 30; give a longer one")
        if self.contig_length < max(1000, 8 * self.read_length):
            raise InputError(
                f"--length {self.contig_length}: contigs must be at least "
                f"{max(1000, 8 * self.read_length)} bp for read length {self.read_length}; "
                "give a longer --length"
            )
        if self.insert_mean < self.read_length:
            raise InputError(
                f"--insert-mean {self.insert_mean}: shorter than the read length "
                f"{self.read_length}; give an insert mean >= the read length"
            )
        if self.insert_sd < 0 or self.coverage <= 0:
            raise InputError("--insert-sd must be >= 0 and --coverage > 0; fix the option")
        if not 0 <= self.n_haploid_contigs <= self.n_contigs:
            raise InputError(
                f"--haploid-contigs {self.n_haploid_contigs}: more than the "
                f"{self.n_contigs} contigs; give at most --contigs"
            )
        margin = self.insert_mean + 4 * self.read_length
        for b in self.boundary_positions:
            if not margin <= b <= self.contig_length - margin:
                raise InputError(
                    f"--boundary {b}: must lie in [{margin}, {self.contig_length - margin}] on "
                    f"the first contig (length {self.contig_length}); move the position"
                )
        bs = sorted(self.boundary_positions)
        for a, b in zip(bs, bs[1:]):
            if b - a < 100:
                raise InputError(
                    f"--boundary {a} and {b}: closer than 100 bp; space boundary positions apart"
                )


def sample_names(n: int) -> list[str]:
    """Sample ids S01, S02, ... (zero-padded to at least two digits)."""
    width = max(2, len(str(n)))
    return [f"S{i + 1:0{width}d}" for i in range(n)]


def contig_names(n: int) -> list[str]:
    """Contig names chr1..chrN."""
    return [f"chr{i + 1}" for i in range(n)]


def _rng(config: SimulationConfig, *key: int) -> np.random.Generator:
    """A generator keyed by (seed, stage, ...): independent of the order of the work."""
    return np.random.default_rng([config.seed & 0xFFFFFFFF, *key])


# ----------------------------------------------------------------------------- reference
@dataclasses.dataclass
class ContigTexture:
    """The simulated sequence of one contig and where its features lie (0-based half-open).

    seq: upper-case sequence (A/C/G/T/N); masked: (start, end) lower-case in the FASTA.
    homopolymers: (start, end, base); strs: (start, end, unit); n_runs: (start, end).
    """

    name: str
    seq: str
    masked: tuple[int, int]
    homopolymers: list[tuple[int, int, str]]
    strs: list[tuple[int, int, str]]
    n_runs: list[tuple[int, int]]

    def fasta_seq(self) -> str:
        """The sequence as written to FASTA (soft-masked stretch in lower case)."""
        a, b = self.masked
        return self.seq[:a] + self.seq[a:b].lower() + self.seq[b:]


def simulate_reference(config: SimulationConfig, contig_index: int) -> ContigTexture:
    """Simulate one contig's sequence with GC variation, homopolymers, STRs, N runs and
    a soft-masked stretch. Positions near boundary positions (first contig) are kept free
    of repeats and N runs so the planted boundary variants are unambiguous."""
    rng = _rng(config, 1, contig_index)
    length = config.contig_length
    # GC content varies in segments of a few kb
    seg_lengths = rng.geometric(1 / 2000, size=length // 200 + 2)
    seg_gc = rng.uniform(0.3, 0.65, size=seg_lengths.size)
    gc = np.repeat(seg_gc, seg_lengths)[:length]
    if gc.size < length:
        gc = np.concatenate([gc, np.full(length - gc.size, 0.45)])
    strong = rng.random(length) < gc
    pick = rng.random(length) < 0.5
    arr = np.where(strong, np.where(pick, ord("G"), ord("C")), np.where(pick, ord("A"), ord("T")))
    arr = arr.astype(np.uint8)

    protected = np.zeros(length, dtype=bool)
    if contig_index == 0:
        for b in config.boundary_positions:
            protected[max(0, b - 40) : b + 40] = True
    end_zone = config.read_length
    homopolymers: list[tuple[int, int, str]] = []
    for _ in range(max(2, length // 1500)):
        n = int(min(25, 6 + rng.geometric(0.25) - 1))
        s = int(rng.integers(end_zone // 2, length - n - end_zone // 2))
        if protected[s - 2 : s + n + 2].any():
            continue
        base = int(_ASCII_BASES[rng.integers(4)])
        arr[s : s + n] = base
        homopolymers.append((s, s + n, chr(base)))
    strs: list[tuple[int, int, str]] = []
    for _ in range(max(2, length // 2000)):
        k = int(rng.integers(2, 5))
        unit = _ASCII_BASES[rng.integers(0, 4, size=k)]
        while len(set(unit.tolist())) == 1:
            unit = _ASCII_BASES[rng.integers(0, 4, size=k)]
        copies = int(rng.integers(4, 16))
        n = k * copies
        s = int(rng.integers(end_zone // 2, length - n - end_zone // 2))
        if protected[s - 2 : s + n + 2].any():
            continue
        arr[s : s + n] = np.tile(unit, copies)
        strs.append((s, s + n, unit.tobytes().decode()))

    n_runs: list[tuple[int, int]] = []
    if length >= 20_000:
        margin = config.insert_mean + 4 * config.read_length
        for _ in range(max(1, length // 150_000)):
            n = int(rng.integers(50, min(500, length // 80) + 1))
            for _try in range(50):
                s = int(rng.integers(length // 10, length - length // 10 - n))
                lo, hi = max(0, s - margin), s + n + margin
                if not protected[lo:hi].any() and all(
                    hi <= a - margin or lo >= b + margin for a, b in n_runs
                ):
                    break
            else:
                continue
            arr[s : s + n] = ord("N")
            n_runs.append((s, s + n))
        n_runs.sort()
    seq = arr.tobytes().decode("ascii")
    # features overwritten by a later one or by N are dropped from the lists
    homopolymers = [h for h in homopolymers if seq[h[0] : h[1]] == h[2] * (h[1] - h[0])]
    strs = [t for t in strs if seq[t[0] : t[1]] == t[2] * ((t[1] - t[0]) // len(t[2]))]
    mlen = min(2000, length // 20)
    for _try in range(100):  # the soft-masked stretch avoids the N runs
        ms = int(rng.integers(length // 4, length // 2))
        if all(ms + mlen <= a or ms >= b for a, b in n_runs):
            break
    return ContigTexture(
        name=contig_names(config.n_contigs)[contig_index],
        seq=seq,
        masked=(ms, ms + mlen),
        homopolymers=sorted(homopolymers),
        strs=sorted(strs),
        n_runs=n_runs,
    )


# ----------------------------------------------------------------------------- normalisation
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
    rng = _rng(config, 2, contig_index)
    pl = _Planner(tex, config.read_length, rng)
    length = len(tex.seq)
    rl = config.read_length
    ploidy = config.ploidy(contig_index)
    n_haps = config.n_samples * ploidy

    if contig_index == 0:
        _plant_boundaries(pl, config)

    # variants within one read length of each contig end
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

    # clusters: 2-4 records, each starting <=10 bp after the previous one
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

    # multi-allelic sites: triallelic SNVs and +/- one unit at homopolymers and STRs
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

    # random indels and SNVs
    for _ in range(int(rng.poisson(length * config.indel_rate))):
        p = int(rng.integers(1, length - 32))
        pl.add(pl.indel(p, _indel_size(rng), bool(rng.random() < 0.5), set()))
    for p in rng.integers(1, length - 1, size=int(rng.poisson(length * config.snv_rate))):
        p = int(p)
        if tex.seq[p] != "N":
            pl.add(pl.snv(p, set()))

    records = sorted(pl.records, key=lambda r: r.pos)
    # genotypes; multi-allelic records need two haplotypes, else they keep one ALT
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
        rec.genotypes = haps.reshape(config.n_samples, ploidy).astype(np.int8)
    records.sort(key=lambda r: r.pos)
    return records


# ----------------------------------------------------------------------------- haplotypes
def haplotype(ref_seq: str, edits: Sequence[tuple[int, str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Apply non-overlapping (pos, ref, alt) edits (0-based, sorted) to ``ref_seq``.

    Returns (bases, refpos): the haplotype as ASCII uint8 and, for each haplotype base,
    the 0-based reference position it is aligned to, or -1 for an inserted base. Each
    edit is aligned anchored on its first base: shared length as matches, the rest of
    the longer allele inserted (ALT) or deleted (REF).
    """
    pieces: list[np.ndarray] = []
    posmap: list[np.ndarray] = []
    prev = 0
    raw = ref_seq.encode("ascii")
    for pos, ref, alt in edits:
        if pos < prev:
            raise ValueError(f"overlapping edits at {pos}")
        pieces.append(np.frombuffer(raw[prev:pos], dtype=np.uint8))
        posmap.append(np.arange(prev, pos, dtype=np.int64))
        pieces.append(np.frombuffer(alt.encode("ascii"), dtype=np.uint8))
        m = min(len(ref), len(alt))
        rp = np.full(len(alt), -1, dtype=np.int64)
        rp[:m] = np.arange(pos, pos + m)
        posmap.append(rp)
        prev = pos + len(ref)
    pieces.append(np.frombuffer(raw[prev:], dtype=np.uint8))
    posmap.append(np.arange(prev, len(raw), dtype=np.int64))
    return np.concatenate(pieces).copy(), np.concatenate(posmap)


# ----------------------------------------------------------------------------- CIGAR
def _indel_events(rp: np.ndarray) -> np.ndarray:
    """Indices i where an insertion starts (rp[i] == -1 after an aligned base) or a
    deletion lies between aligned bases i-1 and i."""
    prev, cur = rp[:-1], rp[1:]
    ins_start = (cur == -1) & (prev >= 0)
    dele = (cur >= 0) & (prev >= 0) & (cur > prev + 1)
    return np.flatnonzero(ins_start | dele) + 1


def left_align(bases: bytes, rp: np.ndarray, ref: bytes, first: int = 0) -> np.ndarray:
    """Shift every indel of an alignment left, in place; return ``rp``.

    ``bases`` are the aligned sequence's bases, ``rp[i]`` the 0-based reference position of
    base i (-1 inserted, -2 clipped), ``first`` the index of the first aligned base. An
    indel moves one base left while the alignment keeps the same bases against the same
    reference bases: for a deletion of ``ref[s:e)`` when ``ref[s-1] == ref[e-1]``, for an
    insertion ``bases[i:m]`` when the base before it equals ``bases[m-1]``; it stops before
    the base preceding it would stop being a contiguous aligned base (so an indel never
    starts an alignment or touches another indel), as aligners and GATK place indels.
    """
    n = rp.size
    for i in _indel_events(rp).tolist():
        if rp[i] == -1:  # insertion bases[i:m] after base i-1
            m = i
            while m < n and rp[m] == -1:
                m += 1
            if m == n:
                continue
            j = i - 1
            while (
                j > first and rp[j - 1] >= 0 and rp[j - 1] == rp[j] - 1 and bases[j] == bases[m - 1]
            ):
                rp[m - 1] = rp[j]
                rp[j] = -1
                j -= 1
                m -= 1
        else:  # deletion of ref[s:e) between bases i-1 and i
            j = i - 1
            s, e = int(rp[j]) + 1, int(rp[i])
            while (
                j > first and rp[j - 1] >= 0 and rp[j - 1] == rp[j] - 1 and ref[s - 1] == ref[e - 1]
            ):
                rp[j] = e - 1
                s, e = s - 1, e - 1
                j -= 1
    return rp


def cigar_from_refpos(rp: np.ndarray | Sequence[int]) -> tuple[int, str, int] | None:
    """(pos, CIGAR, end) of an alignment given as per-base reference positions (0-based;
    -1 inserted, -2 clipped). Inserted or clipped bases before the first / after the last
    aligned base are soft clips, inside they are insertions; a jump is a deletion. None
    when no base is aligned. ``end`` is one past the last aligned base."""
    rpl = rp.tolist() if isinstance(rp, np.ndarray) else list(rp)
    n = len(rpl)
    first = 0
    while first < n and rpl[first] < 0:
        first += 1
    if first == n:
        return None
    last = n - 1
    while rpl[last] < 0:
        last -= 1
    parts = [f"{first}S"] if first else []
    cur_op, cur_len = "M", 0
    prev = rpl[first] - 1
    for r in rpl[first : last + 1]:
        if r < 0:
            op = "I"
        else:
            op = "M"
            if r > prev + 1:
                if cur_len:
                    parts.append(f"{cur_len}{cur_op}")
                parts.append(f"{r - prev - 1}D")
                cur_op, cur_len = "M", 0
            prev = r
        if op != cur_op:
            if cur_len:
                parts.append(f"{cur_len}{cur_op}")
            cur_op, cur_len = op, 0
        cur_len += 1
    parts.append(f"{cur_len}{cur_op}")
    if last < n - 1:
        parts.append(f"{n - 1 - last}S")
    return rpl[first], "".join(parts), rpl[last] + 1


def read_cigar(
    read: np.ndarray | bytes, refpos: np.ndarray, ref_seq: str | bytes
) -> tuple[int, str, int] | None:
    """Alignment of one read: (pos, CIGAR, end) with its indels left-aligned, or None.

    ``read`` holds the read bases (reference orientation); ``refpos[i]`` is the 0-based
    reference position read base i is aligned to, -1 for an inserted base, -2 for a
    clipped base. Leading/trailing clipped or inserted bases become soft clips; a jump in
    ``refpos`` is a deletion; indels are shifted left as :func:`left_align` says.
    Returns ``pos`` = first aligned base and ``end`` = one past the last aligned base
    (0-based half-open); None when no base is aligned.
    """
    rd = read if isinstance(read, bytes) else bytes(read)
    ref = ref_seq.encode("ascii") if isinstance(ref_seq, str) else ref_seq
    rp = np.array(refpos, dtype=np.int64)
    al = np.flatnonzero(rp >= 0)
    if al.size == 0:
        return None
    first, last = int(al[0]), int(al[-1])
    rp[:first] = -2
    rp[last + 1 :] = -2
    inner = rp[first : last + 1]
    inner[inner == -2] = -1  # clipped bases inside the alignment count as inserted
    left_align(rd, rp, ref, first)
    return cigar_from_refpos(rp)


class _HapAlignment:
    """A haplotype's left-aligned alignment to the reference, for slicing reads from it.

    ``refpos`` as in :func:`haplotype` after :func:`left_align`; ``events`` the sorted
    hap indices of indel events with their CIGAR op and length."""

    def __init__(self, bases: np.ndarray, refpos: np.ndarray, ref: bytes):
        self.refpos = left_align(bases.tobytes(), refpos, ref, 0)
        ev = _indel_events(self.refpos)
        self.ev_idx = ev
        kinds, lens = [], []
        rp = self.refpos
        n = rp.size
        for i in ev.tolist():
            if rp[i] == -1:
                m = i
                while m < n and rp[m] == -1:
                    m += 1
                kinds.append("I")
                lens.append(m - i)
            else:
                kinds.append("D")
                lens.append(int(rp[i] - rp[i - 1] - 1))
        self.kinds = kinds
        self.lens = lens
        self.inserted = rp < 0

    def window_cigars(
        self, starts: np.ndarray, length: int
    ) -> tuple[np.ndarray, np.ndarray, dict[int, bytes], np.ndarray]:
        """Alignment of reads covering hap ``[a, a+length)`` for each start ``a``.

        Returns (pos, end, cigars, dropped): ``cigars`` maps the index of every read that is
        not a plain ``{length}M`` to its CIGAR; ``dropped`` marks reads with no aligned base.
        """
        rp = self.refpos
        lo = np.searchsorted(self.ev_idx, starts, side="right")  # events strictly inside
        hi = np.searchsorted(self.ev_idx, starts + length, side="left")
        lead = self.inserted[starts]
        complex_ = np.flatnonzero((hi > lo) | lead)
        pos = rp[starts].copy()
        end = pos + length
        cigars: dict[int, bytes] = {}
        dropped = np.zeros(starts.size, dtype=bool)
        ev_idx, kinds, lens = self.ev_idx.tolist(), self.kinds, self.lens
        ins = self.inserted
        for r in complex_.tolist():
            a = int(starts[r])
            b = a + length
            parts: list[str] = []
            cur = a
            if ins[a]:  # starts inside an insertion: those bases are soft-clipped
                while cur < b and ins[cur]:
                    cur += 1
                if cur == b:
                    dropped[r] = True
                    continue
                parts.append(f"{cur - a}S")
            first = cur
            for k in range(int(lo[r]), int(hi[r])):
                i = ev_idx[k]
                if i < cur:
                    continue
                if kinds[k] == "D":
                    if i > cur:
                        parts.append(f"{i - cur}M")
                        cur = i
                    if cur > first:
                        parts.append(f"{lens[k]}D")
                else:
                    if i > cur:
                        parts.append(f"{i - cur}M")
                    if i + lens[k] >= b:  # runs to the read end: soft clip
                        parts.append(f"{b - i}S")
                        cur = b
                        break
                    parts.append(f"{lens[k]}I")
                    cur = i + lens[k]
            if cur < b:
                parts.append(f"{b - cur}M")
            last = b - 1
            while ins[last]:
                last -= 1
            pos[r] = rp[first]
            end[r] = rp[last] + 1
            cigars[r] = "".join(parts).encode()
        return pos, end, cigars, dropped


# ----------------------------------------------------------------------------- reads
def _quality_bank(rng: np.random.Generator, read_length: int) -> np.ndarray:
    """Quality profiles (Phred, sequencing direction): falling along the read, noisy, with
    occasional low-quality dips. Shape (_QUALITY_PROFILES, read_length), uint8."""
    x = np.arange(read_length) / max(read_length - 1, 1)
    mean = 37.0 - 4.0 * x - 12.0 * x**3
    q = (
        mean
        + rng.normal(0.0, 1.5, (_QUALITY_PROFILES, 1))
        + rng.normal(0.0, 2.0, (_QUALITY_PROFILES, read_length))
    )
    dips = rng.random((_QUALITY_PROFILES, read_length)) < 0.005 + 0.02 * x
    q[dips] = rng.uniform(2, 12, int(dips.sum()))
    return np.clip(np.rint(q), 2, 41).astype(np.uint8)


@dataclasses.dataclass
class _Reads:
    """Reads of one haplotype (or a concatenation), reference orientation."""

    pos: np.ndarray  # int64 0-based first aligned base
    end: np.ndarray  # int64 exclusive
    flag: np.ndarray  # int32
    mapq: np.ndarray  # int32
    mpos: np.ndarray  # int64
    tlen: np.ndarray  # int64
    hap: np.ndarray  # int32 haplotype number (1-based)
    pair: np.ndarray  # int64 pair number within the haplotype
    nm: np.ndarray  # int32 edit distance to the reference (SAM NM tag)
    seq: np.ndarray  # uint8 (n, L) ASCII
    qual: np.ndarray  # uint8 (n, L) ASCII (Phred + 33)
    cigar: list  # per read: bytes


def _simulate_hap_reads(
    config: SimulationConfig,
    hap_bases: np.ndarray,
    hal: _HapAlignment,
    ref_bytes: bytes,
    depth: float,
    bank: np.ndarray,
    rng: np.random.Generator,
    hap_number: int,
) -> _Reads:
    """Paired reads from one haplotype at mean ``depth`` (duplicates not counted).

    Fragments: start uniform on the haplotype, length ~ normal(insert_mean, insert_sd) and
    at least one read length; fragments overlapping N are skipped. Each pair: left read
    forward, right read reverse, read 1 on either side; ~2% of pairs get MAPQ 0-19, ~3% are
    copied as duplicates (flag 0x400, own errors). Qualities come from a bank of profiles
    falling along the read (reversed for reverse reads); substitution errors are drawn
    from them. ~0.2% of reads get a 1-base indel error, ~1% an adapter tail (soft clip at
    the 3' end). Alignments come from the haplotype's left-aligned alignment
    (:class:`_HapAlignment`), or :func:`read_cigar` for reads with simulated indel errors
    or clips. Positions are 0-based reference coordinates.
    """
    rl = config.read_length
    hlen = hap_bases.size
    n = int(rng.poisson(depth * hlen / (2 * rl)))
    flen = np.rint(rng.normal(config.insert_mean, config.insert_sd, n)).astype(np.int64)
    flen = np.clip(flen, rl, hlen)
    start = (rng.random(n) * (hlen - flen + 1)).astype(np.int64)
    ncum = np.concatenate([[0], np.cumsum(hap_bases == ord("N"))])
    ok = ncum[start + flen] == ncum[start]
    start, flen = start[ok], flen[ok]
    n = start.size
    r1_left = rng.random(n) < 0.5
    low = rng.random(n) < _LOW_MAPQ_RATE
    mq = np.where(low, rng.integers(0, 20, n), 60).astype(np.int32)
    dup_src = np.flatnonzero(rng.random(n) < _DUPLICATE_RATE)
    pair_src = np.concatenate([np.arange(n), dup_src])
    is_dup = np.concatenate([np.zeros(n, bool), np.ones(dup_src.size, bool)])
    npairs = pair_src.size
    # reads: 2k = left (forward), 2k+1 = right (reverse)
    hstart = np.empty(2 * npairs, dtype=np.int64)
    hstart[0::2] = start[pair_src]
    hstart[1::2] = start[pair_src] + flen[pair_src] - rl
    rev = np.zeros(2 * npairs, dtype=bool)
    rev[1::2] = True
    read1 = np.empty(2 * npairs, dtype=bool)
    read1[0::2] = r1_left[pair_src]
    read1[1::2] = ~r1_left[pair_src]
    nreads = 2 * npairs

    windows = np.lib.stride_tricks.sliding_window_view(hap_bases, rl)
    seq = windows[hstart]  # fancy indexing copies
    prof = rng.integers(0, bank.shape[0], nreads)
    qual = bank[prof]
    qual[rev] = qual[rev, ::-1]
    # alignments from the haplotype's (left-aligned) alignment; reads with a simulated
    # indel error or adapter clip are aligned one by one after their errors are drawn
    hap_refpos = hal.refpos
    pos, end, window_cigars, drop = hal.window_cigars(hstart, rl)
    clip = rng.random(nreads) < _SOFT_CLIP_RATE
    indel_err = rng.random(nreads) < _INDEL_ERROR_RATE
    special = np.flatnonzero((clip | indel_err) & ~drop)
    sp_refpos: dict[int, np.ndarray] = {}
    for i in special.tolist():
        a = int(hstart[i])
        bases = seq[i].copy()
        rp = hap_refpos[a : a + rl].copy()
        if indel_err[i]:
            k = int(rng.integers(10, rl - 10))
            if rng.random() < 0.5 and a + rl + 1 <= hlen:  # lose base k
                bases = np.concatenate([hap_bases[a : a + k], hap_bases[a + k + 1 : a + rl + 1]])
                rp = np.concatenate([hap_refpos[a : a + k], hap_refpos[a + k + 1 : a + rl + 1]])
            else:  # gain a base after k-1 (slippage: a copy of it, or a random base)
                extra = (
                    hap_bases[a + k - 1] if rng.random() < 0.7 else _ASCII_BASES[rng.integers(4)]
                )
                bases = np.concatenate(
                    [hap_bases[a : a + k], [extra], hap_bases[a + k : a + rl - 1]]
                ).astype(np.uint8)
                rp = np.concatenate([hap_refpos[a : a + k], [-1], hap_refpos[a + k : a + rl - 1]])
        if clip[i]:
            k = int(rng.integers(5, 31))
            if rev[i]:  # the 3' end of a reverse read is its left end
                bases[:k] = np.frombuffer(
                    ADAPTER[:k].encode().translate(_COMP)[::-1], dtype=np.uint8
                )
                rp[:k] = -2
            else:
                bases[-k:] = np.frombuffer(ADAPTER[:k].encode(), dtype=np.uint8)
                rp[-k:] = -2
        seq[i] = bases
        sp_refpos[i] = rp
    # substitution errors drawn from the qualities
    for lo in range(0, nreads, _WRITE_BLOCK):
        sq, qu = seq[lo : lo + _WRITE_BLOCK], qual[lo : lo + _WRITE_BLOCK]
        u = rng.integers(0, 65536, size=sq.shape, dtype=np.uint16)
        err = np.nonzero(u < _ERR_THRESHOLD[qu])
        if err[0].size:
            codes = _CODE[sq[err]]
            sq[err] = _ASCII_BASES[(codes + rng.integers(1, 4, codes.size)) % 4]
    qual += 33
    cigars: list = [b"%dM" % rl] * nreads
    for i, c in window_cigars.items():
        cigars[i] = c
    for i, rp in sp_refpos.items():
        res = read_cigar(seq[i].tobytes(), rp, ref_bytes)
        if res is None:
            drop[i] = True
            continue
        pos[i], c, end[i] = res[0], res[1].encode(), res[2]
        cigars[i] = c
    complex_reads = np.union1d(
        np.fromiter(window_cigars, dtype=np.int64, count=len(window_cigars)),
        np.fromiter(sp_refpos, dtype=np.int64, count=len(sp_refpos)),
    )
    complex_reads = complex_reads[~drop[complex_reads]]
    nm = _edit_distances(seq, hstart, hap_refpos, complex_reads, sp_refpos, pos, end, ref_bytes)
    if drop.any():  # drop whole pairs with a read that aligns nowhere
        pairs = drop.reshape(-1, 2).any(axis=1)
        drop = np.repeat(pairs, 2)
    # mate fields
    left, right = pos[0::2], pos[1::2]
    span_lo = np.minimum(left, right)
    span_hi = np.maximum(end[0::2], end[1::2])
    t = span_hi - span_lo
    tl = np.empty(nreads, dtype=np.int64)
    left_first = (left < right) | ((left == right) & read1[0::2])
    tl[0::2] = np.where(left_first, t, -t)
    tl[1::2] = -tl[0::2]
    mpos = np.empty(nreads, dtype=np.int64)
    mpos[0::2], mpos[1::2] = right, left
    flag = np.full(nreads, _FLAG_PAIRED | _FLAG_PROPER, dtype=np.int32)
    flag |= np.where(rev, _FLAG_REV, _FLAG_MREV)
    flag |= np.where(read1, _FLAG_READ1, _FLAG_READ2)
    flag |= np.repeat(np.where(is_dup, _FLAG_DUP, 0), 2)
    pair_no = np.repeat(np.arange(npairs), 2)
    reads = _Reads(
        pos=pos,
        end=end,
        flag=flag,
        mapq=np.repeat(mq[pair_src], 2),
        mpos=mpos,
        tlen=tl,
        hap=np.full(nreads, hap_number, dtype=np.int32),
        pair=pair_no,
        nm=nm,
        seq=seq,
        qual=qual,
        cigar=cigars,
    )
    if not drop.any():
        return reads
    keep = ~drop
    return _Reads(
        *(getattr(reads, f.name)[keep] for f in dataclasses.fields(_Reads)[:-1]),
        cigar=[c for c, k in zip(cigars, keep.tolist()) if k],
    )


def _edit_distances(
    seq: np.ndarray,
    hstart: np.ndarray,
    hap_refpos: np.ndarray,
    complex_reads: np.ndarray,
    sp_refpos: dict[int, np.ndarray],
    pos: np.ndarray,
    end: np.ndarray,
    ref_bytes: bytes,
) -> np.ndarray:
    """NM of every read: mismatching aligned bases + inserted bases (not soft-clipped) +
    deleted reference bases. Reads not in ``complex_reads`` align ungapped at ``pos``; the
    others follow the haplotype window at ``hstart`` or, for reads aligned one by one,
    ``sp_refpos[i]`` (left-aligning keeps NM unchanged)."""
    n, rl = seq.shape
    ref_arr = np.frombuffer(ref_bytes, dtype=np.uint8)
    nm = np.zeros(n, dtype=np.int32)
    plain = np.ones(n, dtype=bool)
    plain[complex_reads] = False
    plain_idx = np.flatnonzero(plain)
    ref_windows = np.lib.stride_tricks.sliding_window_view(ref_arr, rl)
    for lo in range(0, plain_idx.size, _WRITE_BLOCK):
        idx = plain_idx[lo : lo + _WRITE_BLOCK]
        nm[idx] = (seq[idx] != ref_windows[pos[idx]]).sum(axis=1)
    windows = np.lib.stride_tricks.sliding_window_view(hap_refpos, rl)
    col = np.arange(rl)
    for lo in range(0, complex_reads.size, _WRITE_BLOCK):
        idx = complex_reads[lo : lo + _WRITE_BLOCK]
        rp = windows[hstart[idx]]  # fancy indexing copies
        for k, i in enumerate(idx.tolist()):
            if i in sp_refpos:
                rp[k] = sp_refpos[i]
        aligned = rp >= 0
        mism = (aligned & (seq[idx] != ref_arr[np.maximum(rp, 0)])).sum(axis=1)
        first = aligned.argmax(axis=1)
        last = rl - 1 - aligned[:, ::-1].argmax(axis=1)
        inner_ins = (~aligned & (col > first[:, None]) & (col < last[:, None])).sum(axis=1)
        deleted = (end[idx] - pos[idx]) - aligned.sum(axis=1)
        nm[idx] = mism + inner_ins + deleted
    return nm


def _concat_reads(parts: list[_Reads]) -> _Reads:
    """The reads of several haplotypes as one set, except ``seq``/``qual``: those stay in
    their parts (see :func:`_gather_rows`), so no second copy of the bases is made."""
    return _Reads(
        *(
            np.concatenate([getattr(p, f.name) for p in parts])
            if f.name not in ("seq", "qual")
            else np.empty((0, 0), dtype=np.uint8)
            for f in dataclasses.fields(_Reads)[:-1]
        ),
        cigar=[c for p in parts for c in p.cigar],
    )


def _gather_rows(arrays: list[np.ndarray], offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of the virtual concatenation of ``arrays`` (first row of array k at
    ``offsets[k]``)."""
    part = np.searchsorted(offsets, rows, side="right") - 1
    local = rows - offsets[part]
    out = np.empty((rows.size, arrays[0].shape[1]), dtype=arrays[0].dtype)
    for k, arr in enumerate(arrays):
        m = part == k
        out[m] = arr[local[m]]
    return out


def _write_sam_body(fh, parts: list[_Reads], sample: str, contig: str, contig_index: int) -> None:
    """Append the reads of one contig (one part per haplotype) as SAM text, sorted by
    position (ties: haplotype, pair number, read order)."""
    reads = _concat_reads(parts)
    seq_parts = [p.seq for p in parts]
    qual_parts = [p.qual for p in parts]
    offsets = np.cumsum([0] + [p.pos.size for p in parts])[:-1]
    order = np.lexsort((np.arange(reads.pos.size), reads.pair, reads.hap, reads.pos))
    rl = seq_parts[0].shape[1]
    prefix = f"{sample}:{contig_index + 1}:".encode()
    ctg = contig.encode()
    tail = b"\tRG:Z:" + sample.encode() + b"\n"
    cig = reads.cigar
    for lo in range(0, order.size, _WRITE_BLOCK):
        o = order[lo : lo + _WRITE_BLOCK]
        seqs = _gather_rows(seq_parts, offsets, o).view(f"S{rl}").ravel().tolist()
        quals = _gather_rows(qual_parts, offsets, o).view(f"S{rl}").ravel().tolist()
        pos = (reads.pos[o] + 1).tolist()
        mpos = (reads.mpos[o] + 1).tolist()
        flag = reads.flag[o].tolist()
        mapq = reads.mapq[o].tolist()
        tlen = reads.tlen[o].tolist()
        hap = reads.hap[o].tolist()
        pair = reads.pair[o].tolist()
        nm = reads.nm[o].tolist()
        ol = o.tolist()
        lines = [
            b"%s%d:%d\t%d\t%s\t%d\t%d\t%s\t=\t%d\t%d\t%s\t%s\tNM:i:%d%s"
            % (
                prefix,
                hap[k],
                pair[k],
                flag[k],
                ctg,
                pos[k],
                mapq[k],
                cig[ol[k]],
                mpos[k],
                tlen[k],
                seqs[k],
                quals[k],
                nm[k],
                tail,
            )
            for k in range(len(ol))
        ]
        fh.write(b"".join(lines))


# ----------------------------------------------------------------------------- writers
def _vcf_text(
    config: SimulationConfig, textures: list[ContigTexture], records: list[list[TruthRecord]]
) -> str:
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


def _write_fasta(path: Path, textures: list[ContigTexture]) -> None:
    with open(path, "w") as fh:
        for t in textures:
            s = t.fasta_seq()
            fh.write(f">{t.name}\n")
            fh.write("\n".join(s[i : i + 60] for i in range(0, len(s), 60)))
            fh.write("\n")


def _intervals(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) runs of True, 0-based half-open."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def _sam_header(config: SimulationConfig, textures: list[ContigTexture], sample: str) -> str:
    lines = ["@HD\tVN:1.6\tSO:coordinate"]
    lines += [f"@SQ\tSN:{t.name}\tLN:{len(t.seq)}" for t in textures]
    lines.append(f"@RG\tID:{sample}\tSM:{sample}\tPL:ILLUMINA\tLB:{sample}-lib1")
    lines.append(f"@PG\tID:varcall-simulate\tPN:varcall\tVN:{__version__}\tCL:seed={config.seed}")
    return "\n".join(lines) + "\n"


_OUTPUT_NAMES = (
    "reference.fa",
    "reference.fa.fai",
    "truth.vcf.gz",
    "truth.vcf.gz.tbi",
    "confident.bed",
    "bams.txt",
    "simulation.json",
)


def _prepare_out(out: Path, overwrite: bool) -> list[Path]:
    """Check ``out`` and create it; return the previous run's files (replaced at the end).
    Stale ``.tmp-*`` folders of killed runs are removed."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; give a folder path to --out")
    old: list[Path] = []
    if out.is_dir():
        for p in out.glob(".tmp-*"):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
        if any(out.iterdir()):
            if not overwrite:
                raise InputError(
                    f"{out}: output folder is not empty; pass --overwrite or choose another --out"
                )
            names = ["simulation.json", *_OUTPUT_NAMES]  # the completion marker goes first
            bams = out / "bams.txt"
            if bams.is_file():
                for line in bams.read_text().splitlines():
                    name = line.strip()
                    if name and "/" not in name and not name.startswith("."):
                        names += [name, name + ".bai"]
            old = [out / n for n in dict.fromkeys(names) if (out / n).is_file()]
    out.mkdir(parents=True, exist_ok=True)
    return old


# ----------------------------------------------------------------------------- main
def simulate_cohort(
    out: str | Path, config: SimulationConfig | None = None, *, overwrite: bool = False
) -> Path:
    """Simulate a cohort into folder ``out`` (layout in the module docstring); return it.

    Files are written into ``out/.tmp-*`` and renamed into place at the end, with
    ``simulation.json`` last; a failed run leaves no final-looking file. With
    ``overwrite=False`` an existing non-empty ``out`` is an :class:`InputError`; with
    ``overwrite=True`` the previous run's files (those named in its ``bams.txt`` and the
    fixed names) are replaced once the new run has succeeded; other files are kept.
    """
    config = config or SimulationConfig()
    config.validate()
    out = Path(out)
    old = _prepare_out(out, overwrite)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out))
    try:
        result = _simulate_into(tmp, config)
        for p in old:
            p.unlink()
        for name in [n for n in _OUTPUT_NAMES if n != "simulation.json"] + result:
            os.replace(tmp / name, out / name)
        os.replace(tmp / "simulation.json", out / "simulation.json")
    except (OSError, pysam.utils.SamtoolsError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VarcallError(
            f"{out}: writing the simulated cohort failed ({first}); check free disk space "
            "and permissions, then rerun"
        ) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("simulated cohort in %s (%.1f s)", out, time.perf_counter() - t0)
    return out


def _simulate_into(tmp: Path, config: SimulationConfig) -> list[str]:
    """Write every output into ``tmp``; return the BAM and index file names."""
    samples = sample_names(config.n_samples)
    textures = [simulate_reference(config, c) for c in range(config.n_contigs)]
    _write_fasta(tmp / "reference.fa", textures)
    pysam.faidx(str(tmp / "reference.fa"))
    records = [simulate_variants(config, t, c) for c, t in enumerate(textures)]
    vcf = tmp / "truth.vcf"
    vcf.write_text(_vcf_text(config, textures, records))
    pysam.tabix_compress(str(vcf), str(tmp / "truth.vcf.gz"), force=True)
    vcf.unlink()
    pysam.tabix_index(str(tmp / "truth.vcf.gz"), preset="vcf", force=True)
    logger.info("reference and %d truth records written", sum(len(r) for r in records))

    depth_ok = [np.ones(len(t.seq), dtype=bool) for t in textures]
    read_counts: dict[str, int] = {}
    bam_names = []
    for s, sample in enumerate(samples):
        bank = _quality_bank(_rng(config, 3, s), config.read_length)
        sam = tmp / f"{sample}.sam"
        nreads = 0
        with open(sam, "wb") as fh:
            fh.write(_sam_header(config, textures, sample).encode())
            for c, tex in enumerate(textures):
                ploidy = config.ploidy(c)
                ref_bytes = tex.seq.encode("ascii")
                parts = []
                for h in range(ploidy):
                    edits = [
                        (r.pos, r.alleles[0], r.alleles[int(r.genotypes[s, h])])
                        for r in records[c]
                        if r.genotypes is not None and r.genotypes[s, h] > 0
                    ]
                    bases, refpos = haplotype(tex.seq, edits)
                    hal = _HapAlignment(bases, refpos, ref_bytes)
                    parts.append(
                        _simulate_hap_reads(
                            config,
                            bases,
                            hal,
                            ref_bytes,
                            config.coverage / ploidy,
                            bank,
                            _rng(config, 4, s, c, h),
                            h + 1,
                        )
                    )
                pos = np.concatenate([p.pos for p in parts])
                end = np.concatenate([p.end for p in parts])
                nd = np.concatenate([(p.flag & _FLAG_DUP) == 0 for p in parts])
                nreads += pos.size
                n1 = len(tex.seq) + 1
                diff = np.bincount(pos[nd], minlength=n1) - np.bincount(end[nd], minlength=n1)
                depth_ok[c] &= np.cumsum(diff[:-1]) >= config.min_depth()
                _write_sam_body(fh, parts, sample, tex.name, c)
                del parts, pos, end, nd
        bam = f"{sample}.bam"
        pysam.samtools.view(
            "-b", "-1", "--no-PG", "-o", str(tmp / bam), str(sam), catch_stdout=False
        )
        sam.unlink()
        pysam.samtools.index(str(tmp / bam), catch_stdout=False)
        read_counts[sample] = nreads
        bam_names += [bam, bam + ".bai"]
        logger.info("sample %s: %d reads", sample, nreads)

    confident_bp = 0
    with open(tmp / "confident.bed", "w") as fh:
        for tex, ok in zip(textures, depth_ok):
            ok &= np.frombuffer(tex.seq.encode(), dtype=np.uint8) != ord("N")
            confident_bp += int(ok.sum())
            for a, b in _intervals(ok):
                fh.write(f"{tex.name}\t{a}\t{b}\n")
    (tmp / "bams.txt").write_text("".join(f"{s}.bam\n" for s in samples))

    counts: dict[str, dict[str, int]] = {}
    for tex, recs in zip(textures, records):
        per: dict[str, int] = {"records": len(recs)}
        for r in recs:
            for tag in r.class_tags():
                per[tag] = per.get(tag, 0) + 1
        counts[tex.name] = dict(sorted(per.items()))
    summary = {
        "varcall_version": __version__,
        "config": dataclasses.asdict(config),
        "samples": samples,
        "contigs": [
            {
                "name": t.name,
                "length": len(t.seq),
                "ploidy": config.ploidy(c),
                "n_runs": [list(x) for x in t.n_runs],
                "soft_masked": list(t.masked),
            }
            for c, t in enumerate(textures)
        ],
        "variant_counts": counts,
        "read_counts": read_counts,
        "confident_bp": confident_bp,
        "confident_min_depth_used": config.min_depth(),
        "boundaries": [
            {"position": b, "pattern": "point" if i % 2 == 0 else "spanning_deletion"}
            for i, b in enumerate(config.boundary_positions)
        ],
        "boundary_records": [
            {
                "contig": r.contig,
                "start": r.pos,  # 0-based
                "vcf_pos": r.pos + 1,
                "ref": r.alleles[0],
                "alts": r.alleles[1:],
            }
            for r in (records[0] if records else [])
            if "boundary" in r.tags
        ],
    }
    (tmp / "simulation.json").write_text(json.dumps(summary, indent=2) + "\n")
    return bam_names
