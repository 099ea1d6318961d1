"""Diagnosis at run time: after a task failed, find which alignment file makes its region
fail (a damaged or truncated block, a read past the end of the contig), so the error names
the file as well as the region."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pysam

from varcall.core.params import CallInputs
from varcall.core.regions import Region

__all__ = ["diagnose_region", "SCAN_SLACK_BYTES"]


def diagnose_region(inputs: CallInputs, region: Region, *, pad: int = 0) -> str | None:
    """Find which input makes ``region`` fail: read every alignment file over the region
    (0-based half-open, widened by ``pad`` bp) and return ``"<file>: <what is wrong>; <fix>"``
    for the first file that cannot be read (a damaged block, a truncated file) or that
    holds a read extending past the end of the contig; None when every file reads cleanly.

    Used only after a task failed (it reads the region once more), so the error names the
    file as well as the region.
    """
    length = dict(inputs.contigs).get(region.contig)
    if length is None:
        return f"{inputs.reference}: contig {region.contig} is not in the reference; check -f"
    start, end = max(0, region.start - pad), min(length, region.end + pad)
    for bam in inputs.bams:
        path = Path(bam)
        kw = {"reference_filename": inputs.reference} if path.suffix == ".cram" else {}
        problem = _scan_reads(path, kw, region, start, end, length)
        if problem is not None:
            return problem
    return None


#: Compressed bytes checked past a region's last read when looking for a damaged block
#: (readers decompress ahead of the reads they return; varcall.io.bam reads 1 MiB at a time).
SCAN_SLACK_BYTES = 2 << 20


def _scan_reads(
    path: Path, kw: dict, region: Region, start: int, end: int, length: int
) -> str | None:
    try:
        f = pysam.AlignmentFile(str(path), "r", **kw)
    except (OSError, ValueError) as e:
        return f"{path}: cannot open ({type(e).__name__}: {e}); check the file"
    first = last = None
    try:
        for read in f.fetch(region.contig, start, end):
            if f.is_bam:
                last = f.tell() >> 16  # compressed offset of the current block
                first = last if first is None else first
            read_end = read.reference_end
            if read_end is not None and read_end > length:
                return (
                    # the read by position only: read names stay out of messages and logs
                    f"{path}: the read at {region.contig}:"
                    f"{read.reference_start + 1} extends to {read_end}, past the end of "
                    f"{region.contig} ({length} bp); the file does not belong to this "
                    f"reference or is damaged, re-align or fix it"
                )
    except (OSError, ValueError) as e:
        return (
            f"{path}: cannot read {region} ({type(e).__name__}: {e}), the file is damaged "
            f"or truncated; check it with 'samtools view -c {path}' and re-create it"
        )
    finally:
        try:
            f.close()
        except OSError:  # htslib reports the damage again when closing
            pass
    if first is not None and last is not None:
        bad = _scan_bgzf(path, first, last + SCAN_SLACK_BYTES)
        if bad is not None:
            return (
                f"{path}: damaged BGZF block at byte offset {bad} (read for {region}), the file is "
                f"damaged; check it with 'samtools view -c {path}' and re-create it"
            )
    return None


def _scan_bgzf(path: Path, begin: int, end: int) -> int | None:
    """Byte offset of the first BGZF block in ``[begin, end)`` (compressed offsets; the
    scan starts at the block at ``begin``) that does not inflate to its recorded size and
    CRC-32, or None."""
    with open(path, "rb") as fh:
        fh.seek(begin)
        off = begin
        while off < end:
            head = fh.read(18)
            if not head:
                return None
            if len(head) < 18 or head[:4] != b"\x1f\x8b\x08\x04" or head[12:14] != b"BC":
                return off
            bsize = struct.unpack_from("<H", head, 16)[0] + 1
            body = fh.read(bsize - 18)
            if len(body) != bsize - 18:
                return off
            crc, isize = struct.unpack("<II", body[-8:])
            try:
                raw = zlib.decompress(body[:-8], -15)
            except zlib.error:
                return off
            if len(raw) != isize or zlib.crc32(raw) != crc:
                return off
            off += bsize
    return None
