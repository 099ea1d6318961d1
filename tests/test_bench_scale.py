"""`make bench-scale` (benchmarks/scale.py): the pure parts, fast: task overhead, rates,
the 30x projection, the tables, the README section and the plot, on made-up runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import scale  # noqa: E402


def _row(sweep: str, x, **kw) -> dict:
    base = {
        "sweep": sweep, "x": x, "workers": 2, "status": "ok", "rc": 0, "wall_s": 10.0,
        "cpu_s": 18.0, "peak_tree_rss_mb": 900.0, "max_process_rss_mb": 400.0, "n_units": 10,
        "n_variants": 300, "call_seconds": 8.0, "merge_seconds": 1.0, "encode_seconds": None,
        "task_seconds_sum": 12.0, "worker_peak_rss_mb": 300.0, "client_peak_rss_mb": 250.0,
        "samples": 10, "length_bp": 200_000, "coverage": 2.0,
    }  # fmt: skip
    row = {**base, **kw}
    return {**row, **scale.task_overhead(row, row["workers"] or 1)}


def _result(rows: list[dict]) -> dict:
    return {
        **scale.summarise(rows, "2026-01-01T00:00:00+00:00", 12.0, True, Path("/nonexistent")),
        "finished": "2026-01-01T00:10:00+00:00",
        "machine": {"cores": 2, "cpu_model": "test", "load_average_at_start": [0.1, 0.1, 0.1]},
    }


ROWS = [
    _row("regions", 10),
    _row("regions", 1000, n_units=1000, call_seconds=20.0, task_seconds_sum=30.0),
    _row("samples", 10, cpu_s=4.0),
    _row("samples", 500, samples=500, cpu_s=150.0),
    _row("workers", "single", workers=None),
    _row("workers", 1, workers=1),
    _row("workers", 2, status="failed", rc=1),
]


def test_task_overhead_is_idle_worker_time_per_region():
    assert scale.task_overhead({"call_seconds": 8.0, "task_seconds_sum": 12.0, "n_units": 10}, 2) == {
        "overhead_s": 4.0, "overhead_ms_per_region": 400.0}  # fmt: skip
    # never negative (tasks' clocks overlap the driver's), None when not recorded
    assert scale.task_overhead({"call_seconds": 1.0, "task_seconds_sum": 5.0, "n_units": 2}, 2)[
        "overhead_s"] == 0.0  # fmt: skip
    assert scale.task_overhead({"call_seconds": None}, 2)["overhead_ms_per_region"] is None


def test_rates_and_projection_arithmetic():
    assert scale.per_mb_sample(30.0, 2_000_000, 3) == pytest.approx(5.0)
    swept = scale.rate_from_sweep(ROWS)
    # 150 CPU s over 0.2 Mb x 500 samples at 2x = 1.5 s/Mb-sample, x15 to 30x
    assert swept["cpu_s_per_mb_sample"] == pytest.approx(22.5)
    assert "500 samples" in swept["how"]
    proj = scale.projection([1.2, 0.6], (1, 100, 1000))
    assert [p["samples"] for p in proj] == [1, 100, 1000]
    # 1.2 s x 3100 Mb / 3600 = 1.033 core-hours per genome; linear in samples
    assert proj[0]["varcall_core_hours"] == pytest.approx([1.03, 0.52], abs=0.01)
    assert proj[2]["varcall_core_hours"][0] == pytest.approx(1033.33, abs=0.01)
    # DeepVariant: 323 min x 64 vCPUs per genome
    assert proj[0]["deepvariant_vcpu_hours"] == pytest.approx(344.5, abs=0.1)
    assert proj[1]["deepvariant_vcpu_hours"] == pytest.approx(34453.3, abs=0.1)
    assert [x["samples"] for x in scale.sample_linearity(ROWS)] == [10, 500]


def test_rate_from_bench_results(tmp_path):
    latest = tmp_path / "latest.json"
    assert scale.rate_from_bench(latest) is None
    doc = {
        "dataset": {"length_bp": 2_000_000, "samples": ["a", "b", "c"], "coverage": 30.0},
        "rows": [{"name": "varcall-native-single", "status": "ok", "cpu_s": 4.2}],
    }
    latest.write_text(json.dumps(doc))
    rate = scale.rate_from_bench(latest)
    assert rate["cpu_s_per_mb_sample"] == pytest.approx(0.7) and rate["coverage"] == 30.0
    doc["rows"][0]["status"] = "failed"
    latest.write_text(json.dumps(doc))
    assert scale.rate_from_bench(latest) is None


def test_tables_readme_and_files(tmp_path):
    result = _result(ROWS)
    md = scale.markdown(result)
    # one projection column per rate (only the sweep's here: no make bench results)
    assert "| 1,000 | 19,375.0 | 344,533 |" in md and "Rate A: 22.500" in md
    assert "| 1000 | 1000 | 10.0 | 18.0 | 20.0 | 1.00 | – | 10.0 | 300 | 250 |" in md
    assert "| 2 | failed (rc 1) |" in md
    assert "| 1,000 |" in md and "DeepVariant" in md and "doi:10.1186/s12859-019-3169-7" in md
    assert "--quick" in md
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- scale:start -->\nold\n<!-- scale:end -->\nafter\n")
    assert scale.update_readme(md, readme)
    text = readme.read_text()
    assert "old" not in text and md.splitlines()[0] in text and text.endswith("after\n")
    assert "![scale](benchmarks/results/scale.png)" in text
    (tmp_path / "plain.md").write_text("no markers\n")
    assert not scale.update_readme(md, tmp_path / "plain.md")
    scale.write_results(result, tmp_path / "results")
    assert json.loads((tmp_path / "results" / "scale.json").read_text())["rows"] == ROWS
    png = (tmp_path / "results" / "scale.png").read_bytes()
    assert png.startswith(b"\x89PNG")
