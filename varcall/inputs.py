"""Resolve what a run reads into a :class:`~varcall.engines.CallInputs`.

Reads headers only (the .fai and each BAM/CRAM header), never reads. Thorough checks
(indexes, truncation, sort order, contig agreement) live in :mod:`varcall.validate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pysam

from varcall.engines import CallInputs
from varcall.errors import InputError

__all__ = ["read_fai", "bam_samples", "resolve_inputs"]


def read_fai(reference: str | Path) -> tuple[tuple[str, int], ...]:
    """(name, length) of every contig in the reference's .fai, in file order."""
    fai = Path(f"{reference}.fai")
    if not fai.is_file():
        raise InputError(
            f"{reference}: reference index {fai.name} not found; run 'samtools faidx {reference}'"
        )
    out = []
    for line in fai.read_text().splitlines():
        if line.strip():
            fields = line.split("\t")
            out.append((fields[0], int(fields[1])))
    return tuple(out)


def bam_samples(path: str | Path) -> list[str]:
    """Sample names (@RG SM) of one alignment file, in header order, unique.
    A file without @RG SM is named after its file name (without extension)."""
    with pysam.AlignmentFile(str(path), "r", check_sq=False) as f:
        header = f.header.to_dict()
    names: list[str] = []
    for rg in header.get("RG", []):
        sm = rg.get("SM")
        if sm and sm not in names:
            names.append(sm)
    if not names:
        names = [Path(path).name.split(".")[0]]
    return names


def resolve_inputs(reference: str | Path, bams: Sequence[str | Path]) -> CallInputs:
    """CallInputs with absolute paths, the samples in input order, and the reference contigs."""
    samples: list[str] = []
    for b in bams:
        samples.extend(bam_samples(b))
    return CallInputs(
        reference=str(Path(reference).resolve()),
        bams=tuple(str(Path(b).resolve()) for b in bams),
        samples=tuple(samples),
        contigs=read_fai(reference),
    )
