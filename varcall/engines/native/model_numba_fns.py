"""numba kernels of :mod:`varcall.engines.native.model`: genotype likelihoods from
per-read allele penalties, EM allele frequencies, QUAL and per-sample GT/GQ/PL (the
model is described in that module's docstring). Pure computation; log10 likelihoods,
genotypes in VCF order."""

from __future__ import annotations

import numpy as np

from varcall.core.jit import kernel

__all__ = [
    "gl_kernel",
    "genotype_prior",
    "em_frequencies",
    "log10sumexp",
    "site_quality_kernel",
    "call_kernel",
]


@kernel
def gl_kernel(site, sample, pen, keep, n_sites, n_samples, ploidy, gl, dp, ad):
    """Accumulate per-read likelihoods of the kept alleles into gl (N, S, G) log10, dp
    (N, S) reads and ad (N, S, A) reads with a unique best kept allele; ploidy (N, S) of
    each sample at each site (0: reads counted in dp and ad, no likelihoods)."""
    na_max = pen.shape[1]
    lik = np.zeros(na_max)
    for o in range(site.shape[0]):
        k = site[o]
        s = sample[o]
        # kept alleles, re-indexed; penalties relative to the best kept one
        m = 0
        best = 1e300
        for a in range(na_max):
            if keep[k, a]:
                if pen[o, a] < best:
                    best = pen[o, a]
        n_best = 0
        i_best = -1
        for a in range(na_max):
            if keep[k, a]:
                d = pen[o, a] - best
                lik[m] = 10.0 ** (-d / 10.0)
                if d <= 0.0:
                    n_best += 1
                    i_best = m
                m += 1
        dp[k, s] += 1
        if n_best == 1:
            ad[k, s, i_best] += 1
        if ploidy[k, s] == 1:
            for j in range(m):
                gl[k, s, j] += np.log10(lik[j])
        elif ploidy[k, s] == 2:
            g = 0
            for kk in range(m):
                for j in range(kk + 1):
                    gl[k, s, g] += np.log10(0.5 * (lik[j] + lik[kk]))
                    g += 1


@kernel
def genotype_prior(f, na, ploidy, out):
    """Hardy-Weinberg genotype priors of frequencies f into out (VCF order); returns G."""
    if ploidy == 1:
        for j in range(na):
            out[j] = f[j]
        return na
    g = 0
    for k in range(na):
        for j in range(k + 1):
            out[g] = f[j] * f[j] if j == k else 2.0 * f[j] * f[k]
            g += 1
    return g


@kernel
def _posterior_counts(gl_s, prior, ng, na, ploidy, post, cnt):
    """Add the expected allele copies of one sample (posterior over its ng genotypes of
    ploidy 1 or 2, priors ``prior``) to cnt."""
    mx = -1e300
    for g in range(ng):
        if prior[g] > 0.0:
            v = gl_s[g] + np.log10(prior[g])
            if v > mx:
                mx = v
    tot = 0.0
    for g in range(ng):
        post[g] = prior[g] * 10.0 ** (gl_s[g] - mx) if prior[g] > 0.0 else 0.0
        tot += post[g]
    if ploidy == 1:
        for j in range(na):
            cnt[j] += post[j] / tot
    else:
        g = 0
        for k in range(na):
            for j in range(k + 1):
                cnt[j] += post[g] / tot
                cnt[k] += post[g] / tot
                g += 1


@kernel
def em_frequencies(gl, has_data, na, ploidy, alpha, iterations, tol):
    """EM allele frequencies of one site: gl (S, G) log10, has_data (S,), ploidy (S,) of
    each sample (1 or 2; samples without data or of ploidy 0 are skipped). The M step's
    denominator, the total of the counts, is A alpha + the sum of the samples' ploidies."""
    n_s = gl.shape[0]
    f = np.full(na, 1.0 / na)
    prior1 = np.zeros(na)
    prior2 = np.zeros(na * (na + 1) // 2)
    post = np.zeros(na * (na + 1) // 2)
    n_obs = 0
    for s in range(n_s):
        if has_data[s] and ploidy[s] > 0:
            n_obs += 1
    if n_obs == 0:
        return f
    for _ in range(iterations):
        genotype_prior(f, na, 1, prior1)
        ng2 = genotype_prior(f, na, 2, prior2)
        cnt = np.full(na, alpha)
        for s in range(n_s):
            if not has_data[s] or ploidy[s] == 0:
                continue
            if ploidy[s] == 1:
                _posterior_counts(gl[s], prior1, na, na, 1, post, cnt)
            else:
                _posterior_counts(gl[s], prior2, ng2, na, 2, post, cnt)
        total = 0.0
        for j in range(na):
            total += cnt[j]
        delta = 0.0
        for j in range(na):
            v = cnt[j] / total
            delta = max(delta, abs(v - f[j]))
            f[j] = v
        if delta < tol:
            break
    return f


@kernel
def log10sumexp(x, n):
    """log10 of the sum of 10^x[:n] (-1e300 when all are -1e300)."""
    mx = -1e300
    for i in range(n):
        if x[i] > mx:
            mx = x[i]
    if mx == -1e300:
        return mx
    t = 0.0
    for i in range(n):
        t += 10.0 ** (x[i] - mx)
    return mx + np.log10(t)


@kernel
def site_quality_kernel(gl, has_data, f, na, ploidy, theta):
    """QUAL of one site: gl (S, G) log10, has_data (S,), f (A,) allele frequencies, ploidy
    (S,) of each sample (samples of ploidy 0 take no part)."""
    prior1 = np.zeros(na)
    prior2 = np.zeros(na * (na + 1) // 2)
    genotype_prior(f, na, 1, prior1)
    genotype_prior(f, na, 2, prior2)
    terms = np.zeros(na * (na + 1) // 2)
    l0 = 0.0
    l1 = 0.0
    for s in range(gl.shape[0]):
        if not has_data[s] or ploidy[s] == 0:
            continue
        l0 += gl[s, 0]
        prior = prior1 if ploidy[s] == 1 else prior2
        ng = na if ploidy[s] == 1 else na * (na + 1) // 2
        m = 0
        for g in range(ng):
            if prior[g] > 0.0:
                terms[m] = gl[s, g] + np.log10(prior[g])
                m += 1
        l1 += log10sumexp(terms, m)
    lp0 = np.log10(1.0 - theta) + l0
    lp1 = np.log10(theta) + l1
    both = np.array([lp0, lp1])
    lpost0 = lp0 - log10sumexp(both, 2)
    q = -10.0 * lpost0
    return q if q > 0.0 else 0.0


@kernel
def _sample_call(gl_s, ng, prior, ploidy, pl_s, gt_s):
    """PL into pl_s and GT into gt_s of one sample with reads; returns GQ (0 with GT left
    as it is when no read tells the genotypes apart)."""
    mx = -1e300
    for g in range(ng):
        if gl_s[g] > mx:
            mx = gl_s[g]
    flat = True
    for g in range(ng):
        pl_s[g] = int(np.round(-10.0 * (gl_s[g] - mx)))
        if pl_s[g] != 0:
            flat = False
    if flat:
        # reads, but none tells the genotypes apart: no call, GQ 0
        return 0
    lpost = np.zeros(ng)
    for g in range(ng):
        lpost[g] = gl_s[g] + np.log10(prior[g]) if prior[g] > 0.0 else -1e300
    norm = log10sumexp(lpost, ng)
    ib = 0
    for g in range(1, ng):
        if lpost[g] > lpost[ib]:
            ib = g
    other = 0.0
    for g in range(ng):
        if g != ib and lpost[g] > -1e299:
            other += 10.0 ** (lpost[g] - norm)
    gq = 99
    if other > 0.0:
        gq = min(99, max(0, int(np.round(-10.0 * np.log10(other)))))
    if ploidy == 1:
        gt_s[0] = ib
    else:
        # index -> (j, kk)
        kk = 0
        while (kk + 1) * (kk + 2) // 2 <= ib:
            kk += 1
        gt_s[0] = ib - kk * (kk + 1) // 2
        gt_s[1] = kk
    return gq


@kernel
def call_kernel(gl, dp, n_alleles, ploidy, theta, alpha, iterations, tol, qual, gt, gq, pl):
    """Per site: EM frequencies, QUAL (prior theta[k]) into qual; per sample with reads and a ploidy
    (ploidy (N, S): 1 or 2) PL, GQ and GT into pl, gq, gt (other samples keep the values
    they come with)."""
    n_sites, n_s, _ = gl.shape
    for k in range(n_sites):
        na = n_alleles[k]
        has = dp[k] > 0
        f = em_frequencies(gl[k], has, na, ploidy[k], alpha, iterations, tol)
        qual[k] = site_quality_kernel(gl[k], has, f, na, ploidy[k], theta[k])
        prior1 = np.zeros(na)
        prior2 = np.zeros(na * (na + 1) // 2)
        genotype_prior(f, na, 1, prior1)
        genotype_prior(f, na, 2, prior2)
        for s in range(n_s):
            p = ploidy[k, s]
            if not has[s] or p == 0:
                continue
            if p == 1:
                gq[k, s] = _sample_call(gl[k, s], na, prior1, 1, pl[k, s], gt[k, s])
            else:
                ng = na * (na + 1) // 2
                gq[k, s] = _sample_call(gl[k, s], ng, prior2, 2, pl[k, s], gt[k, s])
