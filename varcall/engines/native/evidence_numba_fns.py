"""numba kernels of :mod:`varcall.engines.native.evidence`: one walk over every CIGAR of a
window's reads counting bases per position and collecting left-normalised indel events.
Pure computation; positions 0-based, ``ref`` holds base codes from ``ref_lo`` on."""

from __future__ import annotations

import math

import numpy as np

from varcall.core.jit import kernel

__all__ = [
    "ERROR_PROB",
    "count_pass",
    "count_block",
    "left_normalise",
    "poisson_tail",
    "snv_candidates",
]

#: Error probability of a base by its quality, ``10^(-q/10)`` (libm's pow through Python,
#: not numpy's vector code, whose last bit may depend on the CPU).
ERROR_PROB = np.array([10.0 ** (-q / 10.0) for q in range(256)])


@kernel
def count_block(rpos, ln, qb, s, ws, we, bases, quals, min_baseq, counts, cover, err):
    """Count the bases of an aligned block (``ln`` bases from reference ``rpos``, query
    offset ``qb`` in bases/quals) that fall in ``[ws, we)`` into sample ``s``'s columns of
    ``cover`` (unmasked bases) and ``counts`` (quality >= min_baseq, not N); ``err[w]``
    sums the error probabilities ``10^(-q/10)`` of the bases counted at w (all samples)."""
    j0 = max(0, ws - rpos)
    j1 = min(ln, we - rpos)
    for j in range(j0, j1):
        q = quals[qb + j]
        if q >= 1:
            w = rpos + j - ws
            cover[s, w] += 1
            b = bases[qb + j]
            if q >= min_baseq and b < 4:
                counts[s, w, b] += 1
                err[w] += ERROR_PROB[q]


@kernel
def _shiftable(insertion, bases, ref, ref_lo, qo, qa, anchor, ln):
    """An indel of ``ln`` bp after anchor ``anchor`` (read base at query offset ``qa``)
    could sit one base further left: the read's anchor base equals the reference and the
    shifted sequence is the same (inserted read bases; deleted reference bases)."""
    if insertion:
        return bases[qo + qa] == ref[anchor - ref_lo] and bases[qo + qa] == bases[qo + qa + ln]
    return (
        bases[qo + qa] == ref[anchor - ref_lo] and ref[anchor - ref_lo] == ref[anchor + ln - ref_lo]
    )


@kernel
def left_normalise(insertion, bases, ref, ref_lo, qo, rpos, qpos, ln, block):
    """Shift the indel met at reference ``rpos`` / query offset ``qpos`` left while
    equivalent, not before ``block`` (the start of the aligned block before it). Returns
    (anchor, query offset of the anchor base, ambiguous): ambiguous when only the block
    start stopped the shift."""
    anchor = rpos - 1
    qa = qpos - 1
    while anchor > block and _shiftable(insertion, bases, ref, ref_lo, qo, qa, anchor, ln):
        anchor -= 1
        qa -= 1
    # stopped by the block start although the shift could go on: the leftmost placement
    # lies before the read's aligned bases (ambiguous)
    return anchor, qa, _shiftable(insertion, bases, ref, ref_lo, qo, qa, anchor, ln)


@kernel
def count_pass(
    start, qoff, coff, cn, cig_op, cig_len, bases, quals, sample,
    ref, ref_lo, ws, we, min_baseq, max_indel, counts, cover, err,
    ev_pos, ev_len, ev_read, ev_qoff,
):  # fmt: skip
    """Walk every read's CIGAR: base counts into ``counts``/``cover`` (see count_block) and
    indel events (anchor in ``[ws, we)``, anchor base unmasked, not ambiguous, at most
    ``max_indel`` bp) into the ev_* arrays. Returns the number of events."""
    ne = 0
    for i in range(start.shape[0]):
        s = sample[i]
        qo = qoff[i]
        rpos = start[i]
        qpos = 0
        block = -1  # reference start of the aligned block just walked, -1 when none
        for c in range(coff[i], coff[i] + cn[i]):
            op = cig_op[c]
            ln = cig_len[c]
            if op == 0 or op == 7 or op == 8:
                if block < 0:
                    block = rpos
                count_block(
                    rpos, ln, qo + qpos, s, ws, we, bases, quals, min_baseq, counts, cover, err
                )
                rpos += ln
                qpos += ln
            elif op == 1 or op == 2:
                insertion = op == 1
                if block >= 0 and ln <= max_indel:
                    anchor, qa, ambiguous = left_normalise(
                        insertion, bases, ref, ref_lo, qo, rpos, qpos, ln, block
                    )
                    if ws <= anchor < we and quals[qo + qa] >= 1 and not ambiguous:
                        ev_pos[ne] = anchor
                        ev_len[ne] = ln if insertion else -ln
                        ev_read[ne] = i
                        ev_qoff[ne] = qa + 1 if insertion else -1
                        ne += 1
                if insertion:
                    qpos += ln
                else:
                    rpos += ln
                block = -1
            elif op == 3:
                rpos += ln
                block = -1
            elif op == 4:
                qpos += ln
    return ne


@kernel
def poisson_tail(k, lam):
    """``P(X >= k)`` for ``X ~ Poisson(lam)`` (k >= 0)."""
    if k <= 0:
        return 1.0
    term = math.exp(-lam)
    below = term
    for i in range(1, k):
        term *= lam / i
        below += term
    return max(0.0, 1.0 - below)


@kernel
def snv_candidates(counts, depth, err, win_ref, min_fraction, min_reads, max_error_p):
    """SNV candidates of a window: (w, b, total) arrays of the positions ``w`` (offsets
    in the window) and base codes ``b`` whose cohort-pooled support (the reads showing b,
    summed over the samples where they are at least ``min_fraction`` of the sample's
    depth: :func:`varcall.engines.native.sites.pooled_support`) is >= ``min_reads``,
    where the reference base is known and is not b, and which some sample shows in
    ``min_reads`` reads (and ``min_fraction`` of its depth) or whose reads over all samples
    would be sequencing errors with probability below ``max_error_p`` (Poisson, mean
    ``err[w] / 3``: the summed error probabilities of the bases counted at w, a third of
    them towards b); in (w, b) order. ``total``: the reads showing b over all samples.
    ``counts`` (S, W, 4), ``depth`` (S, W), ``err`` (W,), ``win_ref`` (W,) base codes."""
    n_s, w_len = depth.shape
    out_w = np.empty(w_len * 3, np.int64)
    out_b = np.empty(w_len * 3, np.int64)
    out_t = np.empty(w_len * 3, np.int64)
    n = 0
    for w in range(w_len):
        r = win_ref[w]
        if r >= 4:
            continue
        for b in range(4):
            if b == r:
                continue
            pooled = 0
            total = 0
            one_sample = False
            for s in range(n_s):
                c = counts[s, w, b]
                total += c
                if c > 0 and c >= min_fraction * depth[s, w]:
                    pooled += c
                    one_sample = one_sample or c >= min_reads
            if pooled < min_reads:
                continue
            if one_sample or poisson_tail(total, err[w] / 3.0) < max_error_p:
                out_w[n], out_b[n], out_t[n] = w, b, total
                n += 1
    return out_w[:n], out_b[:n], out_t[:n]
