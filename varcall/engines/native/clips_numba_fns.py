"""numba kernels of :mod:`varcall.engines.native.clips`: soft-clipped read tails realigned
to the local reference as an insertion or a deletion at the clip point. Pure computation;
reference positions 0-based, ``ref`` holds base codes from ``ref_lo`` on; query offsets
index a read's bases from its first (non-hard-clipped) base.

A tail is handled in a *local frame*: ``t[0:a)`` are the ``a`` aligned bases next to the
clip (nearest the clip last), ``t[a:n)`` the clipped bases (nearest the clip first), and
``r[j]`` the reference base that ``t[j]`` faces without a gap. A right tail reads the read
forwards, a left tail backwards, so one search serves both.
"""

from __future__ import annotations

import numba
import numpy as np

from varcall.engines.native.evidence_numba_fns import left_normalise

__all__ = ["best_gap", "clip_pass"]

_MATCH = 1
_MISMATCH = -4


@numba.njit(cache=True, nogil=True, inline="always")
def _s(b, r):
    """Score of read base b against reference base r: N in the read 0, a match +1, a
    mismatch (or an N in the reference) -4."""
    if b >= 4:
        return 0
    if r >= 4 or b != r:
        return _MISMATCH
    return _MATCH


@numba.njit(cache=True, nogil=True)
def best_gap(t, r, n, a, max_indel, min_score, gap_open):
    """Best gapped explanation of tail ``t[:n)`` (local frame, ``a`` aligned bases) against
    ``r`` (at least ``n + max_indel`` bases). Hypotheses: a break after ``k`` of the aligned
    bases (``0 <= k <= a``), then a deletion of L reference bases (``t[j]`` faces
    ``r[j + L]`` for ``j >= k``) or an insertion of L read bases (``t[k:k+L)`` inserted,
    ``t[j]`` faces ``r[j - L]`` for ``j >= k + L``), ``1 <= L <= max_indel``. Score: +1 per
    matching base, -4 per mismatch, 0 per N, inserted bases 0. A hypothesis qualifies when
    the bases after its gap score ``>= min_score`` and the whole tail scores more than the
    gapless alignment plus ``gap_open``. Returns (kind, L, k): kind 1 deletion, 2
    insertion, 0 none (nothing qualifies, or two different (kind, L) tie for the best);
    within one (kind, L) the smallest k wins."""
    pre = np.zeros(a + 1, np.int64)
    for j in range(a):
        pre[j + 1] = pre[j] + _s(t[j], r[j])
    gapless = pre[a]
    for j in range(a, n):
        gapless += _s(t[j], r[j])
    best = gapless + gap_open
    kind, best_l, best_k, tie = 0, 0, 0, False
    for ln in range(1, max_indel + 1):
        for ins in range(2):
            # suffix score from index i = k (deletion) or k + L (insertion) on
            lo = ln if ins else 0
            if ins and n - ln < min_score:
                continue
            suf = 0
            for j in range(a + lo, n):
                suf += _s(t[j], r[j - ln] if ins else r[j + ln])
            tot_l, k_l = -(1 << 40), -1
            for k in range(a, -1, -1):
                # suf: score of the bases after the gap for a break after k aligned bases
                if k + lo < n and suf >= min_score:
                    tot = pre[k] + suf
                    if tot >= tot_l:
                        tot_l, k_l = tot, k
                if k > 0:
                    j = k - 1 + lo
                    if j < n:
                        suf += _s(t[j], r[j - ln] if ins else r[j + ln])
            if k_l < 0:
                continue
            if tot_l > best:
                best, kind, best_l, best_k, tie = tot_l, 2 if ins else 1, ln, k_l, False
            elif tot_l == best and kind != 0:
                tie = True
    if tie:
        return 0, 0, 0
    return kind, best_l, best_k


@numba.njit(cache=True, nogil=True)
def _ref_at(ref, ref_lo, p):
    """Reference code at 0-based p, N (4) outside the fetched reference."""
    o = p - ref_lo
    if o < 0 or o >= ref.shape[0]:
        return np.uint8(4)
    return ref[o]


@numba.njit(cache=True, nogil=True)
def _tails(c0, c1, cig_op, cig_len):
    """(left tail bases, first aligned op, right tail bases, last aligned op) of one CIGAR
    ``[c0, c1)``: the query bases before the first / after the last aligned (M, =, X) op.
    A tail is -1 when its ops are not soft clips (S; H outside), or, on the left, also
    insertions: a left tail with a deletion or skip, or a right tail with an insertion
    (already an indel event), is not realigned."""
    first = -1
    last = -1
    for c in range(c0, c1):
        op = cig_op[c]
        if op == 0 or op == 7 or op == 8:
            if first < 0:
                first = c
            last = c
    if first < 0:
        return -1, -1, -1, -1
    left = 0
    for c in range(c0, first):
        op = cig_op[c]
        if op == 4 or op == 1:
            left += cig_len[c]
        elif op != 5:
            left = -1
            break
    right = 0
    for c in range(last + 1, c1):
        op = cig_op[c]
        if op == 4:
            right += cig_len[c]
        elif op != 5:
            right = -1
            break
    return left, first, right, last


@numba.njit(cache=True, nogil=True)
def _block(c_from, step, c_end, cig_op, cig_len):
    """Length of the run of aligned ops from op ``c_from`` in direction ``step`` (+1/-1)."""
    ln = 0
    c = c_from
    while c != c_end and (cig_op[c] == 0 or cig_op[c] == 7 or cig_op[c] == 8):
        ln += cig_len[c]
        c += step
    return ln


@numba.njit(cache=True, nogil=True)
def _record(
    i, insertion, rpos, qpos, ln, block, qo, bases, quals, ref, ref_lo, ws, we, ne,
    ev_pos, ev_len, ev_read, ev_qoff,
):  # fmt: skip
    """Left-normalise the indel found in read i (as a CIGAR walk meets it: ``rpos`` the
    first deleted base / the base after the insertion, ``qpos`` the query offset after the
    deletion / of the first inserted base; not shifted before ``block``) and append it to
    the ev_* arrays at ``ne`` when its anchor lies in ``[ws, we)``, its anchor base is
    unmasked and the shift was not stopped by ``block``. Returns the new event count."""
    if rpos - 1 < block:
        return ne
    anchor, qa, ambiguous = left_normalise(insertion, bases, ref, ref_lo, qo, rpos, qpos, ln, block)
    if ambiguous or not ws <= anchor < we or quals[qo + qa] < 1:
        return ne
    ev_pos[ne] = anchor
    ev_len[ne] = ln if insertion else -ln
    ev_read[ne] = i
    ev_qoff[ne] = qa + 1 if insertion else -1
    return ne + 1


@numba.njit(cache=True, nogil=True)
def clip_pass(
    start, end, qoff, qlen, coff, cn, cig_op, cig_len, bases, quals, ref, ref_lo, ws, we,
    min_clip, anchor_bases, max_indel, min_score, gap_open, reach,
    ev_pos, ev_len, ev_read, ev_qoff,
):  # fmt: skip
    """Realign the soft-clipped tails (>= ``min_clip`` bases) of every read with
    :func:`best_gap` (up to ``anchor_bases`` aligned bases next to the clip may move
    behind the gap) and append the left-normalised indel events anchored in ``[ws, we)``
    to the ev_* arrays (room for two per read; fields as in
    :class:`varcall.engines.native.evidence.Evidence`). A left-tail event is not shifted
    more than ``reach`` bp before the read's first aligned base (nor before position 0):
    every event at POS comes from a read that overlaps ``[POS, POS + reach]``. Returns the
    number of events."""
    ne = 0
    width = 0
    for i in range(start.shape[0]):
        width = max(width, qlen[i])
    t = np.empty(width + anchor_bases + 1, np.uint8)
    r = np.empty(width + anchor_bases + max_indel + 1, np.uint8)
    for i in range(start.shape[0]):
        c0 = coff[i]
        c1 = c0 + cn[i]
        left, first, right, last = _tails(c0, c1, cig_op, cig_len)
        qo = qoff[i]
        if right >= min_clip:
            # forwards from the last `a` aligned bases: t[j] = query qe - a + j
            blen = _block(last, -1, c0 - 1, cig_op, cig_len)
            a = min(anchor_bases, blen - 1)
            e = end[i]
            qe = qo
            for c in range(c0, last + 1):
                op = cig_op[c]
                if op == 0 or op == 1 or op == 4 or op == 7 or op == 8:
                    qe += cig_len[c]
            n = a + right
            for j in range(n):
                t[j] = bases[qe - a + j]
            for j in range(n + max_indel):
                r[j] = _ref_at(ref, ref_lo, e - a + j)
            kind, ln, k = best_gap(t, r, n, a, max_indel, min_score, gap_open)
            if kind:
                b = e - a + k
                qb = qe - qo - a + k
                ne = _record(
                    i, kind == 2, b, qb, ln, e - blen, qo, bases, quals, ref, ref_lo, ws, we,
                    ne, ev_pos, ev_len, ev_read, ev_qoff,
                )  # fmt: skip
        if left >= min_clip:
            # backwards from the first `a` aligned bases: t[j] = query qs + a - 1 - j
            blen = _block(first, 1, c1, cig_op, cig_len)
            a = min(anchor_bases, blen - 1)
            s = start[i]
            qs = left
            n = a + left
            for j in range(n):
                t[j] = bases[qo + qs + a - 1 - j]
            for j in range(n + max_indel):
                r[j] = _ref_at(ref, ref_lo, s + a - 1 - j)
            kind, ln, k = best_gap(t, r, n, a, max_indel, min_score, gap_open)
            if kind:
                b = s + a - k  # first reference base after the gap
                qb = qs + a - k
                lim = max(0, s - reach)
                if kind == 1:  # query 0 faces s - qs - ln
                    rpos, qpos, block = b - ln, qb, max(lim, s - qs - ln)
                else:  # query 0 faces s - qs + ln
                    rpos, qpos, block = b, qb - ln, max(lim, s - qs + ln)
                ne = _record(
                    i, kind == 2, rpos, qpos, ln, block, qo, bases, quals, ref, ref_lo, ws, we,
                    ne, ev_pos, ev_len, ev_read, ev_qoff,
                )  # fmt: skip
    return ne
