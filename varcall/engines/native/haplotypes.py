"""Local haplotype genotyping: a site's genotype likelihoods from pairs of local
haplotypes over it and its neighbouring candidate sites. Kernels:
:mod:`.haplotypes_numba_fns`.

Model
-----
Per (site, read) observations hold ``pen_r,j[a]``, the read's phred penalty for allele
``a`` of site ``j`` (:mod:`varcall.engines.native.observations`). For a site ``k`` with
candidate sites within ``HAP_REACH`` bp (:mod:`varcall.engines.native.pileup`), the
*cluster* is ``k`` and its nearest such neighbours (the left one on a tie) that have
reads and an ALT allele, taken while the product of their allele counts, the number of
local haplotypes, stays at most ``MAX_LOCAL_HAPS``; at most one cluster site has an
indel allele (two indel sites' comparisons overlap: their penalties are not independent
evidence), and no neighbour lies in a stretch a deletion of ``k`` removes (reads of the
deletion that start at its anchor base are aligned with a mismatch at the last deleted
base: an SNV candidate that would lend a hom-deletion sample a haplotype without it).

A local haplotype ``h`` picks one allele per cluster site (``k``: one of its kept
alleles; neighbours: any candidate allele). It is *valid* unless an ALT allele lies in
the stretch a deletion of another site removes (the SNV inside the deletion is allele 0
there, the spanning-deletion convention of :mod:`varcall.engines.native.pileup`).

A read's likelihood under ``h`` is the product over the cluster sites it is observed at::

    log10 P(r | h) = - sum_j pen_r,j[h_j] / 10

with ``k``'s penalties relative to its best kept allele. A read counted at an SNV site as
a spanning deletion is left out there when the deletion's site is in the cluster (its
row at the deletion site holds that evidence). Per sample::

    diploid  log10 L_s(h1, h2) = sum_r log10((P(r | h1) + P(r | h2)) / 2) + w(h1, h2)
    haploid  log10 L_s(h)      = sum_r log10 P(r | h) + w(h)

over the sample's reads at any cluster site, where ``w`` adds, per neighbour ``j``, 0
when the haplotypes carry its REF only and ``log10 v_j`` otherwise, ``v_j = 1 -
10^(-QUAL_j / 10)`` the neighbour's own posterior probability of being variant (its
per-site QUAL): a likely variant costs nothing, an artefact cannot lend a sample a
haplotype for free. The genotype likelihood of ``k`` is the best valid pair carrying
that genotype's alleles at ``k``::

    log10 L_s(g = {a, b}) = max over valid (h1, h2) with {h1_k, h2_k} = {a, b}

So reads that carry two linked variants count for one haplotype with both, a sample
cannot be given a third haplotype across a cluster, and weak evidence at a site is read
through its phase with a strong neighbour. Where no read reaches both ``k`` and a
neighbour, the neighbour's term is the same for every genotype of ``k`` and the
likelihoods equal the per-site ones of :mod:`varcall.engines.native.model` up to a
constant (which cancels in PL, GQ and QUAL). Frequencies, QUAL and the genotype calls
then follow that module unchanged. DP and AD stay the reads at ``k``.

Windows never change it: the neighbours of every emitted site are observed in every
window (:func:`observed_sites`), their observations depend only on sites and reads within
``CALL_REACH`` of them, and reads are fetched ``HAP_REACH`` bp beyond that
(``SHADOW_PAD``). Neighbours use all their candidate alleles and ``v_j`` their per-site
likelihoods over all alleles (not the alleles kept after a first round of calls, which
depends on whether that site is emitted in the window).
"""

from __future__ import annotations

import numpy as np

from varcall.engines.native.haplotypes_numba_fns import (
    local_haplotype_gl,
    site_variant_posteriors,
)
from varcall.engines.native.model import (
    ALPHA,
    EM_ITERATIONS,
    EM_TOL,
    JointCalls,
    call_likelihoods,
    genotype_likelihoods,
)
from varcall.engines.native.observations import Observations
from varcall.engines.native.pileup import HAP_REACH, MAX_ALLELES
from varcall.engines.native.sites import Sites

__all__ = ["MAX_LOCAL_HAPS", "genotype_sites", "local_likelihoods", "observed_sites"]

#: Most local haplotypes (the product of the cluster sites' allele counts) per site.
MAX_LOCAL_HAPS = 16


def observed_sites(pos: np.ndarray, emit: np.ndarray) -> np.ndarray:
    """(N,) bool: the sites to observe, the emitted ones and those within HAP_REACH bp of
    one (their neighbours); pos (N,) sorted."""
    epos = pos[emit]
    if epos.size == 0:
        return emit.copy()
    i = np.searchsorted(epos, pos - HAP_REACH, side="left")
    near = np.zeros(pos.shape[0], bool)
    ok = i < epos.size
    near[ok] = epos[i[ok]] <= pos[ok] + HAP_REACH
    return near | emit


def local_likelihoods(
    obs: Observations,
    sites: Sites,
    keep: np.ndarray,
    target: np.ndarray,
    ploidy: np.ndarray,
    p_var: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(GL, DP, AD, p_var) as :func:`varcall.engines.native.model.genotype_likelihoods`,
    with the GL of the ``target`` sites (N,) bool that have neighbours from local
    haplotypes (module docstring); p_var (N,) each site's own posterior probability of
    being variant over all its alleles (computed here when not given, which needs every
    allele kept). ploidy (N, S) int8; keep (N, A) bool."""
    n_s = ploidy.shape[1]
    gl, dp, ad = genotype_likelihoods(obs.site, obs.sample, obs.pen, keep, n_s, ploidy)
    if obs.site.size == 0:
        return gl, dp, ad, p_var
    if p_var is None:
        assert (keep.sum(axis=1) == sites.n_alleles).all(), "p_var needs every allele kept"
        p_var = site_variant_posteriors(
            gl, dp, sites.n_alleles, ploidy, sites.theta, ALPHA, EM_ITERATIONS, EM_TOL
        )
    row_lo = np.searchsorted(obs.site, np.arange(sites.n_sites + 1), side="left")
    n_reads = int(obs.read.max()) + 1
    local_haplotype_gl(
        target, sites.pos, sites.n_alleles.astype(np.int64), sites.indel, keep, sites.del_end, row_lo,
        obs.sample.astype(np.int64), obs.read, obs.pen, obs.qpos, ploidy, dp, p_var,
        n_reads, HAP_REACH, MAX_LOCAL_HAPS, gl,
    )  # fmt: skip
    return gl, dp, ad, p_var


def genotype_sites(
    obs: Observations, sites: Sites, emit: np.ndarray, ploidy: np.ndarray
) -> tuple[JointCalls, np.ndarray, np.ndarray]:
    """(joint calls, kept alleles (N, A) bool, variant sites (N,) bool) of the emitted
    sites (ploidy (N, S) int8 of each sample at each site): every candidate allele
    genotyped, then ALT alleles no genotype carries dropped and the emitted variant sites
    that lost some genotyped once more on the rest."""
    keep = np.arange(MAX_ALLELES)[None, :] < sites.n_alleles[:, None]
    gl, dp, ad, p_var = local_likelihoods(obs, sites, keep, emit, ploidy)
    calls = call_likelihoods(gl, dp, ad, keep, ploidy, sites.theta)
    carried = np.zeros_like(keep)
    gt = calls.genotype.astype(np.int64)
    for slot in range(2):
        g = gt[:, :, slot]
        kk, ss = np.nonzero(g >= 0)
        carried[kk, g[kk, ss]] = True
    carried[:, 0] = True
    variant = carried[:, 1:].any(axis=1) & emit
    new_keep = keep & carried
    redo = variant & (new_keep != keep).any(axis=1)
    if redo.any():
        keep = np.where(redo[:, None], new_keep, keep)
        # only the sites whose alleles changed: the others' inputs are those of round 1
        gl2, dp, ad, _ = local_likelihoods(obs, sites, keep, redo, ploidy, p_var)
        gl2[~redo] = gl[~redo]
        calls = call_likelihoods(gl2, dp, ad, keep, ploidy, sites.theta)
    return calls, keep, variant
