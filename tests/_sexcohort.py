"""A small cohort with sex chromosomes for the ploidy tests: two males, two females.

Contigs: ``chr1`` (6 kb, autosome), ``chrX`` (16 kb) and ``chrY`` (8 kb), with a PAR on
the first :data:`PAR_END` bp of chrX and chrY (``par.bed``). Reads: single-end 100 bp,
one starting every 3 bp per haplotype set (about 33x), base quality 30 with 0.5 %
substitution errors, MAPQ 60. A male's chrX reads outside the PAR come from his one X,
inside it from two haplotypes; his chrY reads from his one Y. Females have two X
haplotypes everywhere and a few chrY reads (mismapped, carrying the Y variant) that must
not give a genotype.

:data:`VARIANTS`: (contig, 0-based position, {sample: ALT copies}) of the planted SNVs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _bamwriter import AlignedRead, write_bam, write_fasta

SAMPLES = ("M1", "M2", "F1", "F2")
SEX = {"M1": "M", "M2": "M", "F1": "F", "F2": "F"}
LENGTHS = {"chr1": 6_000, "chrX": 16_000, "chrY": 8_000}
PAR_END = 4_000
READ = 100
STEP = 3

#: (contig, 0-based pos, {sample: (ALT on hap 0, ALT on hap 1)}); males' non-PAR X and
#: their Y have one haplotype (hap 0).
VARIANTS: list[tuple[str, int, dict[str, tuple[int, int]]]] = [
    ("chr1", 3_000, {"M1": (1, 0), "M2": (0, 1), "F1": (1, 0), "F2": (1, 1)}),
    ("chrX", 2_000, {"M1": (1, 0), "F1": (0, 1)}),  # PAR: male het
    ("chrX", PAR_END - 1, {"M2": (1, 1)}),  # last PAR base: male diploid 1/1
    ("chrX", PAR_END, {"M1": (1, 0), "F2": (1, 0)}),  # first non-PAR base: male hemizygous
    ("chrX", 10_000, {"M1": (1, 0), "F1": (0, 1)}),  # non-PAR: hemizygous / het
    ("chrX", 12_000, {"M2": (1, 0), "F2": (1, 1)}),  # non-PAR: hemizygous / hom
    ("chrY", 6_000, {"M1": (1, 0), "F1": (1, 1), "F2": (1, 1)}),  # females: mismapped reads
]


def _haplotypes(ref: dict[str, str], sample: str, contig: str) -> list[str]:
    """The sample's haplotype sequences of ``contig`` (one or two)."""
    haps = [list(ref[contig]), list(ref[contig])]
    for c, pos, carriers in VARIANTS:
        if c != contig or sample not in carriers:
            continue
        alt = "A" if ref[c][pos] != "A" else "C"
        for h, on in enumerate(carriers[sample]):
            if on:
                haps[h][pos] = alt
    return ["".join(h) for h in haps]


def _reads(ref: dict[str, str], sample: str, contig: str) -> list[tuple[int, int, str]]:
    """(start, haplotype, sequence) of the sample's reads on ``contig``."""
    haps = _haplotypes(ref, sample, contig)
    male = SEX[sample] == "M"
    out = []
    for k, start in enumerate(range(0, LENGTHS[contig] - READ + 1, STEP)):
        if contig == "chrY" and not male:
            if not 5_920 <= start <= 5_990 or k % 2:
                continue  # a handful of mismapped reads over the Y variant
        # a male read touching non-PAR X comes from his one X
        one_copy = male and (contig == "chrY" or (contig == "chrX" and start + READ > PAR_END))
        h = 0 if one_copy else k % 2
        out.append((start, h, haps[h][start : start + READ]))
    return out


def _alignments(ref: dict[str, str], sample: str, rng: np.random.Generator) -> list[AlignedRead]:
    """The sample's reads on every contig, in coordinate order: 0.5 % of their bases
    changed (substitution errors), every other read on the reverse strand."""
    out = []
    for tid, contig in enumerate(LENGTHS):
        for i, (start, _h, seq) in enumerate(_reads(ref, sample, contig)):
            bases = list(seq)
            for j in np.nonzero(rng.random(READ) < 0.005)[0]:
                bases[j] = "ACGT"[("ACGT".index(bases[j]) + 1) % 4]
            out.append(AlignedRead(
                f"{sample}-{contig}-{i}", start, [(0, READ)], "".join(bases),
                flag=16 if i % 2 else 0, rg=sample, contig=tid,
            ))  # fmt: skip
    return out


def build_sex_cohort(folder: Path, seed: int = 5) -> Path:
    """Write ``reference.fa`` (+ .fai), ``<sample>.bam`` (+ .bai), ``bams.txt``,
    ``par.bed`` and ``sexes.txt`` into ``folder``; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ref = {c: "".join(rng.choice(list("ACGT"), n)) for c, n in LENGTHS.items()}
    write_fasta(folder / "reference.fa", ref)
    for sample in SAMPLES:
        reads = _alignments(ref, sample, rng)
        write_bam(folder / f"{sample}.bam", LENGTHS, [sample], reads, presorted=True)
    (folder / "bams.txt").write_text("".join(f"{s}.bam\n" for s in SAMPLES))
    (folder / "par.bed").write_text(f"chrX\t0\t{PAR_END}\nchrY\t0\t{PAR_END}\n")
    (folder / "sexes.txt").write_text("".join(f"{s}\t{SEX[s]}\n" for s in SAMPLES))
    return folder
