"""Local haplotype genotyping (varcall.engines.native.haplotypes): a site's genotype
likelihoods from pairs of local haplotypes over it and its neighbouring candidate sites,
on hand-made per-read penalties; end-to-end cases are in tests/test_local_haplotypes.py."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from varcall.engines.native.haplotypes import (
    MAX_LOCAL_HAPS,
    genotype_sites,
    local_likelihoods,
    observed_sites,
)
from varcall.engines.native.model import THETA, genotype_likelihoods
from varcall.engines.native.observations import Observations
from varcall.engines.native.pileup import HAP_REACH, MAX_ALLELES

A = MAX_ALLELES


def sites_of(pos, n_alleles=None, indel=None, del_end=None):
    """A stand-in for Sites with the columns local haplotype genotyping reads."""
    n = len(pos)
    de = np.zeros((n, A), np.int64)
    for (k, a), e in (del_end or {}).items():
        de[k, a] = e
    return SimpleNamespace(
        pos=np.asarray(pos, np.int64),
        n_alleles=np.asarray(n_alleles or [2] * n, np.int32),
        indel=np.asarray(indel or [False] * n, bool),
        del_end=de,
        theta=np.full(n, THETA),
        n_sites=n,
    )


def observations(rows):
    """rows: (site, sample, read, pen of allele 0, pen of allele 1[, qpos]) sorted by site."""
    pen = np.zeros((len(rows), A))
    for i, r in enumerate(rows):
        pen[i, 0], pen[i, 1] = r[3], r[4]
    return Observations(
        site=np.array([r[0] for r in rows], np.int64),
        sample=np.array([r[1] for r in rows], np.int32),
        pen=pen,
        best=np.where(pen[:, 0] < pen[:, 1], 0, 1).astype(np.int8),
        read=np.array([r[2] for r in rows], np.int64),
        qpos=np.array([r[5] if len(r) > 5 else 10 for r in rows], np.int32),
    )


def keep_all(sites):
    return np.arange(A)[None, :] < sites.n_alleles[:, None]


def ploidy_of(sites, n_samples=1, p=2):
    return np.full((sites.n_sites, n_samples), p, np.int8)


def pl(gl, k, s=0, ng=3):
    x = gl[k, s, :ng]
    return np.round(-10 * (x - x.max()), 6)


def weak_site_and_strong_neighbour(n_alt=5, n_ref=5, weak=3.0, strong=30.0):
    """Site 0 with weak evidence (``weak`` phred) and site 1, 3 bp on, heterozygous with
    strong evidence; every read spans both: the ALT reads of site 1 lean ALT at site 0,
    its REF reads lean REF."""
    rows0, rows1 = [], []
    for r in range(n_alt + n_ref):
        alt = r < n_alt
        rows0.append((0, 0, r, weak if alt else 0.0, 0.0 if alt else weak))
        rows1.append((1, 0, r, strong if alt else 0.0, 0.0 if alt else strong))
    return sites_of([100, 103]), observations(rows0 + rows1)


def test_linked_weak_evidence_is_read_through_the_phase():
    """Reads that carry a strong heterozygous neighbour's ALT and lean ALT at a weak
    site, and the others REF at both: one haplotype with both ALTs, one with none. The
    per-site likelihoods barely prefer het (2.5 phred); the haplotype pairs do by 15."""
    sites, obs = weak_site_and_strong_neighbour()
    keep, ploidy = keep_all(sites), ploidy_of(sites)
    per_site, _, _ = genotype_likelihoods(obs.site, obs.sample, obs.pen, keep, 1, ploidy)
    gl, dp, ad, _ = local_likelihoods(obs, sites, keep, np.array([True, False]), ploidy)
    assert pl(per_site, 0)[[0, 2]] == pytest.approx([2.5, 2.5], abs=0.05)
    assert pl(gl, 0)[1] == 0
    assert pl(gl, 0)[0] > 14 and pl(gl, 0)[2] > 14
    # DP and AD stay the reads at the site
    assert dp[0, 0] == 10 and list(ad[0, 0, :2]) == [5, 5]


def test_reads_at_one_site_only_give_the_per_site_likelihoods():
    """Without a read at both sites the neighbour's term is the same for every genotype:
    PL are the per-site ones."""
    rows = [(0, 0, r, 0.0 if r < 3 else 20.0, 20.0 if r < 3 else 0.0) for r in range(7)]
    rows += [(1, 0, 10 + r, 0.0, 25.0) for r in range(6)]
    sites, obs = sites_of([100, 110]), observations(rows)
    keep, ploidy = keep_all(sites), ploidy_of(sites)
    per_site, _, _ = genotype_likelihoods(obs.site, obs.sample, obs.pen, keep, 1, ploidy)
    gl, *_ = local_likelihoods(obs, sites, keep, np.ones(2, bool), ploidy)
    for k in range(2):
        assert pl(gl, k) == pytest.approx(pl(per_site, k), abs=1e-6)


def test_haploid_sample_takes_one_haplotype():
    sites, obs = weak_site_and_strong_neighbour(n_alt=6, n_ref=0)
    keep, ploidy = keep_all(sites), ploidy_of(sites, p=1)
    gl, *_ = local_likelihoods(obs, sites, keep, np.array([True, False]), ploidy)
    assert pl(gl, 0, ng=2)[0] == pytest.approx(18.0)
    assert pl(gl, 0, ng=2)[1] == 0


def test_no_alt_inside_a_deletion_on_the_same_haplotype():
    """Site 0 deletes [101, 121); site 1 at 110 is an SNV. Reads with the deletion
    (strong) also lean ALT at the SNV (an aligner artefact): a haplotype with both does
    not exist, so a hom-deletion sample stays hom-deletion at the deletion site and the
    SNV's ALT cannot ride on the deletion haplotype."""
    rows0 = [(0, 0, r, 40.0, 0.0) for r in range(10)]
    rows1 = [(1, 0, r, 6.0, 0.0) for r in range(10)]
    sites = sites_of([100, 110], indel=[True, False], del_end={(0, 1): 121})
    obs = observations(rows0 + rows1)
    keep, ploidy = keep_all(sites), ploidy_of(sites)
    gl, *_ = local_likelihoods(obs, sites, keep, np.array([False, True]), ploidy)
    # at the SNV: 1/1 needs two haplotypes without the deletion (10 reads x 40 phred)
    assert pl(gl, 1)[2] > 300
    # and the deletion site never takes an SNV inside its own deletion as a neighbour
    gl2, *_ = local_likelihoods(obs, sites, keep, np.array([True, False]), ploidy)
    per_site, _, _ = genotype_likelihoods(obs.site, obs.sample, obs.pen, keep, 1, ploidy)
    assert pl(gl2, 0) == pytest.approx(pl(per_site, 0))


def test_spanning_deletion_rows_count_once():
    """A read counted at an SNV site as a spanning deletion (qpos -1) holds the same
    evidence as its row at the deletion site: inside one cluster only the latter counts."""
    rows = [(0, 0, r, 30.0, 0.0) for r in range(4)]  # 4 reads with the deletion
    rows += [(1, 0, r, 0.0, 15.0, -1) for r in range(4)]  # their spanning rows
    sites = sites_of([100, 110], indel=[True, False], del_end={(0, 1): 121})
    obs = observations(rows)
    keep, ploidy = keep_all(sites), ploidy_of(sites)
    gl, *_ = local_likelihoods(obs, sites, keep, np.array([False, True]), ploidy)
    # 0/0: both haplotypes with the deletion; 0/1: one without it (each read halves);
    # 1/1: none with it, each read pays its deletion evidence once (30), not 30 + 15
    assert pl(gl, 1)[0] == 0
    assert pl(gl, 1)[1] == pytest.approx(-40 * np.log10(0.5 * (1 + 1e-3)), abs=0.01)
    assert pl(gl, 1)[2] == pytest.approx(120.0, abs=0.01)


def test_artefact_neighbour_cannot_pull_a_genotype():
    """A neighbour whose own reads make it an unlikely variant (posterior ~ 0) costs its
    ALT haplotypes that much: a site's hom-ALT genotype is not turned het to explain
    one sample's odd reads there; a real neighbour (posterior 1) costs nothing."""
    rows0 = [(0, 0, r, 20.0, 0.0) for r in range(6)]  # hom ALT at site 0
    rows1 = [(1, 0, r, 0.0, 8.0) for r in range(6)]
    rows1 += [(1, 0, 10, 12.0, 0.0)]  # one read leaning ALT at site 1, not at site 0
    sites, obs = sites_of([100, 120]), observations(rows0 + rows1)
    keep, ploidy = keep_all(sites), ploidy_of(sites)
    gl, _, _, p_var = local_likelihoods(obs, sites, keep, np.array([True, False]), ploidy)
    assert p_var[1] < 0.01
    assert pl(gl, 0)[2] == 0


def test_cluster_size_is_capped():
    """Six biallelic neighbours within HAP_REACH: the cluster keeps the nearest while the
    haplotypes stay within MAX_LOCAL_HAPS."""
    from varcall.engines.native.haplotypes_numba_fns import cluster_sites

    pos = np.array([0, 10, 20, 30, 31, 40, 50], np.int64)
    n_alleles = np.full(7, 2, np.int64)
    row_lo = np.arange(8, dtype=np.int64)
    out = np.zeros(8, np.int64)
    de = np.zeros((7, A), np.int64)
    indel = np.zeros(7, bool)
    m = cluster_sites(3, pos, n_alleles, indel, de, row_lo, HAP_REACH, MAX_LOCAL_HAPS, 2, out)
    assert 2**m <= MAX_LOCAL_HAPS
    assert list(out[:m]) == [3, 4, 2, 5][:m]
    # at most one indel site per cluster
    indel[[2, 4]] = True
    m = cluster_sites(3, pos, n_alleles, indel, de, row_lo, HAP_REACH, MAX_LOCAL_HAPS, 2, out)
    assert indel[out[:m]].sum() == 1 and 4 in out[:m] and 2 not in out[:m]


def test_observed_sites_are_the_emitted_and_their_neighbours():
    c = 2 * HAP_REACH
    pos = np.array([c - HAP_REACH - 1, c - HAP_REACH, c, c + HAP_REACH, c + HAP_REACH + 1])
    emit = np.array([False, False, True, False, False])
    assert observed_sites(pos, emit).tolist() == [False, True, True, True, False]


def test_genotype_sites_drops_uncarried_alleles_and_redoes():
    """An ALT allele no genotype carries is dropped and the site genotyped again; the
    result is a valid biallelic call."""
    rows = [(0, 0, r, 25.0, 0.0, 0.0) for r in range(8)]
    pen = np.zeros((len(rows), A))
    pen[:, 0], pen[:, 2] = 25.0, 30.0
    obs = Observations(
        site=np.zeros(8, np.int64), sample=np.zeros(8, np.int32), pen=pen,
        best=np.ones(8, np.int8), read=np.arange(8, dtype=np.int64),
        qpos=np.full(8, 5, np.int32),
    )  # fmt: skip
    sites = sites_of([100], n_alleles=[3])
    calls, keep, variant = genotype_sites(obs, sites, np.ones(1, bool), ploidy_of(sites))
    assert variant[0] and keep[0].tolist()[:3] == [True, True, False]
    assert calls.genotype[0, 0].tolist() == [1, 1]
