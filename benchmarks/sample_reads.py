"""The reads of a benchmark dataset's samples (``build_dataset.py``): per sample, 2 x
``read_length`` reads from each of its two haplotypes at half the coverage each, simulated
by ``art_illumina`` (HiSeq 2500 profile, fixed seed; with PCR stutter in the tandem repeats,
``stutter.py``, for datasets with hard cases), aligned with ``bwa mem -R @RG...``, sorted
and indexed with samtools. Also :func:`run_tool`, the builder's way of running a tool.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import hard_cases
import stutter as stutter_mod
from genome import haplotype, write_fasta

if TYPE_CHECKING:
    from build_dataset import DatasetSpec

#: the builder's logger (``build_dataset.py``): one name for all it logs
logger = logging.getLogger("benchmarks.build_dataset")


def run_tool(cmd: list[str] | str, **kw) -> None:
    """Run a tool (a string is a bash command line); RuntimeError with the tail of its stderr
    when it fails."""
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


def align_sample(
    wip: Path, sample: str, fqs: list[tuple[Path, Path]], bwa_ref: Path, threads: int
) -> Path:
    """``<sample>.bam`` (+ ``.bai``) in ``wip``: the FASTQ pairs ``fqs`` aligned with bwa mem
    (read group ``sample``), sorted and indexed with samtools; the FASTQ files are removed."""
    bam = wip / f"{sample}.bam"
    rg = f"@RG\\tID:{sample}\\tSM:{sample}\\tPL:ILLUMINA\\tLB:{sample}"
    r1 = " ".join(str(a) for a, _ in fqs)
    r2 = " ".join(str(b) for _, b in fqs)
    run_tool(
        f"set -o pipefail; bwa mem -t {threads} -K 10000000 -R '{rg}' {bwa_ref} "
        f"<(cat {r1}) <(cat {r2}) 2>/dev/null | "
        f"samtools sort -@ {threads} -m 512M -T {wip}/{sample}.sort -o {bam} -"
    )
    run_tool(["samtools", "index", str(bam)])
    for a, b in fqs:
        a.unlink()
        b.unlink()
    return bam


def art_reads(
    wip: Path,
    spec: DatasetSpec,
    contigs: list[tuple[str, str]],
    sites: dict[str, list],
    si: int,
    h: int,
) -> tuple[Path, Path]:
    """The FASTQ pair that ``art_illumina`` simulates from haplotype ``h`` of sample ``si``
    of a plain dataset (at half the coverage)."""
    sample = spec.samples[si]
    hap_fa = wip / f"{sample}.h{h + 1}.fa"
    write_fasta(
        hap_fa,
        [
            (f"{name}.{sample}.h{h + 1}", haplotype(seq, sites[name], 2 * si + h))
            for name, seq in contigs
        ],
    )
    prefix = wip / f"{sample}.h{h + 1}."
    run_tool(
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
    hap_fa.unlink()
    return Path(f"{prefix}1.fq"), Path(f"{prefix}2.fq")


def hard_reads(
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
