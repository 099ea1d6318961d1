"""numba kernels of :mod:`varcall.engines.native.annotations`: Fisher's exact test and
GATK's SOR on a strand table, the Mann-Whitney U test as a Z score, and the pass over a
window's observations that gathers, per site, the strand table, the MAPQs and the read
positions of its REF- and ALT-supporting reads (definitions: :mod:`varcall.core.filters`).
Pure computation."""

from __future__ import annotations

import math

import numpy as np

from varcall.core.jit import kernel

__all__ = [
    "fisher_two_sided",
    "fisher_strand",
    "strand_odds_ratio",
    "rank_sum_z",
    "binomial_lower_phred",
    "annotate_sites",
    "N_READ_ANNOTATIONS",
]

#: Columns of :func:`annotate_sites`' output: FS, SOR, MQ, MQM, MQMR, MQRankSum,
#: ReadPosRankSum.
N_READ_ANNOTATIONS = 7
#: A strand table of more than twice this many reads is scaled to this size (GATK's).
_TABLE_TARGET = 200.0
#: Smallest p-value FS reports (GATK's floor): FS <= 3200.
_MIN_P = 1e-320


@kernel
def _log_hyper(x, r1, c1, n):
    """log P(top-left cell = x) of a 2x2 table with row sum r1, column sum c1, total n."""
    return (
        math.lgamma(r1 + 1) - math.lgamma(x + 1) - math.lgamma(r1 - x + 1)
        + math.lgamma(n - r1 + 1) - math.lgamma(c1 - x + 1) - math.lgamma(n - r1 - c1 + x + 1)
        - math.lgamma(n + 1) + math.lgamma(c1 + 1) + math.lgamma(n - c1 + 1)
    )  # fmt: skip


@kernel
def fisher_two_sided(a, b, c, d):
    """Two-sided p-value of Fisher's exact test on the table [[a, b], [c, d]]: the sum of
    the probabilities (hypergeometric, margins fixed) of the tables no more likely than
    the observed one (relative tolerance 1e-7, as R and GATK). Cells are counts."""
    a0, b0, c0, d0 = int(a), int(b), int(c), int(d)
    r1 = a0 + b0
    c1 = a0 + c0
    n = a0 + b0 + c0 + d0
    if n == 0:
        return 1.0
    lo = max(0, c1 - (n - r1))
    hi = min(r1, c1)
    observed = _log_hyper(a0, r1, c1, n)
    p = 0.0
    for x in range(lo, hi + 1):
        lp = _log_hyper(x, r1, c1, n)
        if lp <= observed + 1e-7:
            p += math.exp(lp)
    return min(1.0, p)


@kernel
def fisher_strand(rf, rr, af, ar):
    """FS: ``-10 log10 p`` of :func:`fisher_two_sided` on [[rf, rr], [af, ar]] (REF/ALT
    reads on the forward/reverse strand), the table scaled to 200 reads (each cell
    truncated) when it holds more than 400."""
    n = float(rf + rr + af + ar)
    f = n / _TABLE_TARGET if n > 2 * _TABLE_TARGET else 1.0
    p = fisher_two_sided(int(rf / f), int(rr / f), int(af / f), int(ar / f))
    return max(0.0, -10.0 * math.log10(max(p, _MIN_P)))


@kernel
def strand_odds_ratio(rf, rr, af, ar):
    """SOR (GATK): with every cell + 1 and ``R = (rf ar) / (rr af)``,
    ``ln(R + 1/R) + ln(min(rf, rr) / max(rf, rr)) - ln(min(af, ar) / max(af, ar))``."""
    rf, rr, af, ar = rf + 1.0, rr + 1.0, af + 1.0, ar + 1.0
    ratio = (rf / rr) * (ar / af) + (rr / rf) * (af / ar)
    return math.log(ratio) + math.log(min(rf, rr) / max(rf, rr)) - math.log(min(af, ar) / max(af, ar))


@kernel
def binomial_lower_phred(k, n):
    """``-10 log10 P(X <= k)`` for X ~ Binomial(n, 1/2) (0 when n is 0), summed in log
    space; at most 3200 (p floored at 1e-320, as FS)."""
    if n <= 0 or k >= n:
        return 0.0
    ln2 = math.log(2.0)
    top = -1e300
    terms = np.empty(int(k) + 1)
    for x in range(int(k) + 1):
        terms[x] = math.lgamma(n + 1) - math.lgamma(x + 1) - math.lgamma(n - x + 1) - n * ln2
        top = max(top, terms[x])
    acc = 0.0
    for x in range(int(k) + 1):
        acc += math.exp(terms[x] - top)
    log10_p = (top + math.log(acc)) / math.log(10.0)
    return max(0.0, min(3200.0, -10.0 * log10_p))


@kernel
def rank_sum_z(values, alt):
    """Mann-Whitney U test of ``values[alt]`` against ``values[~alt]`` as a Z score
    (normal approximation with the tie correction, no continuity correction): negative
    when the ALT values rank lower. NaN when either group is empty; 0 when all are tied."""
    n = values.shape[0]
    n1 = 0
    for i in range(n):
        if alt[i]:
            n1 += 1
    n2 = n - n1
    if n1 == 0 or n2 == 0:
        return np.nan
    order = np.argsort(values, kind="mergesort")
    r_alt = 0.0
    ties = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and values[order[j + 1]] == values[order[i]]:
            j += 1
        rank = 0.5 * (i + j) + 1.0  # average rank of the tied run i..j (1-based)
        t = j - i + 1
        ties += t * t * t - t
        for m in range(i, j + 1):
            if alt[order[m]]:
                r_alt += rank
        i = j + 1
    u = r_alt - n1 * (n1 + 1) / 2.0
    var = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1.0)))
    if var <= 0.0:
        return 0.0
    return (u - n1 * n2 / 2.0) / math.sqrt(var)


@kernel
def _read_end_distance(i, qp, qlen, coff, cn, cig_op, cig_len):
    """Distance (bases) from query offset qp of read i to the nearer end of its aligned
    bases (soft clips excluded), at least 0."""
    left = 0
    for c in range(coff[i], coff[i] + cn[i]):
        if cig_op[c] == 4:
            left += cig_len[c]
        elif cig_op[c] != 5:
            break
    right = 0
    for c in range(coff[i] + cn[i] - 1, coff[i] - 1, -1):
        if cig_op[c] == 4:
            right += cig_len[c]
        elif cig_op[c] != 5:
            break
    d = min(qp - left, qlen[i] - right - 1 - qp)
    return max(0, d)


@kernel
def annotate_sites(site, pen, read, qpos, keep, want, flag, mapq, qlen, coff, cn, cig_op,
                   cig_len, out):  # fmt: skip
    """Per site k with ``want[k]``: out[k] = (FS, SOR, MQ, MQM, MQMR, MQRankSum,
    ReadPosRankSum) of
    its observation rows (contiguous per site, as :func:`obs_pass` writes them). A row's
    read supports the kept allele (``keep`` (N, A)) with the smallest penalty when it is
    the only one; REF (0) or ALT (any other); tied reads count for MQ only. Other sites'
    rows are left NaN."""
    n_rows = site.shape[0]
    na = pen.shape[1]
    r0 = 0
    while r0 < n_rows:
        k = site[r0]
        r1 = r0
        while r1 < n_rows and site[r1] == k:
            r1 += 1
        if want[k]:
            m = r1 - r0
            mq_v = np.empty(m)
            pos_v = np.empty(m)
            is_alt = np.zeros(m, np.bool_)
            pos_alt = np.zeros(m, np.bool_)
            used = 0
            n_pos = 0
            sq = 0.0
            t = np.zeros(4)  # REF fwd, REF rev, ALT fwd, ALT rev
            mq_sum = np.zeros(2)  # REF, ALT
            for r in range(r0, r1):
                i = read[r]
                sq += float(mapq[i]) * float(mapq[i])
                best = 1e300
                ib = -1
                n_best = 0
                for a in range(na):
                    if keep[k, a]:
                        if pen[r, a] < best:
                            best = pen[r, a]
                            ib = a
                            n_best = 1
                        elif pen[r, a] == best:
                            n_best += 1
                if n_best != 1:
                    continue
                alt = ib > 0
                rev = (flag[i] & 16) != 0
                t[2 * int(alt) + int(rev)] += 1.0
                mq_sum[int(alt)] += mapq[i]
                mq_v[used] = mapq[i]
                if qpos[r] >= 0:  # reads counted as a spanning deletion have no base here
                    pos_v[n_pos] = _read_end_distance(i, qpos[r], qlen, coff, cn, cig_op,
                                                      cig_len)  # fmt: skip
                    pos_alt[n_pos] = alt
                    n_pos += 1
                is_alt[used] = alt
                used += 1
            out[k, 0] = fisher_strand(t[0], t[1], t[2], t[3])
            out[k, 1] = strand_odds_ratio(t[0], t[1], t[2], t[3])
            out[k, 2] = math.sqrt(sq / m)
            n_alt = t[2] + t[3]
            n_ref = t[0] + t[1]
            out[k, 3] = mq_sum[1] / n_alt if n_alt > 0 else np.nan
            out[k, 4] = mq_sum[0] / n_ref if n_ref > 0 else np.nan
            out[k, 5] = rank_sum_z(mq_v[:used], is_alt[:used])
            out[k, 6] = rank_sum_z(pos_v[:n_pos], pos_alt[:n_pos])
        r0 = r1
