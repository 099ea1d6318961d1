"""Site annotations and their FILTERs (varcall.core.filters, varcall.engines.native.annotations):
the statistics against scipy, the MAPQ split of the fetch, artefacts built read by read
(a diverged paralog, a strand-specific error, skewed allele balance, ALT bases at read
ends) against a good heterozygous SNV, every threshold option, and the outputs."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pysam
import pytest
from _bamwriter import DEFAULT_QUAL, AlignedRead, write_bam, write_fasta
from hypothesis import given, settings
from hypothesis import strategies as st
from test_pileup import assert_same_batch, mixed_bam

from varcall.core.callset import INFO_FLOAT_KEYS, CallSet, load_callset, save_callset
from varcall.core.filters import NATIVE_FILTER_IDS, filter_descriptions, site_filters
from varcall.core.params import CallParams
from varcall.core.regions import Region
from varcall.engines.native import NativeEngine
from varcall.engines.native.annotations import allele_balance, drop_low_mapq, quality_by_depth
from varcall.engines.native.annotations_numba_fns import (
    binomial_lower_phred,
    fisher_strand,
    fisher_two_sided,
    rank_sum_z,
    strand_odds_ratio,
)
from varcall.engines.native.reads import fetch_reads
from varcall.plan.inputs import resolve_inputs

# ----------------------------------------------------------------------------- statistics


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=4, max_size=4))
def test_fisher_matches_scipy(table):
    scipy_stats = pytest.importorskip("scipy.stats")
    a, b, c, d = table
    expected = scipy_stats.fisher_exact([[a, b], [c, d]]).pvalue
    assert fisher_two_sided(a, b, c, d) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_fisher_strand_and_sor_by_hand():
    # no bias: FS 0; the strands swapped give the same FS
    assert fisher_strand(10, 10, 5, 5) == pytest.approx(0.0, abs=1e-9)
    assert fisher_strand(20, 20, 0, 12) == fisher_strand(20, 20, 12, 0) > 25
    # GATK's SOR with +1 pseudo-counts, by hand
    rf, rr, af, ar = 11.0, 11.0, 11.0, 1.0
    r = (rf * ar) / (rr * af)
    expected = math.log(r + 1 / r) + math.log(1.0) - math.log(1 / 11)
    assert strand_odds_ratio(10, 10, 10, 0) == pytest.approx(expected)
    # a table over 400 reads is scaled to 200: doubling it changes nothing
    assert fisher_strand(300, 300, 100, 40) == fisher_strand(600, 600, 200, 80)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 60), min_size=2, max_size=40),
    st.lists(st.booleans(), min_size=2, max_size=40),
)
def test_rank_sum_z_matches_scipy(values, groups):
    scipy_stats = pytest.importorskip("scipy.stats")
    n = min(len(values), len(groups))
    x = np.array(values[:n], float)
    alt = np.array(groups[:n], bool)
    z = rank_sum_z(x, alt)
    if alt.all() or not alt.any():
        assert math.isnan(z)
        return
    # antisymmetric in the groups
    assert rank_sum_z(x, ~alt) == pytest.approx(-z, abs=1e-9)
    if len(set(x.tolist())) == 1:
        assert z == 0.0
        return
    r = scipy_stats.mannwhitneyu(x[alt], x[~alt], use_continuity=False, method="asymptotic")
    assert 2 * scipy_stats.norm.sf(abs(z)) == pytest.approx(r.pvalue, rel=1e-6)


def test_allele_balance_counts_ref_alt_hets_only():
    gt = np.array([[[0, 1], [1, 1], [0, 0], [-1, -1]], [[1, 2], [0, 2], [0, -2], [0, 0]]], np.int8)
    ad = np.array(
        [
            [[6, 4, -2], [0, 9, -2], [7, 0, -2], [0, 0, -2]],
            [[1, 5, 5], [8, 1, 2], [3, 0, 0], [9, 0, 0]],
        ],
        np.int32,
    )
    ab, abq = allele_balance(gt, ad)
    assert ab[0] == pytest.approx(4 / 10)  # only the 0/1 sample
    assert ab[1] == pytest.approx(2 / 10)  # only the 0/2 sample (its AD of allele 2)
    p = sum(math.comb(10, x) for x in range(3)) / 2**10
    assert abq[1] == pytest.approx(-10 * math.log10(p))


def test_quality_by_depth_as_gatk():
    # GATK QualByDepth: QUAL / AD sum of the carriers with >= 2 ALT reads (all carriers
    # when none has), DP for a carrier whose AD sums to 0; NaN without depth
    gt = np.array([
        [[0, 1], [1, 1], [0, 0]],     # carriers 0, 1 (>= 2 ALT reads each); sample 2 hom-REF
        [[0, 1], [0, 2], [-1, -1]],   # carrier 0 has 1 ALT read: only carrier 1 counts
        [[0, 1], [0, 0], [0, 0]],     # one carrier with a single ALT read: its AD sum
        [[1, -2], [0, 0], [0, 0]],    # haploid carrier with AD all 0: its DP
        [[0, 0], [0, 0], [0, 0]],     # no carrier: NaN
    ], np.int8)  # fmt: skip
    ad = np.array([
        [[6, 4, -2], [0, 9, -2], [30, 0, -2]],
        [[9, 1, 0], [5, 0, 3], [0, 0, 0]],
        [[7, 1, -2], [5, 0, -2], [5, 0, -2]],
        [[0, 0, -2], [5, 0, -2], [5, 0, -2]],
        [[4, 0, -2], [5, 0, -2], [5, 0, -2]],
    ], np.int32)  # fmt: skip
    dp = np.array([[11, 9, 30], [12, 9, 0], [9, 5, 5], [7, 5, 5], [4, 5, 5]], np.int32)
    qual = np.array([95.0, 40.0, 24.0, 35.0, 50.0], np.float32)
    qd = quality_by_depth(qual, gt, ad, dp)
    assert qd[:4].tolist() == pytest.approx([95 / 19, 40 / 8, 24 / 8, 35 / 7])
    assert math.isnan(qd[4])


def test_binomial_lower_phred():
    assert binomial_lower_phred(5, 10) == pytest.approx(-10 * math.log10(638 / 1024))
    assert binomial_lower_phred(10, 10) == 0.0
    assert binomial_lower_phred(0, 2000) == 3200.0  # floored p


# ----------------------------------------------------------------------------- MAPQ split
@pytest.mark.parametrize("min_mapq", [0, 20, 60])
def test_drop_low_mapq_equals_fetch_with_min_mapq(tmp_path, min_mapq):
    bam, ref = mixed_bam(tmp_path).write()
    index = {"S1": 0, "S2": 1}
    for fast in (True, False):
        args = ([bam], ref, index, "chrT", 0, 186)
        every = fetch_reads(*args, min_mapq=0, include_supplementary=False, fast=fast)
        want = fetch_reads(*args, min_mapq=min_mapq, include_supplementary=False, fast=fast)
        got = drop_low_mapq(every, min_mapq)
        assert _reads_of(got) == _reads_of(want)
        assert np.array_equal(got.pairs, want.pairs)
        if min_mapq == 0:
            assert_same_batch(got, want)


def _reads_of(batch) -> list[tuple]:
    """Every read of a batch: its columns, bases, qualities and CIGAR."""
    out = []
    for i in range(batch.n_reads):
        q = slice(batch.qoff[i], batch.qoff[i] + batch.qlen[i])
        c = slice(batch.coff[i], batch.coff[i] + batch.cn[i])
        out.append((
            int(batch.start[i]), int(batch.end[i]), int(batch.mapq[i]), int(batch.flag[i]),
            int(batch.sample[i]), batch.bases[q].tobytes(), batch.quals[q].tobytes(),
            batch.raw_quals[q].tobytes(), batch.cig_op[c].tobytes(), batch.cig_len[c].tobytes(),
        ))  # fmt: skip
    return out


# ----------------------------------------------------------------------------- read-built sites
SITE = 1500  # 0-based position of the planted site on contig "chrF"
READ_LEN = 100


@dataclasses.dataclass
class Read:
    """One single-end read over SITE: ``alt`` carries the ALT base there (and at every
    position of ``extra``), ``offset`` is the query offset of SITE, ``site_qual`` the base
    quality there (every other base: 30)."""

    sample: str
    alt: bool
    reverse: bool
    mapq: int = 60
    offset: int = 50
    extra: tuple[int, ...] = ()
    site_qual: int = 30


def _reference(length: int = 3000) -> str:
    rng = np.random.default_rng(5)
    return "".join(rng.choice(list("ACGT"), length))


def _alt_base(b: str) -> str:
    return "ACGT"[("ACGT".index(b) + 1) % 4]


def write_site_bam(folder: Path, reads: list[Read]) -> tuple:
    """reference.fa and one BAM per sample; returns the CallInputs."""
    ref = _reference()
    folder.mkdir(parents=True, exist_ok=True)
    fasta = write_fasta(folder / "reference.fa", {"chrF": ref})
    samples = sorted({r.sample for r in reads})
    bams = []
    for sample in samples:
        mine = sorted(
            ((SITE - r.offset, k, r) for k, r in enumerate(reads) if r.sample == sample),
            key=lambda t: (t[0], t[1]),
        )
        path = write_bam(
            folder / f"{sample}.bam",
            {"chrF": len(ref)},
            [sample],
            (_aligned(ref, f"{sample}-{k}", start, r) for start, k, r in mine),
            presorted=True,
        )
        bams.append(str(path))
    return resolve_inputs(fasta, bams)


def _aligned(ref: str, name: str, start: int, r: Read) -> AlignedRead:
    """``r`` as a READ_LEN-base alignment from ``start`` (0-based)."""
    seq = list(ref[start : start + READ_LEN])
    if r.alt:
        for p in (SITE, *r.extra):
            if start <= p < start + READ_LEN:
                seq[p - start] = _alt_base(ref[p])
    quals = [DEFAULT_QUAL] * READ_LEN
    quals[SITE - start] = r.site_qual
    return AlignedRead(
        name, start, [(0, READ_LEN)], "".join(seq), quals,
        flag=16 if r.reverse else 0, mapq=r.mapq, rg=r.sample,
    )  # fmt: skip


def call_site(inputs, params: CallParams | None = None) -> CallSet:
    return NativeEngine().call_region(inputs, Region("chrF", 0, 3000), params or CallParams())


def record_at(cs: CallSet, pos: int = SITE) -> int | None:
    hit = np.flatnonzero(cs.position == pos)
    return int(hit[0]) if hit.size else None


def filters_of(cs: CallSet, i: int) -> set[str]:
    return {f for f, on in zip(cs.filter_ids, cs.filters[i].tolist()) if on}


def spread(n: int, lo: int = 8, hi: int = 92) -> list[int]:
    """n query offsets of SITE spread over [lo, hi]."""
    return [lo + (k * (hi - lo)) // max(1, n - 1) for k in range(n)]


def good_het(sample: str = "S1", n_ref: int = 15, n_alt: int = 15) -> list[Read]:
    out = [Read(sample, False, k % 2 == 1, offset=o) for k, o in enumerate(spread(n_ref))]
    out += [Read(sample, True, k % 2 == 0, offset=o) for k, o in enumerate(spread(n_alt, 10, 90))]
    return out


def test_good_het_snv_passes(tmp_path):
    reads = good_het() + [Read("S1", False, False, mapq=0, offset=o) for o in (20, 40, 60)]
    cs = call_site(write_site_bam(tmp_path, reads))
    i = record_at(cs)
    assert i is not None
    assert filters_of(cs, i) == {"PASS"}
    assert tuple(cs.genotype[i, 0]) == (0, 1)
    assert cs.info_AB[i] == pytest.approx(0.5)
    assert cs.info_FS[i] == 0.0
    assert cs.info_MQ[i] == cs.info_MQM[i] == cs.info_MQMR[i] == 60.0
    assert cs.info_MQ0F[i] == pytest.approx(round(3 / 33, 3))  # MAPQ-0 reads counted, not used
    assert cs.DP[i, 0] == 30
    assert abs(cs.info_ReadPosRankSum[i]) < 2 and cs.info_MQRankSum[i] == 0.0
    # QD: the record's QUAL over the carrier's AD depth, rounded as the annotations
    qd = np.float32(np.round(float(cs.quality[i]) / int(cs.AD[i, 0].sum()), 3))
    assert cs.info_QD[i] == qd and cs.info_QD[i] > 10


def test_low_qd_call_is_filtered_and_the_option_turns_it_off(tmp_path):
    # 10 of 40 reads carry the ALT, at base quality 15: QUAL passes (>= 30, GATK's), the
    # allele balance is no artefact's (AB 0.25), but QUAL / depth is far below 2
    reads = [dataclasses.replace(r, site_qual=15) if r.alt else r for r in good_het("S1", 30, 10)]
    inputs = write_site_bam(tmp_path, reads)
    cs = call_site(inputs)
    i = record_at(cs)
    assert i is not None and cs.quality[i] >= 30
    assert cs.info_QD[i] == np.float32(np.round(float(cs.quality[i]) / 40, 3)) < 2
    assert filters_of(cs, i) == {"LowQD"}
    off = call_site(inputs, CallParams(min_qd=-math.inf))
    assert filters_of(off, record_at(off)) == {"PASS"}
    assert off.info_QD[record_at(off)] == cs.info_QD[i]


def test_strand_specific_artefact_is_strand_bias(tmp_path):
    reads = []
    for s in ("S1", "S2"):
        reads += [Read(s, False, k % 2 == 1, offset=o) for k, o in enumerate(spread(40))]
        reads += [Read(s, True, True, offset=o) for o in spread(14, 12, 88)]  # reverse only
    inputs = write_site_bam(tmp_path, reads)
    cs = call_site(inputs)
    i = record_at(cs)
    assert i is not None and "StrandBias" in filters_of(cs, i)
    assert cs.info_FS[i] > 60 or cs.info_SOR[i] > 5
    off = call_site(inputs, CallParams(max_fs=math.inf, max_sor=math.inf))
    assert filters_of(off, record_at(off)) == {"PASS"}


def test_diverged_paralog_is_filtered(tmp_path):
    """Reads of a 2 %-diverged copy mapped onto the locus in every sample: the ones that
    carry a distinguishing base elsewhere get a low MAPQ (>= --min-mapq), the others
    MAPQ 0; they carry the copy's bases at two paralogous positions (SITE, SITE + 30)."""
    reads = []
    psv = (SITE + 30,)
    for s in ("S1", "S2", "S3", "S4"):
        reads += [Read(s, False, k % 2 == 1, offset=o) for k, o in enumerate(spread(22))]
        reads += [
            Read(s, True, k % 2 == 0, mapq=20 + k, offset=o, extra=psv)
            for k, o in enumerate(spread(8, 35, 90))
        ]
        reads += [
            Read(s, True, k % 2 == 0, mapq=0, offset=o, extra=psv)
            for k, o in enumerate(spread(10, 35, 90))
        ]
    inputs = write_site_bam(tmp_path, reads)
    cs = call_site(inputs)
    for pos in (SITE, SITE + 30):
        i = record_at(cs, pos)
        assert i is None or not cs.filters[i, 0], f"a PASS call at {pos}"
    i = record_at(cs)
    assert i is not None and "MappingQuality" in filters_of(cs, i)
    assert cs.info_MQMR[i] - cs.info_MQM[i] > 30
    assert cs.info_MQ0F[i] > 0.2
    off = call_site(inputs, CallParams(max_alt_mapq_drop=math.inf))
    assert filters_of(off, record_at(off)) == {"PASS"}


def test_true_variant_in_a_near_identical_duplicate_passes(tmp_path):
    """A het SNV in one copy of a near-identical segmental duplication: most reads there
    are MAPQ 0 (the aligner cannot place them; they never count), the ones it places map
    at MAPQ 25-55 whatever their allele. MQ0F is 0.6 (the held-out-style cohort of
    2026-12-05 had such true variants at 0.53-0.57): the default --max-mq0f (0.9) keeps
    them PASS, 0.5 (the old default) filters them."""
    reads = []
    for s in ("S1", "S2", "S3"):
        placed = [
            Read(s, k % 2 == 0, k % 4 < 2, mapq=25 + 2 * k, offset=o)
            for k, o in enumerate(spread(14))
        ]
        hidden = [Read(s, k % 3 == 0, k % 2 == 0, mapq=0, offset=o) for k, o in enumerate(spread(21))]
        reads += placed + hidden
    inputs = write_site_bam(tmp_path, reads)
    cs = call_site(inputs)
    i = record_at(cs)
    assert i is not None and (cs.genotype[i] == [0, 1]).all()
    assert cs.info_MQ0F[i] == pytest.approx(0.6)
    assert abs(cs.info_MQMR[i] - cs.info_MQM[i]) < 5
    assert filters_of(cs, i) == {"PASS"}
    old = call_site(inputs, CallParams(max_mq0f=0.5))
    assert filters_of(old, record_at(old)) == {"MappingQuality"}


def test_skewed_allele_balance(tmp_path):
    reads = []
    for s in ("S1", "S2", "S3"):
        reads += good_het(s, n_ref=26, n_alt=4)
    inputs = write_site_bam(tmp_path, reads)
    cs = call_site(inputs)
    i = record_at(cs)
    assert i is not None and (cs.genotype[i] == [0, 1]).all()
    assert filters_of(cs, i) == {"AlleleBalance", "LowQD"}  # few ALT reads: low QD too
    assert cs.info_AB[i] == pytest.approx(round(12 / 90, 3))
    assert cs.info_ABQ[i] > 40
    off = call_site(inputs, CallParams(min_allele_balance=0.1, min_qd=-math.inf))
    assert filters_of(off, record_at(off)) == {"PASS"}


def test_alt_bases_at_read_ends_are_read_position_bias(tmp_path):
    reads = []
    for s in ("S1", "S2", "S3"):
        reads += [Read(s, False, k % 2 == 1, offset=o) for k, o in enumerate(spread(30, 10, 89))]
        ends = [1, 2, 3, 96, 97, 98]
        reads += [Read(s, True, k % 2 == 0, offset=ends[k % 6]) for k in range(15)]
    inputs = write_site_bam(tmp_path, reads)
    cs = call_site(inputs)
    i = record_at(cs)
    assert i is not None and filters_of(cs, i) == {"ReadPosBias"}
    assert cs.info_ReadPosRankSum[i] < -8
    off = call_site(inputs, CallParams(min_readpos_ranksum=-math.inf))
    assert filters_of(off, record_at(off)) == {"PASS"}


def test_annotations_do_not_depend_on_the_region(tmp_path):
    reads = good_het("S1") + good_het("S2", 20, 8)
    inputs = write_site_bam(tmp_path, reads)
    whole = call_site(inputs)
    engine = NativeEngine()
    left = engine.call_region(inputs, Region("chrF", 0, SITE), CallParams())
    right = engine.call_region(inputs, Region("chrF", SITE, 3000), CallParams())
    assert left.n_variants == 0
    assert right.equals(whole)


# ----------------------------------------------------------------------------- thresholds
_JUST_FAILING = {
    # option: (annotation values that fail it by a little, indel record?, filter)
    "min_qd": ({"QD": 1.9}, False, "LowQD"),
    "max_fs": ({"FS": 61.0}, False, "StrandBias"),
    "max_sor": ({"SOR": 5.5}, False, "StrandBias"),
    "max_fs_indel": ({"FS": 201.0}, True, "StrandBias"),
    "max_sor_indel": ({"SOR": 10.5}, True, "StrandBias"),
    "min_allele_balance": ({"AB": 0.15, "ABQ": 50.0}, False, "AlleleBalance"),
    "max_abq": ({"AB": 0.15, "ABQ": 50.0}, False, "AlleleBalance"),
    "max_mq0f": ({"MQ0F": 0.95}, False, "MappingQuality"),
    "min_rms_mapq": ({"MQ": 24.0}, False, "MappingQuality"),
    "max_alt_mapq_drop": ({"MQM": 20.0, "MQMR": 60.0}, False, "MappingQuality"),
    "min_mq_ranksum": ({"MQRankSum": -13.0}, False, "MappingQuality"),
    "min_readpos_ranksum": ({"ReadPosRankSum": -9.0}, False, "ReadPosBias"),
}


def _one_record(values: dict[str, float], indel: bool, params: CallParams) -> set[str]:
    ann = {k: np.array([values.get(k, np.nan)]) for k in INFO_FLOAT_KEYS}
    f = site_filters(np.array([50.0]), ann, np.array([indel]), np.array([False]), params)
    return {fid for fid, on in zip(NATIVE_FILTER_IDS, f[0].tolist()) if on}


@pytest.mark.parametrize("option", sorted(_JUST_FAILING))
def test_each_threshold_option_changes_the_outcome(option):
    values, indel, fid = _JUST_FAILING[option]
    assert _one_record(values, indel, CallParams()) == {fid}
    loose = math.inf if option.startswith("max_") else -math.inf
    assert _one_record(values, indel, CallParams(**{option: loose})) == {"PASS"}
    # the description names the value
    text = filter_descriptions(CallParams(**{option: 0.123}))[fid]
    assert "0.123" in text
    # missing annotations never filter
    assert _one_record({}, indel, CallParams()) == {"PASS"}


def test_allele_balance_spares_records_with_a_hom_alt_carrier():
    ann = {k: np.array([np.nan, np.nan]) for k in INFO_FLOAT_KEYS}
    ann["AB"] = np.array([0.1, 0.1])
    ann["ABQ"] = np.array([60.0, 60.0])
    f = site_filters(np.array([50.0, 50.0]), ann, np.zeros(2, bool), np.array([False, True]),
                     CallParams())  # fmt: skip
    assert f[:, NATIVE_FILTER_IDS.index("AlleleBalance")].tolist() == [True, False]
    assert f[:, 0].tolist() == [False, True]


def test_sor_spares_records_with_a_hom_alt_carrier_fs_does_not():
    """At a hom-ALT record SOR measures the coverage's strand balance (no REF reads to
    compare with): it does not filter there; FS (ALT against REF reads) still does."""
    ann = {k: np.array([np.nan] * 4) for k in INFO_FLOAT_KEYS}
    ann["SOR"] = np.array([6.0, 6.0, np.nan, np.nan])
    ann["FS"] = np.array([0.0, 0.0, 80.0, 80.0])
    hom = np.array([False, True, False, True])
    f = site_filters(np.full(4, 50.0), ann, np.zeros(4, bool), hom, CallParams())
    assert f[:, NATIVE_FILTER_IDS.index("StrandBias")].tolist() == [True, False, True, True]


# ----------------------------------------------------------------------------- outputs
def test_outputs_carry_annotations_headers_and_thresholds(tmp_path):
    import zarr

    from varcall.run.pipeline import run_call

    inputs = write_site_bam(tmp_path / "in", good_het())
    params = CallParams(max_fs=55.5)
    run_call(inputs.reference, list(inputs.bams), tmp_path / "out", params=params,
             mode="single")  # fmt: skip
    header = pysam.VariantFile(str(tmp_path / "out" / "calls.vcf.gz")).header
    text = str(header)
    assert '##FILTER=<ID=StrandBias,Description="Strand bias: FS > 55.5' in text
    assert '##FILTER=<ID=LowQD,Description="QD (QUAL by depth) below 2 (--min-qd)">' in text
    assert "Quality by depth" in header.info["QD"].description
    for fid in NATIVE_FILTER_IDS[1:]:
        assert f"##FILTER=<ID={fid}," in text
    for key in INFO_FLOAT_KEYS:
        assert header.info[key].type == "Float" and header.info[key].number == 1
    assert "summed over the samples" in header.info["DP"].description
    assert "no prior" in header.formats["PL"].description
    rec = next(iter(pysam.VariantFile(str(tmp_path / "out" / "calls.vcf.gz"))))
    assert rec.info["AB"] == pytest.approx(0.5) and rec.info["MQ"] == 60
    root = zarr.open_consolidated(str(tmp_path / "out" / "calls.vcz"), mode="r")
    assert list(root["filter_id"][:]) == ["PASS", *sorted(NATIVE_FILTER_IDS[1:])]
    assert np.asarray(root["variant_AB"][:]).tolist() == [0.5]
    desc = dict(zip(root["filter_id"][:], root["filter_description"][:]))
    assert "FS > 55.5" in desc["StrandBias"]


def test_callset_annotations_round_trip(tmp_path):
    from varcall.io.vcf_header import vcf_header
    from varcall.io.vcf_read import read_vcf
    from varcall.io.vcf_write import VcfWriter
    from varcall.io.vcz import VczWriter
    from varcall.io.vcz_read import read_vcz

    inputs = write_site_bam(tmp_path / "in", good_het())
    cs = call_site(inputs)
    assert cs.n_variants == 1
    save_callset(cs, tmp_path / "c.npz")
    assert load_callset(tmp_path / "c.npz").equals(cs)
    changed = dataclasses.replace(cs, info_FS=cs.info_FS + 1)
    assert changed.digest() != cs.digest()
    contigs = list(inputs.contigs)
    header = vcf_header(contigs, cs.samples, cs.filter_ids)
    with VcfWriter(tmp_path / "c.vcf.gz", header) as w:
        w.write(cs)
    back = next(read_vcf(tmp_path / "c.vcf.gz"))
    for key in INFO_FLOAT_KEYS:
        got, want = getattr(back, f"info_{key}"), getattr(cs, f"info_{key}")
        assert np.array_equal(got, want, equal_nan=True), key
    with VczWriter(tmp_path / "c.vcz", contigs=contigs, samples=cs.samples,
                   filter_ids=cs.filter_ids, max_alleles=2) as z:  # fmt: skip
        z.append(cs)
    zback = next(read_vcz(tmp_path / "c.vcz"))
    for key in INFO_FLOAT_KEYS:
        got, want = getattr(zback, f"info_{key}"), getattr(cs, f"info_{key}")
        assert np.array_equal(got, want, equal_nan=True), key


def test_other_tools_fields_are_read_only_with_the_same_meaning(tmp_path):
    """bcftools' MQ0F (Float, a fraction) is read; its Integer MQ (a mean) is not."""
    from varcall.io.vcf_read import read_vcf

    text = (
        "##fileformat=VCFv4.2\n##contig=<ID=c,length=100>\n"
        '##INFO=<ID=MQ0F,Number=1,Type=Float,Description="Fraction of MQ0 reads">\n'
        '##INFO=<ID=MQ,Number=1,Type=Integer,Description="Average mapping quality">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        "c\t5\t.\tA\tC\t30\tPASS\tMQ0F=0.25;MQ=41\n"
    )
    path = tmp_path / "b.vcf"
    path.write_text(text)
    cs = next(read_vcf(path))
    assert cs.info_MQ0F.tolist() == [0.25]
    assert np.isnan(cs.info_MQ).all() and np.isnan(cs.info_FS).all()
