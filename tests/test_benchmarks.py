"""The benchmark harness (benchmarks/): dataset building blocks, measuring, identity."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import build_dataset as bd  # noqa: E402
import measure  # noqa: E402
import run as bench  # noqa: E402


def _random_seq(n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(list("ACGT"), n))


def test_haplotype_applies_snps_insertions_and_deletions():
    seq = "ACGTACGTACGTACGT"
    sites = [
        bd.Site("c", 1, "C", "T", (1, 0)),  # SNP on hap 0
        bd.Site("c", 5, "CGT", "C", (1, 1)),  # deletion of GT on both
        bd.Site("c", 10, "G", "GAA", (0, 1)),  # insertion of AA on hap 1
    ]
    assert bd.haplotype(seq, sites, 0) == "ATGTACACGTACGT"
    assert bd.haplotype(seq, sites, 1) == "ACGTACACGAATACGT"


def test_left_shift_moves_an_indel_to_the_start_of_its_repeat():
    seq = "GGATTTTTCG"
    # deleting one T anchored on the last T shifts left to the A before the run
    assert bd._left_shift(seq, 6, "TT", "T") == 2
    assert bd._left_shift(seq, 6, "T", "TT") == 2
    assert bd._left_shift(seq, 0, "GG", "G") == 0


def test_plant_sites_is_deterministic_spaced_and_carried():
    seq = _random_seq(60_000, 3)
    spec = bd.DatasetSpec(name="t", cuts=(("c", 0, 60_000),), n_samples=3, seed=5)
    a = bd.plant_sites("c", seq, spec, np.random.default_rng(5))
    b = bd.plant_sites("c", seq, spec, np.random.default_rng(5))
    assert a == b and len(a) > 40
    kinds = {len(s.ref) == len(s.alt) for s in a}
    assert kinds == {True, False}  # SNPs and indels
    for s in a:
        assert seq[s.pos : s.pos + len(s.ref)] == s.ref
        assert len(s.haps) == 6 and any(s.haps)
    for prev, nxt in zip(a, a[1:]):
        left = (
            bd._left_shift(seq, nxt.pos, nxt.ref, nxt.alt)
            if len(nxt.ref) != len(nxt.alt)
            else nxt.pos
        )
        assert left - spec.min_spacing >= prev.end


def test_repeated_kmer_mask_marks_repeats_on_either_strand():
    unique = _random_seq(3000, 1)
    repeat = _random_seq(200, 2)
    comp = str.maketrans("ACGT", "TGCA")
    a = unique[:1000] + repeat + unique[1000:2000]
    b = unique[2000:2500] + repeat.translate(comp)[::-1] + unique[2500:]
    ma, mb = bd.repeated_kmer_mask([a, b], 31)
    assert ma[1000:1200].all() and mb[500:700].all()
    assert not ma[:900].any() and not ma[1300:].any()
    assert not mb[:400].any() and not mb[800:].any()


def test_confident_intervals_drop_edges_and_padded_repeats():
    spec = bd.DatasetSpec(name="t", cuts=(), edge=100, repeat_pad=10)
    mask = np.zeros(1000, bool)
    mask[400:450] = True
    assert bd.confident_intervals("A" * 1000, mask, spec) == [(100, 390), (460, 900)]


def test_measure_counts_cpu_of_orphaned_descendants(tmp_path):
    script = "(python3 -c 'sum(range(20_000_000))' &) ; true"
    res = measure.measure([script], tmp_path / "m.json")
    assert res["rc"] == 0 and res["orphans_reaped"] >= 1
    assert res["cpu_s"] > 0.1  # the orphan's work, after its parent shell exited
    assert (tmp_path / "stdout.txt").exists()


def test_measure_kills_on_timeout(tmp_path):
    res = measure.measure(["sleep", "30"], tmp_path / "m.json", timeout=0.5)
    assert res["timed_out"] and res["wall_s"] < 15


def _vcf(path: Path, date: str, records: list[str]) -> Path:
    with gzip.open(path, "wt") as fh:
        fh.write("##fileformat=VCFv4.2\n")
        fh.write(f"##fileDate={date}\n")
        fh.write(f"##varcallCommand=varcall call --workers {len(date)}\n")
        fh.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        fh.writelines(records)
    return path


def test_identity_ignores_date_and_command_lines_only(tmp_path):
    rec = ["c\t10\t.\tA\tG\t50\tPASS\t.\n", "c\t20\t.\tC\tT\t40\tPASS\t.\n"]
    a = _vcf(tmp_path / "a.vcf.gz", "20260101", rec)
    b = _vcf(tmp_path / "b.vcf.gz", "20261231x", rec)
    assert bench.identity(a, b)["identical"]
    c = _vcf(tmp_path / "c.vcf.gz", "20260101", [rec[0], rec[1].replace("40", "41")])
    res = bench.identity(a, c)
    assert not res["identical"] and res["differing"] == 2


@pytest.mark.parametrize("name", sorted(bd.SPECS))
def test_dataset_specs_fit_the_genome(name):
    spec = bd.SPECS[name]
    assert 1_000_000 <= spec.total_length <= 6_000_000
    assert all(0 <= s < e <= 5_333_942 for _, s, e in spec.cuts)  # HS11286 chromosome
    assert len({c for c, _, _ in spec.cuts}) == len(spec.cuts)


def _row(name: str, wall: float, **kw) -> dict:
    return {
        "name": name,
        "mode": "distributed" if "-w" in name else "single-process",
        "status": "ok",
        "wall_s": wall,
        "cpu_s": wall,
        "peak_tree_rss_mb": 300.0,
        "root_peak_rss_mb": 250.0,
        **kw,
    }


def test_scaling_targets_use_wall_time_ratios():
    rows = {
        "varcall-native-single": _row("varcall-native-single", 40.0),
        "varcall-native-w1": _row("varcall-native-w1", 43.0),
        "varcall-native-w2": _row("varcall-native-w2", 25.0),
    }
    got = {t["target"].split(": ", 1)[1]: t for t in bench.scaling_targets(rows, "x")}
    assert got["2 workers: wall <= 0.6 x single-process"]["value"] == 0.625
    assert not got["2 workers: wall <= 0.6 x single-process"]["pass"]
    assert got["1 worker: overhead vs single-process <= 10%"]["pass"]
    rows["varcall-native-w2"]["status"] = "failed"
    assert len(bench.scaling_targets(rows, "x")) == 1  # no ratio from a failed run


def test_cohort_markdown_lists_runs_targets_and_reference_ratios():
    cohort = {
        "dataset": {"length_bp": 5_200_000, "contigs": [["a", 1]] * 4, "samples": ["s"] * 16,
                    "coverage": 30.0, "build_seconds": 600},
        "rows": [
            _row("varcall-native-single", 40.0),
            _row("varcall-native-w2", 23.0, identity={"identical": True, "differing": 0}),
            {"name": "varcall-native-w1", "mode": "distributed", "status": "skipped",
             "reason": "why"},
        ],
        "targets": [{"target": "t1", "value": 0.57, "pass": True}],
    }  # fmt: skip
    small = [{"target": "small: 2 workers", "value": 1.1, "pass": False}]
    text = "\n".join(bench.cohort_markdown(cohort, small))
    assert "5.2 Mb, 16-sample cohort" in text
    assert "| varcall-native-w2 | distributed | – | 23.0 | 23.0 |" in text and "| yes |" in text
    assert "| t1 | 0.57 | yes |" in text
    assert "| for reference, not a target: small: 2 workers | 1.1 | – |" in text
    assert "skipped: why" in text


def test_rounds_summary_takes_the_median_and_every_identity(tmp_path):
    row = bench.Row("varcall-native-w2", "varcall-native", "distributed", ["varcall"],
                    tmp_path / "w2" / "calls.vcf.gz", workers=2,
                    identity_to="varcall-native-single")  # fmt: skip
    (tmp_path / "w2").mkdir()
    (tmp_path / "w2" / "regions.bed").write_text("c\t0\t10\nc\t10\t20\n")
    same = {"identical": True, "differing": 0}
    done = [
        _row("w2", 30.0, identity=same),
        _row("w2", 20.0, identity=same),
        _row("w2", 25.0, identity={"identical": False, "differing": 3}),
    ]
    res = bench.summarise_rounds(row, done)
    assert res["wall_s"] == 25.0 and res["walls_s"] == [30.0, 20.0, 25.0]
    assert res["identity"] == {"to": "varcall-native-single", "identical": False,
                               "differing": 3, "rounds": 3}  # fmt: skip
    assert res["regions"] == 2 and res["name"] == "varcall-native-w2"
    done[1] = {"status": "failed", "reason": "exit 1"}
    assert bench.summarise_rounds(row, done)["status"] == "failed"
