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
allow, as aligners do (:func:`varcall.simulate.haplotypes.read_cigar`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pysam

from varcall import __version__
from varcall.core.errors import InputError, VarcallError
from varcall.core.files import write_json_atomic
from varcall.simulate.config import SimulationConfig, keyed_rng, sample_names
from varcall.simulate.reads import contig_reads, depth_at_least, quality_bank
from varcall.simulate.reference import ContigTexture, simulate_reference, write_fasta
from varcall.simulate.sam import sam_header, write_sam_body
from varcall.simulate.variants import TruthRecord, simulate_variants, truth_vcf_text

__all__ = ["simulate_cohort"]

logger = logging.getLogger(__name__)

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
    textures, records = _write_reference_and_truth(tmp, config)
    depth_ok = [np.ones(len(t.seq), dtype=bool) for t in textures]
    read_counts: dict[str, int] = {}
    bam_names = []
    for s, sample in enumerate(samples):
        read_counts[sample] = _write_sample_bam(tmp, config, textures, records, s, depth_ok)
        bam_names += [f"{sample}.bam", f"{sample}.bam.bai"]
    confident_bp = _write_confident_bed(tmp / "confident.bed", textures, depth_ok)
    (tmp / "bams.txt").write_text("".join(f"{s}.bam\n" for s in samples))
    summary = _summary(config, textures, records, read_counts, confident_bp)
    write_json_atomic(tmp / "simulation.json", summary, indent=2, sort_keys=False)
    return bam_names


def _write_reference_and_truth(
    tmp: Path, config: SimulationConfig
) -> tuple[list[ContigTexture], list[list[TruthRecord]]]:
    """Simulate the contigs and their truth records; write ``reference.fa`` (+ .fai) and
    ``truth.vcf.gz`` (+ .tbi) into ``tmp``."""
    textures = [simulate_reference(config, c) for c in range(config.n_contigs)]
    write_fasta(tmp / "reference.fa", textures)
    pysam.faidx(str(tmp / "reference.fa"))
    records = [simulate_variants(config, t, c) for c, t in enumerate(textures)]
    vcf = tmp / "truth.vcf"
    vcf.write_text(truth_vcf_text(config, textures, records))
    pysam.tabix_compress(str(vcf), str(tmp / "truth.vcf.gz"), force=True)
    vcf.unlink()
    pysam.tabix_index(str(tmp / "truth.vcf.gz"), preset="vcf", force=True)
    logger.info("reference and %d truth records written", sum(len(r) for r in records))
    return textures, records


def _write_sample_bam(
    tmp: Path,
    config: SimulationConfig,
    textures: list[ContigTexture],
    records: list[list[TruthRecord]],
    s: int,
    depth_ok: list[np.ndarray],
) -> int:
    """Simulate sample ``s``'s reads into ``tmp/<sample>.bam`` (+ .bai), contig by contig;
    narrow ``depth_ok`` (per contig, in place) to the positions where the sample has
    ``config.min_depth()`` non-duplicate reads. Returns the number of reads written."""
    sample = sample_names(config.n_samples)[s]
    bank = quality_bank(keyed_rng(config, 3, s), config.read_length)
    sam = tmp / f"{sample}.sam"
    nreads = 0
    with open(sam, "wb") as fh:
        fh.write(sam_header(config, textures, sample).encode())
        for c, tex in enumerate(textures):
            parts = contig_reads(config, tex, records[c], s, c, bank)
            nreads += sum(p.pos.size for p in parts)
            depth_ok[c] &= depth_at_least(parts, len(tex.seq), config.min_depth())
            write_sam_body(fh, parts, sample, tex.name, c)
            del parts
    bam = f"{sample}.bam"
    pysam.samtools.view("-b", "-1", "--no-PG", "-o", str(tmp / bam), str(sam), catch_stdout=False)
    sam.unlink()
    pysam.samtools.index(str(tmp / bam), catch_stdout=False)
    logger.info("sample %s: %d reads", sample, nreads)
    return nreads


def _intervals(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) runs of True, 0-based half-open."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def _write_confident_bed(
    path: Path, textures: list[ContigTexture], depth_ok: list[np.ndarray]
) -> int:
    """Write confident.bed (0-based half-open): where every sample has the depth and the
    reference is not N. Returns the confident bp."""
    confident_bp = 0
    with open(path, "w") as fh:
        for tex, ok in zip(textures, depth_ok):
            ok &= np.frombuffer(tex.seq.encode(), dtype=np.uint8) != ord("N")
            confident_bp += int(ok.sum())
            for a, b in _intervals(ok):
                fh.write(f"{tex.name}\t{a}\t{b}\n")
    return confident_bp


def _summary(
    config: SimulationConfig,
    textures: list[ContigTexture],
    records: list[list[TruthRecord]],
    read_counts: dict[str, int],
    confident_bp: int,
) -> dict:
    """The simulation.json document: configuration, contigs, counts, boundary records."""
    counts: dict[str, dict[str, int]] = {}
    for tex, recs in zip(textures, records):
        per: dict[str, int] = {"records": len(recs)}
        for r in recs:
            for tag in r.class_tags():
                per[tag] = per.get(tag, 0) + 1
        counts[tex.name] = dict(sorted(per.items()))
    return {
        "varcall_version": __version__,
        "config": dataclasses.asdict(config),
        "samples": sample_names(config.n_samples),
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
