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

Parts: the sequences (genome FASTA, planted sites, haplotypes, truth VCF text, confident
regions) in ``genome.py``, the reads (ART, bwa mem, samtools) in ``sample_reads.py``; this
module holds the specs, the peers and the build itself.

Coordinates are 0-based half-open inside this module; 1-based only in VCF text.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import hard_cases
import numpy as np
import stutter as stutter_mod
from genome import (
    _left_shift,  # noqa: F401 (re-exported: tests use build_dataset._left_shift)
    confident_intervals,
    haplotype,  # noqa: F401 (re-exported: tests use build_dataset.haplotype)
    plant_sites,
    read_first_record,
    repeated_kmer_mask,
    write_fasta,
    write_truth_vcf,
)
from hard_cases import HardSpec, Site
from sample_reads import align_sample, art_reads, hard_reads, run_tool

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

    header, contigs = _cut_contigs(spec)
    planted: dict[str, hard_cases.Planted] = {}
    if spec.hard is not None:  # the reference changes: plant before writing it
        sites, planted = _plant_hard(spec, contigs, rng)
    ref, bwa_ref = _write_reference(wip, contigs)
    logger.info("reference: %d contigs, %d bp", len(contigs), spec.total_length)

    # truth
    if spec.hard is None:
        sites = {name: plant_sites(name, seq, spec, rng) for name, seq in contigs}
    _write_truth(wip, ref, contigs, sites, spec.samples)
    n_conf, confident = _write_confident(wip, spec, contigs, planted)
    strata = hard_cases.write_strata(wip, contigs, confident, planted) if planted else {}
    stutters: list[stutter_mod.Stutter] = []

    # reads per sample: ART from both haplotypes, bwa mem, sort, index
    bams = []
    for si, sample in enumerate(spec.samples):
        if spec.hard is None:
            fqs = [art_reads(wip, spec, contigs, sites, si, h) for h in range(2)]
        else:
            fqs = hard_reads(wip, spec, contigs, sites, planted, si, stutters)
        bams.append(align_sample(wip, sample, fqs, bwa_ref, threads).name)
        logger.info("sample %s aligned (%.0f s so far)", sample, time.perf_counter() - t0)
    (wip / "bams.txt").write_text("".join(f"{b}\n" for b in bams))

    info = _dataset_info(wip, spec, header, contigs, sites, planted, n_conf, strata, stutters, t0)
    (wip / "dataset.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(wip, out)
    logger.info("dataset %s built in %.0f s: %s", spec.name, info["build_seconds"], out)
    return out


def _cut_contigs(spec: DatasetSpec) -> tuple[str, list[tuple[str, str]]]:
    """The header of the genome's first record and the (name, sequence) of each cut."""
    header, chrom = read_first_record(spec.genome)
    contigs = []
    for name, s, e in spec.cuts:
        if not 0 <= s < e <= len(chrom):
            raise ValueError(f"cut {name}:{s}-{e} outside the {len(chrom)} bp chromosome")
        contigs.append((name, chrom[s:e]))
    return header, contigs


def _plant_hard(
    spec: DatasetSpec, contigs: list[tuple[str, str]], rng: np.random.Generator
) -> tuple[dict[str, list[Site]], dict[str, hard_cases.Planted]]:
    """Plant the hard cases and the cohort sites of every contig (``hard_cases.plant_contig``):
    ``contigs`` gets the changed sequences in place; returns the sites and what was planted,
    per contig."""
    assert spec.hard is not None
    sites, planted = {}, {}
    for i, (name, seq) in enumerate(contigs):
        seq, sites[name], planted[name] = hard_cases.plant_contig(
            name, seq, spec.hard, rng, spec.n_samples, spec.edge,
            lambda x, name=name: plant_sites(name, x, spec, rng),
        )  # fmt: skip
        contigs[i] = (name, seq)
    return sites, planted


def _write_reference(wip: Path, contigs: list[tuple[str, str]]) -> tuple[Path, Path]:
    """``reference.fa`` (+ ``.fai``) and its bwa index under ``bwa/``; returns both FASTAs."""
    ref = wip / "reference.fa"
    write_fasta(ref, contigs)
    run_tool(["samtools", "faidx", str(ref)])
    (wip / "bwa").mkdir()
    bwa_ref = wip / "bwa" / "reference.fa"
    shutil.copy(ref, bwa_ref)
    run_tool(["bwa", "index", str(bwa_ref)])
    return ref, bwa_ref


def _write_truth(
    wip: Path,
    ref: Path,
    contigs: list[tuple[str, str]],
    sites: dict[str, list[Site]],
    samples: tuple[str, ...],
) -> None:
    """``truth.vcf.gz`` (+ ``.tbi``): the sites, normalised with ``bcftools norm``."""
    raw = wip / "truth.raw.vcf"
    write_truth_vcf(
        raw,
        [(n, len(s)) for n, s in contigs],
        [x for name, _ in contigs for x in sites[name]],
        samples,
    )
    truth = wip / "truth.vcf.gz"
    run_tool(["bcftools", "norm", "-f", str(ref), "-c", "e", "-Oz", "-o", str(truth), str(raw)])
    run_tool(["tabix", "-f", "-p", "vcf", str(truth)])
    raw.unlink()


def _write_confident(
    wip: Path,
    spec: DatasetSpec,
    contigs: list[tuple[str, str]],
    planted: dict[str, hard_cases.Planted],
) -> tuple[int, dict[str, list[tuple[int, int]]]]:
    """``confident.bed``; returns the bp it covers and its intervals per contig."""
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
    return n_conf, confident


def _dataset_info(
    wip: Path,
    spec: DatasetSpec,
    header: str,
    contigs: list[tuple[str, str]],
    sites: dict[str, list[Site]],
    planted: dict[str, hard_cases.Planted],
    n_conf: int,
    strata: dict,
    stutters: list[stutter_mod.Stutter],
    t0: float,
) -> dict:
    """What ``dataset.json`` records: the spec, counts, provenance, build time, checksums."""
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
            name: {
                "repeat_arrays": len(p.repeats),
                "segdups": len(p.segdups),
                "clusters_and_hetdels": len(p.clusters),
            }
            for name, p in planted.items()
        },
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
    return info


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
