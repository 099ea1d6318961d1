"""Genotype likelihoods and joint multi-sample calling.

Input: per (site, read) a vector of allele penalties ``pen[a] = -10 log10 P(r | a) + c_r``
(phred, relative to the read's best allele; ``c_r`` is a per-read constant that cancels
everywhere below) computed by :mod:`varcall.engines.native.pileup` from base qualities, MAPQ and the
read's local mismatches.

Model
-----
Per read ``r`` and allele ``a``: ``l_r(a) = 10^(-pen_r[a] / 10)``.

Genotype likelihood of sample ``s`` (reads independent given the genotype):

- diploid ``g = {j, k}``: ``log10 L_s(g) = sum_r log10((l_r(j) + l_r(k)) / 2)``;
- haploid ``g = j``: ``log10 L_s(g) = sum_r log10 l_r(j)``.

Genotypes are indexed in VCF order: diploid ``{j <= k}`` -> ``k (k + 1) / 2 + j``,
haploid ``j`` -> ``j``.

Population prior: allele frequencies ``f`` (Hardy-Weinberg: ``P(j, j) = f_j^2``,
``P(j, k) = 2 f_j f_k``; haploid ``P(j) = f_j``) estimated by EM across the samples that
have reads at the site::

    E: P_s(g) = P(g | f) L_s(g) / sum_g' P(g' | f) L_s(g')
    M: f_a = (ALPHA + sum_s sum_g P_s(g) n_a(g)) / (A ALPHA + sum_s ploidy)

with ``n_a(g)`` the copies of allele ``a`` in ``g``, ``ALPHA`` a small pseudo-count, from
uniform ``f`` until ``max |df| < EM_TOL`` or ``EM_ITERATIONS`` rounds.

Site quality: with prior probability ``THETA`` that the site is variant,
``M0`` = every sample hom-REF (likelihood ``prod_s L_s(REF)``) and ``M1`` = genotypes drawn
from ``f`` (likelihood ``prod_s sum_g P(g | f) L_s(g)``)::

    QUAL = -10 log10 P(M0 | D)
         = -10 log10 [(1 - THETA) P(D | M0) / ((1 - THETA) P(D | M0) + THETA P(D | M1))]

Per sample: GT = the genotype of maximum posterior ``P_s(g)`` (first in VCF order on a
tie); ``GQ = min(99, round(-10 log10(1 - P_s(GT))))``; ``PL = round(-10 log10 L_s(g))``
normalised so the best genotype has PL 0; DP = reads used at the site; AD = reads whose
best allele is unique. A sample without reads at the site gets no-call GT, missing GQ and
PL, DP 0; a sample whose reads do not tell the genotypes apart (every PL 0) gets no-call
GT and GQ 0.
"""

from __future__ import annotations

import dataclasses

import numba
import numpy as np

from varcall.core.callset import FILL, MISSING, n_genotypes

__all__ = [
    "THETA",
    "genotype_alleles",
    "genotype_index",
    "genotype_likelihoods",
    "estimate_frequencies",
    "site_quality",
    "JointCalls",
    "joint_call",
]

#: Prior probability that a candidate site is variant.
THETA = 1e-3
#: Dirichlet pseudo-count on allele frequencies in the EM.
ALPHA = 0.01
EM_ITERATIONS = 50
EM_TOL = 1e-7
GQ_CAP = 99


def genotype_index(j: int, k: int) -> int:
    """VCF index of the unordered diploid genotype {j, k}."""
    if j > k:
        j, k = k, j
    return k * (k + 1) // 2 + j


def genotype_alleles(n_alleles: int, ploidy: int) -> np.ndarray:
    """(G, 2) allele indexes of each genotype in VCF order (haploid: second column FILL)."""
    if ploidy == 1:
        return np.stack([np.arange(n_alleles), np.full(n_alleles, FILL)], axis=1)
    out = [(j, k) for k in range(n_alleles) for j in range(k + 1)]
    return np.array(out, np.int64).reshape(-1, 2)


@numba.njit(cache=True, nogil=True)
def _gl_kernel(site, sample, pen, keep, n_sites, n_samples, ploidy, gl, dp, ad):
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


def genotype_likelihoods(
    site: np.ndarray,
    sample: np.ndarray,
    pen: np.ndarray,
    keep: np.ndarray,
    n_samples: int,
    ploidy: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log10 genotype likelihoods from per-read allele penalties.

    site (O,), sample (O,): the observation's site and sample; pen (O, A) phred penalties;
    keep (N, A) bool: the alleles of each site to use (REF first; re-indexed in order).
    Returns GL (N, S, G) float64 log10 (G = genotypes of A alleles; entries beyond a site's
    allele count stay 0), DP (N, S) int32, AD (N, S, A) int32 on the kept alleles.
    """
    n_sites, a = keep.shape
    g = a if ploidy == 1 else n_genotypes(a)
    gl = np.zeros((n_sites, n_samples, g))
    dp = np.zeros((n_sites, n_samples), np.int32)
    ad = np.zeros((n_sites, n_samples, a), np.int32)
    _gl_kernel(site, sample, pen, keep, n_sites, n_samples, ploidy, gl, dp, ad)
    return gl, dp, ad


@numba.njit(cache=True, nogil=True)
def _prior(f, na, ploidy, out):
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
def _em(gl, has_data, na, ploidy, alpha, iterations, tol):
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
        ng = _prior(f, na, ploidy, prior)
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


def estimate_frequencies(
    gl: np.ndarray, has_data: np.ndarray, n_alleles: int, ploidy: int
) -> np.ndarray:
    """EM allele frequencies (n_alleles,) of one site from GL (S, G) log10 likelihoods."""
    return _em(
        np.ascontiguousarray(gl, dtype=np.float64),
        np.asarray(has_data, bool),
        n_alleles,
        ploidy,
        ALPHA,
        EM_ITERATIONS,
        EM_TOL,
    )


@numba.njit(cache=True, nogil=True)
def _log10sumexp(x, n):
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
def _site_quality(gl, has_data, f, na, ploidy, theta):
    prior = np.zeros(gl.shape[1])
    ng = _prior(f, na, ploidy, prior)
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
        l1 += _log10sumexp(terms, m)
    lp0 = np.log10(1.0 - theta) + l0
    lp1 = np.log10(theta) + l1
    both = np.array([lp0, lp1])
    lpost0 = lp0 - _log10sumexp(both, 2)
    q = -10.0 * lpost0
    return q if q > 0.0 else 0.0


def site_quality(gl: np.ndarray, has_data: np.ndarray, f: np.ndarray, ploidy: int) -> float:
    """QUAL = -10 log10 P(all samples hom-REF | data) (module docstring)."""
    return float(
        _site_quality(
            np.ascontiguousarray(gl, dtype=np.float64),
            np.asarray(has_data, bool),
            np.asarray(f, np.float64),
            len(f),
            ploidy,
            THETA,
        )
    )


@numba.njit(cache=True, nogil=True)
def _call_kernel(gl, dp, n_alleles, ploidy, theta, alpha, iterations, tol, qual, gt, gq, pl):
    n_sites, n_s, _ = gl.shape
    for k in range(n_sites):
        na = n_alleles[k]
        ng = na if ploidy == 1 else na * (na + 1) // 2
        has = dp[k] > 0
        f = _em(gl[k], has, na, ploidy, alpha, iterations, tol)
        qual[k] = _site_quality(gl[k], has, f, na, ploidy, theta)
        prior = np.zeros(ng)
        _prior(f, na, ploidy, prior)
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
            norm = _log10sumexp(lpost, ng)
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


@dataclasses.dataclass
class JointCalls:
    """Joint calls of N sites, S samples; A = allele slots, G = genotype slots.

    quality (N,) float64 QUAL; genotype (N, S, 2) int8 (MISSING no-call, FILL haploid slot);
    GQ (N, S) int32 (MISSING without reads); PL (N, S, G) int32 (MISSING without reads,
    FILL beyond the site's genotypes); DP (N, S) int32; AD (N, S, A) int32 (FILL beyond
    the site's alleles); n_alleles (N,) int32 kept alleles.
    """

    quality: np.ndarray
    genotype: np.ndarray
    GQ: np.ndarray
    PL: np.ndarray
    DP: np.ndarray
    AD: np.ndarray
    n_alleles: np.ndarray


def joint_call(
    site: np.ndarray,
    sample: np.ndarray,
    pen: np.ndarray,
    keep: np.ndarray,
    n_samples: int,
    ploidy: int,
) -> JointCalls:
    """Genotype every site jointly across samples (module docstring).

    site, sample (O,) and pen (O, A) are the per-read observations; keep (N, A) bool the
    alleles used per site (REF, column 0, must be kept). ploidy is 1 or 2."""
    if ploidy not in (1, 2):
        raise ValueError(f"ploidy {ploidy} is not supported (1 or 2)")
    keep = np.ascontiguousarray(keep, bool)
    n_sites, a = keep.shape
    gl, dp, ad = genotype_likelihoods(site, sample, pen, keep, n_samples, ploidy)
    n_alleles = keep.sum(axis=1).astype(np.int32)
    g = gl.shape[2]
    qual = np.zeros(n_sites)
    gt = np.full((n_sites, n_samples, 2), MISSING, np.int8)
    if ploidy == 1:
        gt[:, :, 1] = FILL
    gq = np.full((n_sites, n_samples), MISSING, np.int32)
    pl = np.full((n_sites, n_samples, g), MISSING, np.int32)
    _call_kernel(gl, dp, n_alleles, ploidy, THETA, ALPHA, EM_ITERATIONS, EM_TOL, qual, gt, gq, pl)
    ng = n_alleles if ploidy == 1 else n_alleles * (n_alleles + 1) // 2
    pl[np.broadcast_to(np.arange(g)[None, None, :] >= ng[:, None, None], pl.shape)] = FILL
    ad[np.broadcast_to(np.arange(a)[None, None, :] >= n_alleles[:, None, None], ad.shape)] = FILL
    return JointCalls(quality=qual, genotype=gt, GQ=gq, PL=pl, DP=dp, AD=ad, n_alleles=n_alleles)
