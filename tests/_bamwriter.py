"""Small reference FASTAs and indexed, coordinate-sorted BAMs written from hand-made reads,
for the tests that build their own alignments (test_pileup, test_softclip, test_filters,
test_local_haplotypes, test_stutter, the sex cohort of _sexcohort).

Coordinates are 0-based throughout, as pysam has them: :attr:`AlignedRead.start` is the
0-based reference position of the read's first aligned base (pysam's ``reference_start``,
SAM POS - 1), :attr:`AlignedRead.mate_start` likewise. Base qualities are Phred values
(30, not the SAM text's ``"?"``).

The header of every BAM: ``@HD VN:1.6 SO:coordinate``, one ``@SQ`` per contig in the order
given, one ``@RG ID:.. SM:..`` per read group in the order given.
"""

from __future__ import annotations

import dataclasses
from array import array
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pysam

#: the base quality of every base of a read written without qualities
DEFAULT_QUAL = 30


@dataclasses.dataclass(frozen=True)
class AlignedRead:
    """One alignment of a BAM.

    name: the read name (QNAME).
    start: 0-based reference position of the first aligned base (soft clips not counted).
    cigar: a CIGAR string (``"90M10S"``) or pysam's ``(operation code, length)`` tuples
        (``[(0, 90), (4, 10)]``).
    seq: the read bases, soft-clipped bases included.
    quals: the base qualities (Phred), one per base of ``seq``; None: :data:`DEFAULT_QUAL`
        for every base.
    flag: the SAM FLAG (16: reverse strand; 0x1, 0x40, 0x80: paired, first, second mate).
    mapq: the mapping quality.
    rg: the read's ``RG`` tag, a read group ID of the header; None: no RG tag.
    contig: the index of the read's contig in the header (0: the first).
    mate_start: 0-based start of the mate, on the same contig (RNEXT, PNEXT); None: none
        (RNEXT ``*``, PNEXT 0).
    """

    name: str
    start: int
    cigar: str | Sequence[tuple[int, int]]
    seq: str
    quals: Sequence[int] | None = None
    flag: int = 0
    mapq: int = 60
    rg: str | None = None
    contig: int = 0
    mate_start: int | None = None


def write_fasta(path: Path, contigs: Mapping[str, str]) -> Path:
    """Write ``contigs`` (name -> sequence, each sequence on one line) to the FASTA
    ``path`` and index it (``path.fai``); returns ``path``."""
    path.write_text("".join(f">{name}\n{seq}\n" for name, seq in contigs.items()))
    pysam.faidx(str(path))
    return path


def write_bam(
    path: Path,
    contigs: Mapping[str, int],
    read_groups: Mapping[str, str] | Iterable[str],
    reads: Iterable[AlignedRead],
    *,
    presorted: bool = False,
) -> Path:
    """Write ``reads`` to the BAM ``path``, sorted by coordinate, and index it
    (``path.bai``); returns ``path``.

    contigs: the header's contigs, name -> length, in their order (``AlignedRead.contig``
        indexes them).
    read_groups: the header's read groups, ID -> sample name (SM), or sample names alone
        (each its own read group ID).
    presorted: the reads come in coordinate order: they are written to ``path`` as they
        come (reads that start at the same position keep their order). Otherwise they go
        to ``<stem>.unsorted.bam`` beside ``path`` first, which ``samtools sort`` (it adds
        its ``@PG`` line to the header) writes to ``path``; the unsorted file is deleted.
    """
    groups = (
        read_groups.items() if isinstance(read_groups, Mapping) else ((s, s) for s in read_groups)
    )
    header = {
        "HD": {"VN": "1.6", "SO": "coordinate"},
        "SQ": [{"SN": name, "LN": length} for name, length in contigs.items()],
        "RG": [{"ID": rg, "SM": sample} for rg, sample in groups],
    }
    unsorted = path if presorted else path.with_name(f"{path.stem}.unsorted.bam")
    with pysam.AlignmentFile(str(unsorted), "wb", header=header) as out:
        for read in reads:
            out.write(_segment(read, out.header))
    if not presorted:
        pysam.sort("-o", str(path), str(unsorted))
        unsorted.unlink()
    pysam.index(str(path))
    return path


def _segment(read: AlignedRead, header: pysam.AlignmentHeader) -> pysam.AlignedSegment:
    """``read`` as a pysam record of a file with ``header``."""
    a = pysam.AlignedSegment(header)
    a.query_name = read.name
    a.flag = read.flag
    a.reference_id = read.contig
    a.reference_start = read.start
    a.mapping_quality = read.mapq
    if isinstance(read.cigar, str):
        a.cigarstring = read.cigar
    else:
        a.cigartuples = list(read.cigar)
    a.query_sequence = read.seq  # before the qualities: setting it clears them
    quals = read.quals if read.quals is not None else [DEFAULT_QUAL] * len(read.seq)
    a.query_qualities = array("B", quals)
    if read.mate_start is not None:
        a.next_reference_id = read.contig
        a.next_reference_start = read.mate_start
    if read.rg is not None:
        a.set_tag("RG", read.rg)
    return a
