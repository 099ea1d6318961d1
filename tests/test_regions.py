"""Region strings, BED files and index-based, coverage-balanced region planning."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pysam
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from scale_data import READ_LEN, make_shaped_dataset

from varcall.cli.main import main
from varcall.core.errors import InputError
from varcall.core.regions import (
    Region,
    merge_regions,
    parse_region_string,
    read_bed_regions,
    sort_regions,
    write_bed,
)
from varcall.plan.inputs import resolve_inputs
from varcall.plan.regions import WINDOW, coverage_profile, plan_regions

CONTIGS = (("chr1", 1000), ("chr2", 500), ("HLA-A*01:01", 300))


# ----------------------------------------------------------------------------- strings, BED
@pytest.mark.parametrize(
    "text, expect",
    [
        ("chr1", Region("chr1", 0, 1000)),
        ("chr1:11-20", Region("chr1", 10, 20)),
        ("chr1:1,001-1,000,000", None),  # start past the end -> error
        ("chr1:101", Region("chr1", 100, 1000)),
        ("chr1:101-", Region("chr1", 100, 1000)),
        ("chr2:1-600", Region("chr2", 0, 500)),  # end clipped to the contig
        ("HLA-A*01:01", Region("HLA-A*01:01", 0, 300)),
        ("HLA-A*01:01:5-10", Region("HLA-A*01:01", 4, 10)),
    ],
)
def test_parse_region_string(text, expect):
    if expect is None:
        with pytest.raises(InputError, match="starts after the end"):
            parse_region_string(text, CONTIGS)
    else:
        assert parse_region_string(text, CONTIGS) == expect


@pytest.mark.parametrize(
    "text, message",
    [
        ("chrX", "contig not in the reference"),
        ("chrX:1-10", "contig 'chrX' not in the reference"),
        ("chr1:a-b", "not numbers"),
        ("chr1:20-10", "empty or negative"),
        ("chr1:0-10", "empty or negative"),
    ],
)
def test_parse_region_string_errors(text, message):
    with pytest.raises(InputError, match=message) as err:
        parse_region_string(text, CONTIGS)
    assert "\n" not in str(err.value) and "CHR:START-END" in str(err.value)


def test_bed_roundtrip_and_gzip(tmp_path):
    regions = [Region("chr1", 0, 10), Region("chr2", 5, 500), Region("chr1", 990, 1000)]
    write_bed(regions, tmp_path / "a.bed")
    assert read_bed_regions(tmp_path / "a.bed", CONTIGS) == regions
    text = "track name=x\n# comment\n\nchr1\t1\t2\textra\tcols\n"
    with gzip.open(tmp_path / "b.bed.gz", "wt") as fh:
        fh.write(text)
    assert read_bed_regions(tmp_path / "b.bed.gz", CONTIGS) == [Region("chr1", 1, 2)]
    assert not list(tmp_path.glob(".*tmp*")), "no temporary file left behind"


@pytest.mark.parametrize(
    "line, message",
    [
        ("chr1\t5\n", "expected 3 columns"),
        ("chr1\tx\t5\n", "not integers"),
        ("chrZ\t1\t5\n", "contig 'chrZ' not in the reference"),
        ("chr1\t5\t5\n", "empty or negative"),
        ("chr1\t-1\t5\n", "empty or negative"),
        ("chr2\t1\t501\n", "beyond the end of chr2"),
    ],
)
def test_bed_errors_name_file_and_line(tmp_path, line, message):
    bed = tmp_path / "bad.bed"
    bed.write_text("chr1\t0\t10\n" + line)
    with pytest.raises(InputError, match=message) as err:
        read_bed_regions(bed, CONTIGS)
    assert str(err.value).startswith(f"{bed}:2: ")


def test_bed_missing_file(tmp_path):
    with pytest.raises(InputError, match="BED file not found"):
        read_bed_regions(tmp_path / "none.bed", CONTIGS)


def test_sort_and_merge():
    order = ["chr2", "chr1"]
    rs = [Region("chr1", 5, 10), Region("chr2", 0, 5), Region("chr1", 0, 6), Region("chr1", 10, 12)]
    assert sort_regions(rs, order)[0] == Region("chr2", 0, 5)
    # overlapping merged, touching kept apart (a tiling stays a tiling)
    assert merge_regions(rs, order) == [
        Region("chr2", 0, 5),
        Region("chr1", 0, 10),
        Region("chr1", 10, 12),
    ]


# ----------------------------------------------------------------------------- planning
@pytest.fixture(scope="module")
def shaped(tmp_path_factory):
    data = make_shaped_dataset(tmp_path_factory.mktemp("shaped"))
    data["inputs"] = resolve_inputs(data["reference"], data["bams"])
    return data


def _reads_per_window(data, contig, length):
    n = (length + WINDOW - 1) // WINDOW
    counts = np.zeros(n)
    for starts in data["starts"]:
        s = np.asarray(starts[contig])
        s = s[(s + READ_LEN) <= length]
        np.add.at(counts, s // WINDOW, 1)
    return counts


def _reads_in(data, region):
    total = 0
    for starts in data["starts"]:
        s = np.asarray(starts[region.contig])
        total += int(((s >= region.start) & (s < region.end)).sum())
    return total


def _check_tiling(plan, intervals):
    """Regions tile the intervals exactly: contiguous, no overlap, nothing missing."""
    by = {}
    for r in plan:
        assert r.length > 0
        by.setdefault(r.contig, []).append(r)
    for iv in intervals:
        rs = [r for r in by.get(iv.contig, []) if iv.start <= r.start < iv.end]
        assert rs[0].start == iv.start and rs[-1].end == iv.end
        for a, b in zip(rs, rs[1:]):
            assert a.end == b.start


def test_coverage_profile_follows_reads(shaped):
    prof = coverage_profile(shaped["inputs"])
    assert set(prof) == {"c1", "c2"}
    reads = _reads_per_window(shaped, "c1", 200_000)
    p = prof["c1"]
    assert p.shape == reads.shape
    # bytes per window track reads per window (dense stretch [40k, 60k) -> windows 2..3)
    corr = np.corrcoef(p, reads)[0, 1]
    assert corr > 0.95, corr
    dense, sparse = p[3], np.median(p[8:12])
    assert dense > 5 * sparse
    # the estimate is in bytes of the same order as the compressed file
    total = sum(float(v.sum()) for v in prof.values())
    size = sum(Path(b).stat().st_size for b in shaped["bams"])
    assert 0.5 * size < total < 1.5 * size


def test_csi_index_gives_the_same_profile(shaped, tmp_path):
    bam = Path(shaped["bams"][0]).with_name("S1.csi.bam")
    assert Path(f"{bam}.csi").is_file() and not Path(f"{bam}.bai").exists()
    one = resolve_inputs(shaped["reference"], [shaped["bams"][0]])
    csi = resolve_inputs(shaped["reference"], [bam])
    a, b = coverage_profile(one)["c1"], coverage_profile(csi)["c1"]
    assert np.corrcoef(a, b)[0, 1] > 0.99
    assert abs(a.sum() - b.sum()) < 0.05 * a.sum()


def test_cram_index_profile(shaped, tmp_path):
    # CRAI resolution is one slice (10,000 reads by default, ~50 kb at 30x); small slices
    # here so the 200 kb test contig has a profile to compare
    cram = tmp_path / "S1.cram"
    pysam.view(
        "-C",
        "-T",
        str(shaped["reference"]),
        "--output-fmt-option",
        "seqs_per_slice=200",
        "-o",
        str(cram),
        str(shaped["bams"][0]),
        catch_stdout=False,
    )
    pysam.index(str(cram))
    inputs = resolve_inputs(shaped["reference"], [cram])
    p = coverage_profile(inputs)["c1"]
    reads = _reads_per_window({"starts": shaped["starts"][:1]}, "c1", 200_000)
    assert np.corrcoef(p, reads)[0, 1] > 0.8
    assert p[3] > 4 * np.median(p[8:12])


def test_plan_is_deterministic_tiling_and_counted(shaped):
    inputs = shaped["inputs"]
    whole = [Region("c1", 0, 200_000), Region("c2", 0, 50_000)]
    for count in (1, 2, 7, 50):
        plan = plan_regions(inputs, region_count=count)
        assert plan == plan_regions(inputs, region_count=count)
        assert len(plan) == max(count, 2)
        _check_tiling(plan, whole)
    plan = plan_regions(inputs, region_size=25_000)
    assert len(plan) == 10
    _check_tiling(plan, whole)
    assert plan_regions(inputs) == whole  # default 5 Mb: one region per contig


def test_plan_balances_reads(shaped):
    inputs = shaped["inputs"]
    plan = plan_regions(inputs, region_count=12, avoid_n=False)
    balanced = [_reads_in(shaped, r) for r in plan]
    # the same number of regions cut by length only
    total_len = 250_000
    uniform = []
    for name, length in inputs.contigs:
        k = round(12 * length / total_len)
        edges = np.linspace(0, length, k + 1).astype(int)
        uniform += [_reads_in(shaped, Region(name, a, b)) for a, b in zip(edges, edges[1:])]
    assert max(balanced) < 0.6 * max(uniform), (balanced, uniform)
    # the index resolution is one 16 kb window: balance within that
    assert max(balanced) / np.mean(balanced) < 1.4


def test_split_point_moves_into_run_of_n(shaped):
    inputs = shaped["inputs"]
    restrict = [Region("c1", 100_000, 141_000)]
    with_n = plan_regions(inputs, region_count=2, restrict=restrict)
    assert len(with_n) == 2
    cut = with_n[0].end
    assert 120_000 <= cut < 121_000, with_n
    without = plan_regions(inputs, region_count=2, restrict=restrict, avoid_n=False)
    assert without[0].end != cut


def test_plan_keeps_a_tiling_restriction(shaped):
    inputs = shaped["inputs"]
    layout = [
        Region("c1", 0, 10_000),
        Region("c1", 10_000, 20_000),
        Region("c1", 20_000, 30_000),
        Region("c1", 30_000, 200_000),
        Region("c2", 0, 50_000),
    ]
    assert plan_regions(inputs, restrict=layout) == layout
    # overlapping restriction intervals are merged, never called twice
    plan = plan_regions(inputs, restrict=[Region("c2", 0, 300), Region("c2", 200, 900)])
    assert plan == [Region("c2", 0, 900)]
    # a restriction split further keeps within its intervals
    plan = plan_regions(inputs, region_count=5, restrict=[Region("c1", 1000, 9000)])
    _check_tiling(plan, [Region("c1", 1000, 9000)])
    assert len(plan) == 5


def test_plan_limits(shaped):
    inputs = shaped["inputs"]
    tiny = [Region("c2", 10, 13)]
    assert plan_regions(inputs, region_count=50, restrict=tiny) == [
        Region("c2", 10, 11),
        Region("c2", 11, 12),
        Region("c2", 12, 13),
    ]
    with pytest.raises(InputError, match="use one of them"):
        plan_regions(inputs, region_size=10, region_count=2)
    with pytest.raises(InputError, match="outside the reference"):
        plan_regions(inputs, restrict=[Region("c2", 0, 60_000)])


# ----------------------------------------------------------------------------- CLI
def test_cli_regions(shaped, tmp_path):
    out = tmp_path / "plan.bed"
    args = ["regions", "-f", str(shaped["reference"]), *map(str, shaped["bams"]), "-o", str(out)]
    res = CliRunner().invoke(main, [*args, "--region-count", "7"])
    assert res.exit_code == 0, res.output
    plan = read_bed_regions(out, shaped["inputs"].contigs)
    assert plan == plan_regions(shaped["inputs"], region_count=7)
    res = CliRunner().invoke(main, [*args, "-r", "c1:1001-5000", "--region-size", "1000"])
    assert res.exit_code == 0, res.output
    assert read_bed_regions(out, shaped["inputs"].contigs)[0] == Region("c1", 1000, 2000)


def test_cli_regions_bad_region(shaped, tmp_path):
    out = tmp_path / "plan.bed"
    res = CliRunner().invoke(
        main,
        [
            "regions",
            "-f",
            str(shaped["reference"]),
            str(shaped["bams"][0]),
            "-o",
            str(out),
            "-r",
            "chrQ:1-10",
        ],
    )
    assert res.exit_code == 2
    assert "chrQ" in res.output and "varcall: error:" in res.output
    assert not out.exists()


def test_profile_of_many_files_reads_a_spread_subset(shaped):
    inputs = shaped["inputs"]
    one = resolve_inputs(shaped["reference"], [shaped["bams"][0]])
    sub = coverage_profile(inputs, max_files=1)["c1"]
    # the first file, scaled to the two files of the run
    assert np.allclose(sub, 2 * coverage_profile(one)["c1"])
    full = coverage_profile(inputs)["c1"]
    assert abs(sub.sum() - full.sum()) < 0.1 * full.sum()


def test_split_point_leaves_dense_windows(shaped, monkeypatch):
    """An ideal cut inside the dense stretch [32768, 65536) moves to the sparser window
    next to it (within the 10% tolerance); without tolerance it stays inside."""
    import varcall.plan.regions as regions_module

    inputs = shaped["inputs"]
    whole = [Region("c1", 0, 200_000)]
    cut = plan_regions(inputs, region_count=2, restrict=whole, avoid_n=False)[0].end
    assert not 32_768 <= cut < 65_536, cut
    monkeypatch.setattr(regions_module, "SHIFT_FRACTION", 0.0)
    ideal = plan_regions(inputs, region_count=2, restrict=whole, avoid_n=False)[0].end
    assert 32_768 <= ideal < 65_536, ideal
    assert abs(cut - ideal) <= 0.1 * 200_000 / 2


def test_default_region_count_cuts_every_contig_to_at_most_the_mean():
    """Without --region-size/--region-count: at least 3 regions per worker slot, rounded
    up per contig so that no region is longer than the mean (no straggler regions)."""
    from varcall.core.params import CallInputs
    from varcall.run.prepare import default_region_count

    def inputs(*lengths: int) -> CallInputs:
        contigs = tuple((f"c{i}", n) for i, n in enumerate(lengths))
        return CallInputs(reference="r.fa", bams=("a.bam",), samples=("a",), contigs=contigs)

    four = inputs(1_300_000, 1_300_000, 1_300_000, 1_300_000)
    assert default_region_count(four, None, 2) == 8  # 6 would give 2, 2, 1 and 1 pieces
    assert default_region_count(four, None, 1) == 4
    assert default_region_count(inputs(30_000_000), None, 2) == 6  # one per 5 Mb
    assert default_region_count(inputs(12_000_000, 3_000), None, 1) == 4  # 3 + 1
    restrict = [Region("c0", 0, 1_000_000)]
    assert default_region_count(four, restrict, 2) == 6


@given(
    lengths=st.lists(st.integers(1, 20_000_000), min_size=1, max_size=30),
    slots=st.integers(1, 64),
)
def test_default_region_count_bounds(lengths, slots):
    import math

    from varcall.core.params import CallInputs
    from varcall.plan.regions import DEFAULT_REGION_SIZE
    from varcall.run.prepare import TASKS_PER_SLOT, default_region_count

    contigs = tuple((f"c{i}", n) for i, n in enumerate(lengths))
    ins = CallInputs(reference="r.fa", bams=("a.bam",), samples=("a",), contigs=contigs)
    n = default_region_count(ins, None, slots)
    base = max(1, math.ceil(sum(lengths) / DEFAULT_REGION_SIZE), TASKS_PER_SLOT * slots)
    assert base <= n <= base + len(lengths)
    mean = sum(lengths) / base
    assert n >= len(lengths)
    assert sum(math.ceil(x / mean - 1e-9) for x in lengths) <= n
