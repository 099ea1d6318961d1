"""Per-sample ploidy: sexes, PARs and ploidy definitions (varcall.plan.ploidy), through
the native model, the engines, the run's outputs and the command line.

The cohort (tests/_sexcohort.py): two males and two females, chr1, chrX and chrY with a
PAR on the first 4 kb of chrX and chrY.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from _sexcohort import PAR_END, SAMPLES, build_sex_cohort
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from varcall.cli.main import main
from varcall.core.callset import FILL, MISSING, CallSet
from varcall.core.errors import InputError
from varcall.core.params import CallInputs, CallParams
from varcall.core.regions import Region
from varcall.engines import get_engine
from varcall.engines.external import concat_callsets
from varcall.engines.native.model import ALPHA, estimate_frequencies, joint_call
from varcall.plan.inputs import resolve_inputs
from varcall.plan.ploidy import contig_ploidy, resolve_ploidy

#: GT of each sample (M1, M2, F1, F2) at the planted sites (0-based); FILL: haploid slot.
EXPECTED = {
    ("chr1", 3_000): [(0, 1), (0, 1), (0, 1), (1, 1)],
    ("chrX", 2_000): [(0, 1), (0, 0), (0, 1), (0, 0)],  # PAR: the male is diploid
    ("chrX", PAR_END - 1): [(0, 0), (1, 1), (0, 0), (0, 0)],  # last PAR base
    ("chrX", PAR_END): [(1, FILL), (0, FILL), (0, 0), (0, 1)],  # first non-PAR base
    ("chrX", 10_000): [(1, FILL), (0, FILL), (0, 1), (0, 0)],
    ("chrX", 12_000): [(0, FILL), (1, FILL), (0, 0), (1, 1)],
    ("chrY", 6_000): [(1, FILL), (0, FILL), (MISSING, FILL), (MISSING, FILL)],
}


@pytest.fixture(scope="module")
def sex_cohort(tmp_path_factory) -> Path:
    return build_sex_cohort(tmp_path_factory.mktemp("sex") / "cohort")


@pytest.fixture(scope="module")
def inputs(sex_cohort) -> CallInputs:
    bams = [str(sex_cohort / f"{s}.bam") for s in SAMPLES]
    return resolve_inputs(sex_cohort / "reference.fa", bams)


@pytest.fixture(scope="module")
def params(sex_cohort, inputs) -> CallParams:
    given = CallParams(
        par_bed=str(sex_cohort / "par.bed"), samples_file=str(sex_cohort / "sexes.txt")
    )
    return resolve_ploidy(given, inputs)


@pytest.fixture(scope="module")
def native_whole(inputs, params) -> list[CallSet]:
    return list(get_engine("native").call_whole(inputs, params))


def genotypes_at(callsets: list[CallSet]) -> dict[tuple[str, int], list[tuple[int, int]]]:
    out = {}
    for cs in callsets:
        for i in range(cs.n_variants):
            key = (cs.contig, int(cs.position[i]))
            if key in EXPECTED:
                out[key] = [tuple(g) for g in cs.genotype[i].tolist()]
    return out


def digest(callsets: list[CallSet]) -> str:
    h = hashlib.sha256()
    for cs in callsets:
        cs.update_digest(h)
    return h.hexdigest()


# ----------------------------------------------------------------------------- acceptance
def test_male_par_diploid_non_par_haploid_female_diploid(native_whole):
    """chrX PAR and non-PAR in a male -> diploid and haploid; females diploid throughout;
    chrY of a female -> missing genotype, of a male haploid."""
    assert genotypes_at(native_whole) == EXPECTED
    by = {cs.contig: cs for cs in native_whole}
    y = by["chrY"]
    i = int(np.nonzero(y.position == 6_000)[0][0])
    assert y.DP[i, 2] > 0, "the female's mismapped reads are counted, not genotyped"
    assert y.GQ[i, 2:].tolist() == [MISSING, MISSING]
    assert y.PL[i, 2:, :2].tolist() == [[MISSING, MISSING]] * 2
    assert (y.PL[i, 2:, 2:] == FILL).all()
    x = by["chrX"]
    i = int(np.nonzero(x.position == 10_000)[0][0])
    assert x.PL[i, 0, 2:].tolist() == [FILL] * (x.PL.shape[2] - 2)  # haploid: one PL per allele
    assert (x.PL[i, 2, :3] >= 0).all()  # the female: three diploid PLs


def test_ploidy_file_and_samples_file_give_the_same_calls(sex_cohort, inputs, native_whole, tmp_path):
    """The PAR BED written as a bcftools ploidy file (1-based inclusive) calls the same."""
    pf = tmp_path / "ploidy.txt"
    pf.write_text(
        "# CHROM FROM TO SEX PLOIDY\n"
        f"chrX {PAR_END + 1} * M 1\nchrY 1 * M 1\nchrY 1 {PAR_END} M 2\nchrY * * F 0\n"
        "chrZ 1 100 M 1\n* * * M 2\n* * * F 2\n"  # chrZ: not in the reference, skipped
    )
    params = resolve_ploidy(
        CallParams(ploidy_file=str(pf), samples_file=str(sex_cohort / "sexes.txt")), inputs
    )
    assert digest(get_engine("native").call_whole(inputs, params)) == digest(native_whole)


def test_without_sexes_everything_is_diploid(inputs):
    calls = list(get_engine("native").call_whole(inputs, CallParams()))
    gts = genotypes_at(calls)
    assert gts[("chrX", 10_000)][0] == (1, 1)  # the male's hemizygous ALT, as diploid
    assert all(slot != FILL for g in gts.values() for s in g for slot in s)


def test_ploidy_contig_wins_over_sexes(inputs, params):
    """--ploidy-contig sets the whole contig for every sample, sexes or not."""
    import dataclasses

    p = dataclasses.replace(params, ploidy_by_contig=(("chrY", 1),))
    cp = contig_ploidy(p, inputs.samples, "chrY", 8_000)
    assert cp.uniform == 1
    cp = contig_ploidy(params, inputs.samples, "chrY", 8_000)
    assert cp.at(np.array([0, PAR_END - 1, PAR_END])).tolist() == [
        [2, 2, 0, 0], [2, 2, 0, 0], [1, 1, 0, 0],
    ]  # fmt: skip


# ----------------------------------------------------------------------------- identity
def _regions_run(inputs, params, cuts: dict[str, list[int]]) -> list[CallSet]:
    engine = get_engine("native")
    out = []
    for contig, length in inputs.contigs:
        bounds = [0, *sorted(set(c for c in cuts.get(contig, []) if 0 < c < length)), length]
        parts = [engine.call_region(inputs, Region(contig, s, e), params)
                 for s, e in zip(bounds, bounds[1:])]  # fmt: skip
        out.append(concat_callsets(parts))
    return out


@pytest.mark.parametrize("shift", [-1, 0, 1])
def test_region_split_at_the_par_boundary(inputs, params, native_whole, shift):
    cuts = {"chrX": [PAR_END + shift, 10_000 + shift], "chrY": [PAR_END + shift, 6_000 + shift]}
    assert digest(_regions_run(inputs, params, cuts)) == digest(native_whole)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(1, 15_999), max_size=5))
def test_random_splits(inputs, params, native_whole, cuts):
    got = _regions_run(inputs, params, {"chrX": cuts, "chrY": [c // 2 for c in cuts]})
    assert digest(got) == digest(native_whole)


# ----------------------------------------------------------------------------- engines
@pytest.mark.skipif(shutil.which("bcftools") is None, reason="bcftools not on PATH")
def test_bcftools_engine_same_haploid_calls(inputs, params):
    assert genotypes_at(list(get_engine("bcftools").call_whole(inputs, params))) == EXPECTED


@pytest.mark.skipif(shutil.which("freebayes") is None, reason="freebayes not on PATH")
def test_freebayes_engine_same_haploid_calls(inputs, params):
    assert genotypes_at(list(get_engine("freebayes").call_whole(inputs, params))) == EXPECTED


# ----------------------------------------------------------------------------- model
def test_em_with_mixed_ploidy_sums_each_samples_ploidy():
    # a diploid hom-ALT sample and a haploid ALT sample: 3 ALT copies of 3
    gl = np.array([[-60.0, -30.0, 0.0], [-30.0, 0.0, 0.0]])
    f = estimate_frequencies(gl, np.array([True, True]), 2, np.array([2, 1]))
    assert f[1] == pytest.approx((3 + ALPHA) / (3 + 2 * ALPHA), abs=1e-6)
    # a diploid het and a haploid REF: 1 ALT copy of 3
    gl = np.array([[-30.0, 0.0, -30.0], [0.0, -30.0, 0.0]])
    f = estimate_frequencies(gl, np.array([True, True]), 2, np.array([2, 1]))
    assert f[1] == pytest.approx((1 + ALPHA) / (3 + 2 * ALPHA), abs=1e-6)
    # ploidy 0 takes no part
    f0 = estimate_frequencies(gl, np.array([True, True]), 2, np.array([2, 0]))
    assert f0[1] == pytest.approx((1 + ALPHA) / (2 + 2 * ALPHA), abs=1e-6)


def test_joint_call_mixed_ploidy_record():
    rows = [(0, [0.0, 30.0])] * 6 + [(0, [30.0, 0.0])] * 6 + [(1, [30.0, 0.0])] * 8
    rows += [(2, [30.0, 0.0])] * 3
    sample = np.array([s for s, _ in rows], np.int32)
    pen = np.array([p for _, p in rows], np.float64)
    site = np.zeros(len(rows), np.int32)
    c = joint_call(site, sample, pen, np.array([[True, True]]), 3, np.array([[2, 1, 0]]))
    assert c.genotype[0].tolist() == [[0, 1], [1, FILL], [MISSING, FILL]]
    assert c.PL[0, 1].tolist() == [240, 0, FILL]
    assert c.PL[0, 2].tolist() == [MISSING, MISSING, FILL]
    assert c.DP[0].tolist() == [12, 8, 3] and c.GQ[0, 2] == MISSING


# ----------------------------------------------------------------------------- presets
def test_grch38_preset_par_coordinates():
    inputs = CallInputs(
        "ref.fa", (), ("m", "f"),
        (("chr1", 1000), ("chrX", 156_040_895), ("chrY", 57_227_415), ("chrM", 16_569)),
    )  # fmt: skip
    import dataclasses

    from varcall.plan.ploidy import preset_rules

    params = dataclasses.replace(
        CallParams(ploidy="GRCh38"),
        sex_ploidy=tuple(preset_rules("GRCh38", inputs.contigs)),
        sample_sex=(("m", "M"), ("f", "F")),
    )
    x = contig_ploidy(params, inputs.samples, "chrX", 156_040_895)
    # 1-based PAR1 10,001-2,781,479 and PAR2 155,701,383-156,030,895 (GRC)
    at = x.at(np.array([9_999, 10_000, 2_781_478, 2_781_479, 155_701_381, 155_701_382,
                        156_030_894, 156_030_895]))  # fmt: skip
    assert at[:, 0].tolist() == [1, 2, 2, 1, 1, 2, 2, 1]
    assert at[:, 1].tolist() == [2] * 8
    y = contig_ploidy(params, inputs.samples, "chrY", 57_227_415)
    assert y.at(np.array([0, 10_000, 3_000_000, 56_887_902])).tolist() == [
        [1, 0], [2, 0], [1, 0], [2, 0],
    ]  # fmt: skip
    assert contig_ploidy(params, inputs.samples, "chrM", 16_569).uniform == 1
    assert contig_ploidy(params, inputs.samples, "chr1", 1000).uniform == 2
    with pytest.raises(InputError, match="chrX has 156,040,895 bp, GRCh37's 155,270,560"):
        preset_rules("GRCh37", inputs.contigs)


# ----------------------------------------------------------------------------- CLI
def _call(cohort: Path, out: Path, *extra: str):
    args = ["call", "-f", str(cohort / "reference.fa"), "--bam-list", str(cohort / "bams.txt"),
            "-o", str(out), "--single-process", "--no-progress", *extra]  # fmt: skip
    return CliRunner().invoke(main, args)


def test_cli_run_vcf_and_zarr(sex_cohort, tmp_path):
    out = tmp_path / "run"
    r = _call(sex_cohort, out, "--par-bed", str(sex_cohort / "par.bed"),
              "--samples-file", str(sex_cohort / "sexes.txt"))  # fmt: skip
    assert r.exit_code == 0, r.output
    with gzip.open(out / "calls.vcf.gz", "rt") as fh:
        rows = {(f[0], int(f[1])): f for ln in fh if not ln.startswith("#")
                for f in [ln.rstrip("\n").split("\t")]}  # fmt: skip
    gt = {k: [s.split(":")[0] for s in f[9:]] for k, f in rows.items()}
    assert gt[("chrX", 2_001)] == ["0/1", "0/0", "0/1", "0/0"]
    assert gt[("chrX", 10_001)] == ["1", "0", "0/1", "0/0"]
    assert gt[("chrY", 6_001)] == ["1", "0", ".", "."]
    assert "AN=6" in rows[("chrX", 10_001)][7] and "AN=2" in rows[("chrY", 6_001)][7]
    root = zarr.open_group(str(out / "calls.vcz"), mode="r")
    pos = root["variant_position"][:]
    g = root["call_genotype"][:]
    assert g[int(np.nonzero(pos == 10_001)[0][0])].tolist() == [[1, -2], [0, -2], [0, 1], [0, 0]]
    assert root["call_genotype"].attrs["mixed_ploidy"] is True
    import json

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["sample_sex"] == [[s, s[0]] for s in SAMPLES]
    assert manifest["params"]["par_bed"] == str((sex_cohort / "par.bed").resolve())
    from varcall.api import open_dataset

    ds = open_dataset(out)
    assert int((ds["call_genotype"] == -2).sum()) > 0
    # QC (concordance, report): a male's haploid calls in mixed records count as called
    from varcall.evaluate.qc import qc_stats

    qc = qc_stats(ds)["samples"]
    n = int(ds.sizes["variants"])
    assert qc["M1"]["n_called"] == n and qc["F1"]["n_called"] == n - 1  # F1: chrY missing
    assert qc["M1"]["n_hom_alt"] == 3  # hemizygous ALT at chrX 4,001 and 10,001, chrY 6,001


@pytest.mark.parametrize(
    ("files", "options", "message"),
    [
        ({"s.txt": "M1 M\nM2 M\nF1 F\nF2 X\n"}, ["--ploidy-file", "@p.txt", "--samples-file", "@s.txt"],
         "s.txt:4: sex 'X' of F2 is not one the ploidy definition names; use M or F"),
        ({"s.txt": "M1 M\nM2 M\nF1 F\nF2 F\nF3 F\n"}, ["--par-bed", "@par", "--samples-file", "@s.txt"],
         "s.txt:5: sample F3 is not in the cohort"),
        ({"s.txt": "M1 M\nF1 F\n"}, ["--par-bed", "@par", "--samples-file", "@s.txt"],
         "s.txt: no sex for cohort sample(s) M2, F2; add a line per sample"),
        ({"s.txt": "M1 M F\n"}, ["--par-bed", "@par", "--samples-file", "@s.txt"],
         "s.txt:1: expected 2 columns SAMPLE SEX"),
        ({"p.txt": "chrX 1 10 M 3\n"}, ["--ploidy-file", "@p.txt", "--samples-file", "@sexes"],
         "p.txt:1: ploidy '3'; give 0, 1 or 2"),
        ({"p.txt": "chrX 10 x M 1\n"}, ["--ploidy-file", "@p.txt", "--samples-file", "@sexes"],
         "p.txt:1: 'x' is not a position"),
        ({"p.txt": "chrX 1 10 M\n"}, ["--ploidy-file", "@p.txt", "--samples-file", "@sexes"],
         "p.txt:1: expected 5 columns"),
        ({}, ["--samples-file", "@sexes"], "sexes without a ploidy definition change nothing"),
        ({}, ["--par-bed", "@par"], "needs the samples' sexes; add --samples-file"),
        ({}, ["--ploidy", "GRCh38", "--samples-file", "@sexes"], "--ploidy GRCh38: the reference"),
        ({"b.bed": "chr1\t0\t10\n"}, ["--par-bed", "@b.bed", "--samples-file", "@sexes"],
         "b.bed: PAR on chr1; PARs lie on X/chrX and Y/chrY"),
        ({}, ["--samples-file", "@missing.txt", "--par-bed", "@par"], "missing.txt: cannot read"),
    ],
)  # fmt: skip
def test_file_errors_exit_2_one_line(sex_cohort, tmp_path, files, options, message):
    for name, text in {"p.txt": "chrX 1 100 M 1\n", **files}.items():
        (tmp_path / name).write_text(text)
    named = {"@par": sex_cohort / "par.bed", "@sexes": sex_cohort / "sexes.txt"}
    args = [str(named[o]) if o in named else str(tmp_path / o[1:]) if o.startswith("@") else o
            for o in options]  # fmt: skip
    out = tmp_path / "run"
    r = _call(sex_cohort, out, *args)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], r.output
    assert "Traceback" not in r.output and not out.exists()


def test_cli_ploidy_option_values(sex_cohort, tmp_path):
    r = _call(sex_cohort, tmp_path / "a", "--ploidy", "3")
    assert r.exit_code == 2 and "Invalid value for '--ploidy'" in r.output


def test_api_options_and_redacted_manifest(sex_cohort, tmp_path):
    """The Python API takes the same options; the manifest's paths are redacted with the
    other paths."""
    import json

    import varcall

    out = tmp_path / "api"
    varcall.call(
        sex_cohort / "reference.fa", [sex_cohort / f"{s}.bam" for s in SAMPLES], out,
        single_process=True, regions=["chrX"], par_bed=sex_cohort / "par.bed",
        samples_file=sex_cohort / "sexes.txt", redact_paths=True,
    )  # fmt: skip
    params = json.loads((out / "manifest.json").read_text())["params"]
    assert params["par_bed"] == "par.bed" and params["samples_file"] == "sexes.txt"
    assert ["chrX", 0, PAR_END, "M", 2] in params["sex_ploidy"]
    with pytest.raises(InputError, match="--ploidy GRCh99: give 1, 2 or one of GRCh37, GRCh38"):
        varcall.call(sex_cohort / "reference.fa", sex_cohort / "M1.bam", tmp_path / "x",
                     ploidy="GRCh99", single_process=True)  # fmt: skip
    with pytest.raises(InputError, match="--ploidy 3: out of range"):
        varcall.call(sex_cohort / "reference.fa", sex_cohort / "M1.bam", tmp_path / "x",
                     ploidy=3, single_process=True)  # fmt: skip
