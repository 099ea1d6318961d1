"""Genotype likelihoods and joint multi-sample calling.

Input: per (site, read) a vector of allele penalties ``pen[a] = -10 log10 P(r | a) + c_r``
(phred, relative to the read's best allele; ``c_r`` is a per-read constant that cancels
everywhere below) computed by :mod:`varcall.engines.native.observations` from base
qualities, MAPQ and the read's local mismatches. Kernels: :mod:`.model_numba_fns`.

Model
-----
Per read ``r`` and allele ``a``: ``l_r(a) = 10^(-pen_r[a] / 10)``.

Genotype likelihood of sample ``s`` (reads independent given the genotype):

- diploid ``g = {j, k}``: ``log10 L_s(g) = sum_r log10((l_r(j) + l_r(k)) / 2)``;
- haploid ``g = j``: ``log10 L_s(g) = sum_r log10 l_r(j)``.

Ploidy is per sample and site (``ploidy_s``: 0, 1 or 2, from
:mod:`varcall.plan.ploidy`: sex, PARs, contig), so a record can mix diploid and haploid
samples; a sample of ploidy 0 (chrY of a female) takes no part in the frequencies or
QUAL and gets a missing genotype (its reads still count in DP and AD).

Genotypes are indexed in VCF order: diploid ``{j <= k}`` -> ``k (k + 1) / 2 + j``,
haploid ``j`` -> ``j``.

Population prior: allele frequencies ``f`` (Hardy-Weinberg: ``P(j, j) = f_j^2``,
``P(j, k) = 2 f_j f_k``; haploid ``P(j) = f_j``, each sample with its own ploidy) estimated by EM across the samples that
have reads at the site::

    E: P_s(g) = P(g | f) L_s(g) / sum_g' P(g' | f) L_s(g')
    M: f_a = (ALPHA + sum_s sum_g P_s(g) n_a(g)) / (A ALPHA + sum_s ploidy_s)

with ``n_a(g)`` the copies of allele ``a`` in ``g``, ``ALPHA`` a small pseudo-count, from
uniform ``f`` until ``max |df| < EM_TOL`` or ``EM_ITERATIONS`` rounds.

Site quality: with prior probability ``THETA`` that the site is variant (at an indel
site whose alleles are whole units of a repeat tract of ``L`` bp, the run's repeat variant
prior ``pi(L) >= THETA`` instead, :mod:`varcall.engines.native.stutter`),
``M0`` = every sample hom-REF (likelihood ``prod_s L_s(REF)``) and ``M1`` = genotypes drawn
from ``f`` (likelihood ``prod_s sum_g P(g | f) L_s(g)``)::

    QUAL = -10 log10 P(M0 | D)
         = -10 log10 [(1 - THETA) P(D | M0) / ((1 - THETA) P(D | M0) + THETA P(D | M1))]

Per sample: GT = the genotype of maximum posterior ``P_s(g)`` (first in VCF order on a
tie); ``GQ = min(99, round(-10 log10(1 - P_s(GT))))``; ``PL = round(-10 log10 L_s(g))``
normalised so the best genotype has PL 0; DP = reads used at the site; AD = reads whose
best allele is unique. A sample without reads at the site gets no-call GT, missing GQ and
PL, DP 0; a sample whose reads do not tell the genotypes apart (every PL 0) gets no-call
GT and GQ 0. Haploid samples: GT slot 1 FILL, PL one entry per allele then FILL; ploidy 0:
GT (MISSING, FILL), GQ MISSING, PL MISSING per allele then FILL (as a haploid sample
without reads, so that VCF ``.`` reads back the same).
"""


from __future__ import annotations

import dataclasses

import numpy as np

from varcall.core.callset import FILL, MISSING, n_genotypes
from varcall.engines.native.model_numba_fns import (
    call_kernel,
    em_frequencies,
    gl_kernel,
    site_quality_kernel,
)
from varcall.engines.native.stutter import THETA

__all__ = [
    "THETA",
    "genotype_alleles",
    "genotype_index",
    "genotype_likelihoods",
    "estimate_frequencies",
    "site_quality",
    "JointCalls",
    "joint_call",
    "call_likelihoods",
]

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


def _genotype_slots(n_alleles, ploidy: int):
    """Genotypes of ``n_alleles`` alleles (an int or an array of them): the alleles
    themselves when haploid, else the unordered diploid pairs."""
    return n_alleles if ploidy == 1 else n_genotypes(n_alleles)


def _ploidy_array(ploidy: int | np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``ploidy`` (one value, or one per sample / per site and sample) as an int8 array
    of ``shape``; ValueError for values other than 0, 1 and 2."""
    arr = np.broadcast_to(np.asarray(ploidy, np.int64), shape)
    if arr.size and (arr.min() < 0 or arr.max() > 2):
        raise ValueError(f"ploidy {int(arr.max())} is not supported (0, 1 or 2)")
    return np.ascontiguousarray(arr, np.int8)


def genotype_likelihoods(
    site: np.ndarray,
    sample: np.ndarray,
    pen: np.ndarray,
    keep: np.ndarray,
    n_samples: int,
    ploidy: int | np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log10 genotype likelihoods from per-read allele penalties.

    site (O,), sample (O,): the observation's site and sample; pen (O, A) phred penalties;
    keep (N, A) bool: the alleles of each site to use (REF first; re-indexed in order);
    ploidy: one for all, or (N, S) per site and sample (0, 1, 2).
    Returns GL (N, S, G) float64 log10 (G = genotypes of A alleles at the highest ploidy;
    entries beyond a sample's genotype count stay 0), DP (N, S) int32, AD (N, S, A) int32
    on the kept alleles.
    """
    n_sites, a = keep.shape
    ploidy = _ploidy_array(ploidy, (n_sites, n_samples))
    top = 2 if (ploidy == 2).any() else 1
    gl = np.zeros((n_sites, n_samples, _genotype_slots(a, top)))
    dp = np.zeros((n_sites, n_samples), np.int32)
    ad = np.zeros((n_sites, n_samples, a), np.int32)
    gl_kernel(site, sample, pen, keep, n_sites, n_samples, ploidy, gl, dp, ad)
    return gl, dp, ad


def estimate_frequencies(
    gl: np.ndarray, has_data: np.ndarray, n_alleles: int, ploidy: int | np.ndarray
) -> np.ndarray:
    """EM allele frequencies (n_alleles,) of one site from GL (S, G) log10 likelihoods;
    ploidy: one for all samples, or (S,)."""
    return em_frequencies(
        np.ascontiguousarray(gl, dtype=np.float64),
        np.asarray(has_data, bool),
        n_alleles,
        _ploidy_array(ploidy, (gl.shape[0],)),
        ALPHA,
        EM_ITERATIONS,
        EM_TOL,
    )


def site_quality(
    gl: np.ndarray, has_data: np.ndarray, f: np.ndarray, ploidy: int | np.ndarray
) -> float:
    """QUAL = -10 log10 P(all samples hom-REF | data) (module docstring); ploidy: one for
    all samples, or (S,)."""
    return float(
        site_quality_kernel(
            np.ascontiguousarray(gl, dtype=np.float64),
            np.asarray(has_data, bool),
            np.asarray(f, np.float64),
            len(f),
            _ploidy_array(ploidy, (gl.shape[0],)),
            THETA,
        )
    )


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
    ploidy: int | np.ndarray,
    theta: np.ndarray | None = None,
) -> JointCalls:
    """Genotype every site jointly across samples (module docstring).

    site, sample (O,) and pen (O, A) are the per-read observations; keep (N, A) bool the
    alleles used per site (REF, column 0, must be kept). ploidy: 1 or 2 for every sample,
    or (N, S) per site and sample (0, 1 or 2). theta: (N,) each site's prior probability
    of being variant (default THETA; repeat indel sites:
    :meth:`varcall.engines.native.stutter.StutterModel.variant_prior`)."""
    keep = np.ascontiguousarray(keep, bool)
    ploidy = _ploidy_array(ploidy, (keep.shape[0], n_samples))
    gl, dp, ad = genotype_likelihoods(site, sample, pen, keep, n_samples, ploidy)
    return call_likelihoods(gl, dp, ad, keep, ploidy, theta)


def call_likelihoods(
    gl: np.ndarray,
    dp: np.ndarray,
    ad: np.ndarray,
    keep: np.ndarray,
    ploidy: np.ndarray,
    theta: np.ndarray | None = None,
) -> JointCalls:
    """:func:`joint_call` from genotype likelihoods: gl, dp, ad as
    :func:`genotype_likelihoods` returns them (ad is filled in place), keep (N, A) bool,
    ploidy (N, S) int8, theta (N,) or None (THETA)."""
    n_sites, n_samples = dp.shape
    a = keep.shape[1]
    n_alleles = keep.sum(axis=1).astype(np.int32)
    g = gl.shape[2]
    qual = np.zeros(n_sites)
    gt = np.full((n_sites, n_samples, 2), MISSING, np.int8)
    gt[:, :, 1] = np.where(ploidy == 2, MISSING, FILL)
    gq = np.full((n_sites, n_samples), MISSING, np.int32)
    pl = np.full((n_sites, n_samples, g), MISSING, np.int32)
    theta = np.full(n_sites, THETA) if theta is None else np.ascontiguousarray(theta, np.float64)
    call_kernel(gl, dp, n_alleles, ploidy, theta, ALPHA, EM_ITERATIONS, EM_TOL, qual, gt, gq, pl)
    ng = np.where(ploidy == 2, n_genotypes(n_alleles)[:, None], n_alleles[:, None])
    pl[np.arange(g)[None, None, :] >= ng[:, :, None]] = FILL
    ad[np.broadcast_to(np.arange(a)[None, None, :] >= n_alleles[:, None, None], ad.shape)] = FILL
    return JointCalls(quality=qual, genotype=gt, GQ=gq, PL=pl, DP=dp, AD=ad, n_alleles=n_alleles)
