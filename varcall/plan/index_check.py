"""Does a BAM's BAI/CSI index belong to it? An index is found by its name and checked for
age only (:mod:`varcall.plan.validate_alignments`), so another file's index copied beside
a BAM (same reference, newer date) would send every fetch to byte offsets that are not
the reads asked for: wrong evidence, silently. :func:`index_mismatch` reads the few
records the index points at and says what does not fit."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

from varcall.io.bgzf import BGZF_MAGIC, BgzfReader
from varcall.io.index import BinningIndex, load_binning_index, start_offset

__all__ = ["CHECKED_REFERENCES", "index_mismatch"]

#: References (the first ones with reads) whose first indexed record is checked.
CHECKED_REFERENCES = 3
#: The fixed part of a BAM record after its block_size (SAM spec 4.2), bytes.
_FIXED = 32


def index_mismatch(bam: Path, index_path: Path, lengths: Sequence[int]) -> str | None:
    """Why ``index_path`` does not index ``bam`` (``lengths``: the header's @SQ lengths,
    in order), or None when it fits: it lists as many references as the header, its
    reads end inside the file, and at the virtual offset it gives for the first reads of
    the first :data:`CHECKED_REFERENCES` references with reads a BAM record of that
    reference starts. Reads a block per checked reference."""
    try:
        index = load_binning_index(index_path)
    except (OSError, ValueError, struct.error, EOFError) as e:
        return f"cannot be read ({type(e).__name__}: {e})"
    if index is None:
        return "is neither a BAI nor a CSI index"
    if len(index.references) != len(lengths):
        return f"lists {len(index.references)} references, the file's header {len(lengths)}"
    size = bam.stat().st_size
    if any((ref.end_voff >> 16) > size for ref in index.references):
        return "points past the end of the file: the file is truncated or the index is another's"
    return _first_records_mismatch(bam, index, lengths)


def _first_records_mismatch(bam: Path, index: BinningIndex, lengths: Sequence[int]) -> str | None:
    """The first check of :func:`index_mismatch` on the records themselves that fails."""
    checked = 0
    reader = BgzfReader(bam)
    try:
        for tid, length in enumerate(lengths):
            if checked == CHECKED_REFERENCES:
                break
            voff = start_offset(index, tid, 0, max(1, int(length)))
            if voff is None:
                continue
            checked += 1
            if not _is_block_start(bam, voff >> 16):
                return f"points reference #{tid + 1} at byte {voff >> 16}, not a BGZF block"
            reader.seek(voff)
            try:
                head = reader.read(4 + _FIXED)
                problem = _record_problem(head, tid, int(length), reader)
            except OSError:  # a damaged block: the region that reads it names the file
                continue
            if problem is not None:
                return f"points reference #{tid + 1} at a {problem}"
    finally:
        reader.close()
    return None


def _is_block_start(bam: Path, offset: int) -> bool:
    """Whether a BGZF block header starts at byte ``offset`` of ``bam``."""
    with open(bam, "rb") as fh:
        fh.seek(offset)
        return fh.read(len(BGZF_MAGIC)) == BGZF_MAGIC


def _record_problem(head: bytes, tid: int, length: int, reader: BgzfReader) -> str | None:
    """What is wrong with the BAM record starting with ``head`` (its block_size and fixed
    fields) as the first read of reference ``tid`` (``length`` bp), None if nothing."""
    if len(head) < 4 + _FIXED:
        return "place past the last record"
    block_size, ref_id, pos, l_name = struct.unpack_from("<iiiB", head, 0)
    if ref_id != tid or not -1 <= pos < length:
        return f"record of another place (reference #{ref_id + 1}, position {pos + 1})"
    if l_name < 2 or block_size < _FIXED + l_name:
        return "place that is not the start of a record"
    name = reader.read(l_name)
    if len(name) != l_name or name[-1] != 0 or not all(33 <= c <= 126 for c in name[:-1]):
        return "place that is not the start of a record"
    return None
