"""numba kernels of :mod:`varcall.engines.native.model`: genotype likelihoods from
per-read allele penalties, EM allele frequencies, QUAL and per-sample GT/GQ/PL (the
model is described in that module's docstring). Pure computation; log10 likelihoods,
genotypes in VCF order."""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "gl_kernel",
    "genotype_prior",
    "em_frequencies",
    "log10sumexp",
    "site_quality_kernel",
    "call_kernel",
]


@numba.njit(cache=True, nogil=True)
def gl_kernel(site, sample, pen, keep, n_sites, n_samples, ploidy, gl, dp, ad):
    """Accumulate per-read likelihoods of the kept alleles into gl (N, S, G) log10, dp
    (N, S) reads and ad (N, S, A) reads with a unique best kept allele."""
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
        if ploidy == 1:
            for j in range(m):
                gl[k, s, j] += np.log10(lik[j])
        else:
            g = 0
            for kk in range(m):
                for j in range(kk + 1):
                    gl[k, s, g] += np.log10(0.5 * (lik[j] + lik[kk]))
                    g += 1


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
def em_frequencies(gl, has_data, na, ploidy, alpha, iterations, tol):
    """EM allele frequencies of one site: gl (S, G) log10, has_data (S,)."""
    n_s = gl.shape[0]
    f = np.full(na, 1.0 / na)
    prior = np.zeros(gl.shape[1])
    post = np.zeros(gl.shape[1])
    n_obs = 0
    for s in range(n_s):
        if has_data[s]:
            n_obs += 1
    if n_obs == 0:
        return f
    for _ in range(iterations):
        ng = genotype_prior(f, na, ploidy, prior)
        cnt = np.full(na, alpha)
        for s in range(n_s):
            if not has_data[s]:
                continue
            mx = -1e300
            for g in range(ng):
                if prior[g] > 0.0:
                    v = gl[s, g] + np.log10(prior[g])
                    if v > mx:
                        mx = v
            tot = 0.0
            for g in range(ng):
                post[g] = prior[g] * 10.0 ** (gl[s, g] - mx) if prior[g] > 0.0 else 0.0
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


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
def site_quality_kernel(gl, has_data, f, na, ploidy, theta):
    """QUAL of one site: gl (S, G) log10, has_data (S,), f (A,) allele frequencies."""
    prior = np.zeros(gl.shape[1])
    ng = genotype_prior(f, na, ploidy, prior)
    terms = np.zeros(gl.shape[1])
    l0 = 0.0
    l1 = 0.0
    for s in range(gl.shape[0]):
        if not has_data[s]:
            continue
        l0 += gl[s, 0]
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


@numba.njit(cache=True, nogil=True)
def call_kernel(gl, dp, n_alleles, ploidy, theta, alpha, iterations, tol, qual, gt, gq, pl):
    """Per site: EM frequencies, QUAL into qual; per sample with reads: PL, GQ and GT
    into pl, gq, gt (samples without reads keep the values they come with)."""
    n_sites, n_s, _ = gl.shape
    for k in range(n_sites):
        na = n_alleles[k]
        ng = na if ploidy == 1 else na * (na + 1) // 2
        has = dp[k] > 0
        f = em_frequencies(gl[k], has, na, ploidy, alpha, iterations, tol)
        qual[k] = site_quality_kernel(gl[k], has, f, na, ploidy, theta)
        prior = np.zeros(ng)
        genotype_prior(f, na, ploidy, prior)
        lpost = np.zeros(ng)
        for s in range(n_s):
            if not has[s]:
                continue
            mx = -1e300
            for g in range(ng):
                if gl[k, s, g] > mx:
                    mx = gl[k, s, g]
            flat = True
            for g in range(ng):
                pl[k, s, g] = int(np.round(-10.0 * (gl[k, s, g] - mx)))
                if pl[k, s, g] != 0:
                    flat = False
            if flat:
                # reads, but none tells the genotypes apart: no call, GQ 0
                gq[k, s] = 0
                continue
            # posterior
            for g in range(ng):
                lpost[g] = gl[k, s, g] + np.log10(prior[g]) if prior[g] > 0.0 else -1e300
            norm = log10sumexp(lpost, ng)
            ib = 0
            for g in range(1, ng):
                if lpost[g] > lpost[ib]:
                    ib = g
            other = 0.0
            for g in range(ng):
                if g != ib and lpost[g] > -1e299:
                    other += 10.0 ** (lpost[g] - norm)
            if other <= 0.0:
                gq[k, s] = 99
            else:
                v = int(np.round(-10.0 * np.log10(other)))
                gq[k, s] = min(99, max(0, v))
            if ploidy == 1:
                gt[k, s, 0] = ib
            else:
                # index -> (j, kk)
                kk = 0
                while (kk + 1) * (kk + 2) // 2 <= ib:
                    kk += 1
                gt[k, s, 0] = ib - kk * (kk + 1) // 2
                gt[k, s, 1] = kk
