"""Columnar BAM decoding: the reads of a region straight into numpy arrays.

The fast path of :func:`varcall.engines.native.pileup.fetch_reads` for coordinate-sorted BAM files with a
``.bai`` index. The index (parsed here, cached per process) gives the first BGZF virtual
offset that can hold a read overlapping the region (SAM spec section 5: ``reg2bins`` plus
the linear index); htslib's BGZF reader (pysam) inflates the blocks from there; numba
kernels walk the raw records, apply the read filters, decode bases/qualities/CIGARs and
pair overlapping mates -- no Python object per read.

The result is identical, read for read, to the pysam path (``tests/test_pileup.py``
checks it). Mates are paired by a 64-bit hash of the read name confirmed by comparing the
names byte for byte.
"""

from __future__ import annotations

import functools
import os
import struct

import numba
import numpy as np
import pysam.libcbgzf

__all__ = ["bai_path", "read_bai", "start_offset", "fetch_raw"]

# 4-bit BAM base codes "=ACMGRSVTWYHKDBN" -> varcall codes (A=0 C=1 G=2 T=3, else 4)
_NIBBLE = np.full(16, 4, np.uint8)
_NIBBLE[1], _NIBBLE[2], _NIBBLE[4], _NIBBLE[8] = 0, 1, 2, 3

_CHUNK = 1 << 20  # uncompressed bytes read at a time


def bai_path(bam: str) -> str | None:
    """The ``.bai`` index of a BAM file (``X.bam.bai`` or ``X.bai``), None if absent."""
    if not bam.endswith(".bam"):
        return None
    for cand in (bam + ".bai", bam[:-4] + ".bai"):
        if os.path.isfile(cand):
            return cand
    return None


@functools.lru_cache(maxsize=64)
def _read_bai_cached(path: str, mtime: float, size: int) -> list[tuple[dict, np.ndarray]]:
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:4] != b"BAI\x01":
        raise ValueError(f"{path}: not a BAI index")
    (n_ref,) = struct.unpack_from("<i", data, 4)
    off = 8
    refs = []
    for _ in range(n_ref):
        (n_bin,) = struct.unpack_from("<i", data, off)
        off += 4
        bins: dict[int, np.ndarray] = {}
        for _ in range(n_bin):
            b, n_chunk = struct.unpack_from("<Ii", data, off)
            off += 8
            chunks = np.frombuffer(data, np.uint64, 2 * n_chunk, off).reshape(-1, 2)
            off += 16 * n_chunk
            if b != 37450:  # pseudo-bin with metadata
                bins[b] = chunks
        (n_intv,) = struct.unpack_from("<i", data, off)
        off += 4
        linear = np.frombuffer(data, np.uint64, n_intv, off)
        off += 8 * n_intv
        refs.append((bins, linear))
    return refs


def read_bai(path: str) -> list[tuple[dict, np.ndarray]]:
    """Per reference: ({bin: (n, 2) uint64 chunk [begin, end) offsets}, linear index)."""
    st = os.stat(path)
    return _read_bai_cached(path, st.st_mtime, st.st_size)


def _reg2bins(beg: int, end: int) -> list[int]:
    end -= 1
    bins = [0]
    for shift, first in ((26, 1), (23, 9), (20, 73), (17, 585), (14, 4681)):
        bins.extend(range(first + (beg >> shift), first + (end >> shift) + 1))
    return bins


def start_offset(index: list[tuple[dict, np.ndarray]], tid: int, beg: int, end: int) -> int | None:
    """Smallest virtual offset of a chunk that may hold reads overlapping ``[beg, end)``
    (0-based) on reference ``tid``; None when no read can overlap."""
    if tid >= len(index) or end <= beg:
        return None
    bins, linear = index[tid]
    min_off = 0
    if linear.shape[0]:
        min_off = int(linear[min(beg >> 14, linear.shape[0] - 1)])
    best = None
    for b in _reg2bins(beg, end):
        chunks = bins.get(b)
        if chunks is None:
            continue
        for cb, ce in chunks.tolist():
            if ce > min_off and (best is None or cb < best):
                best = cb
    return best


@numba.njit(cache=True, nogil=True)
def _i32(buf, o):
    return np.int32(
        np.uint32(buf[o])
        | (np.uint32(buf[o + 1]) << 8)
        | (np.uint32(buf[o + 2]) << 16)
        | (np.uint32(buf[o + 3]) << 24)
    )


@numba.njit(cache=True, nogil=True)
def _u32(buf, o):
    return (
        np.uint32(buf[o])
        | (np.uint32(buf[o + 1]) << 8)
        | (np.uint32(buf[o + 2]) << 16)
        | (np.uint32(buf[o + 3]) << 24)
    )


@numba.njit(cache=True, nogil=True)
def _scan(buf, off, tid, we):
    """Walk records from ``off``; return (offset reached, done). Done when a record past
    the region (later reference, unmapped tail, or POS >= we) starts at that offset."""
    n = buf.shape[0]
    while True:
        if off + 12 > n:
            return off, False
        bs = _i32(buf, off)
        if off + 4 + bs > n:
            return off, False
        ref_id = _i32(buf, off + 4)
        pos = _i32(buf, off + 8)
        if ref_id < 0 or ref_id > tid or (ref_id == tid and pos >= we):
            return off, True
        off += 4 + bs


@numba.njit(cache=True, nogil=True)
def _aux_rg(buf, o, end):
    """(start, length) of the RG:Z value in the aux data [o, end), (-1, 0) if absent."""
    while o + 3 <= end:
        t0 = buf[o]
        t1 = buf[o + 1]
        ty = buf[o + 2]
        o += 3
        if ty == 90 or ty == 72:  # Z, H
            s = o
            while o < end and buf[o] != 0:
                o += 1
            if t0 == 82 and t1 == 71 and ty == 90:  # RG
                return s, o - s
            o += 1
        elif ty == 65 or ty == 99 or ty == 67:  # A c C
            o += 1
        elif ty == 115 or ty == 83:  # s S
            o += 2
        elif ty == 105 or ty == 73 or ty == 102:  # i I f
            o += 4
        elif ty == 66:  # B
            sub = buf[o]
            cnt = _i32(buf, o + 1)
            o += 5
            if sub == 99 or sub == 67:
                o += cnt
            elif sub == 115 or sub == 83:
                o += 2 * cnt
            else:
                o += 4 * cnt
        else:
            return -1, 0
    return -1, 0


@numba.njit(cache=True, nogil=True)
def _name_hash(buf, o, ln):
    h = np.uint64(14695981039346656037)
    for j in range(ln):
        h = (h ^ np.uint64(buf[o + j])) * np.uint64(1099511628211)
    return h


@numba.njit(cache=True, nogil=True)
def _same_name(buf, oa, ob, ln):
    for j in range(ln):
        if buf[oa + j] != buf[ob + j]:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _parse(
    buf, end_off, tid, ws, we, drop, min_mapq, default_sample, rg_ids, rg_len, rg_sample, nibble
):
    """Decode the records of buf[:end_off] that pass the filters and overlap [ws, we)."""
    # pass 1: select records
    n_max = 0
    off = 0
    while off < end_off:
        n_max += 1
        off += 4 + _i32(buf, off)
    rec = np.empty(n_max, np.int64)
    r_end = np.empty(n_max, np.int64)
    r_sample = np.empty(n_max, np.int32)
    n = 0
    n_bases = 0
    n_ops = 0
    bad_rg = -1
    off = 0
    while off < end_off:
        bs = _i32(buf, off)
        b = off + 4
        nxt = b + bs
        off = nxt
        if _i32(buf, b) != tid:
            continue
        pos = _i32(buf, b + 4)
        if pos >= we:
            continue
        l_name = buf[b + 8]
        mapq = buf[b + 9]
        n_cig = np.int64(buf[b + 12]) | (np.int64(buf[b + 13]) << 8)
        flag = np.int64(buf[b + 14]) | (np.int64(buf[b + 15]) << 8)
        l_seq = _i32(buf, b + 16)
        if flag & drop or mapq < min_mapq or l_seq <= 0 or n_cig == 0:
            continue
        co = b + 32 + l_name
        if n_cig == 2:
            v0 = _u32(buf, co)
            v1 = _u32(buf, co + 4)
            if v0 & 15 == 4 and np.int64(v0 >> 4) == l_seq and v1 & 15 == 3:
                # CIGAR longer than 65535 ops, stored in the CG tag: let htslib decode it
                return _placeholder_result()
        span = 0
        for c in range(n_cig):
            v = _u32(buf, co + 4 * c)
            op = v & 15
            if op == 0 or op == 2 or op == 3 or op == 7 or op == 8:
                span += np.int64(v >> 4)
        if span == 0 or pos + span <= ws:
            continue
        s = default_sample
        if s < 0:
            aux = co + 4 * n_cig + (l_seq + 1) // 2 + l_seq
            ro, rl = _aux_rg(buf, aux, nxt)
            s = -1
            if ro >= 0:
                for g in range(rg_ids.shape[0]):
                    if rg_len[g] == rl:
                        ok = True
                        for j in range(rl):
                            if rg_ids[g, j] != buf[ro + j]:
                                ok = False
                                break
                        if ok:
                            s = rg_sample[g]
                            break
            if s < 0:
                bad_rg = n
                break
        rec[n] = b
        r_end[n] = pos + span
        r_sample[n] = s
        n_bases += l_seq
        n_ops += n_cig
        n += 1
    # pass 2: fill
    start = np.empty(n, np.int64)
    mapq_a = np.empty(n, np.int32)
    flag_a = np.empty(n, np.int32)
    qoff = np.empty(n, np.int64)
    qlen = np.empty(n, np.int32)
    coff = np.empty(n, np.int64)
    cn = np.empty(n, np.int32)
    bases = np.empty(n_bases, np.uint8)
    quals = np.empty(n_bases, np.uint8)
    cig_op = np.empty(n_ops, np.uint8)
    cig_len = np.empty(n_ops, np.int32)
    pairs = np.empty((n, 2), np.int64)
    n_pairs = 0
    open_mates = numba.typed.Dict.empty(key_type=numba.types.uint64, value_type=numba.types.int64)
    q = 0
    k = 0
    for i in range(n):
        b = rec[i]
        pos = _i32(buf, b + 4)
        l_name = np.int64(buf[b + 8])
        n_cig = np.int64(buf[b + 12]) | (np.int64(buf[b + 13]) << 8)
        flag = np.int64(buf[b + 14]) | (np.int64(buf[b + 15]) << 8)
        l_seq = np.int64(_i32(buf, b + 16))
        start[i] = pos
        mapq_a[i] = buf[b + 9]
        flag_a[i] = flag
        qoff[i] = q
        qlen[i] = l_seq
        coff[i] = k
        cn[i] = n_cig
        co = b + 32 + l_name
        for c in range(n_cig):
            v = _u32(buf, co + 4 * c)
            cig_op[k + c] = v & 15
            cig_len[k + c] = v >> 4
        so = co + 4 * n_cig
        for j in range(l_seq):
            byte = np.int64(buf[so + (j >> 1)])
            code = (byte >> 4) if (j & 1) == 0 else (byte & 15)
            bases[q + j] = nibble[code]
        qo = so + (l_seq + 1) // 2
        if buf[qo] == 255:
            for j in range(l_seq):
                quals[q + j] = 30
        else:
            for j in range(l_seq):
                quals[q + j] = buf[qo + j]
        q += l_seq
        k += n_cig
        # overlapping mates (same rules as the pysam path)
        if flag & 1 and not flag & 8 and _i32(buf, b + 20) == _i32(buf, b):
            ns = _i32(buf, b + 24)
            rs = pos
            re_ = r_end[i]
            nm = b + 32
            ln = l_name - 1
            h = _name_hash(buf, nm, ln)
            if rs <= ns < re_:
                if ns == rs:
                    mate = open_mates[h] if h in open_mates else np.int64(-1)
                    if mate >= 0 and _same_name(buf, rec[mate] + 32, nm, ln):
                        del open_mates[h]
                        pairs[n_pairs, 0] = mate
                        pairs[n_pairs, 1] = i
                        n_pairs += 1
                    else:
                        open_mates[h] = np.int64(i)
                else:
                    open_mates[h] = np.int64(i)
            elif ns < rs:
                mate = open_mates[h] if h in open_mates else np.int64(-1)
                if mate >= 0 and _same_name(buf, rec[mate] + 32, nm, ln):
                    del open_mates[h]
                    pairs[n_pairs, 0] = mate
                    pairs[n_pairs, 1] = i
                    n_pairs += 1
    return (
        start, r_end[:n].copy(), mapq_a, flag_a, r_sample[:n].copy(), qoff, qlen, coff, cn,
        bases, quals, cig_op, cig_len, pairs[:n_pairs].copy(), bad_rg,
    )  # fmt: skip


@numba.njit(cache=True, nogil=True)
def _placeholder_result():
    z64 = np.zeros(0, np.int64)
    z32 = np.zeros(0, np.int32)
    u8 = np.zeros(0, np.uint8)
    return (
        z64, z64.copy(), z32, z32.copy(), z32.copy(), z64.copy(), z32.copy(), z64.copy(),
        z32.copy(), u8, u8.copy(), u8.copy(), z32.copy(), np.zeros((0, 2), np.int64), -2,
    )  # fmt: skip


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
    :class:`varcall.engines.native.pileup.ReadBatch`, in its field order, ``raw_quals`` excepted) plus the
    index of the first read whose read group is unknown (-1 if none); None when the BAM has
    no ``.bai`` index or holds a CIGAR too long for the record (CG tag): the caller then
    reads the file through pysam."""
    bai = bai_path(bam)
    if bai is None:
        return None
    voff = start_offset(read_bai(bai), tid, ws, we)
    if voff is None:
        return _empty()
    f = pysam.libcbgzf.BGZFile(bam, "rb")
    try:
        f.seek(voff)
        data = bytearray()
        scanned = 0
        while True:
            chunk = f.read(_CHUNK)
            if chunk:
                data += chunk
            view = np.frombuffer(data, np.uint8)
            scanned, done = _scan(view, scanned, tid, we)
            del view  # release the export so that data can grow
            if done or not chunk:
                break
    finally:
        f.close()
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
    out = _parse(
        buf, scanned, tid, ws, we, drop_flags, min_mapq, default_sample, rg_ids, rg_len,
        rg_sample, _NIBBLE,
    )  # fmt: skip
    return None if out[-1] == -2 else out


def _empty() -> tuple:
    """An empty batch (no reads, bad read group -1), in the decoder's result layout."""
    return (*_placeholder_result()[:-1], -1)
