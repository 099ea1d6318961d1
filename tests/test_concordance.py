"""Concordance: identity of two call sets, planted differences, truth counts vs bcftools isec."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pysam
import pysam.bcftools
import pytest
from _vcfdata import (
    HOMO,
    SAMPLES,
    Rec,
    base_callset,
    deletion,
    make_reference,
    random_truth_and_query,
    read_reference,
    split_multiallelic,
    write_vcf,
)
from click.testing import CliRunner

from varcall.cli.main import main
from varcall.core.errors import InputError
from varcall.evaluate.concordance import run_concordance
from varcall.evaluate.identity import compare_manifests


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    d = tmp_path_factory.mktemp("ref")
    path = make_reference(d)
    return path, read_reference(path)


@pytest.fixture(scope="module")
def planted(ref, tmp_path_factory):
    """A, and B = A with exactly: one record removed, one genotype changed, the homopolymer
    deletion shifted right (same allele after left-alignment), the multi-allelic split."""
    refp, seq = ref
    d = tmp_path_factory.mktemp("planted")
    a_recs = base_callset(seq)
    b_recs = []
    removed = a_recs[3]
    changed = a_recs[5]
    for r in a_recs:
        if r is removed:
            continue
        if r is changed:
            g = list(r.gts)
            g[1] = "1/1" if g[1] != "1/1" else "0/1"
            r = replace(r, gts=tuple(g))
        elif r.contig == "chr1" and r.pos == HOMO:
            r = deletion(seq, "chr1", HOMO + 6, 1, r.gts, qual=r.qual)  # last A of the run
            assert r.ref == "AA"
        elif len(r.alts) == 2:
            b_recs.extend(split_multiallelic(r))
            continue
        b_recs.append(r)
    a = write_vcf(d / "a.vcf.gz", a_recs, seq)
    b = write_vcf(d / "b.vcf.gz", b_recs, seq)
    return {"a": a, "b": b, "removed": removed, "changed": changed, "dir": d, "a_recs": a_recs}


def test_self_is_identical(ref, planted, tmp_path):
    refp, _ = ref
    m = run_concordance(planted["a"], planted["a"], refp, tmp_path / "out", truth=planted["a"])
    ident = m["identity"]
    assert ident["identical"] is True
    assert ident["differing"] == 0
    assert ident["records_a"] == ident["records_b"] == len(planted["a_recs"]) + 1  # split
    assert m["sites"]["concordance"] == 1.0
    assert m["genotypes"]["all"]["concordance"] == 1.0
    assert m["genotypes"]["all"]["non_ref_concordance"] == 1.0
    # truth = itself: every non-ref sample genotype is a TP, once per record (also 1/2)
    non_ref = 0
    for r in planted["a_recs"]:
        for gt in r.gts:
            non_ref += bool({int(x) for x in gt.split("/")} - {0})
    t = m["truth"]["A"]
    assert m["match"] == "haplotype"
    assert t["SNP"]["TP"] + t["INDEL"]["TP"] == non_ref
    assert t["SNP"]["TP_call"] + t["INDEL"]["TP_call"] == non_ref
    assert t["SNP"]["FP"] == t["SNP"]["FN"] == t["INDEL"]["FP"] == t["INDEL"]["FN"] == 0
    assert t["SNP"]["F1"] == 1.0
    on_disk = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert on_disk["identity"]["identical"] is True
    # no temp files left behind
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "discordant.tsv",
        "metrics.json",
        "truth_errors.tsv",
    ]


def test_planted_differences_counted_exactly(ref, planted, tmp_path):
    refp, _ = ref
    m = run_concordance(planted["a"], planted["b"], refp, tmp_path / "out")
    ident = m["identity"]
    assert ident["identical"] is False
    assert ident["differing"] == 2
    assert ident["only_in_a"] == 1
    assert ident["only_in_b"] == 0
    assert ident["content_differs"] == 1
    assert ident["differing_fields"] == {"GT": 1}
    assert ident["records_b"] == ident["records_a"] - 1
    # the normalisation did the work: B's shifted deletion realigned, A's record split
    assert m["inputs"]["A"]["normalisation"]["split"] == 1
    assert m["inputs"]["B"]["normalisation"]["realigned"] == 1
    listed = {(r["contig"], r["pos"], r["status"]) for r in ident["discordant_records"]}
    rem, chg = planted["removed"], planted["changed"]
    assert listed == {(rem.contig, rem.pos + 1, "only_in_A"), (chg.contig, chg.pos + 1, "differs")}
    (row,) = [r for r in ident["discordant_records"] if r["status"] == "differs"]
    assert row["differences"].startswith("GT[S2]=")
    lines = (tmp_path / "out" / "discordant.tsv").read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("contig\tpos")
    # GT matrix of S2: one off-diagonal cell from the change, absent cells from the removal
    classes = m["genotypes"]["classes"]
    mat = m["genotypes"]["samples"]["S2"]["matrix"]
    absent = classes.index("absent")
    assert sum(mat[r][absent] for r in range(len(classes))) == 1
    off = sum(mat[r][c] for r in range(1, len(classes)) for c in range(1, len(classes)) if r != c)
    assert off == 1
    assert m["sites"]["only_in_a"] == 1 and m["sites"]["only_in_b"] == 0


def _count(path: Path) -> int:
    with pysam.VariantFile(str(path)) as vf:
        return sum(1 for _ in vf)


def _prep(vcf: Path, refp: Path, out: Path) -> Path:
    """normalise + sort + index, as a user of bcftools would before isec."""
    tmp = out.with_name(out.name + ".unsorted.vcf.gz")
    pysam.bcftools.norm(
        "-m", "-any", "-f", str(refp), "-O", "z", "-o", str(tmp), str(vcf), catch_stdout=False
    )
    pysam.bcftools.sort("-O", "z", "-o", str(out), str(tmp), catch_stdout=False)
    pysam.bcftools.index(str(out))
    return out


def _subset(vcf: Path, out: Path, sample: str, vtype: str, gt: str, bed: Path, pass_only: bool):
    """One sample's records of one type and genotype class inside the BED. bcftools applies
    -i before -s, so the sample is taken out first."""
    one = out.with_name(out.name + ".sample.vcf.gz")
    args = ["-s", sample, "-v", vtype, "-T", str(bed)] + (["-f", "PASS,."] if pass_only else [])
    pysam.bcftools.view(*args, "-O", "z", "-o", str(one), str(vcf), catch_stdout=False)
    pysam.bcftools.view("-i", f'GT="{gt}"', "-O", "z", "-o", str(out), str(one), catch_stdout=False)
    pysam.bcftools.index(str(out))
    return out


def _isec(q: Path, t: Path, d: Path) -> tuple[int, int, int]:
    """(shared, private to q, private to t) by bcftools isec."""
    pysam.bcftools.isec("-p", str(d), str(q), str(t), catch_stdout=False)
    return _count(d / "0002.vcf"), _count(d / "0000.vcf"), _count(d / "0001.vcf")


def test_truth_counts_agree_with_bcftools_isec(ref, tmp_path):
    refp, seq = ref
    truth, query = random_truth_and_query(seq)
    t = write_vcf(tmp_path / "truth.vcf.gz", truth, seq)
    q = write_vcf(tmp_path / "query.vcf.gz", query, seq)
    bed = tmp_path / "conf.bed"
    bed.write_text("chr1\t0\t2200\nchr2\t300\t3000\n")
    m = run_concordance(q, q, refp, tmp_path / "out", truth=t, bed=bed, qc=False, match="exact")
    got = m["truth"]["A"]
    assert m["match"] == "exact" and got["matching"] == {"method": "exact"}

    tn = _prep(t, refp, tmp_path / "t.norm.vcf.gz")
    qn = _prep(q, refp, tmp_path / "q.norm.vcf.gz")
    expect: dict[str, Counter] = {"SNP": Counter(), "INDEL": Counter()}
    n = 0
    for sample in SAMPLES:
        for vtype, key in (("snps", "SNP"), ("indels", "INDEL")):
            sets = {}
            for gt in ("alt", "het", "AA"):
                sets[gt] = (
                    _subset(qn, tmp_path / f"q{n}.vcf.gz", sample, vtype, gt, bed, True),
                    _subset(tn, tmp_path / f"t{n}.vcf.gz", sample, vtype, gt, bed, False),
                )
                n += 1
            shared, fp_a, fn_a = _isec(*sets["alt"], tmp_path / f"isec{n}")
            tp = sum(_isec(*sets[g], tmp_path / f"isec{n}{g}")[0] for g in ("het", "AA"))
            n_q, n_t = _count(sets["alt"][0]), _count(sets["alt"][1])
            expect[key].update(
                TP=tp, FP=n_q - tp, FN=n_t - tp, TP_allele=shared, FP_allele=fp_a, FN_allele=fn_a
            )
    for key in ("SNP", "INDEL"):
        for field in ("TP", "FP", "FN", "TP_allele", "FP_allele", "FN_allele"):
            assert got[key][field] == expect[key][field], (key, field)
    # the planted edits are visible: some genotype errors, some FNs and FPs of each kind
    assert got["SNP"]["FP_gt"] + got["INDEL"]["FP_gt"] > 0
    assert got["SNP"]["FN"] > got["SNP"]["FN_gt"]
    assert got["SNP"]["FP"] > got["SNP"]["FP_gt"]
    p, r = got["SNP"]["precision"], got["SNP"]["recall"]
    assert got["SNP"]["F1"] == pytest.approx(2 * p * r / (p + r))
    # strata add up to the totals
    strata = got["strata"]
    for key in ("SNP", "INDEL"):
        for field in ("TP", "FP", "FN"):
            assert sum(v[key][field] for v in strata["contig"].values()) == got[key][field]
            assert sum(v[key][field] for v in strata["depth"].values()) == got[key][field]
    for field in ("TP", "FP", "FN"):
        assert sum(v[field] for v in strata["indel_length"].values()) == got["INDEL"][field]
    # without the BED more truth variants are counted
    m2 = run_concordance(q, q, refp, tmp_path / "out2", truth=t, qc=False, match="exact")
    all_t = m2["truth"]["A"]["SNP"]["TP"] + m2["truth"]["A"]["SNP"]["FN"]
    assert all_t > got["SNP"]["TP"] + got["SNP"]["FN"]
    # LowQual query records count only with include_filtered (truth counts stay the same)
    m3 = run_concordance(
        q, q, refp, tmp_path / "out3", truth=t, bed=bed, qc=False, include_filtered=True,
        match="exact",
    )  # fmt: skip
    g3 = m3["truth"]["A"]
    n_lowqual = sum(1 for r in query if r.filt == "LowQual")
    assert n_lowqual > 0
    for key in ("SNP", "INDEL"):
        assert g3[key]["TP"] + g3[key]["FN"] == got[key]["TP"] + got[key]["FN"]
    assert sum(g3[k]["TP"] + g3[k]["FP"] for k in ("SNP", "INDEL")) > sum(
        got[k]["TP"] + got[k]["FP"] for k in ("SNP", "INDEL")
    )


def test_ref_mismatch_names_the_file(ref, tmp_path):
    refp, seq = ref
    bad_ref = "A" if seq["chr1"][200] != "A" else "C"
    rec = Rec("chr1", 200, bad_ref, ("G" if bad_ref != "G" else "T",), ("0/1", "0/1", "0/1"))
    bad = write_vcf(tmp_path / "bad.vcf.gz", [rec], seq)
    with pytest.raises(InputError, match="bad.vcf.gz: REF allele does not match"):
        run_concordance(bad, bad, refp, tmp_path / "out")


def test_cli_concordance(ref, planted, tmp_path):
    refp, _ = ref
    out = tmp_path / "c"
    args = ["concordance", "-f", str(refp), str(planted["a"]), str(planted["b"]), "--out", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "differ" in res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["identity"]) >= {"identical", "records_a", "records_b", "differing"}
    assert "truth" not in metrics
    # --require-identical: exit 1 on a difference, 0 for a set against itself
    res = CliRunner().invoke(main, [*args, "--require-identical"])
    assert res.exit_code == 1, res.output
    assert "are not identical" in res.output and (out / "metrics.json").is_file()
    same = ["concordance", "-f", str(refp), str(planted["a"]), str(planted["a"])]
    res = CliRunner().invoke(main, [*same, "--out", str(out), "--require-identical"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(
        main,
        [
            "concordance",
            "-f",
            str(refp),
            str(tmp_path / "nope.vcf"),
            str(planted["b"]),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 2
    assert "nope.vcf: not found" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_digest_fast_path_points_at_regions():
    regions = [
        {
            "region": f"chr1:{s + 1}-{s + 100}",
            "contig": "chr1",
            "start": s,
            "end": s + 100,
            "digest": f"d{s}",
        }
        for s in (0, 100, 200)
    ]
    ma = {"regions": regions, "contig_digests": {"chr1": "x"}}
    mb = {"regions": [dict(r) for r in regions], "contig_digests": {"chr1": "x"}}
    assert compare_manifests(ma, mb) == {
        "method": "region",
        "identical": True,
        "compared": 3,
        "differing": [],
    }
    mb["regions"][1]["digest"] = "other"
    got = compare_manifests(ma, mb)
    assert got["identical"] is False and got["differing"] == ["chr1:101-200"]
    # other layout: per contig
    mc = {"regions": regions[:1], "contig_digests": {"chr1": "y"}}
    got = compare_manifests(ma, mc)
    assert got["method"] == "contig" and got["differing"] == ["chr1"]
    assert compare_manifests(ma, None)["identical"] is None


def test_qc_counts_with_haploid_calls(ref, tmp_path):
    from varcall.evaluate.qc import dataset_from_vcf, qc_stats

    _, seq = ref
    recs = [
        Rec(
            "chr1",
            100,
            seq["chr1"][100],
            ("G" if seq["chr1"][100] != "G" else "A",),
            ("0/1", "1/1", "./."),
            sdp=(20, 30, 0),
        ),
        Rec(
            "chr1",
            300,
            seq["chr1"][300],
            ("T" if seq["chr1"][300] != "T" else "C",),
            ("0/1", "0/0", "0/1"),
            sdp=(10, 10, 10),
        ),
        Rec(
            "chr2",
            400,
            seq["chr2"][400],
            ("A" if seq["chr2"][400] != "A" else "C",),
            ("1", "0", "1"),
            sdp=(8, 9, 7),
        ),
    ]
    vcf = write_vcf(tmp_path / "q.vcf.gz", recs, seq)
    qc = qc_stats(dataset_from_vcf(vcf))
    s1, s2, s3 = (qc["samples"][s] for s in SAMPLES)
    assert (s1["n_het"], s1["n_hom_alt"], s1["n_called"]) == (2, 1, 3)
    assert (s2["n_het"], s2["n_hom_alt"], s2["n_hom_ref"]) == (0, 1, 2)
    assert s3["n_called"] == 2 and s3["call_rate"] == pytest.approx(2 / 3)
    assert s1["mean_depth"] == pytest.approx((20 + 10 + 8) / 3)
    assert s1["het_hom_alt_ratio"] == 2.0
    assert qc["missingness"]["variants_with_missing"] == 1
    assert sum(qc["af_spectrum"]["counts"]) == 3
    ti = sum(1 for r in recs if {r.ref, r.alts[0]} in ({"A", "G"}, {"C", "T"}))
    assert qc["ti_tv"]["ti"] == ti and qc["ti_tv"]["tv"] == 3 - ti


def test_bam_depth_counts_usable_reads(ref, tmp_path):
    from varcall.core.manifest import Manifest
    from varcall.evaluate.truth import BamDepth

    _, seq = ref
    header = {
        "HD": {"VN": "1.6", "SO": "coordinate"},
        "SQ": [{"SN": c, "LN": len(s)} for c, s in seq.items()],
        "RG": [{"ID": "rg1", "SM": "S1"}],
    }
    path = tmp_path / "s1.bam"
    # (start, mapq, flag): 3 usable reads over position 150, one MAPQ 5, one duplicate,
    # one secondary, one ending before 150
    reads = [
        (105, 60, 0),
        (120, 60, 16),
        (140, 30, 0),
        (130, 5, 0),
        (110, 60, 0x400),
        (115, 60, 0x100),
        (40, 60, 0),
    ]
    with pysam.AlignmentFile(str(path), "wb", header=header) as out:
        for i, (start, mapq, flag) in enumerate(sorted(reads)):
            a = pysam.AlignedSegment(out.header)
            a.query_name = f"r{i}"
            a.reference_id = 0
            a.reference_start = start
            a.mapping_quality = mapq
            a.flag = flag
            a.cigarstring = "50M"
            a.query_sequence = seq["chr1"][start : start + 50]
            a.query_qualities = pysam.qualitystring_to_array("I" * 50)
            a.set_tag("RG", "rg1")
            out.write(a)
    pysam.index(str(path))
    manifest = {"inputs": {"alignments": [{"path": str(path)}]}, "params": {"min_mapq": 20}}
    depth = BamDepth(Manifest.from_dict(manifest))
    try:
        assert depth("S1", "chr1", 150) == 3
        assert depth("S1", "chr1", 2000) == 0
        assert depth("S2", "chr1", 150) is None
    finally:
        depth.close()


def test_unreadable_input_is_a_one_line_error(ref, tmp_path):
    refp, _ = ref
    junk = tmp_path / "junk.vcf"
    junk.write_text("hello\n")
    with pytest.raises(
        InputError, match=r"junk.vcf: bcftools norm cannot read it \(.*unknown file type\)"
    ) as e:
        run_concordance(junk, junk, refp, tmp_path / "out")
    assert "\n" not in str(e.value)


def test_qc_ti_tv_agrees_with_bcftools_stats(planted):
    from varcall.evaluate.qc import dataset_from_vcf, qc_stats

    qc = qc_stats(dataset_from_vcf(planted["a"]))
    (line,) = [
        ln for ln in pysam.bcftools.stats(str(planted["a"])).splitlines() if ln.startswith("TSTV")
    ]
    ts, tv = (int(x) for x in line.split("\t")[2:4])
    assert ts > 0 and tv > 0
    assert (qc["ti_tv"]["ti"], qc["ti_tv"]["tv"]) == (ts, tv)


def test_vcf_zarr_input(ref, planted, tmp_path):
    """A VCF Zarr store written from A compares identical to A; with one genotype changed
    in the store, exactly that record differs."""
    from varcall.io.vcf_read import read_vcf
    from varcall.run.merge import write_outputs

    refp, seq = ref
    contigs = [(c, len(s)) for c, s in seq.items()]
    callsets = list(read_vcf(planted["a"]))
    width = max(cs.max_alleles for cs in callsets)
    kw = {
        "contigs": contigs,
        "samples": list(SAMPLES),
        "filter_ids": callsets[0].filter_ids,
        "max_alleles": width,
    }
    write_outputs(tmp_path / "same", callsets, **kw)
    m = run_concordance(
        tmp_path / "same" / "calls.vcz", planted["a"], refp, tmp_path / "c1", qc=False
    )
    assert m["identity"]["identical"] is True
    assert m["inputs"]["A"]["vcz"].endswith("calls.vcz")

    first = callsets[0]
    gt = first.genotype.copy()
    gt[0, 0] = [1, 1] if gt[0, 0].tolist() != [1, 1] else [0, 1]
    callsets[0] = replace(first, genotype=gt)
    write_outputs(tmp_path / "changed", callsets, **kw)
    m = run_concordance(
        tmp_path / "changed" / "calls.vcz", planted["a"], refp, tmp_path / "c2", qc=False
    )
    assert m["identity"]["differing"] == 1
    assert m["identity"]["differing_fields"] == {"GT": 1}


def test_qc_ti_tv_counts_normalised_pass_records(ref, tmp_path):
    """A LowQual SNV and an SNV written padded (REF CA, ALT TA): the QC leaves out the first
    and, after normalisation, counts the second as the SNV it is."""
    refp, seq = ref
    s = seq["chr1"]
    alt = {"A": "G", "G": "A", "C": "T", "T": "C"}  # transitions
    recs = [
        Rec("chr1", 100, s[100], (alt[s[100]],), ("0/1", "0/1", "0/0")),
        Rec("chr1", 300, s[300], (alt[s[300]],), ("0/1", "0/0", "0/0"), filt="LowQual"),
        Rec("chr1", 500, s[500:502], (alt[s[500]] + s[501],), ("0/1", "1/1", "0/0")),
    ]
    vcf = write_vcf(tmp_path / "q.vcf.gz", recs, seq)
    m = run_concordance(vcf, vcf, refp, tmp_path / "out")
    qc = m["qc"]["A"]
    assert qc["records"] == "normalised PASS"
    assert (qc["ti_tv"]["ti"], qc["ti_tv"]["tv"]) == (2, 0)
    assert qc["n_variants"] == 2 and qc["samples"]["S1"]["n_het"] == 2
    assert (qc["samples"]["S1"]["ti"], qc["samples"]["S2"]["ti"], qc["samples"]["S3"]["ti"]) == (
        2, 2, 0,
    )  # fmt: skip
