"""numba kernels of :mod:`varcall.engines.native.haplotypes`: genotype likelihoods of a
site from pairs of local haplotypes (the model is described in that module's
docstring). Pure computation; log10 likelihoods, genotypes in VCF order over the site's
kept alleles."""

from __future__ import annotations

import numpy as np

from varcall.core.jit import kernel
from varcall.engines.native.model_numba_fns import em_frequencies, site_quality_kernel

__all__ = [
    "cluster_sites",
    "haplotype_valid",
    "local_haplotype_gl",
    "site_variant_posteriors",
]


@kernel
def site_variant_posteriors(gl, dp, n_alleles, ploidy, theta, alpha, iterations, tol):
    """(N,) each site's posterior probability of being variant, ``1 - 10^(-QUAL/10)``
    with QUAL and its EM frequencies from the site's own genotype likelihoods gl (N, S,
    G) over all n_alleles of each site (:mod:`varcall.engines.native.model`); 0 without
    reads."""
    n = gl.shape[0]
    p_var = np.zeros(n)
    for k in range(n):
        has = dp[k] > 0
        if has.any():
            na = n_alleles[k]
            f = em_frequencies(gl[k], has, na, ploidy[k], alpha, iterations, tol)
            q = site_quality_kernel(gl[k], has, f, na, ploidy[k], theta[k])
            p_var[k] = 1.0 - 10.0 ** (-q / 10.0)
    return p_var


@kernel
def _neighbour_priors(cl, m, na, p_var, lp1, lp2):
    """log10 weight of each neighbour's genotype (x >= 1): 0 for all REF, ``log10 v_j``
    for a genotype with an ALT allele (v_j: the site's posterior probability of being
    variant), haploid into lp1 (m, A), diploid into lp2 (m, A, A)."""
    for x in range(1, m):
        lv = np.log10(max(p_var[cl[x]], 1e-300))
        for a in range(na[x]):
            lp1[x, a] = 0.0 if a == 0 else lv
            for b in range(na[x]):
                lp2[x, a, b] = 0.0 if a == 0 and b == 0 else lv


@kernel
def _removed_by(j, p, pos, del_end):
    """Whether a deletion allele of site j removes reference position p (it lies in
    ``[POS_j + 1, del_end)``)."""
    for a in range(del_end.shape[1]):
        if pos[j] < p < del_end[j, a]:
            return True
    return False


@kernel
def cluster_sites(k, pos, n_alleles, indel, del_end, row_lo, reach, max_haps, na_k, out):
    """The sites genotyped with site k into out (k first, then its neighbours nearest
    first, the left one on a tie): sites within ``reach`` bp of POS with observations and
    an ALT allele, at most one of them with an indel allele (indel (N,) bool), none in a
    stretch a deletion allele of k removes, taken while the product of the alleles
    (``na_k`` at k) stays <= ``max_haps``. Returns the number of sites."""
    n = pos.shape[0]
    out[0] = k
    m = 1
    h = na_k
    has_indel = indel[k]
    left = k - 1
    right = k + 1
    while m < out.shape[0]:
        dl = pos[k] - pos[left] if left >= 0 else reach + 1
        dr = pos[right] - pos[k] if right < n else reach + 1
        if dl > reach and dr > reach:
            break
        if dl <= dr:
            j = left
            left -= 1
        else:
            j = right
            right += 1
        if row_lo[j + 1] == row_lo[j] or n_alleles[j] < 2 or (indel[j] and has_indel):
            continue
        if _removed_by(k, pos[j], pos, del_end):
            continue
        if h * n_alleles[j] <= max_haps:
            out[m] = j
            m += 1
            h *= n_alleles[j]
            has_indel |= indel[j]
    return m


@kernel
def haplotype_valid(cl, m, alle, pos, del_end):
    """Whether the alleles ``alle[:m]`` of the cluster's sites ``cl[:m]`` (original allele
    indexes) fit on one haplotype: no site's ALT allele lies in a stretch another site's
    deletion removes (``[POS + 1, del_end)``)."""
    for x in range(m):
        e = del_end[cl[x], alle[x]]
        if e == 0:
            continue
        for y in range(m):
            if y != x and alle[y] != 0 and pos[cl[x]] < pos[cl[y]] < e:
                return False
    return True


@kernel
def _haplotype_alleles(cl, m, kept_k, na, h, alle):
    """Decode haplotype index h (mixed radix, site k's kept allele first) into the
    original allele indexes ``alle[:m]``."""
    for x in range(m):
        d = h % na[x]
        h //= na[x]
        alle[x] = kept_k[d] if x == 0 else d


@kernel
def _read_logliks(cl, m, kept_k, na, row_lo, o_read, o_pen, skip, valid, alle_of, loc, ll, link):
    """log10 P(read | haplotype) of the cluster's reads into ll (R, H) (local read index
    from loc, filled in first-seen order; returns R): the sum over the cluster's sites a
    read is observed at of ``-pen / 10`` of the haplotype's allele there, site k's
    penalties taken relative to its best kept allele; rows with ``skip`` left out.
    link (R,) int8: bit 1 set for a read observed at k, bit 2 at a neighbour."""
    n_r = 0
    for x in range(m):
        j = cl[x]
        for o in range(row_lo[j], row_lo[j + 1]):
            r = o_read[o]
            if loc[r] < 0:
                loc[r] = n_r
                ll[n_r, :] = 0.0
                link[n_r] = 0
                n_r += 1
            if skip[o]:
                continue
            li = loc[r]
            link[li] |= 1 if x == 0 else 2
            base = 0.0
            if x == 0:
                base = 1e300
                for d in range(na[0]):
                    base = min(base, o_pen[o, kept_k[d]])
            for h in range(valid.shape[0]):
                if valid[h]:
                    ll[li, h] -= (o_pen[o, alle_of[h, x]] - base) / 10.0
    return n_r


@kernel
def _spanning_rows(cl, m, pos, del_end, row_lo, o_qpos, skip):
    """Mark in skip the rows of the cluster's sites that count a read as a spanning
    deletion (qpos -1) when a deletion allele of another cluster site removes that site's
    POS: the read's row at the deletion site holds that evidence already. Returns whether
    site k (cl[0]) is so covered: then its alleles and the neighbours' are coupled even
    without a read at both."""
    k_covered = False
    for x in range(m):
        covered = False
        for y in range(m):
            if y != x and _removed_by(cl[y], pos[cl[x]], pos, del_end):
                covered = True
        for o in range(row_lo[cl[x]], row_lo[cl[x] + 1]):
            skip[o] = covered and o_qpos[o] < 0
        if x == 0:
            k_covered = covered
    return k_covered


@kernel
def _sample_gl(ll, reads, n, valid, alle_of, m, na0, ploidy, p, lp1, lp2, best):
    """Genotype likelihoods of site k for one sample (its local reads ``reads[:n]``)
    into best: diploid, the best over valid haplotype pairs of ``sum_r log10((P(r|h1) +
    P(r|h2)) / 2)`` plus the neighbours' genotype priors (lp2) per genotype of k's
    alleles; haploid, the best haplotype (priors lp1)."""
    best[:] = -1e300
    n_h = valid.shape[0]
    for h1 in range(n_h):
        if not valid[h1]:
            continue
        a1 = h1 % na0
        if ploidy == 1:
            t = 0.0
            for x in range(1, m):
                t += lp1[x, alle_of[h1, x]]
            for i in range(n):
                t += ll[reads[i], h1]
            best[a1] = max(best[a1], t)
            continue
        for h2 in range(h1, n_h):
            if not valid[h2]:
                continue
            a2 = h2 % na0
            t = 0.0
            for x in range(1, m):
                t += lp2[x, alle_of[h1, x], alle_of[h2, x]]
            for i in range(n):
                r = reads[i]
                t += np.log10(0.5 * (p[r, h1] + p[r, h2]))
            g = a1 * (a1 + 1) // 2 + a2 if a2 <= a1 else a2 * (a2 + 1) // 2 + a1
            best[g] = max(best[g], t)


@kernel
def _haplotypes(cl, m, kept_k, na, pos, del_end):
    """(valid (H,) bool, alleles (H, m) original allele indexes) of the cluster's local
    haplotypes, H = prod(na[:m]), site k's kept allele the fastest digit."""
    n_h = 1
    for x in range(m):
        n_h *= na[x]
    valid = np.zeros(n_h, np.bool_)
    alle_of = np.zeros((n_h, m), np.int64)
    alle = np.zeros(m, np.int64)
    for h in range(n_h):
        _haplotype_alleles(cl, m, kept_k, na, h, alle)
        alle_of[h, :] = alle
        valid[h] = haplotype_valid(cl, m, alle, pos, del_end)
    return valid, alle_of


@kernel
def _reads_by_sample(cl, m, row_lo, o_read, o_sample, loc, n_r):
    """(sample (R,), order (R,)) of the cluster's R local reads, order grouping them by
    sample (first-seen order within a sample); clears their entries in loc."""
    r_sample = np.zeros(n_r, np.int64)
    for x in range(m):
        for o in range(row_lo[cl[x]], row_lo[cl[x] + 1]):
            r_sample[loc[o_read[o]]] = o_sample[o]
    for x in range(m):
        for o in range(row_lo[cl[x]], row_lo[cl[x] + 1]):
            loc[o_read[o]] = -1
    return r_sample, np.argsort(r_sample, kind="mergesort")


@kernel
def local_haplotype_gl(
    target, pos, n_alleles, indel, keep, del_end, row_lo, o_sample, o_read, o_pen, o_qpos,
    ploidy, dp, p_var, n_reads, reach, max_haps, gl,
):  # fmt: skip
    """Overwrite gl[k] (N, S, G) of every target site k that has a neighbour (see
    :func:`cluster_sites`) with the local-haplotype genotype likelihoods of its samples
    with reads (dp > 0) and a ploidy, where they differ from the per-site ones by more
    than a constant: a read of the sample is observed at k and a neighbour, or a
    neighbour's deletion removes k's POS. Observations (o_*) are sorted by site, the rows of
    site j at ``row_lo[j]:row_lo[j + 1]``; o_read indexes the window's n_reads reads.
    p_var (N,): each site's own posterior probability of being variant
    (:func:`site_variant_posteriors`), for the neighbours' genotype weights. Returns the
    number of sites so genotyped."""
    n_s, n_a = gl.shape[1], keep.shape[1]
    max_sites = 1
    while (1 << max_sites) <= max_haps:
        max_sites += 1
    cl = np.zeros(max_sites, np.int64)
    na = np.zeros(max_sites, np.int64)
    kept_k = np.zeros(n_a, np.int64)
    loc = np.full(n_reads, -1, np.int64)
    skip = np.zeros(o_read.shape[0], np.bool_)
    lp1 = np.zeros((max_sites, n_a))
    lp2 = np.zeros((max_sites, n_a, n_a))
    best = np.zeros(gl.shape[2])
    n_done = 0
    for k in range(pos.shape[0]):
        if not target[k]:
            continue
        na_k = 0
        for a in range(n_a):
            if keep[k, a]:
                kept_k[na_k] = a
                na_k += 1
        m = cluster_sites(k, pos, n_alleles, indel, del_end, row_lo, reach, max_haps, na_k, cl)
        if m < 2 or na_k < 2:
            continue
        for x in range(m):
            na[x] = na_k if x == 0 else n_alleles[cl[x]]
        valid, alle_of = _haplotypes(cl, m, kept_k, na, pos, del_end)
        _neighbour_priors(cl, m, na, p_var, lp1, lp2)
        n_rows = 0
        for x in range(m):
            n_rows += row_lo[cl[x] + 1] - row_lo[cl[x]]
        ll = np.zeros((n_rows, valid.shape[0]))
        coupled = _spanning_rows(cl, m, pos, del_end, row_lo, o_qpos, skip)
        link = np.zeros(n_rows, np.int8)
        n_r = _read_logliks(
            cl, m, kept_k, na, row_lo, o_read, o_pen, skip, valid, alle_of, loc, ll, link
        )  # fmt: skip
        r_sample, by_sample = _reads_by_sample(cl, m, row_lo, o_read, o_sample, loc, n_r)
        p = np.empty_like(ll)  # P(r | h), filled for the reads of the samples scored
        i0 = 0
        for s in range(n_s):
            i1 = i0
            linked = coupled
            while i1 < n_r and r_sample[by_sample[i1]] == s:
                linked |= link[by_sample[i1]] == 3
                i1 += 1
            # without a read at k and a neighbour (nor a deletion over k) the pairs
            # separate: the per-site likelihoods plus a constant, so they stay
            if linked and dp[k, s] > 0 and ploidy[k, s] > 0:
                for i in range(i0, i1):
                    p[by_sample[i], :] = 10.0 ** ll[by_sample[i], :]
                _sample_gl(
                    ll, by_sample[i0:i1], i1 - i0, valid, alle_of, m, na_k, ploidy[k, s], p,
                    lp1, lp2, best,
                )  # fmt: skip
                ng = na_k if ploidy[k, s] == 1 else na_k * (na_k + 1) // 2
                gl[k, s, :ng] = best[:ng]
            i0 = i1
        n_done += 1
    return n_done
