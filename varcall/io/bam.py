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

from varcall.io.bam_numba_fns import parse_records, placeholder_result, scan_records
from varcall.io.bgzf import BgzfReader
from varcall.io.handles import checkout, find_index_cached
from varcall.io.index import read_bai, start_offset

__all__ = ["fetch_raw"]

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


def fetch_raw(
    bam: str,
    tid: int,
    ws: int,
    we: int,
    *,
    drop_flags: int,
    min_mapq: int,
    default_sample: int,
    rg_to_sample: dict[str, int],
) -> tuple | None:
    """Decode the reads of ``bam`` overlapping ``[ws, we)`` on reference ``tid`` (0-based
    half-open) that pass the filters. Returns the arrays of a ReadBatch (see
    :class:`varcall.engines.native.reads.ReadBatch`, in its field order, ``raw_quals`` excepted) plus the
    index of the first read whose read group is unknown (-1 if none); None when the BAM has
    no ``.bai`` index or holds a CIGAR too long for the record (CG tag): the caller then
    reads the file through pysam."""
    bai = _bai_of(bam)
    if bai is None:
        return None
    voff = start_offset(read_bai(bai), tid, ws, we)
    if voff is None:
        return _empty()
    # the worker's open reader of this file version (varcall.io.handles), seeked anew
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
    buf = np.frombuffer(data, np.uint8)
    ids = list(rg_to_sample)
    width = max([len(x.encode()) for x in ids] + [1])
    rg_ids = np.zeros((len(ids), width), np.uint8)
    rg_len = np.zeros(len(ids), np.int64)
    for i, x in enumerate(ids):
        e = x.encode()
        rg_ids[i, : len(e)] = np.frombuffer(e, np.uint8)
        rg_len[i] = len(e)
    rg_sample = np.array([rg_to_sample[x] for x in ids], np.int32)
    out = parse_records(
        buf, scanned, tid, ws, we, drop_flags, min_mapq, default_sample, rg_ids, rg_len,
        rg_sample, _NIBBLE,
    )  # fmt: skip
    return None if out[-1] == -2 else out


def _open_bgzf(path: str) -> BgzfReader:
    """A reader that keeps its last inflated blocks (:mod:`varcall.io.bgzf`): the next
    region's reads mostly start in the block this one ended in."""
    return BgzfReader(path)


def _empty() -> tuple:
    """An empty batch (no reads, bad read group -1), in the decoder's result layout."""
    return (*placeholder_result()[:-1], -1)
