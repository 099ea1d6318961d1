"""The sequence side of the benchmark dataset (``build_dataset.py``): pure Python/numpy.

- :func:`read_first_record` and :func:`write_fasta`: the genome FASTA in, the reference
  and haplotype FASTAs out;
- :func:`plant_sites`: the cohort's SNPs and indels on one contig, and :func:`haplotype`:
  a contig's sequence on one haplotype of a sample;
- :func:`write_truth_vcf`: the unnormalised truth VCF text, phased genotypes per sample;
- :func:`repeated_kmer_mask` and :func:`confident_intervals`: where the truth is trusted
  (``confident.bed``).

Coordinates are 0-based half-open inside this module; 1-based only in VCF text.
"""

from __future__ import annotations

import lzma
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from hard_cases import Site

if TYPE_CHECKING:
    from build_dataset import DatasetSpec


# ----------------------------------------------------------------------------- genome
def read_first_record(path: str | Path) -> tuple[str, str]:
    """(header, sequence in upper case) of the first FASTA record of a .fa or .fa.xz file."""
    opener = lzma.open if str(path).endswith(".xz") else open
    header, seq = "", []
    with opener(path, "rt") as fh:
        for line in fh:
            if line.startswith(">"):
                if header:
                    break
                header = line[1:].strip()
            else:
                seq.append(line.strip())
    if not header:
        raise ValueError(f"{path}: no FASTA record; reinstall kleborate-examples")
    return header, "".join(seq).upper()


def write_fasta(path: Path, records: list[tuple[str, str]], width: int = 60) -> None:
    with open(path, "w") as fh:
        for name, seq in records:
            fh.write(f">{name}\n")
            for i in range(0, len(seq), width):
                fh.write(seq[i : i + width] + "\n")


# ----------------------------------------------------------------------------- variants
_TRANSITION = {"A": "G", "G": "A", "C": "T", "T": "C"}
_TRANSVERSIONS = {"A": "CT", "G": "CT", "C": "AG", "T": "AG"}


def _left_shift(seq: str, pos: int, ref: str, alt: str) -> int:
    """Leftmost 0-based anchor position an indel can take (its footprint for spacing)."""
    indel = ref[1:] if len(ref) > len(alt) else alt[1:]
    p, n = pos, len(indel)
    # shift while the base before the anchor equals the last base of the indel sequence
    while p > 0 and seq[p] == indel[-1]:
        indel = seq[p] + indel[:-1]
        p -= 1
        if pos - p > 10 * n + 200:
            break
    return p


def plant_sites(contig: str, seq: str, spec: DatasetSpec, rng: np.random.Generator) -> list[Site]:
    """Cohort sites on one contig: SNPs (Ti/Tv about 2) and indels (1..max_indel bp, half
    of insertions tandem duplications), at least ``min_spacing`` bp apart after left-shifting,
    each carried by at least one haplotype (allele frequency drawn uniformly in [0.05, 1))."""
    n_haps = 2 * spec.n_samples
    length = len(seq)
    n_snp = rng.binomial(length, spec.snp_rate)
    n_indel = rng.binomial(length, spec.indel_rate)
    kinds = np.array([0] * n_snp + [1] * n_indel)
    rng.shuffle(kinds)
    positions = rng.integers(
        spec.edge // 2, length - spec.edge // 2 - spec.max_indel - 2, kinds.size
    )
    order = np.argsort(positions, kind="stable")
    sites: list[Site] = []
    last_end = -(10**9)
    for i in order:
        pos, kind = int(positions[i]), int(kinds[i])
        base = seq[pos]
        if base not in "ACGT":
            continue
        if kind == 0:
            alt = (
                _TRANSITION[base] if rng.random() < 2 / 3 else _TRANSVERSIONS[base][rng.integers(2)]
            )
            ref, left = base, pos
        else:
            n = int(min(spec.max_indel, rng.geometric(0.45)))
            if rng.random() < 0.5:  # deletion of n bases after the anchor
                ref, alt = seq[pos : pos + n + 1], base
                if "N" in ref:
                    continue
            else:
                ins = (
                    seq[pos + 1 : pos + 1 + n]
                    if rng.random() < 0.5
                    else "".join(rng.choice(list("ACGT"), n))
                )
                if "N" in ins:
                    continue
                ref, alt = base, base + ins
            left = _left_shift(seq, pos, ref, alt)
        if left - spec.min_spacing < last_end:
            continue
        af = rng.uniform(0.05, 1.0)
        haps = (rng.random(n_haps) < af).astype(int)
        if not haps.any():
            haps[rng.integers(n_haps)] = 1
        sites.append(Site(contig, pos, ref, alt, tuple(int(h) for h in haps)))
        last_end = pos + len(ref)
    return sites


def haplotype(seq: str, sites: list[Site], hap: int) -> str:
    """The contig sequence of haplotype ``hap`` (index into ``Site.haps``)."""
    out, cur = [], 0
    for s in sites:
        if s.haps[hap]:
            out.append(seq[cur : s.pos])
            out.append(s.alt)
            cur = s.end
    out.append(seq[cur:])
    return "".join(out)


def write_truth_vcf(
    path: Path, contigs: list[tuple[str, int]], sites: list[Site], samples: tuple[str, ...]
) -> None:
    """Unnormalised truth VCF text (sites sorted), phased GT per sample."""
    with open(path, "w") as fh:
        fh.write("##fileformat=VCFv4.2\n")
        fh.write("##source=varcall-benchmarks-build_dataset\n")
        for name, n in contigs:
            fh.write(f"##contig=<ID={name},length={n}>\n")
        fh.write('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n')
        fh.write(
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples) + "\n"
        )
        for s in sites:
            gts = [f"{s.haps[2 * i]}|{s.haps[2 * i + 1]}" for i in range(len(samples))]
            fh.write(
                f"{s.contig}\t{s.pos + 1}\t.\t{s.ref}\t{s.alt}\t.\tPASS\t.\tGT\t"
                + "\t".join(gts)
                + "\n"
            )


# ----------------------------------------------------------------------------- confident BED
_CODE = np.full(256, 255, np.uint8)
for _i, _b in enumerate(b"ACGT"):
    _CODE[_b] = _i


def repeated_kmer_mask(seqs: list[str], k: int) -> list[np.ndarray]:
    """Per contig, a boolean mask (per base) of bases covered by a canonical ``k``-mer
    (k <= 31) that occurs more than once over all contigs, either strand. Bases next to an N
    are masked too."""
    if not 1 <= k <= 31:
        raise ValueError("k must be in 1..31")
    kmers, valid = [], []
    for seq in seqs:
        codes = _CODE[np.frombuffer(seq.encode(), np.uint8)]
        n = codes.size - k + 1
        bad = codes == 255
        c = np.where(bad, 0, codes).astype(np.uint64)
        fwd = np.zeros(n, np.uint64)
        rev = np.zeros(n, np.uint64)
        for j in range(k):
            fwd = (fwd << np.uint64(2)) | c[j : j + n]
            rev = rev | ((np.uint64(3) - c[j : j + n]) << np.uint64(2 * j))
        badk = np.convolve(bad.astype(np.int32), np.ones(k, np.int32), "valid") > 0
        kmers.append(np.minimum(fwd, rev))
        valid.append(~badk)
    allk = np.concatenate([km[v] for km, v in zip(kmers, valid)])
    uniq, counts = np.unique(allk, return_counts=True)
    repeated = uniq[counts > 1]
    masks = []
    for seq, km, v in zip(seqs, kmers, valid):
        hit = np.isin(km, repeated) | ~v
        cover = np.zeros(len(seq) + 1, np.int32)
        starts = np.flatnonzero(hit)
        np.add.at(cover, starts, 1)
        np.add.at(cover, starts + k, -1)
        masks.append(np.cumsum(cover[:-1]) > 0)
    return masks


def _runs(mask: np.ndarray) -> Iterator[tuple[int, int]]:
    """[start, end) runs of True in a boolean array."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    yield from zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist())


def confident_intervals(
    seq: str, repeat_mask: np.ndarray, spec: DatasetSpec
) -> list[tuple[int, int]]:
    """[start, end) intervals of one contig where the truth is trusted."""
    bad = repeat_mask.copy()
    for s, e in list(_runs(repeat_mask)):
        bad[max(0, s - spec.repeat_pad) : e + spec.repeat_pad] = True
    bad[: spec.edge] = True
    bad[len(seq) - spec.edge :] = True
    return list(_runs(~bad))
