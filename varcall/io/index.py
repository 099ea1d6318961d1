"""Alignment indexes: one parser per format (BAI, CSI, CRAI), results cached per file version.

- BAI (SAM spec 5.2) and CSI (the CSIv1 spec) are binning indexes: per reference, the
  byte ranges ("chunks", pairs of BGZF virtual offsets ``[begin, end)``) of the reads of
  every bin; BAI adds a linear index (for every 16 kb window, the virtual offset of the
  first read overlapping it). A virtual offset is ``(compressed block offset << 16) |
  offset inside the block``. CSI files are BGZF-compressed (inflated here); a BAI may be.
- CRAI is a gzip-compressed text table, one line per CRAM slice: reference id, alignment
  start (1-based), alignment span, container offset, slice header offset, slice size.

The BAM decoder (:mod:`varcall.io.bam`) looks up where a region's reads start
(:func:`start_offset`); region planning (:mod:`varcall.plan.regions`) turns the byte
ranges into a coverage profile. :func:`read_binning_index` (and :func:`read_bai`) keep the
parsed index of the last files read, keyed by path, modification time and size, for the
decoder's many look-ups per file; :func:`load_binning_index` and :func:`read_crai` parse
without keeping anything (planning reads each index once, and up to 64 of them).
"""

from __future__ import annotations

import gzip
import os
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

__all__ = [
    "BAI_LINEAR_SHIFT",
    "BAI_PSEUDO_BIN",
    "BinnedReference",
    "BinningIndex",
    "CraiSlice",
    "load_binning_index",
    "read_binning_index",
    "read_bai",
    "read_crai",
    "references_with_records",
    "start_offset",
]

#: Bin id of the BAI metadata pseudo-bin (SAM spec 5.2.1); CSI's is computed from its depth.
#: log2 of the BAI linear index's window (16 kb) and of its smallest bin.
BAI_LINEAR_SHIFT = 14
BAI_PSEUDO_BIN = 37450
def _cache_bytes() -> int:
    try:
        mib = int(os.environ.get("VARCALL_INDEX_CACHE_MB", "512"))
    except ValueError:
        mib = 512
    return max(0, mib) << 20


#: Parsed indexes kept per process, bounded by the size of their files (environment
#: variable ``VARCALL_INDEX_CACHE_MB``, default 512): a cohort's small indexes are parsed
#: once per worker however many files it has (a count bound of 64 re-parsed every index
#: of a 500-sample cohort for every region), large genomes' indexes stay bounded.
CACHE_BYTES = _cache_bytes()
_cache: OrderedDict[tuple[str, int, int], BinningIndex | None] = OrderedDict()
_cache_used = 0
_cache_lock = threading.Lock()


@dataclass(frozen=True, eq=False)
class BinnedReference:
    """One reference of a BAI/CSI index.

    bins: bin id -> (byte offset of its chunks in ``data``, number of chunks), in file
        order, the metadata pseudo-bin left out.
    linear: the BAI linear index (uint64 virtual offset of the first read of every 16 kb
        window); empty for CSI.
    end_voff: virtual offset where the reference's reads end: the pseudo-bin's end offset
        when it has its two chunks, else the largest last-chunk end of the bins before it
        (bins after the pseudo-bin can raise it further).
    """

    data: bytes = field(repr=False)
    bins: dict[int, tuple[int, int]] = field(repr=False)
    linear: np.ndarray = field(repr=False)
    end_voff: int

    def chunks(self, bin_id: int) -> np.ndarray | None:
        """The ``(n, 2)`` uint64 chunk ``[begin, end)`` virtual offsets of a bin, None when
        the index has no such bin."""
        where = self.bins.get(bin_id)
        if where is None:
            return None
        off, n_chunk = where
        return np.frombuffer(self.data, dtype="<u8", count=2 * n_chunk, offset=off).reshape(-1, 2)


@dataclass(frozen=True, eq=False)
class BinningIndex:
    """A parsed BAI or CSI: ``kind`` ("BAI"/"CSI"), the binning scheme (``min_shift``: bits
    of the smallest bin, 14 for BAI; ``depth``: levels below the root, 5 for BAI) and one
    :class:`BinnedReference` per reference, in header order (reference id = position)."""

    kind: str
    min_shift: int
    depth: int
    references: tuple[BinnedReference, ...]

    @property
    def meta_bin(self) -> int:
        """Bin id of the metadata pseudo-bin."""
        return ((1 << ((self.depth + 1) * 3)) - 1) // 7 + 1


class CraiSlice(NamedTuple):
    """One CRAI line: reference id, alignment start (1-based), span (bp), slice size (bytes)."""

    ref_id: int
    start: int
    span: int
    size: int


def _parse_bins(
    data: bytes, off: int, meta_bin: int, with_loffset: bool
) -> tuple[dict[int, tuple[int, int]], int, int]:
    """The bins of one reference starting at byte ``off``; returns (bins, end_voff, offset
    after them)."""
    (n_bin,) = struct.unpack_from("<i", data, off)
    off += 4
    bins: dict[int, tuple[int, int]] = {}
    end_voff = 0
    for _ in range(n_bin):
        if with_loffset:
            bin_id, _loffset, n_chunk = struct.unpack_from("<IQi", data, off)
            off += 16
        else:
            bin_id, n_chunk = struct.unpack_from("<Ii", data, off)
            off += 8
        if bin_id == meta_bin and n_chunk == 2:
            end_voff = struct.unpack_from("<Q", data, off + 8)[0]
        elif n_chunk:
            end_voff = max(end_voff, struct.unpack_from("<Q", data, off + 16 * n_chunk - 8)[0])
        if bin_id != meta_bin:
            bins[bin_id] = (off, n_chunk)
        off += 16 * n_chunk
    return bins, end_voff, off


def _parse_bai(data: bytes) -> BinningIndex:
    """A BAI's bytes (SAM spec 5.2)."""
    (n_ref,) = struct.unpack_from("<i", data, 4)
    off = 8
    refs = []
    for _ in range(n_ref):
        bins, end_voff, off = _parse_bins(data, off, BAI_PSEUDO_BIN, with_loffset=False)
        (n_intv,) = struct.unpack_from("<i", data, off)
        off += 4
        linear = np.frombuffer(data, dtype="<u8", count=n_intv, offset=off)
        off += 8 * n_intv
        refs.append(BinnedReference(data, bins, linear, end_voff))
    return BinningIndex("BAI", BAI_LINEAR_SHIFT, 5, tuple(refs))


def _parse_csi(data: bytes) -> BinningIndex:
    """An inflated CSI's bytes (CSIv1 spec)."""
    min_shift, depth, l_aux = struct.unpack_from("<iii", data, 4)
    off = 16 + l_aux
    (n_ref,) = struct.unpack_from("<i", data, off)
    off += 4
    meta_bin = ((1 << ((depth + 1) * 3)) - 1) // 7 + 1
    empty = np.zeros(0, np.uint64)
    refs = []
    for _ in range(n_ref):
        bins, end_voff, off = _parse_bins(data, off, meta_bin, with_loffset=True)
        refs.append(BinnedReference(data, bins, empty, end_voff))
    return BinningIndex("CSI", min_shift, depth, tuple(refs))


def load_binning_index(path: str | os.PathLike) -> BinningIndex | None:
    """Parse a BAI or CSI file (gzip/BGZF-compressed or not); None when it is neither.
    Raises OSError when it cannot be read, ValueError or struct.error when it is damaged."""
    with open(path, "rb") as fh:
        raw = fh.read()
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    if data[:4] == b"BAI\x01":
        return _parse_bai(data)
    if data[:4] == b"CSI\x01":
        return _parse_csi(data)
    return None


def references_with_records(path: str | os.PathLike) -> np.ndarray | None:
    """Per reference id of a BAI or CSI file (gzip/BGZF-compressed or not): whether any
    of its bins (the metadata pseudo-bin aside) has a chunk, i.e. whether the file has a
    record placed on it; a numba walk over the bins, fast for whole-genome indexes. None
    when the file is neither. Raises OSError when it cannot be read, ValueError when it
    is damaged."""
    from varcall.io.index_numba_fns import refs_with_chunks

    with open(path, "rb") as fh:
        raw = fh.read()
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    if data[:4] == b"BAI\x01":
        (n_ref,) = struct.unpack_from("<i", data, 4)
        off, meta, csi = 8, BAI_PSEUDO_BIN, False
    elif data[:4] == b"CSI\x01":
        _, depth, l_aux = struct.unpack_from("<iii", data, 4)
        (n_ref,) = struct.unpack_from("<i", data, 16 + l_aux)
        off, meta, csi = 20 + l_aux, ((1 << ((depth + 1) * 3)) - 1) // 7 + 1, True
    else:
        return None
    if n_ref < 0:
        raise ValueError(f"{path}: damaged index (negative reference count)")
    has, end = refs_with_chunks(np.frombuffer(data, np.uint8), off, n_ref, meta, csi)
    if end < 0:
        raise ValueError(f"{path}: damaged index (ends inside its bins)")
    return has


def read_binning_index(path: str | os.PathLike) -> BinningIndex | None:
    """:func:`load_binning_index`, parsed once per version (mtime, size) of the file while
    the parsed indexes' files fit in :data:`CACHE_BYTES` (least recently used dropped)."""
    global _cache_used
    st = os.stat(path)
    key = (os.fspath(path), st.st_mtime_ns, st.st_size)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    index = load_binning_index(path)
    if st.st_size > CACHE_BYTES:
        return index
    with _cache_lock:
        if key not in _cache:
            _cache[key] = index
            _cache_used += st.st_size
        while _cache_used > CACHE_BYTES:
            (_, _, size), _ = _cache.popitem(last=False)
            _cache_used -= size
    return index


def read_bai(path: str | os.PathLike) -> BinningIndex:
    """The parsed BAI at ``path`` (cached); ValueError when the file is not a BAI."""
    index = read_binning_index(path)
    if index is None or index.kind != "BAI":
        raise ValueError(f"{path}: not a BAI index")
    return index


def read_crai(path: str | os.PathLike) -> tuple[CraiSlice, ...]:
    """The slices of a CRAI (lines with fewer than six fields skipped), in file order.
    Raises OSError when it cannot be read, ValueError when a field is not a number."""
    out = []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            f = line.split()
            if len(f) < 6:
                continue
            out.append(CraiSlice(int(f[0]), int(f[1]), int(f[2]), int(f[5])))
    return tuple(out)


def _reg2bins(beg: int, end: int) -> list[int]:
    """BAI bins that may hold reads overlapping 0-based ``[beg, end)`` (SAM spec 5.3)."""
    end -= 1
    bins = [0]
    for shift, first in ((26, 1), (23, 9), (20, 73), (17, 585), (14, 4681)):
        bins.extend(range(first + (beg >> shift), first + (end >> shift) + 1))
    return bins


def start_offset(index: BinningIndex, tid: int, beg: int, end: int) -> int | None:
    """Virtual offset where the reads of a BAI's reference ``tid`` overlapping ``[beg,
    end)`` (0-based) start: the smallest begin of the chunks that may hold them, each
    clamped to the linear index's offset for ``beg`` (no such read starts before it);
    always a record boundary. None when no read can overlap."""
    if tid >= len(index.references) or end <= beg:
        return None
    ref = index.references[tid]
    linear = ref.linear
    min_off = 0
    if linear.shape[0]:
        min_off = int(linear[min(beg >> BAI_LINEAR_SHIFT, linear.shape[0] - 1)])
    best = None
    for b in _reg2bins(beg, end):
        chunks = ref.chunks(b)
        if chunks is None:
            continue
        for cb, ce in chunks.tolist():
            # no read overlapping [beg, end) starts before min_off (the linear index
            # holds the offset of the first read overlapping the window, a record
            # boundary): a chunk of a large bin that began far earlier is entered there
            cb = max(cb, min_off)
            if ce > min_off and (best is None or cb < best):
                best = cb
    return best
