"""``varcall audit OUT``: the summary of a run's audit.jsonl (varcall.evaluate.audit)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from varcall.cli.main import main
from varcall.core.errors import InputError
from varcall.core.regions import Region
from varcall.evaluate.audit import format_audit, summarise_audit, worker_host
from varcall.run.clusters import ClusterSpec
from varcall.run.pipeline import run_call


def _line(region: str, worker: str, start: float, end: float | None, outcome: str, **kw) -> str:
    rec = {
        "key": f"k-{region}",
        "region": region,
        "worker": worker,
        "bams": ["/data/A.bam", "/data/B.bam"],
        "run_id": "r1",
        "start": start,
        "end": end,
        "outcome": outcome,
        **kw,
    }
    return json.dumps(rec, sort_keys=True) + "\n"


@pytest.fixture()
def synthetic_run(tmp_path: Path) -> Path:
    """An audit with a retried region, a lost attempt and two hosts; a manifest with the
    contig order (chr2 before chr10) and the reference."""
    out = tmp_path / "run"
    out.mkdir()
    lines = [
        _line("chr10:1-1000", "0@tcp://10.0.0.5:4000", 100.0, 101.0, "ok"),
        _line("chr2:1001-2000", "1@tcp://node7:4100", 100.5, 100.9, "error", error="OSError: x"),
        _line("chr2:1001-2000", "0@tcp://10.0.0.5:4000", 101.0, 102.5, "ok"),
        _line("chr2:1-1000", "1@tcp://node7:4100", 100.2, None, "lost"),
        _line("chr2:1-1000", "1@tcp://node7:4100", 101.5, 102.0, "ok"),
    ]
    (out / "audit.jsonl").write_text("".join(lines))
    manifest = {
        "run_id": "r1",
        "inputs": {
            "reference": {"path": "/data/ref.fa"},
            "samples": ["A", "B"],
            "contigs": [{"name": "chr2", "length": 2000}, {"name": "chr10", "length": 1000}],
        },
        "host": {"hostname": "login1"},
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_summary_of_attempts_inputs_and_workers(synthetic_run: Path):
    s = summarise_audit(synthetic_run)
    assert s["n_attempts"] == 5 and s["n_tasks"] == 3
    assert s["outcomes"] == {"error": 1, "lost": 1, "ok": 3}
    assert s["hosts"] == ["10.0.0.5", "node7"]
    assert [t["region"] for t in s["tasks"]] == ["chr2:1-1000", "chr2:1001-2000", "chr10:1-1000"]
    retried = s["tasks"][1]
    assert retried["n_attempts"] == 2 and retried["outcome"] == "ok"
    assert [a["outcome"] for a in retried["attempts"]] == ["error", "ok"]
    assert retried["attempts"][0]["error"] == "OSError: x"
    assert retried["attempts"][1]["seconds"] == 1.5
    assert s["tasks"][0]["attempts"][0]["end"] is None  # the lost attempt
    paths = [(i["path"], i["role"]) for i in s["inputs"]]
    assert paths == [
        ("/data/ref.fa", "reference"),
        ("/data/A.bam", "alignments"),
        ("/data/B.bam", "alignments"),
    ]
    a = s["inputs"][1]
    assert a["regions"] == ["chr2:1-1000", "chr2:1001-2000", "chr10:1-1000"]
    assert a["bp"] == 3000 and a["attempts"] == 5
    assert a["first_read"].startswith("1970-01-01T00:01:40")  # epoch 100 s, UTC
    w = {x["worker"]: x for x in s["workers"]}
    assert w["1@tcp://node7:4100"]["outcomes"] == {"error": 1, "lost": 1, "ok": 1}
    text = format_audit(s)
    assert "3 ok" in text and "OSError: x" in text and "/data/B.bam [alignments]" in text
    assert "chr2:1-2000, chr10:1-1000" in text  # contiguous regions joined in the text


def test_summary_json_roundtrip_and_cli(synthetic_run: Path):
    res = CliRunner().invoke(main, ["audit", str(synthetic_run), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc == json.loads(json.dumps(summarise_audit(synthetic_run)))
    res = CliRunner().invoke(main, ["audit", str(synthetic_run)])
    assert res.exit_code == 0 and res.output.startswith("audit of ")


@pytest.mark.parametrize(
    "content, message",
    [(None, "not found"), ("{not json\n", "line 1 is not JSON"), ("[1]\n", "not an attempt")],
)
def test_bad_audit_is_one_line_exit_2(tmp_path: Path, content: str | None, message: str):
    out = tmp_path / "run"
    out.mkdir()
    if content is not None:
        (out / "audit.jsonl").write_text(content)
    with pytest.raises(InputError, match=message):
        summarise_audit(out)
    res = CliRunner().invoke(main, ["audit", str(out)])
    assert res.exit_code == 2
    assert len(res.output.strip().splitlines()) == 1 and message in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize(
    "worker, host",
    [
        ("0@tcp://127.0.0.1:4242", "127.0.0.1"),
        ("w@tls://node12.cluster:8786", "node12.cluster"),
        ("1@tcp://[::1]:4000", "::1"),
        ("local@myhost:1234", "myhost"),
        ("single-process@myhost:99", "myhost"),
        ("0@host-3f9a1c2e", "host-3f9a1c2e"),
        (None, "unknown"),
    ],
)
def test_worker_host(worker: str | None, host: str):
    assert worker_host(worker) == host


def test_audit_of_a_real_run_lists_every_input_and_region(small_cohort: Path, tmp_path: Path):
    bams = sorted(small_cohort.glob("S*.bam"))
    out = tmp_path / "run"
    run_call(
        small_cohort / "reference.fa",
        bams,
        out,
        cluster=ClusterSpec(workers=1, processes=False),
        region_count=5,
    )
    res = CliRunner().invoke(main, ["audit", str(out), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    planned = []
    for line in (out / "regions.bed").read_text().splitlines():
        contig, start, end = line.split("\t")[:3]
        planned.append(str(Region(contig, int(start), int(end))))
    inputs = {i["path"]: i for i in doc["inputs"]}
    assert set(inputs) == {str(b) for b in bams} | {str(small_cohort / "reference.fa")}
    for i in inputs.values():
        assert i["regions"] == planned  # every region, genomic order
        assert i["first_read"] and i["last_read"]
    assert doc["outcomes"] == {"ok": len(planned)}
    assert doc["finished"] and doc["run_id"]
    assert len(doc["hosts"]) == 1 and doc["hosts"][0] != "unknown"
