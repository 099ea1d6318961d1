"""The bcftools and freebayes engines: distributed (region by region) == the tool's own
single-process whole-genome run, on simulated data with variants planted on region
boundaries; option mapping, ploidy, and the one-line errors.

The whole-genome run of each engine is computed once per module and shared.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pysam
import pytest
from conftest import SMALL_COHORT_CONFIG

from varcall.core.callset import FILL, CallSet, concat_callsets
from varcall.core.errors import InputError
from varcall.core.params import CallInputs, CallParams
from varcall.core.regions import Region
from varcall.engines import get_engine
from varcall.engines.bcftools import BcftoolsEngine, split_bcftools_args
from varcall.engines.external import compare_callsets, distributed_differences
from varcall.engines.freebayes import NOT_FOUND_MESSAGE, FreebayesEngine
from varcall.plan.inputs import resolve_inputs
from varcall.plan.regions import plan_regions

HAVE_FREEBAYES = shutil.which("freebayes") is not None
needs_freebayes = pytest.mark.skipif(
    not HAVE_FREEBAYES,
    reason="freebayes not on PATH (Debian package 'freebayes'; .ci/run installs it)",
)
ENGINES = [
    pytest.param("bcftools", id="bcftools"),
    pytest.param("freebayes", id="freebayes", marks=needs_freebayes),
]


def _inputs(cohort: Path) -> CallInputs:
    bams = [cohort / line.strip() for line in (cohort / "bams.txt").read_text().splitlines()]
    return resolve_inputs(cohort / "reference.fa", bams)


def _planted_layout(inputs: CallInputs) -> list[Region]:
    """Region boundaries exactly on the planted positions of chr1; chr2 cut in half."""
    out = []
    for i, (contig, length) in enumerate(inputs.contigs):
        cuts = (
            [0, *SMALL_COHORT_CONFIG.boundary_positions, length]
            if i == 0
            else [0, length // 2, length]
        )
        out += [Region(contig, a, b) for a, b in zip(cuts, cuts[1:])]
    return out


@pytest.fixture(scope="module")
def small_inputs(small_cohort: Path) -> CallInputs:
    return _inputs(small_cohort)


_WHOLE: dict[tuple[str, CallInputs], dict[str, CallSet]] = {}


def _whole(name: str, inputs: CallInputs) -> dict[str, CallSet]:
    """The engine's single-process run with default parameters (computed once)."""
    key = (name, inputs)
    if key not in _WHOLE:
        _WHOLE[key] = {cs.contig: cs for cs in get_engine(name).call_whole(inputs, CallParams())}
    return _WHOLE[key]


def _union(name: str, inputs: CallInputs, regions: list[Region]) -> dict[str, CallSet]:
    engine = get_engine(name)
    parts: dict[str, list[CallSet]] = {}
    for region in regions:
        cs = engine.call_region(inputs, region, CallParams())
        # ownership by POS: nothing outside the region
        assert np.all((cs.position >= region.start) & (cs.position < region.end)), region
        assert cs.contig == region.contig and cs.samples == inputs.samples
        parts.setdefault(region.contig, []).append(cs)
    return {c: concat_callsets(p) for c, p in parts.items()}


def _assert_identical(whole: dict[str, CallSet], union: dict[str, CallSet]) -> None:
    assert sorted(whole) == sorted(union)
    for contig, w in whole.items():
        diffs = compare_callsets(w, union[contig])
        assert not diffs, "\n".join(str(d) for d in diffs[:20])
        assert w.digest() == union[contig].digest()


# ----------------------------------------------------------------------------- identity
@pytest.mark.parametrize("name", ENGINES)
def test_identity_boundaries_on_planted_variants(name: str, small_inputs: CallInputs) -> None:
    whole = _whole(name, small_inputs)
    n = sum(cs.n_variants for cs in whole.values())
    assert n > 50, f"{name} called only {n} records; the cohort should give more"
    # the planted boundary variants are there, so the boundaries are really exercised
    chr1 = whole[small_inputs.contigs[0][0]]
    for b in SMALL_COHORT_CONFIG.boundary_positions:
        near = chr1.position[(chr1.position >= b - 30) & (chr1.position < b + 30)]
        assert near.size >= 1, f"{name}: no calls around the planted boundary {b}"
    # and at least one record starts before a boundary and spans it (owned by the left region)
    ref_end = chr1.position + np.char.str_len(chr1.alleles[:, 0].astype(str))
    spans = [
        b
        for b in SMALL_COHORT_CONFIG.boundary_positions
        if np.any((chr1.position < b) & (ref_end > b))
    ]
    assert spans, f"{name}: no record spans a planted boundary"
    union = _union(name, small_inputs, _planted_layout(small_inputs))
    _assert_identical(whole, union)


@pytest.mark.parametrize("name", ENGINES)
def test_identity_seven_planned_regions(name: str, small_inputs: CallInputs) -> None:
    regions = plan_regions(small_inputs, region_count=7)
    assert len(regions) >= 7
    _assert_identical(_whole(name, small_inputs), _union(name, small_inputs, regions))


@pytest.mark.slow
@pytest.mark.parametrize("name", ENGINES)
def test_identity_fifty_regions(name: str, small_inputs: CallInputs) -> None:
    regions = plan_regions(small_inputs, region_count=50)
    _assert_identical(_whole(name, small_inputs), _union(name, small_inputs, regions))


@pytest.mark.slow
@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize("count", [7, 50])
def test_identity_default_cohort(name: str, count: int, cohort: Path) -> None:
    """bcftools: identical. freebayes: identical except the documented residual of its
    prior cache (FreebayesEngine.known_differences): QUAL only, at sites with 5+ alleles
    (measured: 1 record of the cohort)."""
    inputs = _inputs(cohort)
    engine = get_engine(name)
    diffs = distributed_differences(
        engine, inputs, CallParams(), plan_regions(inputs, region_count=count)
    )
    listing = "\n".join(str(d) for d in diffs[:20])
    if name == "bcftools":
        assert not diffs, listing
        return
    assert engine.known_differences
    assert len(diffs) <= 3, listing
    for d in diffs:
        assert d.side == "changed" and d.fields == ("quality",), listing
        assert len(d.alleles) >= 5, listing


def test_distributed_differences_reports_records(small_inputs: CallInputs) -> None:
    """Without padding or ownership the comparison must see the damage (the checker
    itself can fail): regions cut through the planted variants, records duplicated."""
    whole = _whole("bcftools", small_inputs)["chr1"]
    edge = np.flatnonzero((whole.position >= 10_000) & (whole.position < 10_010))
    assert edge.size
    dup = whole.take(np.sort(np.concatenate([np.arange(whole.n_variants), edge])))
    diffs = compare_callsets(whole, dup)
    assert diffs and all(d.side == "regions-only" for d in diffs)
    assert all(10_000 <= d.position < 10_010 for d in diffs)
    lost = compare_callsets(whole, whole.restrict(0, 9_990))
    assert lost and {d.side for d in lost} == {"whole-only"}


# ----------------------------------------------------------------------------- ploidy
@pytest.mark.parametrize("name", ENGINES)
def test_haploid_contig_by_ploidy_contig(name: str, small_inputs: CallInputs) -> None:
    params = CallParams(ploidy_by_contig=(("chr2", 1),))
    out = {cs.contig: cs for cs in get_engine(name).call_whole(small_inputs, params)}
    assert out["chr1"].n_variants and out["chr2"].n_variants
    assert np.all(out["chr2"].genotype[:, :, 1] == FILL)
    called = out["chr1"].genotype[:, :, 0] >= 0
    assert np.all(out["chr1"].genotype[:, :, 1][called] >= 0)
    # haploid PL: one value per allele, the rest FILL
    cs = out["chr2"]
    for i in range(cs.n_variants):
        na = sum(1 for a in cs.alleles[i] if a != "")
        assert np.all(cs.PL[i, :, na:] == FILL)


@pytest.mark.parametrize("name", ENGINES)
def test_haploid_cohort_identity(name: str, haploid_cohort: Path) -> None:
    inputs = _inputs(haploid_cohort)
    params = CallParams(ploidy=1)
    contig, length = inputs.contigs[0]
    regions = [Region(contig, 0, length // 3), Region(contig, length // 3, length)]
    engine = get_engine(name)
    whole = list(engine.call_whole(inputs, params))
    assert len(whole) == 1 and whole[0].n_variants > 5
    assert np.all(whole[0].genotype[:, :, 1] == FILL)
    assert not distributed_differences(engine, inputs, params, regions)


def test_unknown_ploidy_contig(small_inputs: CallInputs) -> None:
    params = CallParams(ploidy_by_contig=(("chrZ", 1),))
    with pytest.raises(InputError, match="chrZ"):
        BcftoolsEngine().call_region(small_inputs, Region("chr1", 0, 1000), params)


# ----------------------------------------------------------------------------- options
def test_bcftools_args_split() -> None:
    assert split_bcftools_args("-d 500 -B call: -P 0.01") == (["-d", "500", "-B"], ["-P", "0.01"])
    assert split_bcftools_args("call:-P call:0.5 -I") == (["-I"], ["-P", "0.5"])
    for bad in ("-r chr1", "--regions=chr1", "-Ob", "-f x.fa", "call: --ploidy 1", "call: -o x"):
        with pytest.raises(InputError, match="--engine-args"):
            split_bcftools_args(bad)
    with pytest.raises(InputError, match="quoting"):
        split_bcftools_args("-d '5")


def _is_indel(cs: CallSet, i: int) -> bool:
    alleles = [a for a in cs.alleles[i] if a != ""]
    return any(len(a) != len(alleles[0]) for a in alleles[1:])


def test_bcftools_engine_args_pass_through(small_inputs: CallInputs) -> None:
    region = Region("chr1", 9_000, 21_000)
    engine = BcftoolsEngine()
    base = engine.call_region(small_inputs, region, CallParams())
    assert any(_is_indel(base, i) for i in range(base.n_variants))
    # mpileup -I: skip indels
    no_indel = engine.call_region(small_inputs, region, CallParams(engine_args="-I"))
    assert no_indel.n_variants > 0
    assert not any(_is_indel(no_indel, i) for i in range(no_indel.n_variants))
    # call -P: a different mutation-rate prior changes QUAL, not the sites
    prior = engine.call_region(small_inputs, region, CallParams(engine_args="call: -P 0.5"))
    assert prior.n_variants >= base.n_variants
    assert not np.array_equal(prior.quality[: base.n_variants], base.quality)
    # min_mapq maps to -q: nothing passes MAPQ > 60
    strict = engine.call_region(small_inputs, region, CallParams(min_mapq=61))
    assert strict.n_variants == 0


@needs_freebayes
def test_freebayes_engine_args_pass_through(small_inputs: CallInputs) -> None:
    region = Region("chr1", 9_000, 21_000)
    engine = FreebayesEngine()
    base = engine.call_region(small_inputs, region, CallParams())
    assert any(_is_indel(base, i) for i in range(base.n_variants))
    no_indel = engine.call_region(
        small_inputs, region, CallParams(engine_args="--throw-away-indel-obs -u")
    )
    assert no_indel.n_variants > 0
    assert not any(_is_indel(no_indel, i) for i in range(no_indel.n_variants))
    for bad in ("--region chr1:1-10", "-t x.bed", "-p 1", "--gvcf", "-v out.vcf"):
        with pytest.raises(InputError, match="--engine-args"):
            engine.call_region(small_inputs, region, CallParams(engine_args=bad))


# ----------------------------------------------------------------------------- errors
def test_freebayes_missing_binary(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, small_inputs: CallInputs
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    engine = get_engine("freebayes")
    with pytest.raises(InputError) as err:
        engine.check()
    assert str(err.value) == NOT_FOUND_MESSAGE
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="apt-get install freebayes"):
        engine.call_region(small_inputs, Region("chr1", 0, 1000), CallParams())


def test_bcftools_check_passes() -> None:
    get_engine("bcftools").check()


def test_bcftools_failure_is_one_line(small_inputs: CallInputs) -> None:
    from varcall.core.errors import VarcallError

    with pytest.raises(VarcallError) as err:
        BcftoolsEngine().call_region(
            small_inputs, Region("chr1", 0, 1000), CallParams(engine_args="--no-such-option")
        )
    msg = str(err.value)
    assert "\n" not in msg and "bcftools mpileup" in msg and "chr1:1-1000" in msg


def _bam_without_read_groups(src: Path, dst: Path) -> Path:
    with pysam.AlignmentFile(str(src)) as f:
        header = f.header.to_dict()
        header.pop("RG", None)
        with pysam.AlignmentFile(str(dst), "wb", header=header) as out:
            for read in f.fetch("chr1", 0, 12_000):
                read.set_tag("RG", None)
                out.write(read)
    pysam.index(str(dst))
    return dst


def test_bam_without_read_groups(small_cohort: Path, tmp_path: Path) -> None:
    bam = _bam_without_read_groups(small_cohort / "S01.bam", tmp_path / "plainbam.bam")
    inputs = resolve_inputs(small_cohort / "reference.fa", [bam])
    assert inputs.samples == ("plainbam",)
    cs = BcftoolsEngine().call_region(inputs, Region("chr1", 5_000, 10_000), CallParams())
    assert cs.samples == ("plainbam",) and cs.n_variants > 0
    if HAVE_FREEBAYES:
        with pytest.raises(InputError, match="addreplacerg"):
            FreebayesEngine().call_region(inputs, Region("chr1", 5_000, 10_000), CallParams())
