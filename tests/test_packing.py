"""Packing: many small regions (a target BED, -r lists, small contigs) run as a few Dask
tasks of about equal work, with the calls of one task per region.

:func:`varcall.plan.regions.pack_regions` groups consecutive regions by estimated cost
(:func:`varcall.plan.regions.region_costs`: indexed bytes plus a per-base and a per-region
term); :func:`varcall.run.prepare.pack_layout` picks the task count (that of the default
plan); :func:`varcall.run.tasks.run_pack_task` calls a task's regions one after the other,
each into its own checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_identity import assert_same_output, bams_of

from varcall.core.params import CallParams
from varcall.core.regions import Region
from varcall.plan.inputs import resolve_inputs
from varcall.plan.regions import WINDOW, coverage_profile, pack_regions, region_costs
from varcall.run.clusters import ClusterSpec, open_client
from varcall.run.pipeline import run_call
from varcall.run.prepare import TASKS_PER_SLOT, pack_layout
from varcall.run.tasks import run_pack_task


@pytest.fixture(scope="module")
def thread2():
    with open_client(ClusterSpec(workers=2, processes=False)) as client:
        yield client


@pytest.fixture
def no_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoints of 10,000 regions without 20,000 fsyncs (durability is not under test;
    the bytes written are the same)."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)


# ----------------------------------------------------------------------------- pack_regions
@settings(max_examples=60, deadline=None)
@given(
    costs=st.lists(st.floats(min_value=0, max_value=1e6), min_size=0, max_size=200),
    n_tasks=st.integers(min_value=1, max_value=50),
)
def test_packs_partition_in_order(costs: list[float], n_tasks: int) -> None:
    packs = pack_regions(costs, n_tasks)
    assert [i for p in packs for i in p] == list(range(len(costs)))
    assert all(p for p in packs)
    assert len(packs) <= max(1, min(n_tasks, len(costs))) or not costs
    assert pack_regions(costs, n_tasks) == packs  # deterministic


def test_packs_balance_cost() -> None:
    costs = [1.0] * 1000
    packs = pack_regions(costs, 8)
    assert len(packs) == 8
    assert {len(p) for p in packs} == {125}


def test_expensive_region_gets_its_own_task() -> None:
    costs = [1.0] * 50 + [1000.0] + [1.0] * 50
    packs = pack_regions(costs, 4)
    assert [50] in packs
    assert len(packs) <= 4


def test_one_task_per_region_when_enough_tasks() -> None:
    assert pack_regions([3.0, 1.0, 2.0], 5) == [[0], [1], [2]]


# ----------------------------------------------------------------------------- costs
def test_costs_follow_indexed_bytes() -> None:
    profile = {"a": np.array([1000.0, 0.0, 0.0]), "b": np.zeros(1)}
    regions = [
        Region("a", 0, 100),
        Region("a", WINDOW, WINDOW + 100),
        Region("b", 0, 100),  # a contig without reads
    ]
    costs = region_costs(regions, profile)
    assert costs[0] > costs[1]
    assert costs[1] == pytest.approx(costs[2])  # no reads: only the fixed terms


def test_task_count_follows_work_not_lines(small_cohort: Path) -> None:
    inputs = resolve_inputs(
        str(small_cohort / "reference.fa"), [str(b) for b in bams_of(small_cohort)]
    )
    layout = [Region(c, s, s + 8) for c, n in inputs.contigs for s in range(0, n, 8)]
    packs = pack_layout(inputs, layout, slots=2)
    assert packs is not None and len(packs) == TASKS_PER_SLOT * 2
    assert [i for p in packs for i in p] == list(range(len(layout)))
    # few regions: one task each, as before
    assert pack_layout(inputs, layout[:4], slots=2) is None
    # regions about as many as tasks (the default plan's 8 for 2 slots): packing would
    # make tasks of one and of two regions, the double ones the run's stragglers
    n_tasks = TASKS_PER_SLOT * 2
    assert pack_layout(inputs, layout[: 2 * n_tasks - 1], slots=2) is None
    assert len(pack_layout(inputs, layout[: 2 * n_tasks], slots=2) or []) == n_tasks
    # the tasks are balanced by the indexed bytes
    costs = region_costs(layout, coverage_profile(inputs))
    sums = [costs[p].sum() for p in packs]
    assert max(sums) < 1.5 * min(sums)


# ----------------------------------------------------------------------------- tasks
def test_pack_task_retry_skips_done_regions(small_cohort: Path, tmp_path: Path) -> None:
    """A retried task (same run id) does not call again what it already checkpointed."""
    inputs = resolve_inputs(
        str(small_cohort / "reference.fa"), [str(b) for b in bams_of(small_cohort)]
    )
    regions = [Region("chr1", 0, 5_000), Region("chr1", 5_000, 10_000)]
    keys = ["k0", "k1"]
    first = run_pack_task(regions, keys, inputs, CallParams(), str(tmp_path), "run-a")
    again = run_pack_task(regions, keys, inputs, CallParams(), str(tmp_path), "run-a")
    assert [s["attempt"] for s in again] == [s["attempt"] for s in first]
    other_run = run_pack_task(regions, keys, inputs, CallParams(), str(tmp_path), "run-b")
    assert [s["digest"] for s in other_run] == [s["digest"] for s in first]
    assert [s["attempt"] for s in other_run] != [s["attempt"] for s in first]


# ----------------------------------------------------------------------------- identity
def _tiling_bed(path: Path, contigs: list[tuple[str, int]], n: int) -> Path:
    """``n`` touching intervals tiling the contigs (0-based half-open BED)."""
    per = n // len(contigs)
    lines = []
    for contig, length in contigs:
        edges = np.linspace(0, length, per + 1).round().astype(int)
        lines += [f"{contig}\t{a}\t{b}\n" for a, b in zip(edges[:-1], edges[1:])]
    path.write_text("".join(lines))
    return path


@pytest.mark.parametrize("n", [1_000, pytest.param(10_000, marks=pytest.mark.slow)])
def test_packed_bed_identity(small_cohort, thread2, tmp_path, no_fsync, n):
    """``n`` BED intervals (10,000: ``slow``, about 3 minutes): packed into a few Dask tasks, the outputs are those of one
    unit per interval (the single-process run of the same BED, interval by interval)."""
    ref = small_cohort / "reference.fa"
    contigs = [("chr1", 40_000), ("chr2", 40_000)]
    bed = _tiling_bed(tmp_path / "targets.bed", contigs, n)
    packed = run_call(
        ref, bams_of(small_cohort), tmp_path / "packed", client=thread2, regions_bed=bed
    )
    single = run_call(
        ref, bams_of(small_cohort), tmp_path / "single", mode="single", regions_bed=bed
    )
    assert packed.n_units == single.n_units == n
    assert_same_output(tmp_path / "single", tmp_path / "packed")
    # every interval has its own checkpoint, the same in both runs
    digests_p = [u.digest for u in packed.manifest.units]
    digests_s = [u.digest for u in single.manifest.units]
    assert digests_p == digests_s
