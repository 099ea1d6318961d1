"""numba kernels of :mod:`varcall.engines.native.clips`: soft-clipped read tails realigned
to the local reference as an insertion or a deletion at the clip point, and the CIGARs
rewritten with that gap. Pure computation;
reference positions 0-based, ``ref`` holds base codes from ``ref_lo`` on; query offsets
index a read's bases from its first (non-hard-clipped) base.

A tail is handled in a *local frame*: ``t[0:a)`` are the ``a`` aligned bases next to the
clip (nearest the clip last), ``t[a:n)`` the clipped bases (nearest the clip first), and
``r[j]`` the reference base that ``t[j]`` faces without a gap. A right tail reads the read
forwards, a left tail backwards, so one search serves both.
"""

from __future__ import annotations

import numpy as np

from varcall.core.jit import kernel

__all__ = ["best_gap", "in_own_repeat", "realign_pass", "rewrite_cigars"]

_MATCH = 1
_MISMATCH = -4


@kernel(inline="always")
def _s(b, r):
    """Score of read base b against reference base r: N in the read 0, a match +1, a
    mismatch (or an N in the reference) -4."""
    if b >= 4:
        return 0
    if r >= 4 or b != r:
        return _MISMATCH
    return _MATCH


@kernel
def best_gap(t, r, n, a, max_indel, min_score, gap_open, min_margin):
    """Best gapped explanation of tail ``t[:n)`` (local frame, ``a`` aligned bases) against
    ``r`` (at least ``n + max_indel`` bases). Hypotheses: a break after ``k`` of the aligned
    bases (``0 <= k <= a``), then a deletion of L reference bases (``t[j]`` faces
    ``r[j + L]`` for ``j >= k``) or an insertion of L read bases (``t[k:k+L)`` inserted,
    ``t[j]`` faces ``r[j - L]`` for ``j >= k + L``), ``1 <= L <= max_indel``. Score: +1 per
    matching base, -4 per mismatch, 0 per N, inserted bases 0. A hypothesis qualifies when
    the bases after its gap score ``>= min_score`` and the whole tail scores more than the
    gapless alignment plus ``gap_open``. Returns (kind, L, k): kind 1 deletion, 2
    insertion, 0 none (nothing qualifies, or the best scores less than ``min_margin``
    above every hypothesis of another (kind, L) whose gap is followed by ``min_score``);
    within one (kind, L) the smallest k wins."""
    pre = np.zeros(a + 1, np.int64)
    for j in range(a):
        pre[j + 1] = pre[j] + _s(t[j], r[j])
    gapless = pre[a]
    for j in range(a, n):
        gapless += _s(t[j], r[j])
    best = gapless + gap_open
    kind, best_l, best_k = 0, 0, 0
    second = -(1 << 40)  # best score of another (kind, L)
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
                if kind != 0:
                    second = best
                best, kind, best_l, best_k = tot_l, 2 if ins else 1, ln, k_l
            elif tot_l > second:
                second = tot_l
    if kind != 0 and best - second < min_margin:
        return 0, 0, 0
    return kind, best_l, best_k


@kernel
def _ref_at(ref, ref_lo, p):
    """Reference code at 0-based p, N (4) outside the fetched reference."""
    o = p - ref_lo
    if o < 0 or o >= ref.shape[0]:
        return np.uint8(4)
    return ref[o]


@kernel
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


@kernel
def _block(c_from, step, c_end, cig_op, cig_len):
    """Length of the run of aligned ops from op ``c_from`` in direction ``step`` (+1/-1)."""
    ln = 0
    c = c_from
    while c != c_end and (cig_op[c] == 0 or cig_op[c] == 7 or cig_op[c] == 8):
        ln += cig_len[c]
        c += step
    return ln


@kernel
def in_own_repeat(deletion, at, ln, bases, ins_off, ref, ref_lo):
    """Whether an indel lies in a tandem repeat of its own sequence: it slides along the
    reference by at least its length (left plus right) without changing the haplotype.
    A deletion removes reference ``[at, at + ln)``; an insertion puts ``bases[ins_off :
    ins_off + ln)`` before reference position ``at``."""
    slide = 0
    j = 0
    while slide < ln:  # to the right
        if deletion:
            same = _ref_at(ref, ref_lo, at + j) == _ref_at(ref, ref_lo, at + ln + j)
        else:
            same = bases[ins_off + j % ln] == _ref_at(ref, ref_lo, at + j)
        if not same or _ref_at(ref, ref_lo, at + j) >= 4:
            break
        slide += 1
        j += 1
    j = 0
    while slide < ln:  # to the left
        if deletion:
            x = at - 1 - j
            same = _ref_at(ref, ref_lo, x) == _ref_at(ref, ref_lo, x + ln)
        else:
            x = at - 1 - j
            same = bases[ins_off + ln - 1 - j % ln] == _ref_at(ref, ref_lo, x)
        if not same or _ref_at(ref, ref_lo, x) >= 4:
            break
        slide += 1
        j += 1
    return slide >= ln


@kernel
def realign_pass(
    start, end, qoff, qlen, coff, cn, cig_op, cig_len, bases, ref, ref_lo, min_clip,
    anchor_bases, max_indel, min_score, gap_open, min_margin, reach, out,
):  # fmt: skip
    """For every read, realign its soft-clipped tails (>= ``min_clip`` bases) with
    :func:`best_gap` (up to ``anchor_bases`` aligned bases next to a clip may move behind
    the gap). ``out`` (R, 8) int64 receives per read: left kind, left L, left break
    (first reference base after the gap), left query offset there, then the same for the
    right tail (kind 0: not realigned). A realignment is kept only when it moves the read's
    start (end) by at most ``reach`` bp, within the fetched reference, and, when both
    tails of one aligned block move, leaves a base of the block between them."""
    width = 0
    for i in range(start.shape[0]):
        width = max(width, qlen[i])
    t = np.empty(width + anchor_bases + 1, np.uint8)
    r = np.empty(width + anchor_bases + max_indel + 1, np.uint8)
    ref_hi = ref_lo + ref.shape[0]
    for i in range(start.shape[0]):
        out[i, :] = 0
        c0 = coff[i]
        c1 = c0 + cn[i]
        left, first, right, last = _tails(c0, c1, cig_op, cig_len)
        qo = qoff[i]
        s = start[i]
        e = end[i]
        lo_used = s  # reference before this is taken by the left realignment
        if left >= min_clip:
            blen = _block(first, 1, c1, cig_op, cig_len)
            a = min(anchor_bases, blen - 1)
            n = a + left
            for j in range(n):
                t[j] = bases[qo + left + a - 1 - j]
            for j in range(n + max_indel):
                r[j] = _ref_at(ref, ref_lo, s + a - 1 - j)
            kind, ln, k = best_gap(t, r, n, a, max_indel, min_score, gap_open, min_margin)
            if kind:
                b = s + a - k
                qb = left + a - k
                if kind == 1:
                    new_start = s - left - ln
                    rep = in_own_repeat(True, b - ln, ln, bases, 0, ref, ref_lo)
                else:
                    new_start = s - left + ln
                    rep = in_own_repeat(False, b, ln, bases, qo + qb - ln, ref, ref_lo)
                if s - new_start <= reach and new_start >= ref_lo and not rep:
                    out[i, 0] = kind
                    out[i, 1] = ln
                    out[i, 2] = b
                    out[i, 3] = qb
                    lo_used = b
        if right >= min_clip:
            blen = _block(last, -1, c0 - 1, cig_op, cig_len)
            a = min(anchor_bases, blen - 1)
            qe = 0
            for c in range(c0, last + 1):
                op = cig_op[c]
                if op == 0 or op == 1 or op == 4 or op == 7 or op == 8:
                    qe += cig_len[c]
            n = a + right
            for j in range(n):
                t[j] = bases[qo + qe - a + j]
            for j in range(n + max_indel):
                r[j] = _ref_at(ref, ref_lo, e - a + j)
            kind, ln, k = best_gap(t, r, n, a, max_indel, min_score, gap_open, min_margin)
            if kind:
                b = e - a + k
                qb = qe - a + k
                if kind == 1:
                    new_end = e + right + ln
                    rep = in_own_repeat(True, b, ln, bases, 0, ref, ref_lo)
                else:
                    new_end = e + right - ln
                    rep = in_own_repeat(False, b, ln, bases, qo + qb, ref, ref_lo)
                if new_end - e <= reach and new_end <= ref_hi and b > lo_used and not rep:
                    out[i, 4] = kind
                    out[i, 5] = ln
                    out[i, 6] = b
                    out[i, 7] = qb


@kernel
def _put(op, ln, k, new_op, new_len):
    """Append op ``op`` of length ``ln`` at ``k`` (nothing when ``ln`` is 0); new k."""
    if ln <= 0:
        return k
    new_op[k] = op
    new_len[k] = ln
    return k + 1


@kernel
def _put_trimmed(first, last, trim_l, trim_r, cig_op, cig_len, k, new_op, new_len):
    """Append ops ``[first, last]`` (aligned at both ends) with ``trim_l`` bases cut from
    the front and ``trim_r`` from the back (both within the aligned runs there); new k."""
    cut = trim_l
    k0 = k
    for c in range(first, last + 1):
        op = cig_op[c]
        ln = cig_len[c]
        if cut > 0 and (op == 0 or op == 7 or op == 8):
            d = min(cut, ln)
            cut -= d
            ln -= d
        k = _put(op, ln, k, new_op, new_len)
    cut = trim_r
    j = k - 1
    while cut > 0 and j >= k0:
        d = min(cut, new_len[j])
        cut -= d
        new_len[j] -= d
        if new_len[j] == 0:
            k -= 1
        j -= 1
    return k


@kernel
def rewrite_cigars(
    start, end, qlen, coff, cn, cig_op, cig_len, res, new_op, new_len, new_coff, new_cn,
    new_start, new_end,
):  # fmt: skip
    """The CIGARs of the reads with the gaps of ``res`` (see :func:`realign_pass`) in
    place of their realigned soft clips: a left tail becomes ``M`` up to the gap, the gap
    (``D`` or ``I``), and the aligned run continues from the break; a right tail likewise.
    Hard clips stay outside. Writes new_op/new_len (room for ``cn + 4`` ops per read),
    new_coff, new_cn, new_start, new_end; returns the number of ops written."""
    k = 0
    for i in range(start.shape[0]):
        c0 = coff[i]
        c1 = c0 + cn[i]
        new_coff[i] = k
        new_start[i] = start[i]
        new_end[i] = end[i]
        lk, rk = res[i, 0], res[i, 4]
        if lk == 0 and rk == 0:
            for c in range(c0, c1):
                k = _put(cig_op[c], cig_len[c], k, new_op, new_len)
            new_cn[i] = k - new_coff[i]
            continue
        left, first, right, last = _tails(c0, c1, cig_op, cig_len)
        # reference bases cut from the front / back of the aligned ops
        trim_l = res[i, 2] - start[i] if lk else 0
        trim_r = end[i] - res[i, 6] if rk else 0
        lead = c0
        while lead < first and cig_op[lead] == 5:  # leading hard clips
            k = _put(5, cig_len[lead], k, new_op, new_len)
            lead += 1
        if lk:
            ln, qb = res[i, 1], res[i, 3]
            if lk == 1:
                new_start[i] = res[i, 2] - ln - qb
                k = _put(0, qb, k, new_op, new_len)
                k = _put(2, ln, k, new_op, new_len)
            else:
                new_start[i] = res[i, 2] - (qb - ln)
                k = _put(0, qb - ln, k, new_op, new_len)
                k = _put(1, ln, k, new_op, new_len)
        else:
            for c in range(lead, first):
                k = _put(cig_op[c], cig_len[c], k, new_op, new_len)
        k = _put_trimmed(first, last, trim_l, trim_r, cig_op, cig_len, k, new_op, new_len)
        if rk:
            ln, qb = res[i, 5], res[i, 7]
            rest = qlen[i] - qb  # query bases from the break to the read's end
            if rk == 1:
                new_end[i] = res[i, 6] + ln + rest
                k = _put(2, ln, k, new_op, new_len)
                k = _put(0, rest, k, new_op, new_len)
            else:
                new_end[i] = res[i, 6] + rest - ln
                k = _put(1, ln, k, new_op, new_len)
                k = _put(0, rest - ln, k, new_op, new_len)
            for c in range(last + 1, c1):
                if cig_op[c] == 5:
                    k = _put(5, cig_len[c], k, new_op, new_len)
        else:
            for c in range(last + 1, c1):
                k = _put(cig_op[c], cig_len[c], k, new_op, new_len)
        new_cn[i] = k - new_coff[i]
    return k
