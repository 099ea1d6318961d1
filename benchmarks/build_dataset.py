"""Build the benchmark dataset: a real bacterial genome, a simulated diploid cohort, ART reads.

Deterministic and cached: the dataset for a :class:`DatasetSpec` is built once under
``benchmarks/cache/<name>-<hash>/`` (the hash covers the spec and this builder's version) in a
``.wip`` folder that is renamed into place when complete, so an interrupted build never looks
finished.

What is built (the layout of ``varcall simulate``, see docs/DEVELOPING.md):

- ``reference.fa`` (+ ``.fai``, bwa index under ``bwa/``): stretches of the chromosome of
  *Klebsiella pneumoniae* HS11286 (GenBank CP003200.1, shipped by Debian's
  ``kleborate-examples``), one contig per stretch.
- ``truth.vcf.gz`` (+ ``.tbi``): the planted SNPs and indels with phased diploid genotypes for
  every sample, normalised with ``bcftools norm`` (left-aligned, trimmed).
- ``confident.bed``: where the truth is trusted: the contigs minus their first and last
  ``edge`` bp, minus every stretch covered by a canonical k-mer that occurs more than once
  in the reference (repeats where short reads cannot be placed), padded.
- ``<SAMPLE>.bam`` (+ ``.bai``): 2 x ``read_length`` reads simulated by ``art_illumina``
  (HiSeq 2500 profile, fixed seed) from each of the sample's two haplotypes at half the
  coverage each, aligned with ``bwa mem -R @RG...`` and sorted with samtools.
- ``bams.txt`` (BAM paths relative to the folder), ``dataset.json`` (spec, counts, provenance).

Coordinates are 0-based half-open inside this module; 1-based only in VCF text.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import lzma
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import hard_cases
import numpy as np
import stutter as stutter_mod
from hard_cases import HardSpec, Site

__all__ = [
    "DatasetSpec",
    "SPECS",
    "PEER_PACKAGES",
    "build_dataset",
    "ensure_peers",
    "missing_peers",
]

logger = logging.getLogger("benchmarks.build_dataset")

BUILDER_VERSION = 1
#: bump when the hard-case builder (hard_cases.py) changes what it writes
HARD_VERSION = 1
HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache"
GENOME_XZ = Path("/usr/share/doc/kleborate/examples/data/Klebs_HS11286.fna.xz")

#: Debian packages the benchmark needs -> a binary each provides.
PEER_PACKAGES: dict[str, str] = {
    "bcftools": "bcftools",
    "samtools": "samtools",
    "tabix": "tabix",
    "freebayes": "freebayes",
    "bwa": "bwa",
    "art-nextgen-simulation-tools": "art_illumina",
    "parallel": "parallel",
    "kleborate-examples": str(GENOME_XZ),
}


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What to build. ``cuts`` are (contig name, start, end), 0-based half-open, on the first
    record (the chromosome) of ``genome``; rates are per bp of reference, for cohort sites."""

    name: str
    cuts: tuple[tuple[str, int, int], ...]
    n_samples: int = 3
    coverage: float = 30.0
    read_length: int = 150
    fragment_mean: int = 400
    fragment_sd: int = 50
    snp_rate: float = 1.2e-3
    indel_rate: float = 1.5e-4
    max_indel: int = 12
    min_spacing: int = 12
    kmer: int = 31
    edge: int = 500
    repeat_pad: int = 50
    seed: int = 1
    genome: str = str(GENOME_XZ)
    #: human-like hard cases (``hard_cases.py``); None: the plain dataset
    hard: HardSpec | None = None

    def key(self) -> str:
        """Short hash of everything that changes the built files (a spec without ``hard``
        hashes as before that field existed, so cached plain datasets stay valid)."""
        d = dataclasses.asdict(self)
        if d["hard"] is None:
            del d["hard"]
        else:
            d["hard_version"] = HARD_VERSION
        blob = json.dumps([BUILDER_VERSION, d], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    @property
    def samples(self) -> tuple[str, ...]:
        return tuple(f"KP{i + 1}" for i in range(self.n_samples))

    @property
    def total_length(self) -> int:
        return sum(e - s for _, s, e in self.cuts)


SPECS: dict[str, DatasetSpec] = {
    # `make bench`: 2 Mb in two contigs, 3 samples at 30x.
    "bench": DatasetSpec(
        name="bench",
        cuts=(("kp_chr_a", 1_000_000, 2_200_000), ("kp_chr_b", 3_000_000, 3_800_000)),
        n_samples=3,
    ),
    # `make bench` (scaling targets) and `make bench-scale`: 5.2 Mb in four contigs, 32
    # samples at 30x: a cohort whose calling takes long enough (~75 s on one core) that
    # a run's fixed cost (cluster start, merge) does not decide the scaling ratios.
    "scale": DatasetSpec(
        name="scale",
        cuts=(
            ("kp_chr_a", 0, 1_300_000),
            ("kp_chr_b", 1_300_000, 2_600_000),
            ("kp_chr_c", 2_600_000, 3_900_000),
            ("kp_chr_d", 3_900_000, 5_200_000),
        ),
        n_samples=32,
    ),
    # Human-like hard cases (hard_cases.py): tandem repeats with true expansions and PCR
    # stutter, segmental duplications, SNV/MNP clusters, SNVs in het deletions, long indels;
    # 2 x 300 kb at 20x and a 20 kb contig at 300x, 6 samples.
    "hard": DatasetSpec(
        name="hard",
        cuts=(
            ("kp_hard_a", 2_400_000, 2_700_000),
            ("kp_hard_b", 4_300_000, 4_600_000),
            ("kp_deep", 5_000_000, 5_020_000),
        ),
        n_samples=6,
        coverage=20.0,
        seed=14,
        hard=HardSpec(deep_contigs=("kp_deep",), deep_coverage=300.0),
    ),
    # Low coverage: the same hard cases at 10x, 6 samples, 2 x 400 kb.
    "lowcov": DatasetSpec(
        name="lowcov",
        cuts=(("kp_low_a", 200_000, 600_000), ("kp_low_b", 4_700_000, 5_100_000)),
        n_samples=6,
        coverage=10.0,
        seed=15,
        hard=HardSpec(),
    ),
}


# ----------------------------------------------------------------------------- peers
def missing_peers() -> dict[str, str]:
    """Debian package -> the binary/file it should provide, for those not present."""
    out = {}
    for pkg, what in PEER_PACKAGES.items():
        present = Path(what).exists() if what.startswith("/") else shutil.which(what) is not None
        if not present:
            out[pkg] = what
    return out


def ensure_peers() -> dict[str, str]:
    """Install missing peers from Debian with apt-get (as root; ``apt-get update`` only when
    the first try fails). Returns what is still missing (empty when all are there)."""
    missing = missing_peers()
    if not missing:
        return {}
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        logger.warning(
            "missing %s; install them: sudo apt-get install %s",
            ", ".join(missing),
            " ".join(missing),
        )
        return missing
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq"]
    cmd += ["--no-install-recommends", *missing]
    logger.info("installing from Debian: %s", " ".join(missing))
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(
            ["apt-get", "-o", "DPkg::Lock::Timeout=300", "update", "-qq"],
            env=env,
            capture_output=True,
        )
        subprocess.run(cmd, env=env, capture_output=True)
    return missing_peers()


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


# ----------------------------------------------------------------------------- build
def _run(cmd: list[str] | str, **kw) -> None:
    shell = isinstance(cmd, str)
    logger.debug("run: %s", cmd if shell else " ".join(cmd))
    r = subprocess.run(
        cmd,
        shell=shell,
        executable="/bin/bash" if shell else None,
        capture_output=True,
        text=True,
        **kw,
    )
    if r.returncode != 0:
        raise RuntimeError(f"command failed ({r.returncode}): {cmd}\n{r.stderr[-2000:]}")


def _tool_version(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    except OSError:
        return "missing"
    text = (r.stdout + r.stderr).strip().splitlines()
    for line in text:
        if "version" in line.lower() or line.lower().startswith(("bcftools", "samtools")):
            return line.strip()
    return text[0].strip() if text else "?"


def dataset_dir(spec: DatasetSpec, cache: Path = CACHE) -> Path:
    return cache / f"{spec.name}-{spec.key()}"


def build_dataset(spec: DatasetSpec, cache: Path = CACHE, threads: int | None = None) -> Path:
    """Build (or find in the cache) the dataset for ``spec``; returns its folder."""
    out = dataset_dir(spec, cache)
    if (out / "dataset.json").is_file():
        logger.info("dataset %s is cached in %s", spec.name, out)
        return out
    missing = missing_peers()
    if missing:
        raise RuntimeError(
            "missing tools to build the benchmark dataset: "
            + ", ".join(f"{p} ({w})" for p, w in missing.items())
            + "; run: sudo apt-get install "
            + " ".join(missing)
        )
    threads = threads or os.cpu_count() or 1
    wip = out.with_name(out.name + ".wip")
    shutil.rmtree(wip, ignore_errors=True)
    wip.mkdir(parents=True)
    t0 = time.perf_counter()
    rng = np.random.default_rng(spec.seed)

    header, chrom = read_first_record(spec.genome)
    contigs = []
    for name, s, e in spec.cuts:
        if not 0 <= s < e <= len(chrom):
            raise ValueError(f"cut {name}:{s}-{e} outside the {len(chrom)} bp chromosome")
        contigs.append((name, chrom[s:e]))
    del chrom
    planted: dict[str, hard_cases.Planted] = {}
    if spec.hard is not None:  # the reference changes: plant before writing it
        sites = {}
        for i, (name, seq) in enumerate(contigs):
            seq, sites[name], planted[name] = hard_cases.plant_contig(
                name, seq, spec.hard, rng, spec.n_samples, spec.edge,
                lambda x, name=name: plant_sites(name, x, spec, rng),
            )  # fmt: skip
            contigs[i] = (name, seq)
    ref = wip / "reference.fa"
    write_fasta(ref, contigs)
    _run(["samtools", "faidx", str(ref)])
    (wip / "bwa").mkdir()
    bwa_ref = wip / "bwa" / "reference.fa"
    shutil.copy(ref, bwa_ref)
    _run(["bwa", "index", str(bwa_ref)])
    logger.info("reference: %d contigs, %d bp", len(contigs), spec.total_length)

    # truth
    if spec.hard is None:
        sites = {name: plant_sites(name, seq, spec, rng) for name, seq in contigs}
    raw = wip / "truth.raw.vcf"
    write_truth_vcf(
        raw,
        [(n, len(s)) for n, s in contigs],
        [x for name, _ in contigs for x in sites[name]],
        spec.samples,
    )
    truth = wip / "truth.vcf.gz"
    _run(["bcftools", "norm", "-f", str(ref), "-c", "e", "-Oz", "-o", str(truth), str(raw)])
    _run(["tabix", "-f", "-p", "vcf", str(truth)])
    raw.unlink()

    masks = repeated_kmer_mask([s for _, s in contigs], spec.kmer)
    n_conf, confident = 0, {}
    with open(wip / "confident.bed", "w") as fh:
        for (name, seq), mask in zip(contigs, masks):
            for s, e in planted[name].unmask() if planted else ():
                mask[s:e] = False  # planted repeats: the truth is known there
            confident[name] = confident_intervals(seq, mask, spec)
            for s, e in confident[name]:
                fh.write(f"{name}\t{s}\t{e}\n")
                n_conf += e - s
    logger.info("confident BED covers %d of %d bp", n_conf, spec.total_length)
    strata = hard_cases.write_strata(wip, contigs, confident, planted) if planted else {}
    stutters: list[stutter_mod.Stutter] = []

    # reads per sample: ART from both haplotypes, bwa mem, sort, index
    bams = []
    for si, sample in enumerate(spec.samples):
        fqs = []
        for h in range(2 if spec.hard is None else 0):
            hap_fa = wip / f"{sample}.h{h + 1}.fa"
            write_fasta(
                hap_fa,
                [
                    (f"{name}.{sample}.h{h + 1}", haplotype(seq, sites[name], 2 * si + h))
                    for name, seq in contigs
                ],
            )
            prefix = wip / f"{sample}.h{h + 1}."
            _run(
                [
                    "art_illumina",
                    "-ss",
                    "HS25",
                    "-i",
                    str(hap_fa),
                    "-p",
                    "-l",
                    str(spec.read_length),
                    "-f",
                    f"{spec.coverage / 2:g}",
                    "-m",
                    str(spec.fragment_mean),
                    "-s",
                    str(spec.fragment_sd),
                    "-rs",
                    str(spec.seed * 1000 + 2 * si + h),
                    "-na",
                    "-q",
                    "-o",
                    str(prefix),
                ]
            )
            fqs.append((Path(f"{prefix}1.fq"), Path(f"{prefix}2.fq")))
            hap_fa.unlink()
        if spec.hard is not None:
            fqs = _hard_reads(wip, spec, contigs, sites, planted, si, stutters)
        bam = wip / f"{sample}.bam"
        rg = f"@RG\\tID:{sample}\\tSM:{sample}\\tPL:ILLUMINA\\tLB:{sample}"
        r1 = " ".join(str(a) for a, _ in fqs)
        r2 = " ".join(str(b) for _, b in fqs)
        _run(
            f"set -o pipefail; bwa mem -t {threads} -K 10000000 -R '{rg}' {bwa_ref} "
            f"<(cat {r1}) <(cat {r2}) 2>/dev/null | "
            f"samtools sort -@ {threads} -m 512M -T {wip}/{sample}.sort -o {bam} -"
        )
        _run(["samtools", "index", str(bam)])
        for a, b in fqs:
            a.unlink()
            b.unlink()
        bams.append(bam.name)
        logger.info("sample %s aligned (%.0f s so far)", sample, time.perf_counter() - t0)
    (wip / "bams.txt").write_text("".join(f"{b}\n" for b in bams))

    all_sites = [x for v in sites.values() for x in v]
    n_snp = sum(len(s.ref) == len(s.alt) for s in all_sites)
    info = {
        "spec": dataset_dataclass_dict(spec),
        "key": spec.key(),
        "source": {
            "file": spec.genome,
            "record": header,
            "package": "kleborate-examples (Debian)",
            "cuts_0based_half_open": [list(c) for c in spec.cuts],
        },
        "samples": list(spec.samples),
        "contigs": [[n, len(s)] for n, s in contigs],
        "sites": {"SNP": n_snp, "INDEL": len(all_sites) - n_snp},
        "confident_bp": n_conf,
        "strata_bp": strata,
        "stutter": stutter_mod.stutter_summary(stutters) if stutters else None,
        "planted": {
            name: {"repeat_arrays": len(p.repeats), "segdups": len(p.segdups),
                   "clusters_and_hetdels": len(p.clusters)}
            for name, p in planted.items()
        },  # fmt: skip
        "tools": {
            "art_illumina": "art-nextgen-simulation-tools "
            + _dpkg_version("art-nextgen-simulation-tools"),
            "bwa": "bwa " + _dpkg_version("bwa"),
            "samtools": _tool_version(["samtools", "--version"]),
            "bcftools": _tool_version(["bcftools", "--version"]),
        },
        "build_seconds": round(time.perf_counter() - t0, 1),
        "checksums": checksums(wip),
    }
    (wip / "dataset.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(wip, out)
    logger.info("dataset %s built in %.0f s: %s", spec.name, info["build_seconds"], out)
    return out


def _hard_reads(
    wip: Path,
    spec: DatasetSpec,
    contigs: list[tuple[str, str]],
    sites: dict[str, list],
    planted: dict[str, hard_cases.Planted],
    si: int,
    stutters: list,
) -> list[tuple[Path, Path]]:
    """FASTQ pairs of sample ``si`` of a hard dataset: per haplotype, ART reads with PCR
    stutter (``stutter.simulate_reads``), the deep contigs apart at their coverage."""
    assert spec.hard is not None
    sample, fqs = spec.samples[si], []
    deep = set(spec.hard.deep_contigs)
    for h in range(2):
        hap = 2 * si + h
        suffix = f".{sample}.h{h + 1}"
        seqs = {name + suffix: haplotype(seq, sites[name], hap) for name, seq in contigs}
        arrays = hard_cases.hap_arrays(planted, sites, hap, suffix)
        for part, cov in (("", spec.coverage), ("deep.", spec.hard.deep_coverage)):
            names = [n for n, _ in contigs if (n in deep) == bool(part)]
            if not names:
                continue
            hap_fa = wip / f"{sample}.h{h + 1}.{part}fa"
            write_fasta(hap_fa, [(n + suffix, seqs[n + suffix]) for n in names])
            seed = spec.seed * 1000 + 2 * si + h + (500 if part else 0)
            stutter = stutter_mod.Stutter(arrays, spec.hard, seed)
            fqs.append(
                stutter_mod.simulate_reads(
                    hap_fa, wip / f"{sample}.h{h + 1}.{part}", cov / 2, spec.read_length,
                    (spec.fragment_mean, spec.fragment_sd), seed, stutter, seqs,
                )
            )  # fmt: skip
            stutters.append(stutter)
            hap_fa.unlink()
    return fqs


def checksums(folder: Path) -> dict[str, str]:
    """SHA-256 of the content of a dataset (not of the files' bytes, which carry paths and
    compression details): the reference FASTA, the truth records, the confident BED, and
    each BAM's alignment records (``samtools view``, no header). Equal checksums on two
    machines mean the same dataset."""
    out = {}
    for name in ("reference.fa", "confident.bed"):
        out[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    for bed in sorted(folder.glob("strata/*.bed")):
        out[f"strata/{bed.name}"] = hashlib.sha256(bed.read_bytes()).hexdigest()
    r = subprocess.run(
        ["bcftools", "view", "-H", str(folder / "truth.vcf.gz")], capture_output=True, check=True
    )
    out["truth.vcf.gz"] = hashlib.sha256(r.stdout).hexdigest()
    for bam in sorted(folder.glob("*.bam")):
        h = hashlib.sha256()
        with subprocess.Popen(["samtools", "view", str(bam)], stdout=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            for block in iter(lambda: proc.stdout.read(1 << 20), b""):
                h.update(block)
        if proc.returncode != 0:
            raise RuntimeError(f"samtools view {bam} failed")
        out[bam.name] = h.hexdigest()
    return out


def dataset_dataclass_dict(spec: DatasetSpec) -> dict:
    return dataclasses.asdict(spec)


def _dpkg_version(pkg: str) -> str:
    r = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True
    )
    return r.stdout.strip() or "?"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=sorted(SPECS), default="bench")
    p.add_argument("--cache", type=Path, default=CACHE)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--no-install", action="store_true", help="Do not apt-get install missing peers."
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="Build a second time into a temporary cache; fail unless the content is equal.",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if not args.no_install:
        ensure_peers()
    folder = build_dataset(SPECS[args.dataset], args.cache, args.threads)
    print(folder)
    if args.verify:
        import tempfile

        args.cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=args.cache) as tmp:
            again = build_dataset(SPECS[args.dataset], Path(tmp), args.threads)
            a = checksums(folder)
            b = json.loads((again / "dataset.json").read_text())["checksums"]
        differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        if differ:
            print(f"NOT deterministic: {', '.join(differ)} differ", file=sys.stderr)
            return 1
        print(f"deterministic: {len(a)} files have equal content checksums")
    return 0


if __name__ == "__main__":
    sys.exit(main())
