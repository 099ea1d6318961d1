"""The repeat-aware indel error model: tandem repeat tracts, the stutter table, its
calibration from the run's reads, the per-read penalties and their genotype maths, and
calls on simulated stutter reads in long repeats (no PASS call from stutter alone; a true
one-unit contraction called with its genotype)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pysam
import pytest
from _bamwriter import AlignedRead, write_bam, write_fasta
from hypothesis import given, settings
from hypothesis import strategies as st

from varcall.core.params import CallInputs, CallParams
from varcall.core.regions import Region
from varcall.engines.native import NativeEngine
from varcall.engines.native.calibrate import (
    _variant_loci,
    calibrated_params,
    fit_table,
    stutter_table,
)
from varcall.engines.native.model import genotype_likelihoods
from varcall.engines.native.observations_numba_fns import stutter_penalties
from varcall.engines.native.pileup import MAX_ALLELES, REF_MARGIN, encode_bases
from varcall.engines.native.repeats import MAX_TRACT, reference_tracts, site_tract
from varcall.engines.native.stutter import (
    L_CENTER,
    MAX_PERIOD,
    MAX_STEP,
    PRIOR_TABLE,
    RATIO_AT,
    THETA,
    VARIANT_PRIOR_AT,
    StutterModel,
    allele_units,
    site_stutter,
)
from varcall.plan.inputs import resolve_inputs
from varcall.run.pipeline import run_call

# ----------------------------------------------------------------------------- tracts


def _brute_tract(seq: str, o: int) -> tuple[int, int]:
    best = (0, 0)
    for p in range(1, 7):
        if o + p > len(seq) or "N" in seq[o : o + p]:
            continue
        n = p
        while n < 200 and o + n < len(seq) and seq[o + n] == seq[o + n - p]:
            n += 1
        if n >= 2 * p and n > best[1]:
            best = (p, n)
    return best


@settings(max_examples=200, deadline=None)
@given(
    st.text("ACGT", min_size=0, max_size=20),
    st.text("ACGT", min_size=1, max_size=6),
    st.integers(1, 12),
    st.text("ACGTN", min_size=0, max_size=20),
)
def test_site_tract_matches_brute_force(left, unit, copies, right):
    seq = left + unit * copies + right
    ref = encode_bases(seq)
    for o in range(len(seq)):
        assert site_tract(ref, 0, o - 1) == _brute_tract(seq, o), (seq, o)


def test_reference_tracts_finds_planted_repeats():
    seq = "GATC" * 3 + "C" + "A" * 20 + "G" + "TGCATCGG" + "CA" * 10 + "GTTG"
    starts, periods, lengths = reference_tracts(encode_bases(seq), 8)
    found = set(zip(starts.tolist(), periods.tolist(), lengths.tolist()))
    assert (13, 1, 20) in found
    assert (seq.index("CACA"), 2, 20) in found
    assert (0, 4, 12) in found  # GATC x 3


def _scan_every_position(seq: str, min_len: int) -> set[tuple[int, int, int]]:
    """find_tracts' rule applied at every position with the brute-force tract."""
    out, o = set(), 0
    while o < len(seq):
        p, n = _brute_tract(seq, o)
        if p and n >= min_len and (o == 0 or seq[o - 1] != seq[o - 1 + p]):
            out.add((o, p, n))
            o += n - p + 1
        else:
            o += 1
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.text("ACGTN", min_size=0, max_size=12), st.text("ACGT", min_size=1, max_size=6),
                  st.integers(1, 15)),
        min_size=1, max_size=6,
    ),
    st.integers(2, 14),
)  # fmt: skip
def test_reference_tracts_equal_a_scan_of_every_position(pieces, min_len):
    seq = "".join(left + unit * copies for left, unit, copies in pieces)
    starts, periods, lengths = reference_tracts(encode_bases(seq), min_len)
    found = set(zip(starts.tolist(), periods.tolist(), lengths.tolist()))
    assert found == _scan_every_position(seq, min_len), seq


def test_allele_units():
    alleles = [("R", ""), ("D", "A"), ("D", "AA"), ("I", "A"), ("D", "C"), ("X", "G")]
    assert allele_units(alleles, "A", 20) == [0, -1, -2, 1, None, None]
    assert allele_units([("R", ""), ("D", "CA"), ("I", "CACA"), ("D", "C")], "CA", 20) == [
        0, -1, 2, None,
    ]  # fmt: skip


# ----------------------------------------------------------------------------- model
def test_prior_rates_grow_with_length_and_contractions_dominate():
    m = StutterModel(PRIOR_TABLE)
    down = [m.one_unit(1, L, False) for L in (10, 20, 30)]
    assert down == sorted(down) and 0.003 < down[0] < 0.03 and 0.1 < down[2] <= 0.25
    assert m.one_unit(1, 20, True) < m.one_unit(1, 20, False)
    assert m.one_unit(2, 20, False) < m.one_unit(1, 20, False)
    assert m.one_unit(1, 1, False) == 0.0  # not a repeat
    assert m.one_unit(1, 5, False) == 0.0 and m.one_unit(2, 4, False) == 0.0  # too short


@settings(max_examples=100, deadline=None)
@given(st.integers(1, MAX_PERIOD), st.integers(2, 30), st.lists(st.integers(-3, 3), max_size=3))
def test_site_stutter_rows_are_distributions(period, copies, steps):
    unit = "ACGTAC"[:period]
    if period == 1:
        unit = "A"
    text = "G" + unit * copies + "TTTTTTTTTT"[:6] + "G" * 40
    text = "C" + text if unit[0] != "C" else "T" + text
    ref = encode_bases(text)
    alleles = [("R", "")]
    for k in sorted(set(steps) - {0}):
        if k < 0 and -k <= copies:
            alleles.append(("D", unit * -k))
        elif k > 0:
            alleles.append(("I", unit * k))
    keep, trans, _ = site_stutter(StutterModel(PRIOR_TABLE), alleles, ref, text, 0, 1, MAX_ALLELES)
    assert (keep >= 0.5).all() and (trans >= 0).all() and (trans < keep[:, None]).all()
    assert np.allclose(keep + trans.sum(axis=1), 1.0)
    # a read that cannot tell the alleles apart (equal mismatch costs) ties them exactly
    out = np.ones(MAX_ALLELES)
    scores = np.full(MAX_ALLELES, 35.0)
    stutter_penalties(scores, len(alleles), keep, trans, 30.0, 60.0, 1.0, out)
    assert (out[: len(alleles)] == 0.0).all()
    if len(alleles) == 1:  # no stutter without a second unit allele
        assert (keep == 1).all() and (trans == 0).all()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(0, 200), min_size=2, max_size=MAX_ALLELES),
    st.floats(0, 60),
    st.floats(1, 255),
    st.floats(1, 20),
)
def test_penalties_without_stutter_are_the_capped_mismatch_costs(scores, cap, mq, w):
    na = len(scores)
    s = np.array(scores + [0.0] * (MAX_ALLELES - na))
    out = np.zeros(MAX_ALLELES)
    keep, trans = np.ones(MAX_ALLELES), np.zeros((MAX_ALLELES,) * 2)
    stutter_penalties(s, na, keep, trans, cap, mq, w, out)
    expect = np.minimum(s[:na] - s[:na].min(), min(mq, cap) / w)
    assert np.array_equal(out[:na], expect)


def _read_penalties(model: StutterModel, length: int, shows: int) -> np.ndarray:
    """Penalties (REF, one-unit deletion) of a perfect read showing the tract ``shows``
    units off the reference, in a ``length`` bp homopolymer."""
    text = "C" + "A" * length + "G" * 60
    keep, trans, _ = site_stutter(
        model, [("R", ""), ("D", "A")], encode_bases(text), text, 0, 0, MAX_ALLELES
    )
    mismatch = 35.0  # one base-quality 35 mismatch per base off
    scores = np.zeros(MAX_ALLELES)
    scores[0] = mismatch * abs(shows)
    scores[1] = mismatch * abs(shows + 1)
    out = np.zeros(MAX_ALLELES)
    stutter_penalties(scores, 2, keep, trans, 30.0, 60.0, 1.0, out)
    return out[:2]


@settings(max_examples=60, deadline=None)
@given(st.integers(12, 30), st.integers(20, 60), st.floats(0.0, 1.0))
def test_genotype_maths_tells_stutter_from_heterozygotes(length, depth, frac):
    """With the model's own stutter rate s for the tract, a sample whose reads show the
    contraction at rate <= s is most likely hom-REF; one with half its reads showing it,
    heterozygous; one with all, hom-ALT."""
    model = StutterModel(PRIOR_TABLE)
    s = model.one_unit(1, length, False)
    n_del = int(round(frac * depth))
    pen = np.array([_read_penalties(model, length, -1 if i < n_del else 0) for i in range(depth)])
    pen = np.pad(pen, ((0, 0), (0, MAX_ALLELES - 2)))
    keep = np.zeros((1, MAX_ALLELES), bool)
    keep[0, :2] = True
    gl, _, _ = genotype_likelihoods(
        np.zeros(depth, np.int64), np.zeros(depth, np.int32), pen, keep, 1, 2
    )
    best = int(np.argmax(gl[0, 0, :3]))
    if n_del <= s * depth:
        assert best == 0
    elif abs(n_del - depth / 2) <= 0.1 * depth:
        assert best == 1
    elif n_del == depth:
        assert best == 2


# ----------------------------------------------------------------------------- reads
CONTIG = "chrS"
HOMOPOLYMER = (1000, "A", 24)  # (0-based tract start, unit, length bp)
STR = (2000, "CA", 24)


def _reference(seed: int = 7, length: int = 3000) -> str:
    """Random sequence with a 24 bp poly-A at 1000 and (CA)12 at 2000, flanked by bases
    that do not extend them."""
    rng = np.random.default_rng(seed)
    seq = list(rng.choice(list("ACGT"), length))
    for start, unit, n in (HOMOPOLYMER, STR):
        seq[start : start + n] = list(unit * (n // len(unit)))
        seq[start - 1], seq[start + n] = "G", "T"
    return "".join(seq)


def _read(ref: str, ts: int, unit: str, k: int, start: int, length: int = 100):
    """(sequence, CIGAR) of a read from ``start`` whose tract at ``ts`` has ``k`` units
    more (k > 0) or fewer; the indel left-aligned at the tract start, as aligners write."""
    p = len(unit)
    if k < 0:
        seq = ref[start:ts] + ref[ts - k * p : start + length - k * p]
        cigar = [(0, ts - start), (2, -k * p), (0, length - (ts - start))]
    elif k > 0:
        seq = ref[start:ts] + unit * k + ref[ts : start + length - k * p]
        cigar = [(0, ts - start), (1, k * p), (0, length - (ts - start) - k * p)]
    else:
        seq, cigar = ref[start : start + length], [(0, length)]
    return seq[:length], cigar


def _write_bam(folder: Path, ref: str, samples: dict[str, list[int]], depth: int) -> tuple:
    """Reference and one BAM; each sample's reads span both tracts (``depth`` per tract);
    ``samples[name]`` the per-haplotype unit changes ([0, 0]: hom-REF), applied at both
    tracts. Stutter: read i of a haplotype is one unit shorter when i % 6 == 1 (17 %) and
    one longer when i % 25 == 3 (4 %)."""
    fasta = write_fasta(folder / "ref.fa", {CONTIG: ref})
    rng = np.random.default_rng(11)
    reads = []
    for sample, haps in samples.items():
        for ts, unit, n in (HOMOPOLYMER, STR):
            for i in range(depth):
                k = haps[i % 2] - (i // 2 % 6 == 1) + (i // 2 % 25 == 3)
                start = int(rng.integers(ts + n + 8 - 100, ts - 8))
                seq, cigar = _read(ref, ts, unit, k, start)
                reads.append(AlignedRead(f"{sample}-{ts}-{i}", start, cigar, seq, rg=sample))
    bam = write_bam(folder / "reads.bam", {CONTIG: len(ref)}, list(samples), reads)  # Q30, MQ60
    return str(fasta), str(bam)


def _tract_records(inputs: CallInputs, params: CallParams) -> dict[int, tuple]:
    """PASS records within 2 bp of a tract start: POS -> (alleles, GTs)."""
    cs = NativeEngine().call_region(inputs, Region(CONTIG, 0, 3000), params)
    out = {}
    for v in range(cs.position.shape[0]):
        pos = int(cs.position[v])
        if cs.filters[v, 0] and any(abs(pos + 1 - ts) <= 2 for ts, _, _ in (HOMOPOLYMER, STR)):
            gts = [tuple(int(x) for x in g) for g in cs.genotype[v]]
            out[pos] = ([a for a in cs.alleles[v].tolist() if a], gts)
    return out


@pytest.mark.parametrize("indel_errors", ["estimate", "prior"])
def test_stutter_alone_makes_no_pass_call(tmp_path, indel_errors):
    ref = _reference()
    fasta, bam = _write_bam(tmp_path, ref, {"S1": [0, 0], "S2": [0, 0], "S3": [0, 0]}, 40)
    inputs = resolve_inputs(fasta, [bam])
    assert _tract_records(inputs, CallParams(indel_errors=indel_errors)) == {}


def test_without_the_stutter_model_stutter_is_called(tmp_path):
    """The control: a table without stutter (every rate ~0) calls the stutter reads."""
    ref = _reference()
    fasta, bam = _write_bam(tmp_path, ref, {"S1": [0, 0], "S2": [0, 0], "S3": [0, 0]}, 40)
    inputs = resolve_inputs(fasta, [bam])
    # a table of the 26-number form (no repeat variant prior: THETA everywhere)
    no_stutter = tuple(-30.0 if i % 2 == 0 else 0.0 for i in range(RATIO_AT))
    got = _tract_records(inputs, CallParams(stutter_table=no_stutter + (0.1, 0.1)))
    assert got, "stutter reads at 17 % should look like heterozygous deletions"


def test_true_one_unit_contraction_is_called_with_its_genotype(tmp_path):
    """Het and hom one-unit contractions in the same stuttering repeats: the rates
    estimated from the reads keep the contraction's own stutter (-2 units) out."""
    ref = _reference()
    samples = {"S1": [0, 0], "S2": [0, -1], "S3": [-1, -1]}
    fasta, bam = _write_bam(tmp_path, ref, samples, 40)
    inputs = resolve_inputs(fasta, [bam])
    got = _tract_records(inputs, CallParams())
    for ts, unit, _ in (HOMOPOLYMER, STR):
        anchor = ts - 1
        assert anchor in got, (ts, got)
        alleles, gts = got[anchor]
        assert alleles[:2] == [ref[anchor] + unit, ref[anchor]], alleles
        assert gts == [(0, 0), (0, 1), (1, 1)], (ts, gts)


# ----------------------------------------------------------------------------- calibration
def test_fit_recovers_stutter_rates_and_ignores_heterozygotes():
    rng = np.random.default_rng(3)
    true_down = lambda L: 1 / (1 + np.exp(-(-3.5 + 0.17 * (L - L_CENTER))))  # noqa: E731
    true_up = lambda L: 1 / (1 + np.exp(-(-4.5 + 0.15 * (L - L_CENTER))))  # noqa: E731
    lengths = np.repeat(np.arange(8, 31), 30)
    periods = np.ones_like(lengths)
    counts = np.zeros((lengths.shape[0], 4, 7), np.int64)
    for i, L in enumerate(lengths.tolist()):
        for s in range(4):
            d, u = true_down(L), true_up(L)
            counts[i, s, 2:5] = rng.multinomial(30, [d, 1 - d - u, u])
            if i % 10 == 0 and s == 0:  # a heterozygous one-unit contraction
                counts[i, s, 2:5] = rng.multinomial(30, [0.5, 0.5, 0.0])
    model = StutterModel(fit_table(periods, lengths, counts))
    for L in (12, 20, 28):
        assert model.one_unit(1, L, False) == pytest.approx(true_down(L), rel=0.2)
        assert model.one_unit(1, L, True) == pytest.approx(true_up(L), rel=0.3)
    # no data for other periods: the prior
    prior = StutterModel(PRIOR_TABLE)
    assert model.one_unit(3, 20, False) == pytest.approx(prior.one_unit(3, 20, False))


def test_calibration_is_independent_of_the_region_plan(tmp_path):
    """The table comes from the reference and all reads: distributed runs with any layout,
    a restricted run and the engine's own lazily computed table agree; the calls too."""
    ref = _reference()
    fasta, bam = _write_bam(tmp_path, ref, {"S1": [0, 0], "S2": [0, -1], "S3": [0, 0]}, 40)
    inputs = resolve_inputs(fasta, [bam])
    table = stutter_table(inputs, CallParams())
    assert table != PRIOR_TABLE
    outs = {
        "single": dict(mode="single"),
        "d3": dict(mode="distributed", region_count=3),
        "d7": dict(mode="distributed", region_count=7),
        "restricted": dict(mode="single", region_strings=(f"{CONTIG}:1500-2600",)),
    }
    vcfs = {}
    for name, kw in outs.items():
        run_call(fasta, [bam], tmp_path / name, **kw)
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        assert tuple(manifest["params"]["stutter_table"]) == table, name
        vcfs[name] = [
            str(r) for r in pysam.VariantFile(str(tmp_path / name / "calls.vcf.gz")).fetch()
        ]
    assert vcfs["single"] == vcfs["d3"] == vcfs["d7"]
    assert vcfs["restricted"] == [r for r in vcfs["single"] if 1500 <= int(r.split()[1]) <= 2600]
    lazy = NativeEngine().call_region(inputs, Region(CONTIG, 0, 3000), CallParams())
    filled = calibrated_params(inputs, CallParams())
    given_table = NativeEngine().call_region(inputs, Region(CONTIG, 0, 3000), filled)
    assert filled.stutter_table == table
    assert np.array_equal(lazy.quality, given_table.quality)
    assert np.array_equal(lazy.genotype, given_table.genotype)
    assert dataclasses.replace(filled, stutter_table=()) == CallParams()


def test_tract_lookup_stays_inside_the_window_reference():
    """A site's tract is read from the reference only, at most MAX_TRACT bp past POS:
    inside the REF_MARGIN every window fetches beyond its reads (engine.py refuses to
    import otherwise)."""
    assert MAX_TRACT + 1 <= REF_MARGIN
    text = "C" + "A" * 500 + "G"
    assert site_tract(encode_bases(text), 0, 0) == (1, MAX_TRACT)


def test_given_table_and_prior_are_used_as_they_are(tmp_path):
    """``stutter_table`` (API: numbers or "a,b,..." text) and ``indel_errors="prior"``
    skip the estimation; the manifest records the table used."""
    import varcall

    ref = _reference()
    fasta, bam = _write_bam(tmp_path, ref, {"S1": [0, 0]}, 20)
    table = tuple(round(x + 0.5, 4) for x in PRIOR_TABLE)
    for name, kw, expect in (
        ("given", {"stutter_table": list(table)}, table),
        ("text", {"stutter_table": ",".join(map(str, table))}, table),
        ("prior", {"indel_errors": "prior"}, PRIOR_TABLE),
    ):
        varcall.call(fasta, [bam], tmp_path / name, single_process=True, **kw)
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        assert tuple(manifest["params"]["stutter_table"]) == expect, name


def _pysam_steps(inputs: CallInputs, loci: list, min_mapq: int) -> np.ndarray:
    """count_steps' meaning, read by read through pysam: per locus and sample, the first
    read of each name (file order) spanning the tract +- FLANK whose CIGAR changes the
    tract by k whole units (|k| <= MAX_STEP)."""
    from varcall.engines.native.calibrate import FLANK
    counts = np.zeros((len(loci), len(inputs.samples), 2 * MAX_STEP + 1), np.int64)
    column = {s: i for i, s in enumerate(inputs.samples)}
    for path in inputs.bams:
        with pysam.AlignmentFile(path) as f:
            rg = {r["ID"]: column[r["SM"]] for r in f.header.to_dict()["RG"]}
            for li, (contig, ts, p, n) in enumerate(loci):
                seen: set[str] = set()
                for r in f.fetch(contig, ts - FLANK, ts + n + FLANK):
                    if r.flag & 0xF04 or r.mapping_quality < min_mapq:
                        continue
                    if not (r.reference_start + FLANK <= ts and ts + n + FLANK <= r.reference_end):
                        continue
                    if r.query_name in seen:
                        continue
                    seen.add(r.query_name)
                    rpos, net = r.reference_start, 0
                    for op, ln in r.cigartuples:
                        if op in (0, 7, 8):
                            rpos += ln
                        elif op == 1 and ts <= rpos <= ts + n:
                            net += ln
                        elif op in (2, 3):
                            net -= ln if rpos < ts + n and rpos + ln > ts else 0
                            rpos += ln
                    if net % p == 0 and abs(net // p) <= MAX_STEP:
                        counts[li, rg[r.get_tag("RG")], net // p + MAX_STEP] += 1
    return counts


def test_step_counts_match_a_read_by_read_count(small_cohort: Path) -> None:
    """The numba count over decoded batches (one fetch per tile and file, mates paired)
    gives the per-read pysam count on a paired-end cohort."""
    from varcall.engines.native.calibrate import calibration_loci, count_steps

    inputs = resolve_inputs(str(small_cohort / "reference.fa"), sorted(
        str(p) for p in small_cohort.glob("*.bam")))  # fmt: skip
    loci = calibration_loci(inputs)
    assert len(loci) > 20
    got = count_steps(inputs, CallParams(), loci)
    assert got.sum() > 100
    assert np.array_equal(got, _pysam_steps(inputs, loci, CallParams().min_mapq))


# ----------------------------------------------------------------------------- variant prior
def test_built_in_variant_prior_is_theta_at_every_length():
    """The prior table (and a 26-number table of earlier versions, which reads as it)
    gives every repeat indel site the QUAL prior of any other site."""
    for table in (PRIOR_TABLE, PRIOR_TABLE[:VARIANT_PRIOR_AT]):
        model = StutterModel(table)
        assert model.ratio == (PRIOR_TABLE[RATIO_AT], PRIOR_TABLE[RATIO_AT + 1])
        for length in (0, 6, 15, 40, 80):
            assert model.variant_prior(length) == pytest.approx(THETA)
    low = PRIOR_TABLE[:VARIANT_PRIOR_AT] + (-20.0, 0.0)
    assert StutterModel(low).variant_prior(30) == THETA  # never below THETA
    high = PRIOR_TABLE[:VARIANT_PRIOR_AT] + (60.0, 1.0)
    assert StutterModel(high).variant_prior(80) == 0.99  # never 1: QUAL stays finite


def _locus_counts(rng, kind: str, depth: int = 30) -> np.ndarray:
    """Step counts (2 MAX_STEP + 1,) of one sample at a 30 bp homopolymer: ``ref``
    (stutter only, 1 read in 15 one unit short), ``het`` (half the reads one unit
    short) or ``hom`` (all)."""
    c = np.zeros(2 * MAX_STEP + 1, np.int64)
    short = {"ref": depth // 15, "het": depth // 2, "hom": depth - depth // 15}[kind]
    c[MAX_STEP - 1] = short
    c[MAX_STEP] = depth - short
    if kind == "hom":  # the allele's own stutter
        c[MAX_STEP - 1], c[MAX_STEP - 2] = depth - short, short
        c[MAX_STEP] = 0
    return c


def test_variant_loci_are_samples_with_a_non_reference_allele():
    rng = np.random.default_rng(0)
    model = StutterModel(PRIOR_TABLE)
    counts = np.stack(
        [
            np.stack([_locus_counts(rng, "ref"), _locus_counts(rng, k)])
            for k in ("ref", "het", "hom")
        ]
    )
    counts[0, 1] = 0
    counts[0, 1, MAX_STEP - 1] = 3  # too few reads: not looked at
    periods = np.ones(3, np.int64)
    lengths = np.full(3, 30, np.int64)
    got = _variant_loci(periods, lengths, counts, model)
    assert got.tolist() == [False, True, True]


@pytest.mark.parametrize("share", [0.0, 0.5])
def test_variant_prior_fit_follows_the_loci(share):
    """Loci of 10-50 bp, a heterozygous sample at a share of them that grows with the
    length (``share`` at 50 bp): pi(L) follows it; with none, near THETA."""
    rng = np.random.default_rng(1)
    lengths = np.repeat(np.arange(10, 51, 2), 12).astype(np.int64)
    periods = np.ones(lengths.shape[0], np.int64)
    counts = np.zeros((lengths.shape[0], 3, 2 * MAX_STEP + 1), np.int64)
    for li, length in enumerate(lengths):
        for s in range(3):
            counts[li, s] = _locus_counts(rng, "ref")
        if rng.random() < share * (length - 10) / 40:
            counts[li, 1] = _locus_counts(rng, "het")
    model = StutterModel(fit_table(periods, lengths, counts))
    if share:
        assert 0.25 < model.variant_prior(44) < 0.7
        assert model.variant_prior(12) < 0.1
    else:
        assert model.variant_prior(12) < 0.002 and model.variant_prior(44) < 0.02


def test_repeat_variant_prior_raises_qual_not_genotypes(tmp_path):
    """The same reads called with the run's fitted prior and with THETA at every length:
    the contraction records keep their genotypes, their QUAL rises with the prior."""
    ref = _reference()
    samples = {"S1": [0, 0], "S2": [0, -1], "S3": [0, 0], "S4": [0, 0]}
    fasta, bam = _write_bam(tmp_path, ref, samples, 40)
    inputs = resolve_inputs(fasta, [bam])
    fitted = stutter_table(inputs, CallParams())
    high = fitted[:VARIANT_PRIOR_AT] + (0.0, 0.0)  # pi = 0.5 at every length
    flat = fitted[:VARIANT_PRIOR_AT] + PRIOR_TABLE[VARIANT_PRIOR_AT:]

    def records(table):
        cs = NativeEngine().call_region(
            inputs, Region(CONTIG, 0, 3000), CallParams(stutter_table=table)
        )
        return {
            int(p): (float(q), cs.genotype[v].tolist())
            for v, (p, q) in enumerate(zip(cs.position, cs.quality))
        }

    got_high, got_flat = records(high), records(flat)
    for ts, _, _ in (HOMOPOLYMER, STR):
        anchor = ts - 1
        assert anchor in got_high and anchor in got_flat, (got_high, got_flat)
        assert got_high[anchor][1] == got_flat[anchor][1]
        assert got_high[anchor][0] > got_flat[anchor][0] + 20  # ~ 10 log10(0.5 / THETA)
