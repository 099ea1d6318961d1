"""Columnar BAM decoding: the reads of a region straight into numpy arrays.

The fast path of :func:`varcall.engines.native.reads.fetch_reads` for coordinate-sorted BAM
files with a ``.bai`` index. The index (:mod:`varcall.io.index`, cached per process) gives
the first BGZF virtual offset that can hold a read overlapping the region (SAM spec
section 5: ``reg2bins`` plus the linear index); :class:`varcall.io.bgzf.BgzfReader`
inflates the blocks from there (the worker keeps it open between regions, with its last
blocks: :mod:`varcall.io.handles`); numba kernels (:mod:`varcall.io.bam_numba_fns`) walk the raw records,
apply the read filters, decode bases/qualities/CIGARs and pair overlapping mates -- no
Python object per read.

The result is identical, read for read, to the pysam path (``tests/test_pileup.py`` and,
over htslib's and pysam's own test files, ``tests/test_decoders.py`` check it). Both paths
drop reads whose CIGAR consumes no reference base (``151I``, ``2S40I33S``): they have no
aligned base, so they can give no evidence. Mates are paired by a 64-bit hash of the read name confirmed by comparing the
names byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from varcall.io.bam_numba_fns import fill_records, scan_records, select_records
from varcall.io.bgzf import BgzfReader
from varcall.io.handles import checkout, find_index_cached
from varcall.io.index import read_bai, start_offset

__all__ = ["ReadColumns", "fetch_into"]

# 4-bit BAM base codes "=ACMGRSVTWYHKDBN" -> varcall codes (A=0 C=1 G=2 T=3, else 4)
_NIBBLE = np.full(16, 4, np.uint8)
_NIBBLE[1], _NIBBLE[2], _NIBBLE[4], _NIBBLE[8] = 0, 1, 2, 3



def _bai_of(bam: str) -> Path | None:
    """The ``.bai`` index of a ``.bam`` file (``X.bam.bai`` or ``X.bai``), None if absent
    (a ``.csi`` index or another file name: the caller reads through pysam)."""
    if not bam.endswith(".bam"):
        return None
    index = find_index_cached(bam)
    return index if index is not None and index.suffix == ".bai" else None


#: Columns of a decoded batch: (name, dtype, per read / base / CIGAR op).
_COLUMNS = (
    ("start", np.int64, "r"), ("end", np.int64, "r"), ("mapq", np.int32, "r"),
    ("flag", np.int32, "r"), ("sample", np.int32, "r"), ("qoff", np.int64, "r"),
    ("qlen", np.int32, "r"), ("coff", np.int64, "r"), ("cn", np.int32, "r"),
    ("bases", np.uint8, "q"), ("quals", np.uint8, "q"), ("cig_op", np.uint8, "k"),
    ("cig_len", np.int32, "k"),
)  # fmt: skip


class ReadColumns:
    """The reads of several files decoded into one set of flat arrays (the columns of
    :class:`varcall.engines.native.reads.ReadBatch`), file after file: each file's reads
    are written in place after the previous ones, so the batch needs no concatenation
    (one copy less of every column, and of the peak memory of a window). Room is reserved
    per file from its exact needs; when it runs out the arrays grow to what the files
    read so far predict for all ``n_files`` (a copy of what is filled, rarely more than
    once). ``n``, ``q``, ``k``, ``p``: reads, bases, CIGAR ops and mate pairs filled."""

    def __init__(self, n_files: int) -> None:
        self.n_files = max(1, n_files)
        self.files = 0
        self.n = self.q = self.k = self.p = 0
        self.cap = {"r": 0, "q": 0, "k": 0}
        self.cols = {name: np.empty(0, dt) for name, dt, _ in _COLUMNS}
        self.pairs = np.empty((0, 2), np.int64)

    def reserve(self, n: int, q: int, k: int) -> None:
        """Room for ``n`` more reads, ``q`` bases and ``k`` CIGAR ops (and ``n`` pairs)."""
        need = {"r": self.n + n, "q": self.q + q, "k": self.k + k}
        if all(need[x] <= self.cap[x] for x in need):
            return
        scale = self.n_files / (self.files + 1)  # this file counted: its needs are known
        cap = {x: max(self.cap[x], int(need[x] * scale * 1.1) + 1) for x in need}
        used = {"r": self.n, "q": self.q, "k": self.k}
        for name, dt, axis in _COLUMNS:
            grown = np.empty(cap[axis], dt)
            grown[: used[axis]] = self.cols[name][: used[axis]]
            self.cols[name] = grown
        pairs = np.empty((cap["r"], 2), np.int64)
        pairs[: self.p] = self.pairs[: self.p]
        self.pairs = pairs
        self.cap = cap

    def append(self, cols: dict[str, np.ndarray], pairs: np.ndarray) -> None:
        """Add a decoded batch of one file (``cols`` by :data:`_COLUMNS` name, ``qoff``,
        ``coff`` and ``pairs`` relative to it), e.g. one read through pysam."""
        n, q, k = cols["start"].shape[0], cols["bases"].shape[0], cols["cig_op"].shape[0]
        self.reserve(n, q, k)
        shift = {"qoff": self.q, "coff": self.k}
        at = {"r": self.n, "q": self.q, "k": self.k}
        for name, _, axis in _COLUMNS:
            size = cols[name].shape[0]
            self.cols[name][at[axis] : at[axis] + size] = cols[name] + shift.get(name, 0)
        self.pairs[self.p : self.p + pairs.shape[0]] = pairs + self.n
        self.filled(n, q, k, pairs.shape[0])

    def filled(self, n: int, q: int, k: int, p: int) -> None:
        """Count one more file, whose ``n`` reads, ``q`` bases, ``k`` CIGAR ops and ``p``
        pairs were written after the previous ones."""
        self.n, self.q, self.k, self.p = self.n + n, self.q + q, self.k + k, self.p + p
        self.files += 1

    def arrays(self) -> dict[str, np.ndarray]:
        """The filled part of every column (views), and ``pairs`` (K, 2)."""
        used = {"r": self.n, "q": self.q, "k": self.k}
        out = {name: self.cols[name][: used[axis]] for name, _, axis in _COLUMNS}
        out["pairs"] = self.pairs[: self.p]
        return out


def fetch_into(
    bam: str,
    tid: int,
    ws: int,
    we: int,
    out: ReadColumns,
    *,
    drop_flags: int,
    min_mapq: int,
    default_sample: int,
    rg_to_sample: dict[str, int],
) -> int | None:
    """Decode the reads of ``bam`` overlapping ``[ws, we)`` on reference ``tid`` (0-based
    half-open) that pass the filters into ``out``, after its reads. Returns the index
    (in this file's reads) of the first read whose read group is unknown (-1 if none;
    nothing is added then); None, adding nothing, when the BAM has no ``.bai`` index or
    holds a CIGAR too long for the record (CG tag): the caller then reads the file through
    pysam."""
    bai = _bai_of(bam)
    if bai is None:
        return None
    voff = start_offset(read_bai(bai), tid, ws, we)
    if voff is None:
        out.filled(0, 0, 0, 0)
        return -1
    buf, scanned = _inflate(bam, voff, tid, we)
    rg_ids, rg_len, rg_sample = _read_groups(rg_to_sample)
    rec, r_end, r_sample, n, n_bases, n_ops, bad = select_records(
        buf, scanned, tid, ws, we, drop_flags, min_mapq, default_sample, rg_ids, rg_len,
        rg_sample,
    )  # fmt: skip
    if n < 0:  # a CIGAR longer than 65535 ops, stored in the CG tag: htslib decodes it
        return None
    if bad >= 0:
        return bad
    out.reserve(n, n_bases, n_ops)
    c = out.cols
    pairs = fill_records(
        buf, rec, r_end, n, _NIBBLE, c["start"], c["mapq"], c["flag"], c["qoff"], c["qlen"],
        c["coff"], c["cn"], c["bases"], c["quals"], c["cig_op"], c["cig_len"], out.pairs,
        out.n, out.q, out.k, out.p,
    )  # fmt: skip
    c["end"][out.n : out.n + n] = r_end[:n]
    c["sample"][out.n : out.n + n] = r_sample[:n]
    out.filled(n, n_bases, n_ops, pairs)
    return -1


def _inflate(bam: str, voff: int, tid: int, we: int) -> tuple[np.ndarray, int]:
    """(inflated bytes from virtual offset ``voff`` on, the byte offset where the records
    of ``tid`` before ``we`` end) of ``bam``, through the worker's open reader of this file
    version (varcall.io.handles), seeked anew."""
    # one BGZF block at a time, until the records pass the region: no block after the
    # one holding its last record is inflated (reading ahead in growing chunks inflated
    # 5.3 blocks per stutter-calibration fetch of 100-bp reads at 20x; this, 3.7)
    with checkout(bam, _open_bgzf, "bgzf") as f:
        f.seek(voff)
        data = bytearray()
        scanned = 0
        while True:
            got = f.read_block_into(data)
            view = np.frombuffer(data, np.uint8)
            scanned, done = scan_records(view, scanned, tid, we)
            del view  # release the export so that data can grow
            if done or not got:
                break
    return np.frombuffer(data, np.uint8), scanned


def _read_groups(rg_to_sample: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(read group IDs as padded byte rows, their lengths, their sample columns)."""
    ids = list(rg_to_sample)
    width = max([len(x.encode()) for x in ids] + [1])
    rg_ids = np.zeros((len(ids), width), np.uint8)
    rg_len = np.zeros(len(ids), np.int64)
    for i, x in enumerate(ids):
        e = x.encode()
        rg_ids[i, : len(e)] = np.frombuffer(e, np.uint8)
        rg_len[i] = len(e)
    rg_sample = np.array([rg_to_sample[x] for x in ids], np.int32)
    return rg_ids, rg_len, rg_sample


def _open_bgzf(path: str) -> BgzfReader:
    """A reader that keeps its last inflated blocks (:mod:`varcall.io.bgzf`): the next
    region's reads mostly start in the block this one ended in."""
    return BgzfReader(path)
