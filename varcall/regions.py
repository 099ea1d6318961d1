"""Genomic regions and region planning.

Coordinates are 0-based half-open ``[start, end)`` everywhere inside varcall; region
strings given by users (``chr1:1001-2000``) are 1-based inclusive as in samtools.
"""

from __future__ import annotations

import dataclasses

__all__ = ["Region"]


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
