"""The confident-region BED of a truth comparison: intervals per contig, merged, and the
position test (bcftools ``-T`` semantics: a record counts when its POS lies inside).

Unlike :func:`varcall.core.regions.read_bed_regions` (regions to call), any contig is
accepted, empty intervals are allowed and touching intervals are merged.
"""

from __future__ import annotations

import bisect
import math
import os
from collections import defaultdict
from pathlib import Path

import pysam

from varcall.core.errors import InputError

__all__ = ["BedIntervals", "read_bed", "in_bed", "overlaps_bed"]

#: contig -> sorted, merged (start, end) intervals, 0-based half-open.
BedIntervals = dict[str, list[tuple[int, int]]]


def _merge(ivs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted intervals with overlapping and touching ones merged."""
    ivs.sort()
    out: list[tuple[int, int]] = []
    for s, e in ivs:
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def read_bed(path: str | os.PathLike) -> BedIntervals:
    """BED intervals per contig, sorted and merged (0-based half-open)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: BED file not found; pass an existing file to --bed")
    raw: dict[str, list[tuple[int, int]]] = defaultdict(list)
    opener = pysam.BGZFile if path.name.endswith(".gz") else open
    with opener(str(path), "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.decode() if isinstance(line, bytes) else line
            if not text.strip() or text.startswith(("#", "track", "browser")):
                continue
            fields = text.split("\t") if "\t" in text else text.split()
            try:
                contig, start, end = fields[0], int(fields[1]), int(fields[2])
            except (IndexError, ValueError) as e:
                raise InputError(
                    f"{path}: line {lineno} is not 'contig<TAB>start<TAB>end'; fix the BED file"
                ) from e
            if end < start:
                raise InputError(f"{path}: line {lineno} has end < start; fix the BED file")
            raw[contig].append((start, end))
    return {contig: _merge(ivs) for contig, ivs in raw.items()}


def in_bed(bed: BedIntervals, contig: str, pos: int) -> bool:
    """Whether 0-based ``pos`` of ``contig`` lies inside one of the intervals."""
    ivs = bed.get(contig)
    if not ivs:
        return False
    i = bisect.bisect_right(ivs, (pos, math.inf)) - 1
    return i >= 0 and ivs[i][0] <= pos < ivs[i][1]


def overlaps_bed(bed: BedIntervals, contig: str, start: int, end: int) -> bool:
    """Whether the 0-based half-open span ``[start, end)`` of ``contig`` overlaps one of the
    intervals (hap.py's rule for a record after matching; an empty span counts as its start)."""
    ivs = bed.get(contig)
    if not ivs:
        return False
    end = max(end, start + 1)
    i = bisect.bisect_left(ivs, (end, -math.inf)) - 1  # last interval starting before end
    return i >= 0 and ivs[i][1] > start
