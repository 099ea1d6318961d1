"""numba kernels of the BAM decoder (:mod:`varcall.io.bam` drives them): walk the raw,
inflated BAM records of a buffer, select those that pass the read filters and overlap a
region, decode bases / qualities / CIGARs into flat arrays and pair overlapping mates.

Positions are 0-based (as stored in BAM records); regions are half-open ``[ws, we)``.
Buffer offsets are byte offsets into the uint8 array ``buf`` (SAM spec 4.2 record layout:
``block_size`` then the fixed 32-byte part, read name, CIGAR, sequence, qualities, aux).
"""

from __future__ import annotations

import numpy as np

from varcall.core.jit import kernel, numba

__all__ = ["scan_records", "select_records", "fill_records"]


@kernel
def _i32(buf, o):
    return np.int32(
        np.uint32(buf[o])
        | (np.uint32(buf[o + 1]) << 8)
        | (np.uint32(buf[o + 2]) << 16)
        | (np.uint32(buf[o + 3]) << 24)
    )


@kernel
def _u32(buf, o):
    return (
        np.uint32(buf[o])
        | (np.uint32(buf[o + 1]) << 8)
        | (np.uint32(buf[o + 2]) << 16)
        | (np.uint32(buf[o + 3]) << 24)
    )


@kernel
def scan_records(buf, off, tid, we):
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


@kernel
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


@kernel
def _name_hash(buf, o, ln):
    h = np.uint64(14695981039346656037)
    for j in range(ln):
        h = (h ^ np.uint64(buf[o + j])) * np.uint64(1099511628211)
    return h


@kernel
def _same_name(buf, oa, ob, ln):
    for j in range(ln):
        if buf[oa + j] != buf[ob + j]:
            return False
    return True


@kernel
def _count_records(buf, end_off):
    """Number of records in buf[:end_off]."""
    n_max = 0
    off = 0
    while off < end_off:
        n_max += 1
        off += 4 + _i32(buf, off)
    return n_max


@kernel
def _cigar_in_cg_tag(buf, co, n_cig, l_seq):
    """True when the record's CIGAR is the placeholder ``<l_seq>S<n>N`` of a CIGAR longer
    than 65535 ops, stored in the CG tag."""
    if n_cig == 2:
        v0 = _u32(buf, co)
        v1 = _u32(buf, co + 4)
        if v0 & 15 == 4 and np.int64(v0 >> 4) == l_seq and v1 & 15 == 3:
            return True
    return False


@kernel
def _ref_span(buf, co, n_cig):
    """Reference bases covered by the CIGAR at ``co`` (M, D, N, =, X ops)."""
    span = 0
    for c in range(n_cig):
        v = _u32(buf, co + 4 * c)
        op = v & 15
        if op == 0 or op == 2 or op == 3 or op == 7 or op == 8:
            span += np.int64(v >> 4)
    return span


@kernel
def _rg_sample(buf, aux, nxt, rg_ids, rg_len, rg_sample):
    """Sample column of the record's read group (aux data [aux, nxt)), -1 when it has no
    RG or an RG not in ``rg_ids``."""
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
    return s


@kernel
def select_records(
    buf, end_off, tid, ws, we, drop, min_mapq, default_sample, rg_ids, rg_len, rg_sample
):
    """Pass 1: the records of buf[:end_off] that pass the filters and overlap [ws, we);
    records whose CIGAR consumes no reference base (span 0) are left out.
    Returns (record offsets, reference ends, sample columns, count, bases, CIGAR ops, index
    of the first read of an unknown read group or -1); count -1 when a record keeps its
    CIGAR in the CG tag."""
    n_max = _count_records(buf, end_off)
    rec = np.empty(n_max, np.int64)
    r_end = np.empty(n_max, np.int64)
    r_sample = np.empty(n_max, np.int32)
    n = n_bases = n_ops = 0
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
        if _cigar_in_cg_tag(buf, co, n_cig, l_seq):
            return rec, r_end, r_sample, -1, n_bases, n_ops, bad_rg
        span = _ref_span(buf, co, n_cig)
        if span == 0 or pos + span <= ws:
            continue
        s = default_sample
        if s < 0:
            aux = co + 4 * n_cig + (l_seq + 1) // 2 + l_seq
            s = _rg_sample(buf, aux, nxt, rg_ids, rg_len, rg_sample)
            if s < 0:
                bad_rg = n
                break
        rec[n] = b
        r_end[n] = pos + span
        r_sample[n] = s
        n_bases += l_seq
        n_ops += n_cig
        n += 1
    return rec, r_end, r_sample, n, n_bases, n_ops, bad_rg


@kernel
def _decode_read(buf, co, n_cig, l_seq, q, k, bases, quals, cig_op, cig_len, nibble):
    """Copy one record's CIGAR (at ``co``), bases and qualities into the flat arrays at
    op ``k`` and base ``q`` (missing qualities, 0xFF, become 30)."""
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


@kernel
def _take_mate(open_mates, h, buf, rec, nm, ln):
    """The open read whose name (hash ``h``) equals the name at ``nm`` (``ln`` bytes),
    removed from ``open_mates``; -1 when there is none."""
    mate = open_mates[h] if h in open_mates else np.int64(-1)
    if mate >= 0 and _same_name(buf, rec[mate] + 32, nm, ln):
        del open_mates[h]
        return mate
    return np.int64(-1)


@kernel
def fill_records(
    buf, rec, r_end, n, nibble, start, mapq_a, flag_a, qoff, qlen, coff, cn, bases, quals,
    cig_op, cig_len, pairs, r0, q0, k0, p0,
):  # fmt: skip
    """Pass 2: decode the ``n`` selected records (offsets ``rec``) into the batch arrays
    from read ``r0``, base ``q0``, CIGAR op ``k0`` and pair ``p0`` on (the arrays must
    have room; ``qoff``, ``coff`` and ``pairs`` hold indexes into the whole batch), and
    pair overlapping mates (same rules as the pysam path). Returns the pairs written."""
    n_pairs = 0
    open_mates = numba.typed.Dict.empty(key_type=numba.types.uint64, value_type=numba.types.int64)
    q = q0
    k = k0
    for i in range(n):
        b = rec[i]
        pos = _i32(buf, b + 4)
        l_name = np.int64(buf[b + 8])
        n_cig = np.int64(buf[b + 12]) | (np.int64(buf[b + 13]) << 8)
        flag = np.int64(buf[b + 14]) | (np.int64(buf[b + 15]) << 8)
        l_seq = np.int64(_i32(buf, b + 16))
        r = r0 + i
        start[r] = pos
        mapq_a[r] = buf[b + 9]
        flag_a[r] = flag
        qoff[r] = q
        qlen[r] = l_seq
        coff[r] = k
        cn[r] = n_cig
        _decode_read(
            buf, b + 32 + l_name, n_cig, l_seq, q, k, bases, quals, cig_op, cig_len, nibble
        )
        q += l_seq
        k += n_cig
        # overlapping mates: a read whose mate starts inside it (after its start) waits for
        # it; a read whose mate started at or before it pairs with the waiting mate
        if flag & 1 and not flag & 8 and _i32(buf, b + 20) == _i32(buf, b):
            ns = _i32(buf, b + 24)
            nm = b + 32
            ln = l_name - 1
            h = _name_hash(buf, nm, ln)
            if pos < ns < r_end[i]:
                open_mates[h] = np.int64(i)
            elif ns <= pos:
                mate = _take_mate(open_mates, h, buf, rec, nm, ln)
                if mate >= 0:
                    pairs[p0 + n_pairs, 0] = r0 + mate
                    pairs[p0 + n_pairs, 1] = r
                    n_pairs += 1
                elif ns == pos:
                    open_mates[h] = np.int64(i)
    return n_pairs
