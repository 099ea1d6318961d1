"""Depth-bounded windows of the native engine: sized from the indexes' read volume
(:mod:`varcall.plan.volume`, :mod:`varcall.engines.native.windows`), never changing a call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scale_data import make_shaped_dataset

from varcall.core.errors import InputError
from varcall.core.params import CallParams
from varcall.core.regions import Region
from varcall.engines.native import NativeEngine
from varcall.engines.native import engine as engine_mod
from varcall.engines.native import windows as win
from varcall.plan.inputs import resolve_inputs
from varcall.plan.volume import WINDOW, contig_volume
from varcall.simulate.cohort import simulate_cohort
from varcall.simulate.config import SimulationConfig

DEEP = SimulationConfig(n_samples=1, n_contigs=1, contig_length=8_000, coverage=300.0, seed=4)


@pytest.fixture(scope="module")
def deep(tmp_path_factory: pytest.TempPathFactory):
    root = simulate_cohort(tmp_path_factory.mktemp("deep") / "cohort", DEEP)
    inputs = resolve_inputs(root / "reference.fa", [root / "S01.bam"])
    region = Region("chr1", 0, DEEP.contig_length)
    whole = NativeEngine().call_region(inputs, region, CallParams())
    assert whole.n_variants > 3  # a test that can fail
    return inputs, region, whole


@pytest.fixture(scope="module")
def shaped(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_shaped_dataset(tmp_path_factory.mktemp("shaped"))


def _calls_with(inputs, region, monkeypatch, windows) -> tuple:
    seen: list[tuple[int, int]] = []

    def fixed(*args, **kwargs):
        seen.extend(windows)
        return list(windows)

    monkeypatch.setattr(engine_mod, "plan_windows", fixed)
    calls = NativeEngine().call_region(inputs, region, CallParams())
    monkeypatch.undo()
    return calls, seen


def test_tiny_budget_windows_on_a_deep_pileup_same_calls(deep, monkeypatch) -> None:
    """A budget far below the pileup's size cuts it into many small windows; the calls are
    those of one window."""
    inputs, region, whole = deep
    monkeypatch.setattr(win, "MIN_WINDOW", 50)
    monkeypatch.setattr(win, "MIN_WINDOW_MB", 1)
    monkeypatch.setattr(win, "PROCESS_MB", 0)
    windows = win.plan_windows(inputs, "chr1", region.end, 0, region.end, 200_000, 2)
    assert len(windows) >= 20
    assert sorted(b - a for a, b in windows)[len(windows) // 2] < 1_000
    monkeypatch.undo()
    calls, seen = _calls_with(inputs, region, monkeypatch, windows)
    assert seen == windows
    assert calls.equals(whole)


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cuts=st.lists(st.integers(1, DEEP.contig_length - 1), min_size=1, max_size=12, unique=True))
def test_any_tiling_same_calls(deep, monkeypatch, cuts) -> None:
    inputs, region, whole = deep
    bounds = [0, *sorted(cuts), region.end]
    calls, _ = _calls_with(inputs, region, monkeypatch, list(zip(bounds[:-1], bounds[1:])))
    assert calls.equals(whole)


def test_default_budget_windows_follow_depth(deep, shaped, monkeypatch) -> None:
    """Windows tile the region, respect the length cap, and are shorter where reads are
    denser; a larger budget gives longer windows."""
    inputs, region, _ = deep
    small = win.plan_windows(inputs, "chr1", region.end, 0, region.end, 200_000, 1024)
    assert small == [(0, region.end)]  # 8 kb at 300x fits 1 GiB
    sh = resolve_inputs(shaped["reference"], shaped["bams"])
    length = sh.contig_length("c1")
    args = (sh, "c1", length, 0, length, 200_000)  # dense: [32768, 65536)
    vol = contig_volume(sh.bams, sh.reference, "c1", length)
    # a small data set: scale the estimate up instead of the data
    monkeypatch.setattr(win, "READ_FACTOR", 2**20 / vol[2])  # a dense 16 kb window: 1 MiB
    monkeypatch.setattr(win, "MIN_WINDOW_MB", 0)
    monkeypatch.setattr(win, "POSITION_BYTES", 0)
    tight = win.plan_windows(*args, win.PROCESS_MB + 1)
    assert [w[0] for w in tight] == [0, *[w[1] for w in tight[:-1]]] and tight[-1][1] == length
    dense = win.plan_windows(sh, "c1", length, 32_768, 65_536, 200_000, win.PROCESS_MB + 1)
    sparse = win.plan_windows(sh, "c1", length, 80_000, 200_000, 200_000, win.PROCESS_MB + 1)
    assert len(dense) >= 2 and max(b - a for a, b in dense) < 20_000
    assert len(sparse) <= 3 and min(b - a for a, b in sparse[:-1] or sparse) > 40_000
    assert len(win.plan_windows(*args, win.PROCESS_MB + 20)) < len(tight)
    capped = win.plan_windows(sh, "c1", length, 0, length, 7_000, win.PROCESS_MB + 1)
    assert max(b - a for a, b in capped) <= 7_000


def test_no_index_falls_back_to_length(deep, monkeypatch) -> None:
    inputs, region, _ = deep
    monkeypatch.setattr(win, "contig_volume", lambda *a: None)
    assert win.plan_windows(inputs, "chr1", region.end, 100, 7_100, 3_000, 1) == [
        (100, 3_100),
        (3_100, 6_100),
        (6_100, 7_100),
    ]


def test_volume_follows_coverage_bai_and_csi(shaped) -> None:
    """The dense 16 kb windows (2, 3: 10x the coverage) hold about 10x the bytes, from a
    BAI, a CSI and a CRAI alike; the BAI's total is about the file's decoded size."""
    import gzip

    import pysam

    bai = str(shaped["bams"][0])
    csi = str(Path(bai).with_name("S1.csi.bam"))
    cram = str(Path(bai).with_name("S1.cram"))
    if not Path(cram).exists():
        pysam.view("-C", "-T", str(shaped["reference"]), "-o", cram, bai, catch_stdout=False)
        pysam.index(cram)
    length = len(shaped["contigs"]["c1"])
    totals = {}
    for path in (bai, csi, cram):
        vol = contig_volume([path], str(shaped["reference"]), "c1", length)
        assert vol is not None and vol.shape == ((length + WINDOW - 1) // WINDOW,)
        totals[path] = vol.sum()
    # CRAM: slices span ~100 kb here (no 16 kb detail); the total errs on the high side
    assert totals[bai] < totals[cram] < 10 * totals[bai]
    assert 0.7 * totals[bai] < totals[csi] < 1.3 * totals[bai]
    for path in (bai, csi):
        vol = contig_volume([path], str(shaped["reference"]), "c1", length)
        assert vol is not None and vol.shape == ((length + WINDOW - 1) // WINDOW,)
        sparse = np.median(vol[5:])
        assert 5 * sparse < vol[2] < 20 * sparse, (path, vol)
        assert 5 * sparse < vol[3] < 20 * sparse, (path, vol)
    total = contig_volume([bai], str(shaped["reference"]), "c1", length).sum()
    total += contig_volume([bai], str(shaped["reference"]), "c2", 50_000).sum()
    decoded = len(gzip.decompress(Path(bai).read_bytes()))
    assert 0.7 * decoded < total < 1.3 * decoded


def test_memory_budget_option() -> None:
    """--memory-budget is a CallParams field (MiB) with its generated option."""
    from click.testing import CliRunner

    from varcall.cli.call import PARAM_OPTIONS
    from varcall.cli.main import main

    assert CallParams().memory_budget == 1024
    assert any(s.field == "memory_budget" for s in PARAM_OPTIONS.specs)
    result = CliRunner().invoke(main, ["call", "--help"])
    assert "--memory-budget" in result.output


def test_memory_budget_api_checked(tmp_path: Path) -> None:
    """The API checks the range as the command line does."""
    import varcall

    with pytest.raises(InputError, match="--memory-budget 0: out of range"):
        varcall.call(tmp_path / "ref.fa", [tmp_path / "a.bam"], tmp_path / "out", memory_budget=0)


def _same(a, b) -> bool:
    from _callsets import same_records

    return a.contig == b.contig and same_records(a, b)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.integers(0, 1_500), st.integers(1, 900)), min_size=2, max_size=9))
def test_regions_called_together_equal_each_alone(small_cohort: Path, cuts) -> None:
    """call_regions (neighbours share their windows' reads, sites called only inside the
    regions) gives each region the calls call_region gives it alone."""
    inputs = resolve_inputs(small_cohort / "reference.fa", sorted(small_cohort.glob("*.bam")))
    regions, pos = [], 9_000
    for gap, length in cuts:  # ordered, disjoint; gaps from 0 to past GROUP_GAP
        pos += gap
        regions.append(Region("chr1", pos, pos + length))
        pos += length
    regions.append(Region("chr2", 100, 2_000))  # another contig ends a group
    eng = NativeEngine()
    together = eng.call_regions(inputs, regions, CallParams())
    assert len(together) == len(regions)
    for r, cs in zip(regions, together):
        assert _same(cs, eng.call_region(inputs, r, CallParams())), r
    assert sum(cs.n_variants for cs in together) > 0  # a test that can fail


def test_region_groups_cut_at_gaps_contigs_and_window_length() -> None:
    gap = engine_mod.GROUP_GAP
    rs = [Region("a", 0, 100), Region("a", 100, 200), Region("a", 200 + gap, 300 + gap),
          Region("a", 301 + 2 * gap, 400 + 2 * gap), Region("b", 0, 10), Region("b", 5, 20)]  # fmt: skip
    groups = engine_mod._region_groups(rs, 10_000)
    assert [len(g) for g in groups] == [3, 1, 1, 1]
    assert [len(g) for g in engine_mod._region_groups(rs[:3], 250)] == [2, 1]
