"""Genotype-likelihood and joint-calling math against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from varcall.core.callset import FILL, MISSING
from varcall.engines.native.model import (
    ALPHA,
    THETA,
    estimate_frequencies,
    genotype_alleles,
    genotype_index,
    genotype_likelihoods,
    joint_call,
    site_quality,
)


def obs(rows: list[tuple[int, int, list[float]]], width: int = 3):
    """(site, sample, penalties) rows -> observation arrays."""
    site = np.array([r[0] for r in rows], np.int64)
    sample = np.array([r[1] for r in rows], np.int32)
    pen = np.zeros((len(rows), width))
    for i, r in enumerate(rows):
        pen[i, : len(r[2])] = r[2]
    return site, sample, pen


def test_genotype_order_is_vcf_order():
    assert [genotype_index(j, k) for k in range(3) for j in range(k + 1)] == list(range(6))
    assert genotype_index(2, 0) == genotype_index(0, 2) == 3
    assert genotype_alleles(3, 2).tolist() == [[0, 0], [0, 1], [1, 1], [0, 2], [1, 2], [2, 2]]
    assert genotype_alleles(3, 1).tolist() == [[0, FILL], [1, FILL], [2, FILL]]


def test_diploid_likelihoods_of_one_read():
    # one read: allele 0 fits, allele 1 costs 30 phred (P = 0.001 relative)
    site, sample, pen = obs([(0, 0, [0.0, 30.0])], width=2)
    keep = np.array([[True, True]])
    gl, dp, ad = genotype_likelihoods(site, sample, pen, keep, 1, 2)
    # 0/0: log10((1 + 1)/2) = 0; 0/1: log10((1 + 0.001)/2); 1/1: log10(0.001) = -3
    assert gl[0, 0].tolist() == pytest.approx([0.0, math.log10(0.5005), -3.0])
    assert dp.tolist() == [[1]]
    assert ad.tolist() == [[[1, 0]]]


def test_haploid_likelihoods_and_ties():
    site, sample, pen = obs([(0, 0, [0.0, 20.0]), (0, 0, [0.0, 0.0])], width=2)
    gl, dp, ad = genotype_likelihoods(site, sample, pen, np.array([[True, True]]), 1, 1)
    assert gl[0, 0].tolist() == pytest.approx([0.0, -2.0])
    assert dp.tolist() == [[2]]
    # the tied read supports no allele uniquely
    assert ad.tolist() == [[[1, 0]]]


def test_dropped_allele_penalties_are_renormalised():
    # the read's best allele (2) is dropped: penalties become relative to allele 0
    site, sample, pen = obs([(0, 0, [10.0, 40.0, 0.0])])
    keep = np.array([[True, True, False]])
    gl, _, ad = genotype_likelihoods(site, sample, pen, keep, 1, 2)
    assert gl[0, 0, :3].tolist() == pytest.approx([0.0, math.log10(0.5005), -3.0])
    assert ad[0, 0].tolist() == [1, 0, 0]


def test_em_frequencies_two_opposite_homozygotes():
    # sample 0 clearly 0/0, sample 1 clearly 1/1: f = (2 + ALPHA) / (4 + 2 ALPHA) = 0.5
    gl = np.array([[0.0, -30.0, -60.0], [-60.0, -30.0, 0.0]])
    f = estimate_frequencies(gl, np.array([True, True]), 2, 2)
    assert f.tolist() == pytest.approx([0.5, 0.5], abs=1e-9)
    # a sample without data does not move the estimate
    gl3 = np.vstack([gl, np.zeros(3)])
    f3 = estimate_frequencies(gl3, np.array([True, True, False]), 2, 2)
    assert f3.tolist() == pytest.approx(f.tolist())


def test_em_frequency_one_het_among_three():
    gl = np.array([[0.0, -50.0, -100.0], [-50.0, 0.0, -50.0], [0.0, -50.0, -100.0]])
    f = estimate_frequencies(gl, np.ones(3, bool), 2, 2)
    # expected ALT copies 1 of 6, plus the pseudo-count
    assert f[1] == pytest.approx((1 + ALPHA) / (6 + 2 * ALPHA), abs=1e-6)


def test_site_quality_by_hand():
    # one sample, strongly het: GL = (-10, 0, -10), f = (0.5, 0.5)
    gl = np.array([[-10.0, 0.0, -10.0]])
    f = np.array([0.5, 0.5])
    l0 = -10.0
    l1 = math.log10(0.25 * 1e-10 + 0.5 * 1.0 + 0.25 * 1e-10)
    lp0 = math.log10(1 - THETA) + l0
    lp1 = math.log10(THETA) + l1
    expected = -10 * (lp0 - math.log10(10**lp0 + 10**lp1))
    assert site_quality(gl, np.array([True]), f, 2) == pytest.approx(expected)
    assert expected == pytest.approx(66.99, abs=0.01)
    # hom-ref data: QUAL near 0
    assert (
        site_quality(np.array([[0.0, -10.0, -20.0]]), np.array([True]), np.array([0.99, 0.01]), 2)
        < 1
    )


def test_joint_call_het_and_homref():
    # sample 0: 10 reads for allele 0, 10 for allele 1 (30 phred each); sample 1: 20 ref reads
    rows = [(0, 0, [0.0, 30.0])] * 10 + [(0, 0, [30.0, 0.0])] * 10 + [(0, 1, [0.0, 30.0])] * 20
    site, sample, pen = obs(rows, width=2)
    c = joint_call(site, sample, pen, np.array([[True, True]]), 2, 2)
    assert c.genotype[0].tolist() == [[0, 1], [0, 0]]
    assert c.DP[0].tolist() == [20, 20]
    assert c.AD[0].tolist() == [[10, 10], [20, 0]]
    # PL by hand: het GL = 20 log10(0.5005); 0/0 and 1/1 GL = 10 * -3
    het = 20 * math.log10(0.5005)
    assert c.PL[0, 0].tolist() == [round(-10 * (-30 - het)), 0, round(-10 * (-30 - het))]
    assert c.PL[0, 1, 0] == 0 and c.PL[0, 1, 2] == 600
    # GQ of the hom-ref sample: prior from f (EM: 1 ALT copy of 4), posterior by hand
    f1 = (1 + ALPHA) / (4 + 2 * ALPHA)
    prior = [(1 - f1) ** 2, 2 * f1 * (1 - f1), f1**2]
    like = [1.0, 10**het, 10**-60]
    post = [p * x for p, x in zip(prior, like)]
    other = (post[1] + post[2]) / sum(post)
    assert c.GQ[0].tolist() == [99, round(-10 * math.log10(other))]
    assert c.GQ[0, 1] == 62
    assert c.quality[0] > 100


def test_joint_call_no_data_sample_is_no_call():
    rows = [(0, 0, [0.0, 30.0])] * 5 + [(0, 0, [30.0, 0.0])] * 5
    site, sample, pen = obs(rows, width=2)
    c = joint_call(site, sample, pen, np.array([[True, True]]), 2, 2)
    assert c.genotype[0, 1].tolist() == [MISSING, MISSING]
    assert c.GQ[0, 1] == MISSING
    assert c.PL[0, 1].tolist() == [MISSING, MISSING, MISSING]
    assert c.DP[0, 1] == 0


def test_joint_call_multiallelic_and_fill():
    # sample 0 carries allele 2 (het); allele 1 has no support
    rows = [(0, 0, [0.0, 30.0, 30.0])] * 8 + [(0, 0, [30.0, 30.0, 0.0])] * 8
    site, sample, pen = obs(rows)
    c = joint_call(site, sample, pen, np.array([[True, True, True]]), 1, 2)
    assert c.genotype[0, 0].tolist() == [0, 2]
    assert c.PL[0, 0, 3] == 0  # genotype {0, 2} has VCF index 3
    # keeping only REF and allele 2: genotype re-indexed to (0, 1), padding FILL
    c2 = joint_call(site, sample, pen, np.array([[True, False, True]]), 1, 2)
    assert c2.genotype[0, 0].tolist() == [0, 1]
    assert c2.n_alleles.tolist() == [2]
    assert c2.AD[0, 0].tolist() == [8, 8, FILL]
    assert c2.PL[0, 0, 3:].tolist() == [FILL] * 3


def test_joint_call_haploid():
    rows = [(0, 0, [30.0, 0.0])] * 6 + [(0, 1, [0.0, 30.0])] * 6
    site, sample, pen = obs(rows, width=3)
    c = joint_call(site, sample, pen, np.array([[True, True, False]]), 2, 1)
    assert c.genotype[0].tolist() == [[1, FILL], [0, FILL]]
    assert c.PL[0].tolist() == [[180, 0, FILL], [0, 180, FILL]]
    with pytest.raises(ValueError):
        joint_call(site, sample, pen, np.array([[True, True, False]]), 2, 3)


def test_flat_likelihoods_are_no_call():
    # sample 1 has reads that tie every allele: DP counts them, GT is no-call, GQ 0
    rows = [(0, 0, [0.0, 30.0])] * 5 + [(0, 0, [30.0, 0.0])] * 5 + [(0, 1, [0.0, 0.0])] * 4
    site, sample, pen = obs(rows, width=2)
    c = joint_call(site, sample, pen, np.array([[True, True]]), 2, 2)
    assert c.genotype[0, 1].tolist() == [MISSING, MISSING]
    assert c.DP[0, 1] == 4 and c.GQ[0, 1] == 0
    assert c.PL[0, 1].tolist() == [0, 0, 0]
    assert c.AD[0, 1].tolist() == [0, 0]
