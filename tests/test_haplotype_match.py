"""Haplotype-aware truth matching: planted representation differences score FP 0 / FN 0 under
haplotype matching and non-zero under record-exact matching; real differences still count."""

from __future__ import annotations

import random
from pathlib import Path

import pysam
import pytest
from _vcfdata import Rec, write_vcf

from varcall.evaluate.bed import overlaps_bed, read_bed
from varcall.evaluate.concordance import run_concordance
from varcall.evaluate.haplotype import Unit, match_cluster
from varcall.evaluate.normalise import load_normalised, normalise
from varcall.evaluate.truth import compare_truth

SAMPLE = ("S1",)

#: Designed local sequences (0-based start -> bases); the rest of chr1 is random.
MOTIFS = {
    199: "ACGTA",  # MNP vs two SNVs at 200, 201
    399: "CTACGATC",  # complex allele at 400 vs SNV 400 + deletion of [404, 406)
    599: "GACTTG",  # SNV 600 + del [601, 603)  vs  del [600, 602) + SNV 602
    799: "GAAAAT",  # ins A into the A run + SNV 803 A>C  vs  ins C after 803
    999: "AGCTACG",  # deletion of [1001, 1003) anchored at 1000  vs  SNV 1001 + del [1002, 1004)
}


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    d = tmp_path_factory.mktemp("href")
    rng = random.Random(11)
    seq = [rng.choice("ACGT") for _ in range(3000)]
    for start, bases in MOTIFS.items():
        seq[start : start + len(bases)] = list(bases)
    text = "".join(seq)
    path = d / "ref.fa"
    path.write_text(">chr1\n" + "\n".join(text[i : i + 60] for i in range(0, len(text), 60)) + "\n")
    pysam.faidx(str(path))
    return path, {"chr1": text}


def rec(seq: dict, pos: int, ref: str, alt: str, gt: str = "0/1", **kw) -> Rec:
    assert seq["chr1"][pos : pos + len(ref)] == ref, (pos, ref)
    return Rec("chr1", pos, ref, tuple(alt.split(",")), (gt,), sdp=(20,), **kw)


def _load(path: Path, refp: Path, tmp: Path, label: str):
    out = tmp / f"{label}.norm.vcf.gz"
    return load_normalised(out, label, str(path), normalise(path, refp, out))


def compare(ref, tmp: Path, truth: list[Rec], query: list[Rec], bed: str | None = None):
    """{match method: truth metrics} of ``query`` against ``truth``."""
    refp, seq = ref
    t = _load(write_vcf(tmp / "t.vcf.gz", truth, seq, SAMPLE), refp, tmp, "T")
    q = _load(write_vcf(tmp / "q.vcf.gz", query, seq, SAMPLE), refp, tmp, "Q")
    bed_ivs = None
    if bed is not None:
        (tmp / "c.bed").write_text(bed)
        bed_ivs = read_bed(tmp / "c.bed")
    out = {}
    with pysam.FastaFile(str(refp)) as fa:

        def fetch(c: str, s: int, e: int) -> str:
            return fa.fetch(c, s, e).upper()

        for match in ("haplotype", "exact"):
            out[match] = compare_truth(q, t, bed_ivs, match=match, fetch=fetch)
    return out


def total(m: dict, field: str) -> int:
    return sum(m[k][field] for k in ("SNP", "INDEL", "OTHER") if k in m)


def assert_same_haplotypes(res: dict) -> None:
    hap, exact = res["haplotype"], res["exact"]
    assert total(hap, "FP") == 0 and total(hap, "FN") == 0, hap["_errors"]
    assert total(hap, "TP_baseline") > 0 and total(hap, "TP_call") > 0
    assert total(exact, "FP") > 0 or total(exact, "FN") > 0


def test_mnp_vs_two_snvs(ref, tmp_path):
    _, seq = ref
    truth = [rec(seq, 200, "C", "T"), rec(seq, 201, "G", "A")]
    query = [rec(seq, 200, "CG", "TA")]
    res = compare(ref, tmp_path, truth, query)
    assert_same_haplotypes(res)
    snp = res["haplotype"]["SNP"]  # an MNP is a SNP; one call record, two truth records
    assert (snp["TP_baseline"], snp["TP_call"], snp["recall"], snp["precision"]) == (2, 1, 1, 1)
    assert res["exact"]["SNP"]["FN"] == 2 and res["exact"]["SNP"]["FP"] == 1


def test_complex_allele_vs_snv_and_indel(ref, tmp_path):
    _, seq = ref
    truth = [rec(seq, 400, "T", "C"), rec(seq, 403, "GAT", "G")]
    query = [rec(seq, 400, "TACGAT", "CACG")]
    assert_same_haplotypes(compare(ref, tmp_path, truth, query))


def test_two_snv_indel_combinations_spell_the_same_haplotype(ref, tmp_path):
    _, seq = ref
    truth = [rec(seq, 600, "A", "G", "1/1"), rec(seq, 600, "ACT", "A", "1/1")]
    query = [rec(seq, 599, "GAC", "G", "1/1"), rec(seq, 602, "T", "G", "1/1")]
    res = compare(ref, tmp_path, truth, query)
    assert_same_haplotypes(res)
    h = res["haplotype"]
    assert total(h, "TP_baseline") == 2 and total(h, "TP_call") == 2


def test_insertion_placed_elsewhere_in_a_repeat(ref, tmp_path):
    """GAAAAT -> GAAAACT: an A inserted at the start of the run (with the last A changed to
    C), or a C inserted after the run."""
    _, seq = ref
    truth = [rec(seq, 799, "G", "GA"), rec(seq, 803, "A", "C")]
    query = [rec(seq, 803, "A", "AC")]
    assert_same_haplotypes(compare(ref, tmp_path, truth, query))


def test_deletion_anchored_outside_the_bed(ref, tmp_path):
    """The truth deletes [1001, 1003) with its padding base at 1000, one base before the BED;
    the query spells the same haplotype with records inside it. Haplotype matching applies
    the BED after matching (a record counts when it overlaps), so nothing is an error."""
    _, seq = ref
    truth = [rec(seq, 1000, "GCT", "G")]
    query = [rec(seq, 1001, "C", "A"), rec(seq, 1001, "CTA", "C")]
    res = compare(ref, tmp_path, truth, query, bed="chr1\t1001\t1200\n")
    assert_same_haplotypes(res)
    assert total(res["exact"], "FP") == 2 and total(res["exact"], "FN") == 0


def test_a_missing_snv_is_one_fn_an_extra_one_fp(ref, tmp_path):
    _, seq = ref
    common = [rec(seq, 1500, seq["chr1"][1500], "T" if seq["chr1"][1500] != "T" else "A")]
    missing = rec(seq, 1520, seq["chr1"][1520], "T" if seq["chr1"][1520] != "T" else "G")
    extra = rec(seq, 1700, seq["chr1"][1700], "C" if seq["chr1"][1700] != "C" else "G")
    res = compare(ref, tmp_path, common + [missing], common + [extra])
    for match in ("haplotype", "exact"):
        s = res[match]["SNP"]
        assert (s["TP"], s["FP"], s["FN"], s["FP_gt"], s["FN_gt"]) == (1, 1, 1, 0, 0), match
    calls = sorted((e["pos"], e["call"]) for e in res["haplotype"]["_errors"])
    assert calls == [(1521, "FN"), (1701, "FP")]


def test_a_wrong_genotype_is_fp_gt_and_fn_gt(ref, tmp_path):
    _, seq = ref
    base = seq["chr1"][1900]
    alt = "T" if base != "T" else "G"
    res = compare(
        ref, tmp_path, [rec(seq, 1900, base, alt, "0/1")], [rec(seq, 1900, base, alt, "1/1")]
    )
    for match in ("haplotype", "exact"):
        s = res[match]["SNP"]
        assert (s["TP"], s["FP"], s["FN"], s["FP_gt"], s["FN_gt"]) == (0, 1, 1, 1, 1), match
        assert (s["TP_allele"], s["FP_allele"], s["FN_allele"]) == (1, 0, 0), match


def test_het_alt_counts_once_per_record(ref, tmp_path):
    _, seq = ref
    base = seq["chr1"][2100]
    a1, a2 = [b for b in "ACGT" if b != base][:2]
    both = rec(seq, 2100, base, f"{a1},{a2}", "1/2")
    res = compare(ref, tmp_path, [both], [both])
    h = res["haplotype"]["SNP"]
    assert (h["TP_baseline"], h["TP_call"], h["FP"], h["FN"]) == (1, 1, 0, 0)
    # one ALT right: the record is wrong once on each side (allele right, genotype wrong)
    res = compare(ref, tmp_path, [both], [rec(seq, 2100, base, a1, "0/1")])
    h = res["haplotype"]["SNP"]
    assert (h["TP"], h["FP"], h["FN"], h["FP_gt"], h["FN_gt"]) == (0, 1, 1, 1, 1)


def test_cli_match_option_and_metrics(ref, tmp_path):
    from click.testing import CliRunner

    from varcall.cli.main import main

    refp, seq = ref
    truth = write_vcf(
        tmp_path / "t.vcf.gz", [rec(seq, 200, "C", "T"), rec(seq, 201, "G", "A")], seq, SAMPLE
    )
    query = write_vcf(tmp_path / "q.vcf.gz", [rec(seq, 200, "CG", "TA")], seq, SAMPLE)
    m = run_concordance(query, query, refp, tmp_path / "h", truth=truth, qc=False)
    assert m["match"] == "haplotype" and "haplotype" not in m["identity"]
    assert m["truth"]["A"]["SNP"]["TP_call"] == 1 and m["truth"]["A"]["SNP"]["TP_baseline"] == 2
    assert m["truth"]["A"]["matching"]["clusters"]["haplotype"] == 1
    for match, fn in (("exact", 2), ("haplotype", 0)):
        out = tmp_path / match
        args = ["concordance", "-f", str(refp), str(query), str(truth), "--truth", str(truth)]
        res = CliRunner().invoke(main, args + ["--match", match, "--no-qc", "--out", str(out)])
        assert res.exit_code == 0, res.output
        import json

        m = json.loads((out / "metrics.json").read_text())
        assert m["match"] == match
        assert m["truth"]["A"]["SNP"]["FN"] == fn
        if match == "haplotype":  # A vs B by haplotype too: the same haplotypes
            assert m["identity"]["identical"] is False
            assert m["identity"]["haplotype"]["identical"] is True


def test_overlaps_bed():
    bed = {"c": [(10, 20), (30, 40)]}
    assert overlaps_bed(bed, "c", 8, 11) and not overlaps_bed(bed, "c", 8, 10)
    assert overlaps_bed(bed, "c", 19, 25) and not overlaps_bed(bed, "c", 20, 30)
    assert overlaps_bed(bed, "c", 15, 15) and not overlaps_bed(bed, "d", 0, 100)


def test_cluster_too_large_falls_back_to_exact():
    """Nine heterozygous query SNVs against one different truth SNV: too many phasings."""
    from varcall.evaluate.haplotype import MAX_STATES

    def unit(pos: int, alt: str) -> Unit:
        part = (pos, pos + 1, "A", alt, 1)
        return Unit(
            "c", pos, pos + 1, (part,), (("c", pos, "A", alt, 0),), "0/1", None, (pos, pos + 1)
        )

    query = [unit(p, "C") for p in range(0, 18, 2)]
    truth = [unit(0, "G")]
    assert 3 ** len(query) > MAX_STATES
    res = match_cluster(query, truth, lambda c, s, e: "A" * (e - s))
    assert res.method == "exact"
    assert res.query_calls == ["FP"] * 9 and res.truth_calls == ["FN"]


def test_native_output_agrees_with_exact_matching(small_cohort, tmp_path):
    """The native engine's calls on the small cohort against its truth, both without
    multi-allelic records (which haplotype matching counts once per record and exact
    matching once per ALT): where the representations agree, both methods count the same."""
    import pysam.bcftools

    from varcall.run.pipeline import run_call

    refp = small_cohort / "reference.fa"
    bams = [small_cohort / ln for ln in (small_cohort / "bams.txt").read_text().split()]
    run_call(refp, bams, tmp_path / "run", mode="single")
    sets = {}
    for name, src in (
        ("calls", tmp_path / "run" / "calls.vcf.gz"),
        ("truth", small_cohort / "truth.vcf.gz"),
    ):
        sets[name] = tmp_path / f"{name}.biallelic.vcf.gz"
        pysam.bcftools.view("-M2", "-O", "z", "-o", str(sets[name]), str(src), catch_stdout=False)
    got = {}
    for match in ("haplotype", "exact"):
        m = run_concordance(
            sets["calls"],
            sets["calls"],
            refp,
            tmp_path / match,
            truth=sets["truth"],
            qc=False,
            match=match,
        )
        got[match] = m["truth"]["A"]
    fields = ("TP_baseline", "TP_call", "FP", "FN", "FP_gt", "FN_gt")
    for vtype in ("SNP", "INDEL"):
        assert got["haplotype"][vtype]["TP"] > 50
        assert {f: got["haplotype"][vtype][f] for f in fields} == {
            f: got["exact"][vtype][f] for f in fields
        }, vtype
    clusters = got["haplotype"]["matching"]["clusters"]
    assert clusters["record"] > 100 and clusters["exact"] == 0


def test_report_states_the_matching_method(tmp_path):
    from _vcfdata import make_reference, make_run_dir, random_truth_and_query, read_reference

    from varcall.report.html import write_report

    refp = make_reference(tmp_path)
    seq = read_reference(refp)
    truth, query = random_truth_and_query(seq)
    t = write_vcf(tmp_path / "truth.vcf.gz", truth, seq)
    run = make_run_dir(tmp_path / "run", query, seq, "single", 1)
    concs = []
    for match in ("haplotype", "exact"):
        concs.append(tmp_path / f"c-{match}")
        run_concordance(run, run, refp, concs[-1], truth=t, qc=False, match=match)
    text = write_report([run], tmp_path / "r.html", concordance_dir=concs).read_text()
    assert "Matching: haplotype-aware" in text and "Matching: record-exact" in text


def _hom(pos: int, end: int, ref: str, alt: str) -> Unit:
    part = (pos, end, ref, alt, 2)
    return Unit("c", pos, end, (part,), (("c", pos, ref, alt, 0),), "1/1", None, (pos, end))


@pytest.mark.parametrize("seed", range(0, 200, 20))
def test_any_edits_match_their_merged_complex_allele(seed):
    """Invariant (hypothesis-style, seeded): homozygous edits at random non-overlapping
    places match one complex record spelling the same haplotype, and each alone does not."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    rng = random.Random(seed)
    ref = "".join(rng.choice("ACGT") for _ in range(40))
    fetch = lambda c, s, e: ref[s:e]  # noqa: E731

    @settings(max_examples=20, deadline=None, derandomize=True)
    @given(
        st.lists(
            st.tuples(st.integers(1, 35), st.integers(0, 2), st.text("ACGT", max_size=2)),
            min_size=1,
            max_size=4,
        )
    )
    def check(edits):
        truth, cur = [], 0
        for pos, n_del, ins in sorted(edits):
            if pos < cur or (n_del == 0 and not ins):
                continue
            r, a = ref[pos : pos + n_del], ins
            if r == a:
                continue
            truth.append(_hom(pos, pos + n_del, r, a))
            cur = pos + max(n_del, 1) + 1
        if not truth:
            return
        start, end = truth[0].start, max(u.end for u in truth)
        hap, c = [], start
        for u in truth:
            hap.append(ref[c : u.start] + u.parts[0][3])
            c = u.end
        merged_alt = "".join(hap) + ref[c:end]
        if merged_alt == ref[start:end]:
            return
        query = [_hom(start, end, ref[start:end], merged_alt)]
        res = match_cluster(query, truth, fetch)
        assert res.query_calls == ["TP"] and res.truth_calls == ["TP"] * len(truth), res

    check()
