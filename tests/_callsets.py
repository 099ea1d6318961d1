"""Hand-built and random CallSets for the output tests (VCF and VCF Zarr)."""

from __future__ import annotations

import numpy as np

from varcall.core.callset import FILL, MISSING, CallSet, n_genotypes

SAMPLES = ("S1", "S2", "S3")
FILTER_IDS = ("PASS", "LowQual", "StrandBias")
CONTIGS = (("chr1", 10_000), ("chr2", 5_000), ("chrM", 1_000))


def hand_callset() -> CallSet:
    """Four records on chr1: a biallelic SNP with a haploid sample, a multi-allelic indel
    with missing values, a reference-only site, and a record with two filters."""
    F = FILL
    M = MISSING
    return CallSet(
        contig="chr1",
        samples=SAMPLES,
        filter_ids=FILTER_IDS,
        position=np.array([9, 19, 29, 4999], np.int64),
        alleles=np.array(
            [["A", "C", ""], ["AT", "A", "ATTT"], ["G", "", ""], ["C", "T", ""]], dtype="U4"
        ),
        quality=np.array([30.5, np.nan, 12.345, 7.0], np.float32),
        filters=np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 1, 1]], bool),
        info_DP=np.array([10, M, 5, 3], np.int32),
        genotype=np.array(
            [
                [[0, 1], [1, F], [0, 0]],
                [[1, 2], [M, M], [0, 2]],
                [[0, 0], [M, F], [0, 0]],
                [[0, 0], [1, 1], [M, M]],
            ],
            np.int8,
        ),
        GQ=np.array([[12, 5, 99], [M, 3, 8], [1, 2, 3], [10, 4, M]], np.int32),
        DP=np.array([[5, 5, 0], [3, M, 7], [1, 2, 3], [2, 1, 0]], np.int32),
        AD=np.array(
            [
                [[2, 3, F], [1, 4, F], [0, 0, F]],
                [[0, 1, 2], [M, M, M], [4, 0, 3]],
                [[1, F, F], [2, F, F], [3, F, F]],
                [[2, 0, F], [0, 1, F], [M, M, F]],
            ],
            np.int32,
        ),
        PL=np.array(
            [
                [[20, 0, 30, F, F, F], [50, 0, F, F, F, F], [0, 9, 90, F, F, F]],
                [[10, 20, 30, 0, 5000, 7], [M] * 6, [40, 30, 20, 10, 60, 0]],
                [[0, F, F, F, F, F], [0, F, F, F, F, F], [0, F, F, F, F, F]],
                [[0, 3, 30, F, F, F], [30, 3, 0, F, F, F], [M, M, M, F, F, F]],
            ],
            np.int32,
        ),
    )


#: The VCF data lines of :func:`hand_callset`, written out by hand.
HAND_LINES = [
    "chr1\t10\t.\tA\tC\t30.5\tPASS\tDP=10;AC=2;AN=5\tGT:GQ:DP:AD:PL\t"
    "0/1:12:5:2,3:20,0,30\t1:5:5:1,4:50,0\t0/0:99:0:0,0:0,9,90",
    "chr1\t20\t.\tAT\tA,ATTT\t.\tLowQual\tAC=1,2;AN=4\tGT:GQ:DP:AD:PL\t"
    "1/2:.:3:0,1,2:10,20,30,0,5000,7\t./.:3:.:.:.\t0/2:8:7:4,0,3:40,30,20,10,60,0",
    "chr1\t30\t.\tG\t.\t12.345\t.\tDP=5;AN=4\tGT:GQ:DP:AD:PL\t0/0:1:1:1:0\t.:2:2:2:0\t0/0:3:3:3:0",
    "chr1\t5000\t.\tC\tT\t7\tLowQual;StrandBias\tDP=3;AC=2;AN=4\tGT:GQ:DP:AD:PL\t"
    "0/0:10:2:2,0:0,3,30\t1/1:4:1:0,1:30,3,0\t./.:.:0:.:.",
]


def random_callset(
    rng: np.random.Generator,
    contig: str,
    n: int,
    *,
    samples: tuple[str, ...] = SAMPLES,
    filter_ids: tuple[str, ...] = FILTER_IDS,
    max_alleles: int = 4,
    start: int = 0,
    length: int = 5_000,
    haploid: bool = False,
) -> CallSet:
    """A valid random CallSet (VCF conventions: values within each vector's Number, FILL
    beyond; distinct sorted positions in [start, start + length))."""
    s = len(samples)
    a = max_alleles
    g = n_genotypes(a)
    pos = np.sort(rng.choice(np.arange(start, start + length), size=n, replace=False))
    bases = np.array(list("ACGT"))
    alleles = np.full((n, a), "", dtype=f"U{6}")
    n_all = rng.integers(1, a + 1, size=n)
    for i in range(n):
        seen: set[str] = set()
        for k in range(n_all[i]):
            while True:
                allele = "".join(rng.choice(bases, size=int(rng.integers(1, 5))))
                if allele not in seen:
                    break
            seen.add(allele)
            alleles[i, k] = allele
    quality = rng.uniform(0, 500, size=n).astype(np.float32)
    quality[rng.random(n) < 0.1] = np.nan
    quality = np.round(quality, 2)
    filters = rng.random((n, len(filter_ids))) < 0.3
    filters[filters[:, 1:].any(axis=1), 0] = False  # PASS never goes with another filter
    info_dp = rng.integers(0, 300, size=n).astype(np.int32)
    info_dp[rng.random(n) < 0.1] = MISSING
    gt = np.full((n, s, 2), MISSING, np.int8)
    ad = np.full((n, s, a), FILL, np.int32)
    pl = np.full((n, s, g), FILL, np.int32)
    for i in range(n):
        na = int(n_all[i])
        for j in range(s):
            hap = haploid or rng.random() < 0.1
            if hap:
                gt[i, j] = [rng.integers(0, na) if rng.random() > 0.1 else MISSING, FILL]
                ng = na
            else:
                gt[i, j] = rng.integers(0, na, size=2)
                gt[i, j].sort()
                if rng.random() < 0.1:
                    gt[i, j] = MISSING
                ng = n_genotypes(na)
            ad[i, j, :na] = rng.integers(0, 5000, size=na)
            if rng.random() < 0.1:
                ad[i, j, :na] = MISSING
            pl[i, j, :ng] = rng.integers(0, 10_000, size=ng)
            if rng.random() < 0.1:
                pl[i, j, :ng] = MISSING
    gq = rng.integers(0, 100, size=(n, s)).astype(np.int32)
    gq[rng.random((n, s)) < 0.1] = MISSING
    dp = rng.integers(0, 10_000, size=(n, s)).astype(np.int32)
    dp[rng.random((n, s)) < 0.1] = MISSING
    return CallSet(
        contig=contig,
        samples=samples,
        filter_ids=filter_ids,
        position=pos.astype(np.int64),
        alleles=alleles,
        quality=quality,
        filters=filters,
        info_DP=info_dp,
        genotype=gt,
        GQ=gq,
        DP=dp,
        AD=ad,
        PL=pl,
    )


def same_records(a: CallSet, b: CallSet) -> bool:
    """Equality up to the width of the allele padding."""
    width = max(a.max_alleles, b.max_alleles)
    return a.pad_alleles(width).equals(b.pad_alleles(width))
