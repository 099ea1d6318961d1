"""The HTML report: content, self-containment, metrics.json, and a real headless-browser render."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
from _browser import find_chromium, render
from _vcfdata import (
    make_reference,
    make_run_dir,
    random_truth_and_query,
    read_reference,
    write_vcf,
)
from click.testing import CliRunner

from varcall.cli.main import main
from varcall.evaluate.concordance import run_concordance
from varcall.report.html import write_report

CHROMIUM = find_chromium()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Two run folders with the same calls (4 regions per contig vs 1), a truth set, a BED,
    their concordance and the report."""
    d = tmp_path_factory.mktemp("report")
    refp = make_reference(d)
    seq = read_reference(refp)
    truth, query = random_truth_and_query(seq)
    t = write_vcf(d / "truth.vcf.gz", truth, seq)
    dist = make_run_dir(d / "distributed", query, seq, "distributed", 4)
    single = make_run_dir(d / "single", query, seq, "single", 1)
    bed = d / "conf.bed"
    bed.write_text("chr1\t0\t2200\nchr2\t300\t3000\n")
    metrics = run_concordance(dist, single, refp, d / "concordance", truth=t, bed=bed)
    html = write_report([dist, single], d / "report.html", concordance_dir=d / "concordance")
    return {
        "dir": d, "ref": refp, "seq": seq, "query": query, "truth": t, "dist": dist,
        "single": single, "metrics": metrics, "html": html, "bed": bed,
    }  # fmt: skip


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_report_is_self_contained(demo):
    html = demo["html"].read_text()
    assert "<script" not in html.lower()
    assert "<link" not in html.lower()
    assert "@import" not in html
    for attr in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert attr.startswith(("data:image/png;base64,", "#")), attr
    assert not re.search(r"url\(\s*['\"]?https?:", html)
    assert html.count('src="data:image/png;base64,') == 5
    # written atomically: no temporary files left beside it
    assert not [p for p in demo["dir"].iterdir() if p.name.startswith(".")]


def test_metrics_json_beside_report_holds_the_page_numbers(demo):
    page = json.loads((demo["dir"] / "metrics.json").read_text())
    assert [r["name"] for r in page["runs"]] == ["distributed", "single"]
    dist, single = page["runs"]
    assert dist["n_units"] == 8 and single["n_units"] == 2
    assert dist["retries"] == 2 and single["retries"] == 0
    assert dist["wall_seconds"] == 12.5
    assert page["verdict"]["identical"] is True
    # per-contig digest comparison (layouts differ) agrees
    (cmp,) = page["digest_comparisons"]
    assert cmp["method"] == "contig" and cmp["identical"] is True
    truth = page["concordances"][0]["truth"]["A"]
    assert (
        page["accuracy_by_run"]["single"]["SNP"]["F1"]
        == page["concordances"][0]["truth"]["B"]["SNP"]["F1"]
    )
    text = _text(demo["html"].read_text())
    for vtype in ("SNP", "INDEL"):
        r = truth[vtype]
        row = f"distributed {vtype} {r['TP']:,} {r['FP']:,} {r['FN']:,} {r['precision']:.4f} {r['recall']:.4f} {r['F1']:.4f}"
        assert row in text
    qc = dist["qc"]["samples"]["S1"]
    assert qc["n_het"] + qc["n_hom_alt"] + qc["n_hom_ref"] == qc["n_called"]
    assert f"{100 * qc['call_rate']:.2f}%" in text


def test_report_shows_differences(demo, tmp_path):
    seq = demo["seq"]
    changed = list(demo["query"])
    changed[2] = replace(
        changed[2], gts=("1/1",) * 3 if changed[2].gts != ("1/1",) * 3 else ("0/1",) * 3
    )
    other = make_run_dir(tmp_path / "other", changed, seq, "distributed", 4)
    run_concordance(demo["dist"], other, demo["ref"], tmp_path / "conc", qc=False)
    out = write_report(
        [demo["dist"], other], tmp_path / "r.html", concordance_dir=tmp_path / "conc"
    )
    page = json.loads((tmp_path / "metrics.json").read_text())
    assert page["verdict"]["identical"] is False
    (cmp,) = page["digest_comparisons"]
    assert cmp["method"] == "region" and cmp["identical"] is False
    r = changed[2]
    unit = next(
        u["region"] for u in page["runs"][0]["units"]
        if u["region"].startswith(r.contig + ":") and int(u["region"].split(":")[1].split("-")[0]) <= r.pos + 1 <= int(u["region"].split("-")[1])
    )  # fmt: skip
    assert cmp["differing"] == [unit]
    text = _text(out.read_text())
    assert "DIFFERENT" in text
    assert f"{r.contig} {r.pos + 1:,} {r.ref} {r.alts[0]} differs GT[" in text
    # without a concordance the verdict comes from the digests
    write_report([demo["dist"], other], tmp_path / "d.html")
    page = json.loads((tmp_path / "metrics.json").read_text())
    assert page["verdict"]["basis"] == "digests" and page["verdict"]["identical"] is False


def test_cli_report(demo, tmp_path):
    out = tmp_path / "cli.html"
    res = CliRunner().invoke(main, ["report", str(demo["dist"]), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.output
    res = CliRunner().invoke(main, ["report", str(tmp_path), "--out", str(out)])
    assert res.exit_code == 2
    assert "no manifest.json" in res.output and len(res.output.strip().splitlines()) == 1


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(demo):
    r = render(demo["html"], CHROMIUM)
    assert r.errors == []
    assert r.external_requests == []
    assert r.n_images == 5 and r.images_ok
    m = demo["metrics"]
    text = re.sub(r"\s+", " ", r.text)
    assert "IDENTICAL" in text
    assert f"distributed and single are identical: {m['identity']['records_a']:,} records" in text
    for vtype in ("SNP", "INDEL"):
        t = m["truth"]["A"][vtype]
        assert (
            f"distributed {vtype} {t['TP']:,} {t['FP']:,} {t['FN']:,} {t['precision']:.4f}" in text
        )
        assert f"{t['F1']:.4f}" in text


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_browser_check_catches_errors(tmp_path):
    """The browser check is not blind: a script error, a console error and a remote image
    are all reported."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<html><body><p>hello</p><img src='https://example.invalid/x.png'>"
        "<script>console.error('boom'); undefinedFunction();</script></body></html>"
    )
    r = render(bad, CHROMIUM)
    assert "hello" in r.text
    assert any("boom" in e for e in r.console_errors)
    assert r.exceptions
    assert r.external_requests == ["https://example.invalid/x.png"]
    assert not r.images_ok


@pytest.mark.slow
def test_end_to_end_on_simulated_cohort(small_cohort, tmp_path):
    """varcall call (single-process and distributed) -> concordance -> report on the
    simulated cohort: identical by record and by digest, accurate against the truth, QC from
    the VCF Zarr store equal to QC from the VCF, and a clean browser render."""
    from varcall.evaluate.qc import dataset_from_vcf, open_dataset, qc_stats

    c = small_cohort
    runner = CliRunner()
    common = ["-f", str(c / "reference.fa"), "--bam-list", str(c / "bams.txt"), "--no-progress"]
    res = runner.invoke(main, ["call", "--single-process", *common, "-o", str(tmp_path / "single")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        main,
        ["call", *common, "--workers", "2", "--worker-type", "thread", "--region-count", "6",
         "-o", str(tmp_path / "distributed")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        main,
        ["concordance", "-f", str(c / "reference.fa"), str(tmp_path / "distributed"),
         str(tmp_path / "single"), "--truth", str(c / "truth.vcf.gz"), "--bed",
         str(c / "confident.bed"), "--out", str(tmp_path / "conc")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "conc" / "metrics.json").read_text())
    assert m["identity"]["identical"] is True
    assert m["identity"]["digests"]["identical"] is True
    for label in ("A", "B"):
        assert m["truth"][label]["SNP"]["F1"] > 0.9
        assert "unknown" not in m["truth"][label]["strata"]["depth"]  # BAM depth fills FNs
    vcz = qc_stats(open_dataset(tmp_path / "distributed" / "calls.vcz"))
    vcf = qc_stats(dataset_from_vcf(tmp_path / "distributed" / "calls.vcf.gz"))
    assert vcz == vcf
    out = tmp_path / "report.html"
    res = runner.invoke(
        main,
        ["report", str(tmp_path / "distributed"), str(tmp_path / "single"), "--concordance",
         str(tmp_path / "conc"), "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    if CHROMIUM is not None:
        r = render(out, CHROMIUM)
        assert r.errors == [] and r.external_requests == [] and r.images_ok
        assert "IDENTICAL" in r.text


def test_several_runs_and_concordances(demo, tmp_path):
    seq = demo["seq"]
    fewer = make_run_dir(tmp_path / "bcftools", demo["query"][:-3], seq, "single", 1)
    m = json.loads((fewer / "manifest.json").read_text())
    m["engine"] = {"name": "bcftools", "version": "1.21"}
    m["command_line"] = "varcall call <script>alert(1)</script>"
    (fewer / "manifest.json").write_text(json.dumps(m))
    run_concordance(
        demo["single"], fewer, demo["ref"], tmp_path / "c2", truth=demo["truth"], qc=False
    )
    out = write_report(
        [demo["dist"], demo["single"], fewer],
        tmp_path / "three.html",
        concordance_dir=[demo["dir"] / "concordance", tmp_path / "c2"],
    )
    page = json.loads((tmp_path / "metrics.json").read_text())
    assert [c["labels"] for c in page["concordances"]] == [
        {"A": "distributed", "B": "single"},
        {"A": "single", "B": "bcftools"},
    ]
    assert page["verdict"]["identical"] is False  # bcftools lacks 3 records
    assert page["concordances"][1]["identity"]["only_in_a"] >= 3
    assert set(page["accuracy_by_run"]) == {"distributed", "single", "bcftools"}
    # the single run's accuracy comes from the first concordance (with the BED)
    assert page["accuracy_by_run"]["single"]["from"] == "c1"
    html = out.read_text()
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count('src="data:image/png;base64,') == 7  # runtime, 2 x (F1, heatmap), AF, depth


def test_report_says_why_when_an_engine_has_known_differences(demo, tmp_path):
    """A residual difference is never hidden: the verdict carries the engine's own
    explanation from the manifest, beside the listed records."""
    seq = demo["seq"]
    changed = list(demo["query"])
    changed[1] = replace(
        changed[1], gts=("1/1",) * 3 if changed[1].gts != ("1/1",) * 3 else ("0/1",) * 3
    )
    other = make_run_dir(tmp_path / "fb", changed, seq, "distributed", 4)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["engine"] = {
        "name": "freebayes",
        "version": "x",
        "known_differences": "prior cached per partition",
    }
    (other / "manifest.json").write_text(json.dumps(manifest))
    run_concordance(demo["dist"], other, demo["ref"], tmp_path / "conc", qc=False)
    out = write_report(
        [demo["dist"], other], tmp_path / "r.html", concordance_dir=tmp_path / "conc"
    )
    page = json.loads((tmp_path / "metrics.json").read_text())
    assert page["verdict"]["identical"] is False
    assert page["verdict"]["known_causes"] == ["freebayes engine: prior cached per partition"]
    assert "Known cause: freebayes engine: prior cached per partition" in _text(out.read_text())
    # identical runs carry no cause
    write_report([demo["dist"]], tmp_path / "same.html", concordance_dir=None)
    page = json.loads((tmp_path / "metrics.json").read_text())
    assert not page["verdict"]["known_causes"]
