"""Input validation before any task is submitted: headers and indexes, never reads.

Every failure raises :class:`varcall.core.errors.InputError` with one line
``<file>: <what is wrong>; <the fix>``; the CLI prints ``varcall: error: ...`` and exits
with code 2. Validation never creates anything at the output path. The only files it may
write are indexes the user asked for (``--index`` for BAM/CRAM) and a missing reference
``.fai`` (built beside the reference when that folder is writable).

Checks, in order:

- output: the folder does not exist unless ``overwrite`` or ``resume``; its nearest existing
  parent (and the work folder's) is writable and has room for the estimated output;
- reference: exists, readable, an uncompressed or bgzip-compressed FASTA, indexed (.fai
  newer than the FASTA), the .fai well formed;
- each BAM/CRAM: exists, readable, not empty, BAM or CRAM (not SAM text), BGZF EOF block
  present (not truncated), coordinate-sorted, every @SQ name and length in the reference,
  @SQ M5 (when present) equal to the MD5 of that reference contig, every read group has a
  sample, an index not older than the file (``build_index`` builds missing/stale ones);
- samples: unique across files (``rename_duplicate_samples`` renames S -> S.2, S.3, ...);
- regions: strings (``chr``, ``chr:start-end``, 1-based inclusive) and BED files (0-based
  half-open) name known contigs and lie within them (parsed by :mod:`varcall.core.regions`).

This module holds the entry point :func:`validate_call` and the region checks; the others
live in :mod:`varcall.plan.validate_output`, :mod:`varcall.plan.validate_reference` and
:mod:`varcall.plan.validate_alignments` (file helpers in :mod:`varcall.plan.checks`);
cluster checks in :mod:`varcall.plan.validate_cluster`, run-time diagnosis in
:mod:`varcall.plan.diagnose`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from varcall.core.errors import InputError
from varcall.core.params import CallInputs
from varcall.core.regions import Region, parse_region_string, read_bed_regions
from varcall.plan.checks import check_readable, htslib_quiet
from varcall.plan.validate_alignments import check_alignment_file, unique_sample_names
from varcall.plan.validate_output import check_output, estimate_output_bytes
from varcall.plan.validate_reference import ReferenceMD5, check_reference

__all__ = ["validate_call", "validate_regions"]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- regions
_REGION_END_RE = re.compile(r"^(?P<contig>.+):[0-9,_]+-(?P<end>[0-9,_]+)$")


def validate_regions(
    region_strings: Iterable[str],
    regions_bed: str | Path | None,
    contigs: Sequence[tuple[str, int]],
) -> list[Region]:
    """All user regions (strings, then BED intervals), checked against the contigs.

    Parsing is :func:`varcall.core.regions.parse_region_string` / :func:`read_bed_regions`; in
    addition an explicit end past the contig end is refused here rather than clipped, since
    it usually means coordinates of another reference build.
    """
    lengths = dict(contigs)
    out: list[Region] = []
    for text in region_strings:
        region = parse_region_string(text, contigs)
        m = _REGION_END_RE.match(text.strip())
        if m is not None and m["contig"] == region.contig and text.strip() not in lengths:
            end = int(m["end"].replace(",", "").replace("_", ""))
            if end > lengths[region.contig]:
                raise InputError(
                    f"region {text.strip()!r}: end {end} is past the end of {region.contig} "
                    f"({lengths[region.contig]} bp); use coordinates of this reference"
                )
        out.append(region)
    if regions_bed is not None:
        check_readable(Path(regions_bed), "BED file")
        intervals = read_bed_regions(regions_bed, contigs)
        if not intervals:  # no interval must not mean "the whole genome"
            raise InputError(
                f"{regions_bed}: no intervals (only blank, header or comment lines); give a "
                "BED with the regions to call, or leave out --regions for the whole genome"
            )
        out.extend(intervals)
    return out


def validate_call(
    reference: Path,
    bams: Sequence[Path],
    out: Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    build_index: bool = False,
    rename_duplicate_samples: bool = False,
    region_strings: Sequence[str] = (),
    regions_bed: Path | None = None,
    work_dir: Path | None = None,
    check_md5: bool = True,
    engine_name: str = "native",
) -> CallInputs:
    """Check everything a `varcall call` reads and writes; return the resolved inputs.

    The output folder may exist only with ``overwrite`` (its outputs removed when calling
    starts) or ``resume`` (its checkpoints are reused). ``region_strings`` (1-based
    inclusive) and ``regions_bed`` (0-based half-open) are checked against the reference
    contigs. ``work_dir`` defaults to ``out/work``. ``samples`` of the result are the files' samples in input order; with
    ``rename_duplicate_samples`` repeated names are renamed (see
    :func:`varcall.plan.validate_alignments.unique_sample_names`),
    and :func:`varcall.plan.inputs.sample_columns` maps each file's SM to its output column;
    only the native engine (``engine_name``) can run with renamed samples.
    Nothing is created at ``out``.
    """
    if not bams:
        raise InputError("no BAM/CRAM files given; pass them as arguments or with --bam-list")
    out = Path(out)
    reference = Path(reference)
    # cheap checks first: the output, then each file's existence
    check_output(out, overwrite=overwrite, resume=resume, work_dir=work_dir)
    check_readable(reference, "reference")
    for b in bams:
        check_readable(Path(b), "alignment file")
    contigs = check_reference(reference)
    validate_regions(region_strings, regions_bed, contigs)
    with htslib_quiet():  # every failure here is varcall's one line, naming the file
        per_file = _check_alignment_files(bams, contigs, reference, build_index, check_md5)
    samples = unique_sample_names(per_file, rename=rename_duplicate_samples)
    n_names = sum(len(names) for _, names in per_file)
    if len({s for _, names in per_file for s in names}) < n_names and engine_name != "native":
        raise InputError(
            f"--engine {engine_name}: cannot rename duplicate sample names (the tool reads "
            f"SM from the files); rename them in the files with 'samtools addreplacerg' or "
            f"use --engine native"
        )
    check_output(
        out,
        overwrite=overwrite,
        resume=resume,
        work_dir=work_dir,
        needed_bytes=estimate_output_bytes(bams),
    )
    logger.info(
        "validated %d alignment file(s), %d sample(s), %d contig(s)",
        len(bams),
        len(samples),
        len(contigs),
    )
    return CallInputs(
        reference=str(reference.resolve()),
        bams=tuple(str(Path(b).resolve()) for b in bams),
        samples=tuple(samples),
        contigs=contigs,
    )


def _check_alignment_files(
    bams: Sequence[Path],
    contigs: Sequence[tuple[str, int]],
    reference: Path,
    build_index: bool,
    check_md5: bool,
) -> list[tuple[Path, list[str]]]:
    """(path, sample names) of every alignment file, in input order, each checked by
    :func:`check_alignment_file` (M5 against the reference with ``check_md5``); a file
    given twice (same real path) is refused."""
    md5 = ReferenceMD5(reference) if check_md5 else None
    per_file: list[tuple[Path, list[str]]] = []
    seen: dict[Path, Path] = {}
    try:
        for b in bams:
            b = Path(b)
            real = b.resolve()
            if real in seen:
                also = "" if str(seen[real]) == str(b) else f" (also as {seen[real]})"
                raise InputError(f"{b}: file given twice{also}; give each BAM/CRAM once")
            seen[real] = b
            per_file.append(
                (
                    b,
                    check_alignment_file(
                        b, contigs, reference, build_index=build_index, reference_md5=md5
                    ),
                )
            )
    finally:
        if md5 is not None:
            md5.close()
    return per_file
