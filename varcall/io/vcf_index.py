"""The tabix index of a VCF joined from BGZF pieces, from the records' places, without
reading the file back.

``tabix -p vcf`` (``pysam.tabix_index``) inflates and parses the whole bgzipped VCF to
index it: for a cohort VCF the one step of the merge that grows with the number of
samples, and it runs in the driver (issue: scale; 20,000 records, 50 -> 500 samples:
index time x9). The encode tasks already know, for every record they write, its contig,
its 0-based start, its end (start + len(REF): what tabix takes for a VCF record without
INFO/END, which varcall never writes) and where its line ends in the piece's inflated
text. :func:`piece_entries` turns those into BGZF virtual offsets once the piece is
written (from the blocks' headers), and :func:`write_tbi` hands them, in file order, to
htslib's own index builder (``hts_idx_init`` / ``hts_idx_push`` / ``hts_idx_finish`` /
``hts_idx_save_as`` of the htslib that pysam ships, through ctypes) exactly as tabix
does: the index is byte for byte the one ``tabix -p vcf`` writes (tests/test_vcf_index.py).

Coordinates: ``beg``/``end`` 0-based half-open. A virtual offset is ``(compressed offset
of a block << 16) | offset inside its inflated data`` (SAM spec 4.1); tabix records for
each line the offset just past it, where a line that ends a block points at the start of
the next block. Only TBI (contigs below 2^29 bp); a CSI index is still built by tabix.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from varcall.io.bgzf import BGZF_MAGIC, block_size

__all__ = ["IndexEntries", "piece_entries", "write_tbi"]

_HTS_FMT_TBI = 2
#: tbx_conf_vcf: preset TBX_VCF, sequence column 1, begin column 2, end column 0 (none),
#: meta character '#', no lines skipped
_TBX_CONF_VCF = (2, 1, 2, 0, ord("#"), 0)


@dataclasses.dataclass
class IndexEntries:
    """One piece's records in file order: ``runs`` (contig, record count) in order,
    ``beg``/``end`` (N,) int64 0-based half-open spans, ``voff`` (N,) uint64 virtual
    offsets just past each record's line, relative to the piece's first byte."""

    runs: list[tuple[str, int]]
    beg: np.ndarray
    end: np.ndarray
    voff: np.ndarray

    @classmethod
    def empty(cls) -> IndexEntries:
        z = np.zeros(0, np.int64)
        return cls([], z, z, np.zeros(0, np.uint64))


def _blocks(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(compressed offsets, inflated offsets) of the start of every BGZF block of
    ``path``, with a last row for the end of the file (its size, the inflated total).
    Raises OSError on a block without a BGZF size field."""
    coff, uoff = [0], [0]
    with open(path, "rb") as fh:
        size = path.stat().st_size
        while coff[-1] < size:
            head = fh.read(12)
            xlen = struct.unpack_from("<H", head, 10)[0] if len(head) == 12 else 0
            bsize = block_size(fh.read(xlen)) if head[:4] == BGZF_MAGIC else None
            if bsize is None:
                raise OSError(f"{path}: not a BGZF block at byte {coff[-1]}")
            fh.seek(coff[-1] + bsize - 4)
            (isize,) = struct.unpack("<I", fh.read(4))
            coff.append(coff[-1] + bsize)
            uoff.append(uoff[-1] + isize)
    return np.array(coff, np.uint64), np.array(uoff, np.int64)


def piece_entries(
    path: str | Path,
    runs: list[tuple[str, int]],
    beg: np.ndarray,
    end: np.ndarray,
    line_ends: np.ndarray,
) -> IndexEntries:
    """The index entries of the finished BGZF piece at ``path`` (no EOF block) whose
    records are ``runs``/``beg``/``end`` and whose lines end at the inflated offsets
    ``line_ends`` (just past each newline) of the piece."""
    coff, uoff = _blocks(Path(path))
    ends = np.asarray(line_ends, np.int64)
    if ends.size and ends[-1] > uoff[-1]:
        raise OSError(f"{path}: holds {uoff[-1]} bytes of text, fewer than its records")
    # the block a line's end falls in; an end on a block boundary is the next block's
    # offset 0 (as htslib reports it), the piece's end the next piece's first block
    i = np.searchsorted(uoff, ends, side="right") - 1
    voff = (coff[i] << np.uint64(16)) | (ends - uoff[i]).astype(np.uint64)
    return IndexEntries(list(runs), np.asarray(beg, np.int64), np.asarray(end, np.int64), voff)


@functools.lru_cache(maxsize=1)
def _htslib() -> ctypes.CDLL:
    """pysam's htslib with the index-building functions' signatures declared."""
    import pysam.libchtslib

    lib = ctypes.CDLL(pysam.libchtslib.__file__)
    u64, i64, c_int, vp = ctypes.c_uint64, ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
    lib.hts_idx_init.argtypes = [c_int, c_int, u64, c_int, c_int]
    lib.hts_idx_init.restype = vp
    lib.hts_idx_push.argtypes = [vp, c_int, i64, i64, u64, c_int]
    lib.hts_idx_push.restype = c_int
    lib.hts_idx_finish.argtypes = [vp, u64]
    lib.hts_idx_finish.restype = c_int
    lib.hts_idx_set_meta.argtypes = [vp, ctypes.c_uint32, ctypes.c_char_p, c_int]
    lib.hts_idx_set_meta.restype = c_int
    lib.hts_idx_save_as.argtypes = [vp, ctypes.c_char_p, ctypes.c_char_p, c_int]
    lib.hts_idx_save_as.restype = c_int
    lib.hts_idx_destroy.argtypes = [vp]
    lib.hts_idx_destroy.restype = None
    return lib


def write_tbi(
    index_path: str | Path,
    header_size: int,
    pieces: Sequence[tuple[int, IndexEntries]],
    data_end: int,
) -> None:
    """Write the TBI index of a bgzipped VCF made of a header of ``header_size`` bytes
    (whole BGZF blocks), then the pieces (``(first byte, entries)``, in file order), then
    the EOF block at byte ``data_end``. Raises OSError when htslib refuses a record
    (records out of order) or cannot write the index."""
    lib = _htslib()
    idx = lib.hts_idx_init(0, _HTS_FMT_TBI, header_size << 16, 14, 5)
    if not idx:
        raise MemoryError("htslib could not start an index")
    try:
        tids: dict[str, int] = {}
        push = lib.hts_idx_push
        for base, e in pieces:
            voff = (e.voff + np.uint64(base << 16)).tolist()
            beg, end = e.beg.tolist(), e.end.tolist()
            k = 0
            for contig, n in e.runs:
                tid = tids.setdefault(contig, len(tids))
                for j in range(k, k + n):
                    if push(idx, tid, beg[j], end[j], voff[j], 1) < 0:
                        raise OSError(f"{index_path}: htslib refused record {j} of {contig}")
                k += n
        if lib.hts_idx_finish(idx, data_end << 16) != 0:
            raise OSError(f"{index_path}: htslib could not finish the index")
        names = b"".join(name.encode() + b"\0" for name in tids)
        meta = struct.pack("<7i", *_TBX_CONF_VCF, len(names)) + names
        if lib.hts_idx_set_meta(idx, len(meta), meta, 1) != 0:
            raise MemoryError("htslib could not store the index's contig names")
        if lib.hts_idx_save_as(idx, None, str(index_path).encode(), _HTS_FMT_TBI) != 0:
            raise OSError(f"{index_path}: cannot write the index")
    finally:
        lib.hts_idx_destroy(idx)
