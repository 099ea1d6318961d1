"""The native engine end to end: accuracy against the simulator's truth, region splits,
windowing, ploidy, and the CallSet contract."""

from __future__ import annotations

import bisect
from pathlib import Path

import numpy as np
import pysam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from varcall.core.callset import FILL, MISSING, CallSet, concat_callsets, n_genotypes
from varcall.core.errors import InputError
from varcall.core.filters import NATIVE_FILTER_IDS
from varcall.core.params import CallParams
from varcall.core.regions import Region
from varcall.engines import get_engine
from varcall.engines.native import NativeEngine
from varcall.engines.native import engine as native_mod
from varcall.plan.inputs import resolve_inputs

# ----------------------------------------------------------------------------- comparison


def trim_allele(pos: int, ref: str, alt: str) -> tuple[int, str, str]:
    """Minimal representation of a biallelic REF/ALT pair (common suffix, then prefix)."""
    while len(ref) > 1 and len(alt) > 1 and ref[-1] == alt[-1]:
        ref, alt = ref[:-1], alt[:-1]
    while len(ref) > 1 and len(alt) > 1 and ref[0] == alt[0]:
        ref, alt, pos = ref[1:], alt[1:], pos + 1
    return pos, ref, alt


def read_bed(path: Path) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            c, s, e = line.split("\t")[:3]
            out.setdefault(c, []).append((int(s), int(e)))
    return {c: sorted(v) for c, v in out.items()}


def in_bed(bed: dict[str, list[tuple[int, int]]], contig: str, pos: int) -> bool:
    """Whether 0-based ``pos`` lies in a BED interval (intervals sorted, not overlapping)."""
    iv = bed.get(contig, [])
    i = bisect.bisect_right(iv, (pos, float("inf"))) - 1
    return i >= 0 and iv[i][0] <= pos < iv[i][1]


def variant_keys(records, samples, bed) -> dict[str, set]:
    """Per sample: {(contig, pos, ref, alt, copies)} for every ALT a genotype carries.

    ``records`` yields (contig, 0-based pos, alleles, {sample: genotype tuple})."""
    out: dict[str, set] = {s: set() for s in samples}
    for contig, pos, alleles, gts in records:
        if not in_bed(bed, contig, pos):
            continue
        for s in samples:
            gt = [a for a in gts[s] if a is not None and a >= 0]
            for a in set(gt):
                if a == 0:
                    continue
                key = (contig, *trim_allele(pos, alleles[0], alleles[a]))
                out[s].add((*key, gt.count(a)))
    return out


def callset_records(callsets, pass_only: bool = True):
    for cs in callsets:
        for i in range(cs.n_variants):
            if pass_only and not cs.filters[i, 0]:
                continue
            alleles = [a for a in cs.alleles[i].tolist() if a != ""]
            gts = {s: tuple(int(x) for x in cs.genotype[i, j]) for j, s in enumerate(cs.samples)}
            yield cs.contig, int(cs.position[i]), alleles, gts


def truth_records(path: Path):
    with pysam.VariantFile(str(path)) as vf:
        samples = list(vf.header.samples)
        for rec in vf:
            gts = {s: tuple(rec.samples[s]["GT"]) for s in samples}
            yield rec.chrom, rec.start, list(rec.alleles), gts


def _of_kind(keys: set, kind: str) -> set:
    return {k for k in keys if (len(k[2]) == len(k[3]) == 1) == (kind == "snp")}


def f1_by_type(truth: dict[str, set], query: dict[str, set]) -> dict[str, float]:
    """Genotype-level F1 (hap.py style: a wrong genotype is one FP and one FN) per type."""
    res = {}
    for kind in ("snp", "indel"):
        tp = fp = fn = 0
        for s in truth:
            t, q = _of_kind(truth[s], kind), _of_kind(query[s], kind)
            tp += len(t & q)
            fp += len(q - t)
            fn += len(t - q)
        prec = tp / (tp + fp) if tp + fp else 1.0
        rec = tp / (tp + fn) if tp + fn else 1.0
        res[kind] = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        res[f"{kind}_counts"] = (tp, fp, fn)
    return res


def evaluate(cohort: Path, callsets) -> dict[str, float]:
    bed = read_bed(cohort / "confident.bed")
    with pysam.VariantFile(str(cohort / "truth.vcf.gz")) as vf:
        samples = list(vf.header.samples)
    truth = variant_keys(truth_records(cohort / "truth.vcf.gz"), samples, bed)
    query = variant_keys(callset_records(callsets), samples, bed)
    return f1_by_type(truth, query)


# ----------------------------------------------------------------------------- helpers
def inputs_of(cohort_dir: Path):
    bams = [str(cohort_dir / name) for name in (cohort_dir / "bams.txt").read_text().split()]
    return resolve_inputs(cohort_dir / "reference.fa", bams)


def haploid_params(cohort_dir: Path) -> CallParams:
    import json

    meta = json.loads((cohort_dir / "simulation.json").read_text())
    by_contig = tuple((c["name"], 1) for c in meta["contigs"] if c["ploidy"] == 1)
    return CallParams(ploidy_by_contig=by_contig)


@pytest.fixture(scope="module")
def small_inputs(small_cohort):
    return inputs_of(small_cohort)


@pytest.fixture(scope="module")
def small_whole(small_inputs):
    """call_whole on the small cohort (one CallSet per contig)."""
    return list(NativeEngine().call_whole(small_inputs, CallParams()))


# ----------------------------------------------------------------------------- accuracy
def test_call_whole_accuracy_on_simulated_cohort(cohort):
    inputs = inputs_of(cohort)
    callsets = list(get_engine("native").call_whole(inputs, CallParams()))
    assert [c.contig for c in callsets] == [c for c, _ in inputs.contigs]
    res = evaluate(cohort, callsets)
    assert res["snp_counts"][0] > 500 and res["indel_counts"][0] > 50
    assert res["snp"] >= 0.99, res
    assert res["indel"] >= 0.95, res


def test_haploid_contig(haploid_cohort):
    inputs = inputs_of(haploid_cohort)
    params = haploid_params(haploid_cohort)
    assert params.ploidy_by_contig, "the haploid cohort has a haploid contig"
    callsets = list(NativeEngine().call_whole(inputs, params))
    cs = callsets[0]
    assert cs.n_variants > 5
    assert (cs.genotype[:, :, 1] == FILL).all()
    assert (cs.genotype[:, :, 0] >= 0).all()
    # haploid PL: one entry per allele, padded with FILL
    for i in range(cs.n_variants):
        na = int((cs.alleles[i] != "").sum())
        assert (cs.PL[i, :, :na] >= 0).all()
        assert (cs.PL[i, :, na:] == FILL).all()
    res = evaluate(haploid_cohort, callsets)
    assert res["snp"] >= 0.97, res


# ----------------------------------------------------------------------------- contract
def test_callset_contract(small_whole, small_inputs):
    params = CallParams()
    for cs in small_whole:
        assert cs.samples == small_inputs.samples
        assert cs.filter_ids == NATIVE_FILTER_IDS
        assert cs.n_variants > 0
        na = (cs.alleles != "").sum(axis=1)
        assert (na >= 2).all()
        # PASS or else the failed filters; LowQual by QUAL against min_qual
        assert np.array_equal(cs.filters[:, 0], ~cs.filters[:, 1:].any(axis=1))
        assert np.array_equal(cs.filters[:, 1], cs.quality < params.min_qual)
        assert (cs.quality >= params.min_qual / 2).all()
        # a called ALT in every record; no-calls only where DP is 0
        assert (cs.genotype.max(axis=(1, 2)) > 0).all()
        flat = np.array(
            [
                [(cs.PL[i, j, : n_genotypes(int(na[i]))] == 0).all() for j in range(cs.n_samples)]
                for i in range(cs.n_variants)
            ]
        ).reshape(cs.n_variants, cs.n_samples)
        assert np.array_equal(cs.genotype[:, :, 0] == MISSING, (cs.DP == 0) | flat)
        assert (cs.GQ[cs.DP == 0] == MISSING).all()
        assert (cs.info_DP == cs.DP.sum(axis=1)).all()
        for i in range(cs.n_variants):
            g = n_genotypes(int(na[i]))
            called = cs.DP[i] > 0
            assert (cs.PL[i, called, :g].min(axis=1) == 0).all()
            assert (cs.PL[i, :, g:] == FILL).all()
            assert (cs.AD[i, :, na[i] :] == FILL).all()
            assert (cs.AD[i, :, : na[i]].sum(axis=1) <= cs.DP[i]).all()
            ref = cs.alleles[i, 0]
            # alleles share the first base (anchored) unless all are SNVs at POS
            alts = cs.alleles[i, 1 : na[i]].tolist()
            assert all(len(a) == len(ref) or a[0] == ref[0] for a in alts)
        # REF matches the reference
        with pysam.FastaFile(small_inputs.reference) as fa:
            for i in range(0, cs.n_variants, 7):
                p = int(cs.position[i])
                ref = cs.alleles[i, 0]
                assert fa.fetch(cs.contig, p, p + len(ref)).upper() == ref


def test_engine_args_rejected(small_inputs):
    with pytest.raises(InputError, match="native engine takes no extra arguments"):
        NativeEngine().call_region(
            small_inputs, Region("chr1", 0, 100), CallParams(engine_args="-d 10")
        )


def test_deterministic_and_window_independent(small_inputs, small_whole, monkeypatch):
    region = Region("chr1", 0, small_inputs.contig_length("chr1"))
    again = NativeEngine().call_region(small_inputs, region, CallParams())
    assert again.equals(small_whole[0])
    monkeypatch.setattr(native_mod, "WINDOW", 1_337)
    windowed = NativeEngine().call_region(small_inputs, region, CallParams())
    assert windowed.equals(small_whole[0])


def test_fetch_pad_covers_call_reach(small_inputs, small_whole, monkeypatch):
    """How far a call looks (pileup.CALL_REACH, from each of the sites genotyped with it,
    up to pileup.HAP_REACH away), plus how far after a site the reads giving
    it start (pileup.CLIP_REACH, soft-clipped tails; tests/test_softclip.py checks the
    events keep to it), is covered by the reads fetched around a window
    (pileup.SHADOW_PAD): the pad is at least the reach, windows are fetched with
    that pad, pass 2 looks back exactly CALL_REACH bp, and a wider pad changes nothing."""
    from varcall.engines.native import observations, pileup

    assert native_mod.SHADOW_PAD == pileup.SHADOW_PAD
    assert pileup.SHADOW_PAD >= pileup.HAP_REACH + pileup.CALL_REACH + pileup.CLIP_REACH
    assert pileup.CALL_REACH >= pileup.MAX_COMPARE
    # an indel site's neighbour haplotypes come from sites within the reach, and the
    # window's reference holds their flank
    assert pileup.NEIGHBOUR_LEFT <= pileup.CALL_REACH
    assert pileup.REF_LEFT >= pileup.INDEL_LEFT_FLANK + pileup.MAX_SHIFT + pileup.NEIGHBOUR_LEFT
    fetched, reach = [], []
    real_fetch, real_obs = native_mod.fetch_reads, observations.obs_pass

    def spy_fetch(bams, reference, index, contig, start, end, **kw):
        fetched.append((start, end))
        return real_fetch(bams, reference, index, contig, start, end, **kw)

    def spy_obs(*args):
        reach.append(args[11])  # obs_pass(..., flank, snv_context, max_compare, ...)
        return real_obs(*args)

    monkeypatch.setattr(native_mod, "fetch_reads", spy_fetch)
    monkeypatch.setattr(observations, "obs_pass", spy_obs)
    region = Region("chr1", 5_000, 15_000)
    base = NativeEngine().call_region(small_inputs, region, CallParams())
    assert fetched == [(5_000 - pileup.SHADOW_PAD, 15_000 + pileup.SHADOW_PAD)]
    assert reach and set(reach) == {pileup.CALL_REACH}
    monkeypatch.setattr(native_mod, "SHADOW_PAD", 3 * pileup.CALL_REACH)
    wide = NativeEngine().call_region(small_inputs, region, CallParams())
    assert wide.equals(base)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    cuts=st.lists(
        st.one_of(
            st.integers(min_value=1, max_value=39_999),
            # the planted boundary variants, and the bases around them
            st.sampled_from([10_000, 20_000, 30_000]).flatmap(
                lambda b: st.integers(min_value=b - 3, max_value=b + 3)
            ),
        ),
        min_size=1,
        max_size=4,
        unique=True,
    )
)
def test_region_equals_concatenated_pieces(small_inputs, small_whole, cuts):
    engine = NativeEngine()
    length = small_inputs.contig_length("chr1")
    bounds = [0, *sorted(c for c in cuts if 0 < c < length), length]
    pieces = [
        engine.call_region(small_inputs, Region("chr1", a, b), CallParams())
        for a, b in zip(bounds[:-1], bounds[1:])
    ]
    for (a, b), p in zip(zip(bounds[:-1], bounds[1:]), pieces):
        assert ((p.position >= a) & (p.position < b)).all()
    whole = small_whole[0]
    assert concat_callsets(pieces).digest() == whole.digest()
    joined = concat_callsets(pieces).pad_alleles(max(whole.max_alleles, 2))
    assert joined.equals(whole.pad_alleles(joined.max_alleles))


def test_params_change_calls(small_inputs, small_whole):
    region = Region("chr1", 0, 20_000)
    strict = NativeEngine().call_region(small_inputs, region, CallParams(min_qual=1000.0))
    base = small_whole[0].restrict(0, 20_000)
    assert strict.n_variants <= base.n_variants
    assert strict.filters[:, 1].sum() > base.filters[:, 1].sum()
    # a MAPQ filter above every read's MAPQ leaves nothing to call
    none = NativeEngine().call_region(small_inputs, region, CallParams(min_mapq=255))
    assert none.n_variants == 0


def test_region_past_contig_end_and_empty(small_inputs):
    length = small_inputs.contig_length("chr1")
    cs = NativeEngine().call_region(
        small_inputs, Region("chr1", length - 10, length + 500), CallParams()
    )
    assert isinstance(cs, CallSet)
    assert ((cs.position >= length - 10) & (cs.position < length)).all()
    empty = NativeEngine().call_region(small_inputs, Region("chr1", 5, 5), CallParams())
    assert empty.n_variants == 0


def vcf_records(path: Path, pass_only: bool = True):
    """(contig, 0-based pos, alleles, {sample: GT}) of a VCF's records."""
    with pysam.VariantFile(str(path)) as vf:
        samples = list(vf.header.samples)
        for rec in vf:
            if pass_only and list(rec.filter.keys()) not in ([], ["PASS"]):
                continue
            gts = {s: tuple(rec.samples[s]["GT"]) for s in samples}
            yield rec.chrom, rec.start, list(rec.alleles), gts


def test_single_process_cli_accuracy(cohort, tmp_path):
    from click.testing import CliRunner

    from varcall.cli.main import main

    out = tmp_path / "run"
    res = CliRunner().invoke(
        main,
        [
            "call", "--single-process", "-f", str(cohort / "reference.fa"),
            "--bam-list", str(cohort / "bams.txt"), "-o", str(out), "--no-progress",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    bed = read_bed(cohort / "confident.bed")
    with pysam.VariantFile(str(cohort / "truth.vcf.gz")) as vf:
        samples = list(vf.header.samples)
    truth = variant_keys(truth_records(cohort / "truth.vcf.gz"), samples, bed)
    query = variant_keys(vcf_records(out / "calls.vcf.gz"), samples, bed)
    f1 = f1_by_type(truth, query)
    assert f1["snp"] >= 0.99, f1
    assert f1["indel"] >= 0.95, f1


def _numba_cpu() -> tuple[str | None, str | None, str | None]:
    """(NUMBA_CPU_NAME in the environment, numba's CPU name, its CPU features) of the
    process this runs in, after importing the native engine as a task does."""
    import os

    import numba.core.config

    import varcall.engines.native.engine  # noqa: F401

    c = numba.core.config
    return os.environ.get("NUMBA_CPU_NAME"), c.CPU_NAME, c.CPU_FEATURES


def test_numba_compiles_for_a_generic_cpu_in_every_process():
    """varcall sets NUMBA_CPU_NAME=generic before numba is imported (varcall/__init__.py):
    in this process, in a fresh interpreter, and in Dask process workers forked from the
    fork server, so a heterogeneous cluster cannot change a QUAL."""
    import os
    import subprocess
    import sys

    from varcall.run.clusters import ClusterSpec, open_client

    if os.environ.get("NUMBA_CPU_NAME", "generic") != "generic":
        pytest.skip("NUMBA_CPU_NAME set by the user")
    assert _numba_cpu() == ("generic", "generic", "")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CPU_NAME"}
    code = (
        "import varcall.engines.native.engine, numba.core.config as c, os;"
        "print(os.environ['NUMBA_CPU_NAME'], c.CPU_NAME, repr(c.CPU_FEATURES))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["generic", "generic", "''"], out.stderr
    with open_client(ClusterSpec(workers=1, processes=True)) as client:
        seen = set(client.run(_numba_cpu).values())
    assert seen == {("generic", "generic", "")}
