"""Genomic regions: 0-based half-open intervals, parsing, sorting, BED files."""

from __future__ import annotations

import dataclasses
import gzip
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from varcall.core.errors import InputError
from varcall.core.files import atomic_output

__all__ = [
    "Region",
    "sort_regions",
    "merge_regions",
    "parse_region_string",
    "read_bed_regions",
    "write_bed",
]


@dataclasses.dataclass(frozen=True, order=True)
class Region:
    """A stretch of one contig, 0-based half-open. Ordering is (contig, start, end) by name;
    use :func:`sort_regions` with a contig order for genomic order."""

    contig: str
    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.end < self.start:
            raise ValueError(f"invalid region {self.contig}:{self.start}-{self.end}")

    @property
    def length(self) -> int:
        return self.end - self.start

    def __str__(self) -> str:  # samtools style, 1-based inclusive
        return f"{self.contig}:{self.start + 1}-{self.end}"


def sort_regions(regions: Iterable[Region], contig_order: Sequence[str]) -> list[Region]:
    """Regions in genomic order: contigs as in ``contig_order``, then start, then end."""
    rank = {name: i for i, name in enumerate(contig_order)}
    return sorted(regions, key=lambda r: (rank.get(r.contig, len(rank)), r.contig, r.start, r.end))


def merge_regions(regions: Iterable[Region], contig_order: Sequence[str]) -> list[Region]:
    """Sorted regions with overlapping ones merged. Regions that only touch stay separate
    (they cannot double a call: a region owns the variants whose POS lies in it)."""
    out: list[Region] = []
    for r in sort_regions(regions, contig_order):
        if r.length == 0:
            continue
        if out and out[-1].contig == r.contig and r.start < out[-1].end:
            last = out[-1]
            out[-1] = Region(r.contig, last.start, max(last.end, r.end))
        else:
            out.append(r)
    return out


def _parse_int(text: str) -> int:
    return int(text.replace(",", "").replace("_", ""))


def parse_region_string(text: str, contigs: Sequence[tuple[str, int]]) -> Region:
    """Parse ``chr``, ``chr:START``, ``chr:START-`` or ``chr:START-END`` (1-based, inclusive,
    commas allowed) into a 0-based half-open :class:`Region`. ``contigs`` is the reference's
    (name, length) list; the end is clipped to the contig length.

    Raises :class:`InputError` for a malformed string or an unknown contig.
    """
    lengths = dict(contigs)
    text = text.strip()
    usage = "use CHR, CHR:START or CHR:START-END (1-based, inclusive) with a reference contig"
    if text in lengths:
        return Region(text, 0, lengths[text])
    if ":" not in text:
        raise InputError(f"region {text!r}: contig not in the reference; {usage}")
    name, _, span = text.rpartition(":")
    if name not in lengths:
        raise InputError(f"region {text!r}: contig {name!r} not in the reference; {usage}")
    length = lengths[name]
    try:
        if "-" in span:
            a, _, b = span.partition("-")
            start = _parse_int(a)
            end = _parse_int(b) if b.strip() else length
        else:
            start, end = _parse_int(span), length
    except ValueError:
        raise InputError(f"region {text!r}: start/end are not numbers; {usage}") from None
    if start < 1 or end < start:
        raise InputError(f"region {text!r}: empty or negative interval; {usage}")
    if start > length:
        raise InputError(f"region {text!r}: starts after the end of {name} ({length} bp); {usage}")
    return Region(name, start - 1, min(end, length))


def read_bed_regions(path: str | os.PathLike, contigs: Sequence[tuple[str, int]]) -> list[Region]:
    """Intervals of a BED file (0-based half-open; ``track``/``browser``/``#`` lines and blank
    lines skipped; ``.gz`` read transparently), in file order.

    Raises :class:`InputError` naming the file and line for a missing file, a malformed
    line, an unknown contig or an interval beyond the contig end.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: BED file not found; check the path given to --regions")
    lengths = dict(contigs)
    opener = gzip.open if path.suffix == ".gz" else open
    out: list[Region] = []
    try:
        with opener(path, "rt") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip() or line.startswith(("#", "track", "browser")):
                    continue
                fields = line.split()
                where = f"{path}:{lineno}"
                if len(fields) < 3:
                    raise InputError(
                        f"{where}: expected 3 columns (contig, start, end); fix the BED line"
                    )
                name = fields[0]
                try:
                    start, end = int(fields[1]), int(fields[2])
                except ValueError:
                    raise InputError(
                        f"{where}: start/end are not integers; fix the BED line"
                    ) from None
                if name not in lengths:
                    raise InputError(
                        f"{where}: contig {name!r} not in the reference; "
                        "use contig names of the reference .fai"
                    )
                if start < 0 or end <= start:
                    raise InputError(
                        f"{where}: interval {start}-{end} is empty or negative; "
                        "BED is 0-based half-open with start < end"
                    )
                if end > lengths[name]:
                    raise InputError(
                        f"{where}: end {end} is beyond the end of {name} ({lengths[name]} bp); "
                        "fix the BED line"
                    )
                out.append(Region(name, start, end))
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise InputError(f"{path}: cannot read BED file ({e}); give a plain or gzipped BED") from e
    return out


def write_bed(regions: Iterable[Region], path: str | os.PathLike) -> None:
    """Write regions as BED (0-based half-open), atomically (temporary name, then rename)."""
    with atomic_output(path) as fh:
        for r in regions:
            fh.write(f"{r.contig}\t{r.start}\t{r.end}\n")
