"""Normalising a call set for comparison: ``bcftools norm`` (split, left-align, REF check)
and reading the normalised records into a :class:`NormalisedSet`.

Records are keyed by (contig, 0-based POS, REF, ALT) after normalisation; every record also
keeps the identity of the input record it came from (:attr:`NormalisedSet.origin`), so that
the parts of a split multi-allelic record can be counted as one record again. The genotype
classes of the comparisons (:data:`GT_CLASSES`, :func:`gt_class`) live here too because
identity and truth matching share them.

This reader is not :func:`varcall.io.vcf_read.read_vcf`: the comparisons need every INFO and
FORMAT field either header defines (read_vcf keeps a fixed set), the phase of each genotype,
QUAL as written, and repeated keys kept apart.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pysam
import pysam.bcftools
from pysam.utils import SamtoolsError

from varcall.core.errors import InputError

__all__ = [
    "GT_CLASSES",
    "Key",
    "NormalisedSet",
    "gt_class",
    "normalise",
    "load_normalised",
]

#: INFO tag bcftools norm writes on modified records (``--old-rec-tag``): the input record.
ORIGIN_TAG = "VARCALL_ORIGIN"

#: Genotype classes of the concordance matrix, in display order.
GT_CLASSES: tuple[str, ...] = ("absent", "./.", "0/0", "0/1", "1/1")

Key = tuple[str, int, str, str]  # contig, 0-based POS, REF, ALT (after normalisation)


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


def normalise(vcf: str | os.PathLike, reference: str | os.PathLike, out: str | os.PathLike) -> dict:
    """``bcftools norm -m -any -f REF --check-ref e`` of ``vcf`` into ``out`` (BGZF VCF).

    Returns bcftools' own counts: ``{"total", "split", "realigned", "skipped"}``. Raises
    :class:`InputError` naming ``vcf`` when a REF disagrees with the reference or the file is
    unreadable.
    """
    vcf, reference, out = Path(vcf), Path(reference), Path(out)
    if not reference.is_file():
        raise InputError(f"{reference}: reference FASTA not found; pass an existing --reference")
    if not Path(f"{reference}.fai").is_file():
        pysam.faidx(str(reference))
    try:
        pysam.bcftools.norm(
            "-m", "-any", "-f", str(reference), "--check-ref", "e", "--no-version",
            "--old-rec-tag", ORIGIN_TAG,
            "-W", "-O", "z", "-o", str(out), str(vcf), catch_stdout=False,
        )  # fmt: skip
    except SamtoolsError as e:
        detail = _one_line(str(e).split("stderr=")[-1].replace("\\n", "\n").strip("'\""))
        if "allele mismatch" in detail:
            raise InputError(
                f"{vcf}: REF allele does not match {reference.name} ({detail}); "
                "pass the reference the calls were made against"
            ) from e
        raise InputError(
            f"{vcf}: bcftools norm cannot read it ({detail}); give a valid VCF, VCF.gz or BCF"
        ) from e
    return _norm_stats(pysam.bcftools.norm.stderr or "")


def _norm_stats(stderr: str) -> dict:
    """bcftools norm's record counts from its stderr."""
    stats = {"total": 0, "split": 0, "realigned": 0, "skipped": 0}
    for line in stderr.splitlines():
        # "Lines   total/split/realigned/skipped:	10/1/1/0" (newer bcftools add more fields)
        if line.startswith("Lines") and ":" in line:
            names, values = line.split(":", 1)
            names = names.split()[-1].split("/")
            for n, v in zip(names, values.strip().split("/")):
                if n in stats:
                    stats[n] = int(v)
    return stats


@dataclasses.dataclass
class NormalisedSet:
    """Normalised records of one input, keyed by (contig, 0-based POS, REF, ALT).

    A repeated key gets an occurrence suffix in ``records`` (key + (n,), n = 0, 1, ...).
    Each value is ``(qual, filters, info, fmt)``: qual float or None; filters a sorted tuple
    (``()`` for unfiltered ``.``); info a dict; fmt a dict field -> tuple over ``samples``
    (``GT`` is a tuple (alleles, phased) per sample, unphased alleles sorted).
    """

    label: str
    source: str
    samples: tuple[str, ...]
    contigs: tuple[str, ...]
    info_ids: frozenset[str]
    format_ids: frozenset[str]
    records: dict[tuple, tuple]
    norm_stats: dict
    origin: dict[tuple, str] = dataclasses.field(default_factory=dict)

    @property
    def n_records(self) -> int:
        return len(self.records)


def gt_class(gt: tuple) -> str:
    """Class of a normalised (biallelic) genotype ``(alleles, phased)`` for the matrix."""
    alleles = gt[0]
    if not alleles or any(a is None for a in alleles):
        return "./."
    n_alt = sum(1 for a in alleles if a != 0)
    if n_alt == 0:
        return "0/0"
    return "1/1" if n_alt == len(alleles) else "0/1"


def _gt_of(sample: Any) -> tuple:
    alleles = tuple(sample["GT"] or ())
    phased = bool(sample.phased) if alleles else False
    if not phased:
        alleles = tuple(sorted(alleles, key=lambda a: (a is None, a or 0)))
    return (alleles, phased)


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    return value


def _format_values(rec: Any, samples: tuple[str, ...]) -> dict[str, tuple]:
    """FORMAT field -> values over ``samples`` of one pysam record (GT as (alleles, phased))."""
    fmt: dict[str, tuple] = {}
    if samples:
        for field in list(rec.format.keys()):
            if field == "GT":
                fmt["GT"] = tuple(_gt_of(rec.samples[s]) for s in samples)
            else:
                fmt[field] = tuple(_freeze(rec.samples[s][field]) for s in samples)
    return fmt


def load_normalised(
    path: str | os.PathLike, label: str, source: str, norm_stats: dict
) -> NormalisedSet:
    """Read a normalised VCF (see :func:`normalise`) into a :class:`NormalisedSet`."""
    records: dict[tuple, tuple] = {}
    origin: dict[tuple, str] = {}
    seen: Counter = Counter()
    with pysam.VariantFile(str(path)) as vf:
        samples = tuple(vf.header.samples)
        info_ids = frozenset(vf.header.info.keys()) - {ORIGIN_TAG}
        format_ids = frozenset(vf.header.formats.keys())
        contigs = tuple(vf.header.contigs.keys())
        for rec in vf:
            alt = rec.alts[0] if rec.alts else "."
            base: Key = (rec.chrom, rec.pos - 1, rec.ref, alt)
            n = seen[base]
            seen[base] += 1
            fmt = _format_values(rec, samples)
            info = {k: _freeze(v) for k, v in rec.info.items()}
            old = info.pop(ORIGIN_TAG, None)
            if old is not None:
                # "contig|POS|REF|ALTS|i" for the i-th part of a split record: drop the "|i"
                parts = (",".join(old) if isinstance(old, tuple) else str(old)).split("|")
                origin[base + (n,)] = "|".join(parts[:4])
            filters = tuple(sorted(k for k in rec.filter.keys()))
            records[base + (n,)] = (rec.qual, filters, info, fmt)
    return NormalisedSet(
        label, source, samples, contigs, info_ids, format_ids, records, norm_stats, origin
    )
