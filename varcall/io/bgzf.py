"""A BGZF reader that keeps its last inflated blocks, for many small reads of one file.

Region tasks of a packed plan read a few kilobytes of every alignment file per region,
region after region along the genome: most reads start in the block the previous one
ended in. htslib's reader inflates a block again after every seek; this one keeps the
last :data:`KEEP_BLOCKS` inflated blocks of the file, so neighbouring regions inflate each
block once. A worker keeps these readers open between tasks (:mod:`varcall.io.handles`).

BGZF (SAM spec section 4.1): a series of gzip members of at most 64 KiB, each with a
``BC`` extra field giving its compressed size; a virtual offset is ``(compressed offset
of a block << 16) | offset inside its inflated data``. Every block's CRC32 and inflated
size are checked: a damaged file raises OSError, as htslib does.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import OrderedDict

try:  # ISA-L's inflate: the same bytes as zlib's, 2-3x faster (benchmarks/inflate.py)
    from isal import isal_zlib as _inflater
except ImportError:  # pragma: no cover - a platform without isal wheels: zlib
    _inflater = zlib  # type: ignore[assignment]

__all__ = ["BGZF_MAGIC", "KEEP_BLOCKS", "BgzfReader", "block_size"]

#: Inflated blocks kept per open reader (each at most 64 KiB). A region's fetch scans from
#: its 16 kb linear-index bin, about 6 inflated blocks of a 10x BAM of 150-bp reads; with 4
#: kept, every 100-bp region of a 1,000-region plan inflated its blocks again (README).
KEEP_BLOCKS = 16

#: The first bytes of every BGZF block (gzip with FEXTRA).
BGZF_MAGIC = b"\x1f\x8b\x08\x04"


class BgzfReader:
    """``seek(virtual offset)`` and ``read(n)`` (inflated bytes) over a BGZF file, the
    last inflated blocks kept. Not thread-safe: one user at a time."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._fh = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        self._blocks: OrderedDict[int, tuple[bytes, int]] = OrderedDict()
        self._block = 0
        self._within = 0

    def close(self) -> None:
        """Close the file and drop the kept blocks."""
        self._fh.close()
        self._blocks.clear()

    def seek(self, voffset: int) -> None:
        """Move to a virtual offset (``block offset << 16 | offset inside the block``)."""
        self._block = voffset >> 16
        self._within = voffset & 0xFFFF

    def _load(self, offset: int) -> tuple[bytes, int]:
        """(inflated data, offset of the next block) of the block at ``offset``;
        (b"", offset) at the end of the file."""
        kept = self._blocks.get(offset)
        if kept is not None:
            self._blocks.move_to_end(offset)
            return kept
        self._fh.seek(offset)
        head = self._fh.read(12)
        if not head:
            return b"", offset
        if len(head) < 12 or head[:4] != BGZF_MAGIC:
            raise OSError(f"{self.path}: not a BGZF block at byte {offset}")
        (xlen,) = struct.unpack_from("<H", head, 10)
        extra = self._fh.read(xlen)
        bsize = block_size(extra)
        if bsize is None or bsize < 12 + xlen + 8:
            raise OSError(f"{self.path}: BGZF block at byte {offset} has no valid size")
        body = self._fh.read(bsize - 12 - xlen)
        if len(body) != bsize - 12 - xlen:
            raise OSError(f"{self.path}: truncated BGZF block at byte {offset}")
        crc, isize = struct.unpack_from("<II", body, len(body) - 8)
        if isize > 1 << 16:  # a BGZF block inflates to 64 KiB at most
            raise OSError(f"{self.path}: BGZF block at byte {offset} has a damaged size field")
        try:
            data = _inflater.decompress(body[:-8], -15, max(1, isize))
        except _inflater.error as e:
            raise OSError(f"{self.path}: damaged BGZF block at byte {offset} ({e})") from None
        if len(data) != isize or _inflater.crc32(data) != crc:
            raise OSError(f"{self.path}: BGZF block at byte {offset} fails its CRC check")
        out = (data, offset + bsize)
        self._blocks[offset] = out
        if len(self._blocks) > KEEP_BLOCKS:
            self._blocks.popitem(last=False)
        return out

    def read_block_into(self, out: bytearray) -> int:
        """Append the rest of the current block's inflated bytes to ``out`` (inflating it,
        or the next one when at its end); returns how many, 0 at the end of the file. A
        caller that stops as soon as it has what it needs inflates no block past it."""
        while True:
            data, nxt = self._load(self._block)
            if nxt == self._block:
                return 0  # end of the file
            if self._within < len(data):
                take = len(data) - self._within
                out += memoryview(data)[self._within :]
                self._block, self._within = nxt, 0
                return take
            self._block, self._within = nxt, 0

    def read(self, n: int) -> bytes:
        """Up to ``n`` inflated bytes from the current position (fewer only at the end of
        the file); the position moves past them."""
        out = bytearray()
        self.read_into(out, n)
        return bytes(out)

    def read_into(self, out: bytearray, n: int) -> int:
        """Append up to ``n`` inflated bytes from the current position to ``out`` (fewer
        only at the end of the file; one copy of each byte); returns how many."""
        want = n
        while want > 0:
            data, nxt = self._load(self._block)
            if nxt == self._block:
                break  # end of the file
            if self._within >= len(data):  # at the end of a block (or an empty one)
                self._block, self._within = nxt, 0
                continue
            take = min(want, len(data) - self._within)
            out += memoryview(data)[self._within : self._within + take]
            want -= take
            self._within += take
        return n - want


def block_size(extra: bytes) -> int | None:
    """The block's total size (``BSIZE`` + 1, bytes) from a gzip extra field's ``BC``
    subfield, None when absent."""
    i = 0
    while i + 4 <= len(extra):
        si1, si2, slen = extra[i], extra[i + 1], struct.unpack_from("<H", extra, i + 2)[0]
        if si1 == 66 and si2 == 67 and slen == 2:
            return struct.unpack_from("<H", extra, i + 4)[0] + 1
        i += 4 + slen
    return None
