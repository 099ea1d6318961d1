"""Straggler re-execution (varcall.run.speculate): a task running far longer than its
finished peers gets a second copy on another worker; the first result wins, the outputs
never change, both attempts are audited, and a failing copy never fails a unit that
another copy finished. Stragglers are made on purpose with tests/scale_data.py's
StallingEngine and tiny thresholds, so the tests stay fast."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from scale_data import FakeEngine, StallingEngine, _fake_calls, write_bam, write_reference

from varcall.core.callset import save_callset
from varcall.core.errors import InputError, RegionError
from varcall.core.files import sha256_file
from varcall.core.params import CallParams
from varcall.core.regions import Region
from varcall.plan.inputs import resolve_inputs
from varcall.run.checkpoints import (
    checkpoint_key,
    engine_version,
    inputs_identity,
    read_checkpoint,
    write_checkpoint,
)
from varcall.run.clusters import ClusterSpec, open_client
from varcall.run.record import _collect_audit
from varcall.run.speculate import Speculation, straggling
from varcall.run.tasks import run_region_task, scatter_regions

SLOW = "c1:10001-20000"  # the region made to straggle
FAST = Speculation(factor=2.0, min_seconds=0.3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    import numpy as np

    root = tmp_path_factory.mktemp("speculate")
    rng = np.random.default_rng(5)
    contigs = {
        "c1": "".join(rng.choice(list("ACGT"), 30_000)),
        "c2": "".join(rng.choice(list("ACGT"), 8_000)),
    }
    ref = write_reference(root / "ref.fa", contigs)
    bam = write_bam(root / "S1.bam", contigs, "S1", {"c1": [10, 500], "c2": [7]})
    regions = [
        Region("c1", 0, 10_000),
        Region("c1", 10_000, 20_000),
        Region("c1", 20_000, 30_000),
        Region("c2", 0, 8_000),
    ]
    return {"inputs": resolve_inputs(ref, [bam]), "regions": regions}


@pytest.fixture(scope="module")
def client():
    with open_client(ClusterSpec(workers=2, processes=False)) as c:
        yield c


def _keys(data, engine) -> list[str]:
    ident, params = inputs_identity(data["inputs"]), CallParams()
    ver = engine_version(engine)
    return [checkpoint_key(r, ident, params, params.engine, ver) for r in data["regions"]]


def _events(work: Path, key: str) -> list[dict]:
    return [json.loads(x) for x in (work / f"{key}.audit.jsonl").read_text().splitlines()]


def _scatter(data, work: Path, client, engine, **kw) -> list[dict]:
    return scatter_regions(
        data["regions"], _keys(data, engine), data["inputs"], CallParams(), work,
        client=client, run_id="r1", engine=engine, **kw,
    )  # fmt: skip


def _calls(markers: Path) -> list[str]:
    path = markers / "calls"
    return path.read_text().splitlines() if path.exists() else []


def _wait_for(predicate, seconds: float = 20.0) -> None:
    until = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < until, "timed out"
        time.sleep(0.05)


def _audit(work: Path, keys: list[str], sides: list[dict]) -> dict[str, list[dict]]:
    """audit.jsonl as the run writes it, by region."""
    winners = {s["key"]: s["attempt"] for s in sides if s.get("speculated")}
    _collect_audit(work, keys, "r1", work / "audit.jsonl", winners=winners)
    out: dict[str, list[dict]] = {}
    for line in (work / "audit.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out.setdefault(rec["region"], []).append(rec)
    return out


# ----------------------------------------------------------------------------- policy
def test_threshold_is_k_times_the_median_and_at_least_the_minimum():
    p = Speculation(factor=5.0, min_seconds=60.0)
    assert p.threshold([]) is None
    assert p.threshold([10.0, 20.0, 30.0]) == 100.0
    assert p.threshold([1.0, 2.0]) == 60.0
    assert Speculation(enabled=False).threshold([10.0]) is None
    assert Speculation().describe() == {"enabled": True, "factor": 5.0, "min_seconds": 60.0}


@pytest.mark.parametrize("kw", [{"factor": 0.9}, {"min_seconds": -1.0}])
def test_policy_rejects_out_of_range_values(kw):
    with pytest.raises(InputError, match="out of range"):
        Speculation(**kw)


def test_straggling_lists_late_tasks_oldest_first():
    running = {"a": 100.0, "b": 90.0, "c": 109.0}
    assert straggling(running, 5.0, 110.0) == ["b", "a"]
    assert straggling(running, None, 1e9) == []


# ----------------------------------------------------------------------------- checkpoints
def test_a_second_identical_checkpoint_write_is_harmless(data, tmp_path):
    region = data["regions"][0]
    calls = _fake_calls(data["inputs"], region.contig, region.start, region.end)
    save_callset(calls, tmp_path / "a.npz")
    time.sleep(1.1)  # a zip time stamp would differ now
    save_callset(calls, tmp_path / "b.npz")
    assert sha256_file(tmp_path / "a.npz") == sha256_file(tmp_path / "b.npz")
    first = write_checkpoint(tmp_path, "k" * 64, calls, {"attempt": "one", "run_id": "r"})
    second = write_checkpoint(tmp_path, "k" * 64, calls, {"attempt": "two", "run_id": "r"})
    assert first["file_sha256"] == second["file_sha256"]
    assert read_checkpoint(tmp_path, "k" * 64)["attempt"] == "two"


def test_the_later_copy_of_a_region_keeps_the_first_checkpoint(data, tmp_path):
    region, engine = data["regions"][0], FakeEngine()
    args = (region, data["inputs"], CallParams(), str(tmp_path), "c" * 64, "r1", engine)
    first = run_region_task(*args)
    npz = tmp_path / f"{'c' * 64}.npz"
    before = (npz.stat().st_ino, npz.stat().st_mtime_ns)
    second = run_region_task(*args, copy=1)
    assert second == read_checkpoint(tmp_path, "c" * 64) and second["attempt"] == first["attempt"]
    assert (npz.stat().st_ino, npz.stat().st_mtime_ns) == before  # not written again
    events = _events(tmp_path, "c" * 64)
    assert [e["event"] for e in events] == ["start", "done", "start", "cancelled"]
    assert events[2]["copy"] == 1 and "copy" not in events[0]
    assert set(events[3]) == {"key", "run_id", "attempt", "event", "time"}  # no paths
    # another run's checkpoint is no reason to stop: it is replaced
    third = run_region_task(*args[:5], "r2", engine)
    assert third["run_id"] == "r2" and third["attempt"] != first["attempt"]


# ----------------------------------------------------------------------------- the race
def test_a_straggler_gets_a_copy_and_the_first_result_wins(data, tmp_path, client):
    markers, work = tmp_path / "m", tmp_path / "w"
    markers.mkdir()
    work.mkdir()
    engine = StallingEngine(str(markers), [SLOW], seconds=60.0)
    t0 = time.monotonic()
    try:
        sides = _scatter(data, work, client, engine, speculation=FAST)
        assert time.monotonic() - t0 < 30  # not the 60 s of the stalled first attempt
    finally:
        engine.release()
    keys = _keys(data, engine)
    assert [s["key"] for s in sides] == keys
    # a task queued behind the straggler on its worker may get a copy too
    assert sides[1]["speculated"] and not sides[0]["speculated"]
    for s, r in zip(sides, data["regions"]):
        assert s["digest"] == _fake_calls(data["inputs"], r.contig, r.start, r.end).digest()
    assert _calls(markers) == [f"{SLOW} first", f"{SLOW} later"]
    # the released first attempt finds the copy's checkpoint and leaves it alone
    _wait_for(lambda: _events(work, keys[1])[-1]["event"] == "cancelled")
    side = read_checkpoint(work, keys[1])
    assert side is not None and side["attempt"] == sides[1]["attempt"]
    starts = [e for e in _events(work, keys[1]) if e["event"] == "start"]
    assert starts[0]["worker"] != starts[1]["worker"]  # the copy ran on the other worker
    audit = _audit(work, keys, sides)
    slow = audit[SLOW]
    assert [(a.get("copy", 0), a["outcome"]) for a in slow] == [(0, "cancelled"), (1, "won")]
    assert all(a["start"] and a["worker"] for a in slow)
    for region, attempts in audit.items():
        if region != SLOW:  # one attempt each: the original's or a queued task's copy
            assert len(attempts) == 1 and attempts[0]["outcome"] in ("ok", "won")


def test_no_copy_when_speculation_is_off(data, tmp_path, client):
    markers, work = tmp_path / "m", tmp_path / "w"
    markers.mkdir()
    work.mkdir()
    engine = StallingEngine(str(markers), [SLOW], seconds=1.0)
    t0 = time.monotonic()
    sides = _scatter(data, work, client, engine, speculation=Speculation(enabled=False))
    assert time.monotonic() - t0 >= 1.0
    assert _calls(markers) == [f"{SLOW} first"]
    assert not any(s["speculated"] for s in sides)
    assert [a["outcome"] for x in _audit(work, _keys(data, engine), sides).values() for a in x] == [
        "ok"
    ] * 4


def test_a_failing_copy_does_not_fail_the_run(data, tmp_path, client):
    markers, work = tmp_path / "m", tmp_path / "w"
    markers.mkdir()
    work.mkdir()
    engine = StallingEngine(str(markers), [SLOW], seconds=1.5, fail_later=True)
    sides = _scatter(data, work, client, engine, speculation=FAST, retries=0)
    assert _calls(markers) == [f"{SLOW} first", f"{SLOW} later"]
    assert sides[1]["speculated"] and read_checkpoint(work, sides[1]["key"]) is not None
    slow = _audit(work, _keys(data, engine), sides)[SLOW]
    assert [(a.get("copy", 0), a["outcome"]) for a in slow] == [(0, "won"), (1, "error")]
    assert "simulated later failure" in slow[1]["error"]


def test_a_failing_original_waits_for_its_copy(data, tmp_path, client):
    """The first attempt fails while its copy still runs: the copy's result is used."""
    markers, work = tmp_path / "m", tmp_path / "w"
    markers.mkdir()
    work.mkdir()
    engine = StallingEngine(str(markers), [SLOW], seconds=1.0, fail_first=True, later_seconds=2.0)
    sides = _scatter(data, work, client, engine, speculation=FAST, retries=0)
    assert sides[1]["speculated"]
    slow = _audit(work, _keys(data, engine), sides)[SLOW]
    assert [(a.get("copy", 0), a["outcome"]) for a in slow] == [(0, "error"), (1, "won")]


def test_a_unit_fails_when_every_copy_failed(data, tmp_path, client):
    markers, work = tmp_path / "m", tmp_path / "w"
    markers.mkdir()
    work.mkdir()
    engine = StallingEngine(str(markers), [SLOW], seconds=1.0, fail_first=True, fail_later=True)
    with pytest.raises(
        RegionError, match=r"c1:10001-20000: simulated (first|later) failure.*--resume"
    ):
        _scatter(data, work, client, engine, speculation=FAST, retries=0)
    keys = _keys(data, engine)
    assert [read_checkpoint(work, k) is None for k in keys] == [False, True, False, False]
