"""The benchmark harness (benchmarks/): dataset building blocks, measuring, identity."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import build_dataset as bd  # noqa: E402
import hard_cases as hc  # noqa: E402
import measure  # noqa: E402
import render  # noqa: E402
import rows as bench_rows  # noqa: E402
import sections  # noqa: E402
import stutter as stm  # noqa: E402


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
    assert bench_rows.identity(a, b)["identical"]
    c = _vcf(tmp_path / "c.vcf.gz", "20260101", [rec[0], rec[1].replace("40", "41")])
    res = bench_rows.identity(a, c)
    assert not res["identical"] and res["differing"] == 2


@pytest.mark.parametrize("name", sorted(bd.SPECS))
def test_dataset_specs_fit_the_genome(name):
    spec = bd.SPECS[name]
    assert 500_000 <= spec.total_length <= 6_000_000
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
    got = {t["target"].split(": ", 1)[1]: t for t in sections.scaling_targets(rows, "x")}
    assert got["2 workers: wall <= 0.6 x single-process"]["value"] == 0.625
    assert not got["2 workers: wall <= 0.6 x single-process"]["pass"]
    assert got["1 worker: overhead vs single-process <= 10%"]["pass"]
    rows["varcall-native-w2"]["status"] = "failed"
    assert len(sections.scaling_targets(rows, "x")) == 1  # no ratio from a failed run


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
    text = "\n".join(render.cohort_markdown(cohort, small))
    assert "5.2 Mb, 16-sample cohort" in text
    assert "| varcall-native-w2 | distributed | – | 23.0 | 23.0 |" in text and "| yes |" in text
    assert "| t1 | 0.57 | yes |" in text
    assert "| for reference, not a target: small: 2 workers | 1.1 | – |" in text
    assert "skipped: why" in text


def test_rounds_summary_takes_the_median_and_every_identity(tmp_path):
    row = bench_rows.Row("varcall-native-w2", "varcall-native", "distributed", ["varcall"],
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
    res = sections.summarise_rounds(row, done)
    assert res["wall_s"] == 25.0 and res["walls_s"] == [30.0, 20.0, 25.0]
    assert res["identity"] == {"to": "varcall-native-single", "identical": False,
                               "differing": 3, "rounds": 3}  # fmt: skip
    assert res["regions"] == 2 and res["name"] == "varcall-native-w2"
    done[1] = {"status": "failed", "reason": "exit 1"}
    assert sections.summarise_rounds(row, done)["status"] == "failed"


# ----------------------------------------------------------------------------- hard cases
def test_plain_spec_keys_do_not_change_with_the_hard_field():
    # cached plain datasets stay valid: their key hashes the spec as before `hard` existed
    assert bd.SPECS["bench"].key() == "5fb87f62b4"
    assert bd.SPECS["hard"].key() != bd.SPECS["lowcov"].key()
    assert {"hard", "lowcov"} <= set(bd.SPECS)
    assert bd.SPECS["lowcov"].coverage <= 10 and bd.SPECS["lowcov"].n_samples >= 5
    hard = bd.SPECS["hard"]
    assert hard.hard is not None and hard.hard.deep_coverage >= 300
    assert set(hard.hard.deep_contigs) <= {c for c, _, _ in hard.cuts}


def test_insert_repeats_writes_whole_unit_arrays_and_keeps_the_length():
    seq = _random_seq(100_000, 4)
    rng = np.random.default_rng(1)
    new, arrays = hc.insert_repeats("c", seq, hc.HardSpec(), rng, [(50_000, 52_000)], 500)
    assert len(new) == len(seq) and len(arrays) == 40
    units = {len(r.unit) for r in arrays}
    assert units == {1, 2, 3, 4, 5, 6}
    lengths = [r.end - r.start for r in arrays]
    assert min(lengths) <= 12 and max(lengths) >= 30  # short and long arrays
    for r, nxt in zip(arrays, arrays[1:]):
        assert new[r.start : r.end] == r.unit * r.copies and hc._primitive(r.unit)
        assert nxt.start - r.end >= 150
        assert not (r.start < 52_150 and 49_850 < r.end)  # clear of `avoid`
    assert new[: arrays[0].start] == seq[: arrays[0].start]


def test_repeat_sites_expand_or_contract_the_array_by_whole_units():
    seq = _random_seq(2000, 5)
    arr = hc.Repeat("c", 1000, 1024, "CAG")
    seq = seq[:1000] + "CAG" * 8 + seq[1024:]
    hs = hc.HardSpec(repeat_changed=1.0)
    seen = set()
    for seed in range(30):
        (v,) = hc.repeat_sites(seq, [arr], hs, np.random.default_rng(seed), 4)
        assert seq[v.pos : v.end] == v.ref and any(v.haps)
        hap = bd.haplotype(seq, [v], v.haps.index(1))
        change = len(hap) - len(seq)
        assert change % 3 == 0 and change != 0
        assert hap[1000 : 1024 + change] == "CAG" * (8 + change // 3)
        seen.add(change)
        assert hc.lift([v], v.haps.index(1), [1000, 1024]) == [1000, 1024 + change]
    assert {-3, 3} <= seen


def test_segdups_copy_at_the_requested_divergence():
    seq = _random_seq(300_000, 6)
    hs = hc.HardSpec(segdups_per_mb=10, segdup_divergence=(0.02, 0.02))
    new, dups = hc.plant_segdups("c", seq, hs, np.random.default_rng(2), 500)
    assert len(new) == len(seq) and len(dups) == 3
    for d in dups:
        assert 2000 <= d.src_end - d.src_start <= 10000
        src = new[d.src_start : d.src_end]
        src = hc.revcomp(src) if d.reverse else src
        dst = new[d.dst_start : d.dst_end]
        # 2 % divergence leaves about 0.98 ** 15 = 74 % of the 15-mers intact
        kmers = {src[i : i + 15] for i in range(len(src) - 14)}
        shared = sum(dst[i : i + 15] in kmers for i in range(len(dst) - 14)) / (len(dst) - 14)
        assert 0.65 < shared < 0.85
        assert not (d.src_start < d.dst_end and d.dst_start < d.src_end)


def test_snvs_in_het_deletions_sit_on_the_other_haplotype():
    seq = _random_seq(20_000, 7)
    taken: list = []
    sites = hc.hetdel_sites("c", seq, 20, np.random.default_rng(3), taken, 4, 500)
    assert len(sites) == 40 and len(taken) == 20
    for d, s in zip(sites[::2], sites[1::2]):
        assert len(d.ref) > 5 and d.alt == d.ref[0] and d.pos < s.pos < d.end
        for i in range(4):
            dh, sh = d.haps[2 * i : 2 * i + 2], s.haps[2 * i : 2 * i + 2]
            assert sorted(dh) == sorted(sh) and sum(dh) in (0, 1)
            if sum(dh):
                assert dh != sh  # deletion on one haplotype, the SNV on the other
    hc.check_sites(sorted(sites, key=lambda v: v.pos))
    hap = sites[0].haps.index(1)
    assert seq[sites[0].pos + 1 : sites[0].end] not in bd.haplotype(seq, sites[:1], hap)[
        sites[0].pos - 20 : sites[0].pos + 40
    ]


def test_clusters_are_snvs_a_few_bp_apart():
    seq = _random_seq(20_000, 8)
    taken: list = []
    sites = hc.cluster_sites("c", seq, 30, np.random.default_rng(4), taken, 6, 500)
    assert len(taken) == 30 and len(sites) >= 60
    gaps = [b.pos - a.pos for a, b in zip(sites, sites[1:]) if b.pos - a.pos <= 10]
    assert 1 in gaps and max(gaps) <= 10  # MNPs (adjacent SNVs) and small gaps
    assert all(len(v.ref) == len(v.alt) == 1 and v.ref != v.alt for v in sites)


def test_merge_sites_drops_background_near_hard_sites_and_rejects_overlaps():
    hard = [hc.Site("c", 100, "A", "G", (1, 0))]
    near = bd.Site("c", 110, "C", "T", (0, 1))
    far = bd.Site("c", 200, "C", "T", (0, 1))
    assert hc.merge_sites([near, far], hard) == [hard[0], far]
    with pytest.raises(ValueError, match="overlaps"):
        hc.check_sites([bd.Site("c", 10, "ACG", "A", (1, 0)), bd.Site("c", 11, "C", "T", (1, 1))])
    hc.check_sites([bd.Site("c", 10, "ACG", "A", (1, 0)), bd.Site("c", 11, "C", "T", (0, 1))])


def test_stutter_rate_grows_with_array_length():
    hs = hc.HardSpec()
    assert stm.stutter_rate(6, hs) == 0.0
    assert stm.stutter_rate(10, hs) == pytest.approx(0.01)
    assert stm.stutter_rate(30, hs) == pytest.approx(0.15)
    assert stm.stutter_rate(60, hs) == pytest.approx(0.2)


def test_stutter_read_edits_one_unit_and_keeps_length_and_qualities():
    hap = "GATTACA" * 3 + "CA" * 10 + "TTGACCGT" * 4  # array [21, 41)
    start, seq = 5, hap[5:55]
    qual = "".join(chr(33 + 10 + i % 30) for i in range(len(seq)))
    # forward read, one unit deleted: the 3' end takes the next 2 bases of the haplotype
    s, q = stm.stutter_read(seq, qual, start, "50M", False, [(21, 2, -1)], hap)
    assert s == hap[5:21] + "CA" * 9 + hap[41:57] and len(q) == 50
    assert q[:16] == qual[:16] and q[16:] == qual[18:] + qual[-1] * 2
    # reverse read, one unit inserted: its 3' end (the left end here) loses 2 bases
    s, q = stm.stutter_read(seq, qual, start, "50M", True, [(21, 2, 1)], hap)
    assert s == hap[7:21] + "CA" * 11 + hap[41:55] and len(q) == 50
    assert q == (qual[:18] + qual[16:])[2:]
    # reverse read, deletion: bases taken from before the read's start
    s, _ = stm.stutter_read(seq, qual, start, "50M", True, [(21, 2, -1)], hap)
    assert s == hap[3:21] + "CA" * 9 + hap[41:55]
    assert stm.stutter_read(seq, qual, start, "50M", False, [], hap) is None


def test_stutter_decisions_are_per_fragment_and_follow_the_rate():
    hs = hc.HardSpec()
    st = stm.Stutter({"c": [(100, 136, 4), (300, 310, 1)]}, hs, seed=9)
    n = 20_000
    for i in range(n):
        e1 = st.edits(f"f{i}", "c", 50, 200)
        e2 = st.edits(f"f{i}", "c", 90, 240)  # the mate decides alike
        assert e1 == e2
    share = st.edited[3] / st.spanning[3]
    assert st.spanning[3] == 2 * n and abs(share - stm.stutter_rate(36, hs)) < 0.015
    assert st.edits("g", "c", 120, 200) == []  # does not span the array
    summary = stm.stutter_summary([st])
    assert summary[3]["array_length"] == "30+ bp" and summary[3]["reads_spanning"] == 2 * n


def test_sam_to_fastq_writes_mates_in_read_orientation(tmp_path):
    hap = _random_seq(400, 10)
    hap = hap[:100] + "A" * 30 + hap[130:]
    sam = tmp_path / "r.sam"
    r1, r2 = hap[50:200], hap[250:400]
    q = "I" * 149 + "#"
    sam.write_text(
        "@HD\tVN:1.4\n"
        f"h-1\t99\th\t51\t99\t150=\t=\t251\t350\t{r1}\t{q}\n"
        f"h-1\t147\th\t251\t99\t150=\t=\t51\t-350\t{r2}\t{q}\n"
    )
    st = stm.Stutter({"h": []}, hc.HardSpec(), seed=1)
    assert stm.sam_to_fastq(sam, tmp_path / "1.fq", tmp_path / "2.fq", st, {"h": hap}) == 0
    l1 = (tmp_path / "1.fq").read_text().splitlines()
    l2 = (tmp_path / "2.fq").read_text().splitlines()
    assert l1 == ["@h-1/1", r1, "+", q]
    assert l2 == ["@h-1/2", hc.revcomp(r2), "+", q[::-1]]
    always = hc.HardSpec(stutter_at_10bp=1.0, stutter_at_30bp=1.0, stutter_max=1.0)
    st = stm.Stutter({"h": [(100, 130, 1)]}, always, seed=1)
    assert stm.sam_to_fastq(sam, tmp_path / "1.fq", tmp_path / "2.fq", st, {"h": hap}) == 1
    seq = (tmp_path / "1.fq").read_text().splitlines()[1]
    assert len(seq) == 150 and seq.count("A" * 29) == 1 and seq != r1


def test_strata_partition_the_confident_bed_with_precedence():
    st = hc.strata_intervals(
        1000,
        confident=[(100, 900)],
        tandem=[(200, 220)],
        segdup=[(150, 400)],
        clustered=[(390, 420), (600, 610)],
    )
    assert st == {
        "tandem_repeat": [(200, 220)],
        "segdup": [(150, 200), (220, 400)],
        "clustered": [(400, 420), (600, 610)],
        "other": [(100, 150), (420, 600), (610, 900)],
    }


def test_natural_repeats_and_strata_bed_files(tmp_path):
    seq = _random_seq(3000, 11)
    seq = seq[:500] + "T" * 9 + seq[509:1000] + "AGC" * 5 + seq[1015:]
    found = hc.natural_repeats(seq)
    assert any(s <= 500 and e >= 509 for s, e in found) and any(s <= 1000 and e >= 1015 for s, e in found)
    planted = {"c": hc.Planted([hc.Repeat("c", 2000, 2020, "AC")], [], [(2500, 2510)])}
    size = hc.write_strata(tmp_path, [("c", seq)], {"c": [(0, 3000)]}, planted)
    assert sum(size.values()) == 3000
    assert (tmp_path / "strata" / "clustered.bed").read_text() == "c\t2495\t2515\n"
    assert "c\t1995\t2025\n" in (tmp_path / "strata" / "tandem_repeat.bed").read_text()


def test_strata_accuracy_keeps_the_better_threshold_per_type(tmp_path, monkeypatch):
    import strata_accuracy as sa

    ds = tmp_path / "ds"
    (ds / "strata").mkdir(parents=True)
    (ds / "confident.bed").write_text("c\t0\t10\n")
    (ds / "strata" / "other.bed").write_text("c\t0\t10\n")
    (ds / "strata" / "segdup.bed").write_text("")  # empty strata are left out
    run = tmp_path / "run"
    run.mkdir()
    f1 = {(0.0, "SNP"): 0.9, (20.0, "SNP"): 0.95, (0.0, "INDEL"): 0.8, (20.0, "INDEL"): 0.7}

    def fake(varcall, ds_, vcf, bed, out):
        q = float(vcf.name.split(".q")[1].rsplit(".vcf", 1)[0])
        scale = 1.0 if bed.name == "confident.bed" else 0.5
        return {"status": "ok", **{k: {"F1": f1[(q, k)] * scale, "TP": 9, "FN": 1,
                                       "TP_allele": 10} for k in ("SNP", "INDEL")}}  # fmt: skip

    monkeypatch.setattr(sa, "filter_vcf", lambda vcf, q: vcf.with_name(f"calls.q{q:g}.vcf.gz"))
    monkeypatch.setattr(sa, "concordance", fake)
    monkeypatch.setattr(sa, "snv_in_deletion", lambda truth, vcf: {
        "carriers": 4, "het": 3, "hom_alt": 1, "missed": 0, "het_share": 0.75})  # fmt: skip
    res = sa.measure(Path("varcall"), ds, run / "calls.vcf.gz", (0.0, 20.0))
    assert res["SNP"]["min_qual"] == 20.0 and res["INDEL"]["min_qual"] == 0.0
    assert res["SNP"]["strata"] == {"other": pytest.approx({"F1": 0.475, "TP": 9, "FN": 1,
                                                            "TP_allele": 10})}  # fmt: skip
    assert res["genotype_concordance"] == 0.9
    entry = {
        "dataset": {"name": "hard", "length_bp": 620_000, "samples": ["a"] * 6, "coverage": 20,
                    "deep_contigs": ["kp_deep"]},  # fmt: skip
        "rows": [
            {"name": "freebayes", "status": "ok", "quals": [0.0, 20.0], "accuracy": res},
            {"name": "bcftools", "status": "skipped", "reason": "missing"},
        ],
    }
    text = "\n".join(sa.dataset_markdown(entry))
    assert (
        "| freebayes (QUAL >= 20 SNP, 0 INDEL) | 0.9500 | 0.8000 | 0.9000 | 0.4750 / 0.4000 | "
        "– / – | 3 / 1 / 0 of 4 |"
    ) in text
    assert "| kp_deep (deep) SNP / INDEL F1 |" in text
    assert "| bcftools | missing |" in text and "other 10 / 10" in text


def test_merge_accuracy_replaces_datasets_by_name(tmp_path):
    (tmp_path / "latest.json").write_text(
        '{"accuracy_section": {"datasets": [{"dataset": {"name": "hard"}, "rows": [1]},'
        ' {"dataset": {"name": "lowcov"}, "rows": [2]}]}}'
    )
    new = {"datasets": [{"dataset": {"name": "hard"}, "rows": [3]}]}
    got = sections.merge_accuracy(tmp_path, new)["accuracy_section"]["datasets"]
    assert [(e["dataset"]["name"], e["rows"]) for e in got] == [("lowcov", [2]), ("hard", [3])]
    assert sections.merge_accuracy(tmp_path / "none", new) is None


def _plain_vcf(path: Path, samples: list[str], records: list[str]) -> Path:
    path.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=c,length=1000>\n"
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples) + "\n"
        + "".join(r + "\n" for r in records)
    )
    return path


def test_snv_in_het_deletion_counts_carriers_called_het(tmp_path):
    import strata_accuracy as sa

    truth = _plain_vcf(tmp_path / "t.vcf", ["A", "B", "C"], [
        "c\t100\t.\tACGTACGT\tA\t.\tPASS\t.\tGT\t1|0\t0|1\t1|0",
        "c\t104\t.\tA\tG\t.\tPASS\t.\tGT\t0|1\t1|0\t0|1",
        "c\t300\t.\tC\tT\t.\tPASS\t.\tGT\t0|1\t0|0\t0|0",  # not in a deletion
    ])  # fmt: skip
    query = _plain_vcf(tmp_path / "q.vcf", ["A", "B", "C"], [
        # A: het SNV record; B: hom-alt; C: a complex record with the deletion and the SNV
        "c\t104\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t1/1\t0/0",
        "c\t100\t.\tACGTACGT\tA,ACGTGCGT\t50\tPASS\t.\tGT\t0/0\t0/0\t1/2",
    ])  # fmt: skip
    got = sa.snv_in_deletion(truth, query)
    assert got == {"carriers": 3, "het": 2, "hom_alt": 1, "missed": 0, "het_share": 2 / 3}


@pytest.mark.slow
@pytest.mark.skipif(
    bool(set(bd.missing_peers()) & {"art-nextgen-simulation-tools", "bwa", "samtools",
                                    "bcftools", "tabix", "kleborate-examples"}),
    reason="needs art_illumina, bwa, samtools, bcftools, tabix and kleborate-examples",
)  # fmt: skip
def test_tiny_hard_dataset_builds_with_strata_stutter_and_a_deep_contig(tmp_path):
    spec = bd.DatasetSpec(
        name="tiny", cuts=(("a", 2_400_000, 2_480_000), ("d", 5_000_000, 5_005_000)),
        n_samples=2, coverage=10, hard=hc.HardSpec(deep_contigs=("d",), deep_coverage=100),
    )  # fmt: skip
    ds = bd.build_dataset(spec, tmp_path, threads=1)
    info = __import__("json").loads((ds / "dataset.json").read_text())
    assert sum(info["strata_bp"].values()) == info["confident_bp"]
    assert info["planted"]["a"]["repeat_arrays"] == 32
    long_arrays = info["stutter"][3]
    assert long_arrays["reads_spanning"] > 100 and 0.08 < long_arrays["share"] < 0.3
    idx = __import__("pysam").idxstats(str(ds / "KP1.bam"))
    counts = {line.split("\t")[0]: int(line.split("\t")[2]) for line in idx.splitlines()}
    assert counts["d"] / 5000 > 3 * counts["a"] / 80000  # the deep contig
