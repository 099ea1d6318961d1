"""VCF header, record text, the BGZF/tabix writer and the cyvcf2 reader (varcall.io.vcf_header, vcf_write, vcf_read)."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np
import pysam
import pysam.bcftools
import pytest
from _callsets import (
    CONTIGS,
    FILTER_IDS,
    HAND_LINES,
    SAMPLES,
    hand_callset,
    random_callset,
    same_records,
)

from varcall.core.callset import FILL, MISSING, CallSet, concat_callsets
from varcall.core.errors import InputError
from varcall.io.vcf_header import vcf_header
from varcall.io.vcf_read import parse_region, read_vcf
from varcall.io.vcf_write import VcfWriter, format_quality, format_records, quality_texts


def _header(**kwargs) -> str:
    return vcf_header(
        CONTIGS,
        SAMPLES,
        FILTER_IDS,
        command_line="varcall call -f ref.fa -o out a.bam",
        reference="/data/ref.fa",
        **kwargs,
    )


def _write(path: Path, callsets: list[CallSet], header: str | None = None) -> Path:
    with VcfWriter(path, header or _header()) as w:
        for cs in callsets:
            w.write(cs)
    return path


def _body(path: Path) -> list[str]:
    with gzip.open(path, "rt") as fh:
        return [line.rstrip("\n") for line in fh if not line.startswith("#")]


# ----------------------------------------------------------------------------- header
def test_header_complete_and_parsed_by_bcftools(tmp_path):
    path = _write(tmp_path / "calls.vcf.gz", [hand_callset()])
    text = pysam.bcftools.view("-h", str(path))
    lines = text.splitlines()
    assert "##fileformat=VCFv4.2" in lines
    assert any(line.startswith("##fileDate=") for line in lines)
    assert "##source=varcall" in lines
    assert "##reference=file:///data/ref.fa" in lines
    assert "##varcallCommand=varcall call -f ref.fa -o out a.bam" in lines
    for name, length in CONTIGS:
        assert f"##contig=<ID={name},length={length}>" in lines
    assert '##FILTER=<ID=LowQual,Description="QUAL below the --min-qual threshold">' in lines
    assert any(line.startswith("##FILTER=<ID=StrandBias,") for line in lines)
    for key, number in (("DP", "1"), ("AC", "A"), ("AN", "1")):
        assert any(
            line.startswith(f"##INFO=<ID={key},Number={number},Type=Integer") for line in lines
        )
    for key, number in (("GT", "1"), ("GQ", "1"), ("DP", "1"), ("AD", "R"), ("PL", "G")):
        assert any(line.startswith(f"##FORMAT=<ID={key},Number={number},") for line in lines)
    assert lines[-1].split("\t") == [
        "#CHROM",
        "POS",
        "ID",
        "REF",
        "ALT",
        "QUAL",
        "FILTER",
        "INFO",
        "FORMAT",
        *SAMPLES,
    ]
    # bcftools reads every record without complaint
    body = pysam.bcftools.view("-H", str(path)).splitlines()
    assert len(body) == 4


def test_header_extra_filter_line_replaces_generic_one():
    text = vcf_header(
        CONTIGS,
        SAMPLES,
        ["PASS", "QD"],
        extra_lines=['##FILTER=<ID=QD,Description="Quality by depth below 2">'],
    )
    qd = [line for line in text.splitlines() if line.startswith("##FILTER=<ID=QD")]
    assert qd == ['##FILTER=<ID=QD,Description="Quality by depth below 2">']
    with pytest.raises(ValueError):
        vcf_header(CONTIGS, SAMPLES, ["PASS"], extra_lines=["not a header line"])


# ----------------------------------------------------------------------------- records
def test_format_records_exact_text():
    assert format_records(hand_callset()) == HAND_LINES


def _reference_line(cs: CallSet, i: int) -> str:
    """One record formatted the slow, obvious way (an independent implementation)."""

    def num(x: int) -> str:
        return "." if x < 0 else str(x)

    def vec(values: list[int]) -> str:
        while values and values[-1] == FILL:
            values = values[:-1]
        if not any(x >= 0 for x in values):
            return "."
        return ",".join(num(x) for x in values)

    alleles = [x for x in cs.alleles[i].tolist() if x]
    on = [f for f, flag in zip(cs.filter_ids, cs.filters[i].tolist()) if flag]
    filt = "." if not on else "PASS" if on == ["PASS"] else ";".join(f for f in on if f != "PASS")
    calls = cs.genotype[i].ravel().tolist()
    info = [] if cs.info_DP[i] < 0 else [f"DP={cs.info_DP[i]}"]
    if len(alleles) > 1:
        info.append("AC=" + ",".join(str(calls.count(k)) for k in range(1, len(alleles))))
    info.append(f"AN={sum(1 for x in calls if x >= 0)}")
    cols = [
        cs.contig,
        str(cs.position[i] + 1),
        ".",
        alleles[0],
        ",".join(alleles[1:]) or ".",
        format_quality(float(cs.quality[i])),
        filt,
        ";".join(info),
        "GT:GQ:DP:AD:PL",
    ]
    for j in range(cs.n_samples):
        a0, a1 = cs.genotype[i, j].tolist()
        gt = num(a0) if a1 == FILL else f"{num(a0)}/{num(a1)}"
        cols.append(
            ":".join(
                [
                    gt,
                    num(int(cs.GQ[i, j])),
                    num(int(cs.DP[i, j])),
                    vec(cs.AD[i, j].tolist()),
                    vec(cs.PL[i, j].tolist()),
                ]
            )
        )
    return "\t".join(cols)


def test_format_records_equal_reference_implementation(monkeypatch):
    import varcall.io.vcf_write as vcf_module

    rng = np.random.default_rng(3)
    cs = random_callset(rng, "chrUn_KI270302v1", 300, max_alleles=5)
    big = rng.integers(0, 2**31 - 1, size=cs.DP.shape).astype(np.int32)
    cs = dataclasses.replace(cs, DP=np.where(cs.DP >= 0, big, cs.DP).astype(np.int32))
    expect = [_reference_line(cs, i) for i in range(cs.n_variants)]
    assert format_records(cs) == expect
    # many small blocks give the same text
    monkeypatch.setattr(vcf_module, "_BLOCK_BYTES", 4000)
    assert format_records(cs) == expect


def test_format_records_rejects_non_ascii_alleles():
    cs = hand_callset()
    alleles = cs.alleles.copy()
    alleles[0, 1] = "É"
    with pytest.raises(ValueError, match="ASCII"):
        format_records(dataclasses.replace(cs, alleles=alleles))


def test_format_records_empty_and_large_values():
    cs = hand_callset()
    assert format_records(cs.take(np.zeros(cs.n_variants, bool))) == []
    big = dataclasses.replace(cs, DP=np.where(cs.DP >= 0, cs.DP + 123_456, cs.DP).astype(np.int32))
    line = format_records(big)[0]
    assert line.split("\t")[9].split(":")[2] == str(5 + 123_456)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (30.0, "30"),
        (12.345, "12.345"),
        (0.1, "0.1"),
        (float("nan"), "."),
        (225.41700744628906, "225.417"),
    ],
)
def test_format_quality_roundtrips_float32(value, text):
    assert format_quality(value) == text
    if text != ".":
        assert np.float32(float(text)) == np.float32(value)


def test_quality_texts_equal_format_quality():
    rng = np.random.default_rng(0)
    q = np.concatenate(
        [
            rng.uniform(0, 1000, 3000),
            np.round(rng.uniform(0, 1000, 3000), 2),
            10 ** rng.uniform(-8, 12, 3000),
            [np.nan, np.inf, 0.0, 1e6, 999999.5, 1e-4, 0.5, 3.4e38],
        ]
    ).astype(np.float32)
    assert quality_texts(q) == [format_quality(x) for x in q.tolist()]


# ----------------------------------------------------------------------------- round trip
def test_round_trip_hand_callset(tmp_path):
    cs = hand_callset()
    path = _write(tmp_path / "calls.vcf.gz", [cs])
    assert _body(path) == HAND_LINES
    assert Path(f"{path}.tbi").is_file()
    (back,) = list(read_vcf(path))
    assert back.filter_ids == FILTER_IDS
    assert same_records(back, cs)


def test_round_trip_random_multi_contig(tmp_path):
    rng = np.random.default_rng(7)
    parts = [
        random_callset(rng, "chr1", 60),
        random_callset(rng, "chr2", 40),
        random_callset(rng, "chrM", 30, length=1000, haploid=True),
    ]
    path = _write(tmp_path / "calls.vcf.gz", parts)
    back = list(read_vcf(path))
    assert [b.contig for b in back] == ["chr1", "chr2", "chrM"]
    for a, b in zip(parts, back):
        assert same_records(a, b)
        assert a.digest() == b.digest()
    # pieces of at most 7 records concatenate to the same per-contig CallSets
    pieces = list(read_vcf(path, chunk_size=7))
    assert max(p.n_variants for p in pieces) == 7
    for part in parts:
        mine = [p for p in pieces if p.contig == part.contig]
        assert same_records(concat_callsets(mine), part)
    # the .tbi answers region queries (records overlapping the region)
    (sub,) = list(read_vcf(path, region="chr2:1001-3000"))
    expect = parts[1].take(
        (parts[1].position + np.char.str_len(parts[1].alleles[:, 0]) > 1000)
        & (parts[1].position < 3000)
    )
    assert same_records(sub, expect)


def test_bcf_output(tmp_path):
    cs = hand_callset()
    path = _write(tmp_path / "calls.bcf", [cs])
    assert Path(f"{path}.csi").is_file()
    (back,) = list(read_vcf(path))
    assert same_records(back, cs)


def test_compress_level(tmp_path):
    rng = np.random.default_rng(2)
    cs = random_callset(rng, "chr1", 300)
    sizes = {}
    for level in (0, 1, None):
        path = tmp_path / f"l{level}.vcf.gz"
        with VcfWriter(path, _header(), compress_level=level) as w:
            w.write(cs)
        (back,) = list(read_vcf(path))
        assert same_records(back, cs)
        sizes[level] = path.stat().st_size
    assert sizes[0] > sizes[1] > sizes[None]
    with pytest.raises(ValueError, match="compress_level"):
        VcfWriter(tmp_path / "x.vcf.gz", _header(), compress_level=12)


def test_plain_vcf_output_and_bad_name(tmp_path):
    cs = hand_callset()
    path = _write(tmp_path / "calls.vcf", [cs])
    text = path.read_text()
    assert text.startswith("##fileformat=VCFv4.2") and text.splitlines()[-4:] == HAND_LINES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.vcf"]
    (back,) = list(read_vcf(path))
    assert same_records(back, cs)
    with pytest.raises(ValueError, match=".vcf.gz"):
        VcfWriter(tmp_path / "calls.txt", _header())


def test_csi_index_for_long_contigs(tmp_path):
    header = vcf_header([("chr1", 2**30)], SAMPLES, FILTER_IDS)
    path = _write(tmp_path / "big.vcf.gz", [hand_callset()], header)
    assert Path(f"{path}.csi").is_file() and not Path(f"{path}.tbi").exists()
    (back,) = list(read_vcf(path, region="chr1:1-15"))
    assert back.position.tolist() == [9]


# ----------------------------------------------------------------------------- atomicity
def test_writer_failure_leaves_no_final_file(tmp_path):
    path = tmp_path / "calls.vcf.gz"
    with pytest.raises(RuntimeError, match="boom"):
        with VcfWriter(path, _header()) as w:
            w.write(hand_callset())
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_writer_failure_keeps_previous_output(tmp_path):
    path = _write(tmp_path / "calls.vcf.gz", [hand_callset()])
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with VcfWriter(path, _header()):
            raise RuntimeError("interrupted")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.vcf.gz", "calls.vcf.gz.tbi"]


def test_writer_temporaries_are_hidden_until_close(tmp_path):
    path = tmp_path / "calls.vcf.gz"
    w = VcfWriter(path, _header())
    w.write(hand_callset())
    assert not path.exists()
    assert all(p.name.startswith(".") for p in tmp_path.iterdir())
    w.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.vcf.gz", "calls.vcf.gz.tbi"]


# ----------------------------------------------------------------------------- reader
FREEBAYES_LIKE = """##fileformat=VCFv4.2
##contig=<ID=chr1,length=1000>
##contig=<ID=chr2,length=1000>
##INFO=<ID=DP,Number=1,Type=Integer,Description="Total read depth">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=GQ,Number=1,Type=Float,Description="Genotype Quality">
##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read Depth">
##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">
##FORMAT=<ID=GL,Number=G,Type=Float,Description="Genotype likelihoods (log10)">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tA\tB\tC
chr1\t10\t.\tA\tC,G\t30.25\t.\tDP=12\tGT:GQ:DP:AD:GL\t0/1:12.6:6:3,3,0:-10.1,-0.2,-8,-12,-12,-12\t1:40.2:4:0,4,0:-9,0,-9\t./.:.:0:.:.
chr1\t20\t.\tAC\tA\t5\tmyFilter\t.\tGT:DP\t0|0:3\t.:.\t1/1:2
chr2\t5\t.\tT\t.\t.\tPASS\tDP=1\tGT\t0/0\t0/0\t0/0
"""


def _plain_vcf(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "in.vcf"
    path.write_text(text)
    return path


def test_read_freebayes_like_gl_float_gq_mixed_ploidy(tmp_path):
    path = _plain_vcf(tmp_path, FREEBAYES_LIKE)
    chr1, chr2 = list(read_vcf(path))
    assert chr1.filter_ids == ("PASS", "myFilter")  # undeclared filter appended
    assert chr1.position.tolist() == [9, 19]
    assert chr1.alleles.tolist() == [["A", "C", "G"], ["AC", "A", ""]]
    assert chr1.quality.tolist() == [30.25, 5.0]
    assert chr1.filters.tolist() == [[False, False], [False, True]]
    assert chr1.info_DP.tolist() == [12, MISSING]
    assert chr1.genotype.tolist() == [
        [[0, 1], [1, FILL], [MISSING, MISSING]],
        [[0, 0], [MISSING, FILL], [1, 1]],
    ]
    assert chr1.GQ.tolist() == [[13, 40, MISSING], [MISSING] * 3]
    assert chr1.DP.tolist() == [[6, 4, 0], [3, MISSING, 2]]
    assert chr1.AD[0].tolist() == [[3, 3, 0], [0, 4, 0], [MISSING] * 3]
    assert chr1.AD[1].tolist() == [[MISSING, MISSING, FILL]] * 3
    # PL = round(-10 * (GL - max GL)); haploid: n alleles, diploid: n(n+1)/2
    assert chr1.PL[0].tolist() == [
        [99, 0, 78, 118, 118, 118],
        [90, 0, 90, FILL, FILL, FILL],
        [MISSING] * 6,
    ]
    assert chr1.PL[1, 0].tolist() == [MISSING, MISSING, MISSING, FILL, FILL, FILL]
    assert chr1.PL[1, 1].tolist() == [MISSING, MISSING, FILL, FILL, FILL, FILL]
    assert chr2.contig == "chr2" and chr2.alleles[0, 0] == "T"
    assert chr2.filters.tolist() == [[True, False]]
    assert np.isnan(chr2.quality[0])


def test_read_samples_subset_and_order(tmp_path):
    path = _plain_vcf(tmp_path, FREEBAYES_LIKE)
    chr1 = next(read_vcf(path, samples=["C", "A"]))
    assert chr1.samples == ("C", "A")
    assert chr1.DP.tolist() == [[0, 6], [2, 3]]
    with pytest.raises(InputError, match="samples Z not in the file"):
        next(read_vcf(path, samples=["A", "Z"]))


def test_read_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        next(read_vcf(tmp_path / "absent.vcf"))
    lines = FREEBAYES_LIKE.splitlines()
    unsorted = "\n".join(lines[:-3] + [lines[-2], lines[-3], lines[-1]]) + "\n"
    with pytest.raises(InputError, match="bcftools sort"):
        list(read_vcf(_plain_vcf(tmp_path, unsorted)))
    split = "\n".join(lines[:-3] + [lines[-3], lines[-1], lines[-2]]) + "\n"
    with pytest.raises(InputError, match="not contiguous"):
        list(read_vcf(_plain_vcf(tmp_path, split)))
    with pytest.raises(InputError, match="index"):
        list(read_vcf(_plain_vcf(tmp_path, FREEBAYES_LIKE), region="chr1:1-100"))


def test_parse_region():
    assert parse_region("chr1") == ("chr1", None, None)
    assert parse_region("chr1:1,001-2,000") == ("chr1", 1000, 2000)
    assert parse_region("chr1:5") == ("chr1", 4, None)
    with pytest.raises(InputError):
        parse_region("chr1:0-5")
