"""VCF Zarr store (varcall.io.vcz, varcall.io.vcz_spec): sgkit conventions, equality with the VCF record by
record, chunking independence, the streaming merge and its atomicity."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
from pathlib import Path

import numpy as np
import pysam
import pytest
import zarr
from _callsets import (
    CONTIGS,
    FILTER_IDS,
    SAMPLES,
    hand_callset,
    random_callset,
    same_records,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from varcall import __version__
from varcall.core.callset import FILL, MISSING, CallSet, concat_callsets, n_genotypes
from varcall.core.errors import InputError
from varcall.io.vcf_read import read_vcf
from varcall.io.vcz import VczWriter, used_max_alleles
from varcall.io.vcz_read import read_vcz, vcz_to_vcf
from varcall.run.merge import write_outputs

MAX_ALLELES = 4


@pytest.fixture(scope="module")
def callsets() -> list[CallSet]:
    """chr1 (hand-built + random, multi-allelic, mixed ploidy), chr2, chrM (haploid)."""
    rng = np.random.default_rng(11)
    hand = hand_callset()
    tail = random_callset(rng, "chr1", 50, start=5000, length=5000)
    return [
        concat_callsets([hand, tail]),
        random_callset(rng, "chr2", 37),
        random_callset(rng, "chrM", 20, length=1000, haploid=True),
    ]


def _write(out: Path, parts: list[CallSet], chunk_size: int = 10_000):
    return write_outputs(
        out,
        parts,
        contigs=CONTIGS,
        samples=SAMPLES,
        filter_ids=FILTER_IDS,
        max_alleles=MAX_ALLELES,
        header_kwargs={"command_line": "varcall call test", "reference": "/ref.fa"},
        chunk_size=chunk_size,
    )


@pytest.fixture(scope="module")
def merged(tmp_path_factory, callsets):
    out = tmp_path_factory.mktemp("merged")
    return _write(out, callsets, chunk_size=7)


def _arrays(path: Path) -> dict[str, np.ndarray]:
    root = zarr.open_group(str(path), mode="r")
    return {name: root[name][:] for name in root.array_keys()}


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind == "f":  # bitwise, so that the NaN sentinels must agree too
        return np.array_equal(a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}"))
    return np.array_equal(a, b)


# ----------------------------------------------------------------------------- layout
def test_store_layout_follows_vcf_zarr(merged):
    root = zarr.open_consolidated(str(merged.vcz_path), mode="r")
    assert root.attrs["vcf_zarr_version"] == "0.4"
    assert root.attrs["source"].startswith("varcall")
    meta = dict(map(tuple, root.attrs["vcf_meta_information"]))
    assert meta["varcallCommand"] == "varcall call test"
    assert root.attrs["vcf_header"].startswith("##fileformat=VCFv4.2")
    known_last_dims = {"alleles", "alt_alleles", "genotypes", "ploidy", "samples", "filters"}
    chunks = set()
    for name in root.array_keys():
        arr = root[name]
        dims = arr.attrs["_ARRAY_DIMENSIONS"]
        assert len(dims) == arr.ndim, name
        if dims[0] == "variants":
            chunks.add(arr.chunks[0])
            if arr.ndim > 1:
                assert dims[-1] in known_last_dims, name
    assert chunks == {7}
    assert root["variant_allele"].dtype == object
    assert root["contig_id"][:].tolist() == [c for c, _ in CONTIGS]
    assert root["contig_length"][:].tolist() == [n for _, n in CONTIGS]
    assert root["filter_id"][:].tolist() == list(FILTER_IDS)
    assert root["sample_id"][:].tolist() == list(SAMPLES)
    assert root["call_genotype"].attrs["mixed_ploidy"] is True
    n = merged.n_variants
    assert root["variant_position"].shape == (n,)
    assert root["call_PL"].shape == (n, len(SAMPLES), n_genotypes(MAX_ALLELES))
    # region_index rows: chunk, contig, first POS, last POS, max end, records
    index = root["region_index"][:]
    assert index[:, 5].sum() == n
    assert sorted(set(index[:, 0].tolist())) == list(range(-(-n // 7)))


def test_store_loads_with_sgkit(merged):
    import sgkit

    ds = sgkit.load_dataset(str(merged.vcz_path))
    assert ds.sizes["variants"] == merged.n_variants
    assert ds.sizes["samples"] == len(SAMPLES)
    assert ds.sizes["ploidy"] == 2
    assert ds.sizes["alleles"] == MAX_ALLELES
    assert ds["call_genotype"].dtype == np.int8
    assert ds["call_genotype_mask"].dtype == bool
    assert ds["variant_allele"].dtype == object
    # haploid calls pad with -2, which sgkit must be told about
    assert ds["call_genotype"].attrs["mixed_ploidy"] is True
    # sgkit's own variable specs (kind and dims) accept every variable it defines
    from sgkit import variables

    names = [
        "call_genotype",
        "call_genotype_mask",
        "call_genotype_phased",
        "contig_id",
        "sample_id",
        "variant_allele",
        "variant_contig",
        "variant_id",
        "variant_position",
    ]
    variables.validate(ds, {n: getattr(variables, f"{n}_spec") for n in names})


def test_store_equals_vcf_record_by_record(merged):
    """Every record of the VCF (read by pysam/htslib) against the arrays of the store."""
    import sgkit

    ds = sgkit.load_dataset(str(merged.vcz_path)).compute()
    contigs = ds["contig_id"].values.tolist()
    fids = ds["filter_id"].values.tolist()
    with pysam.VariantFile(str(merged.vcf_path)) as vf:
        records = list(vf)
    assert len(records) == ds.sizes["variants"]
    for i, rec in enumerate(records):
        assert contigs[ds["variant_contig"].values[i]] == rec.chrom
        assert ds["variant_position"].values[i] == rec.pos
        alleles = [a for a in ds["variant_allele"].values[i].tolist() if a]
        assert tuple(alleles) == (rec.ref, *(rec.alts or ()))
        assert ds["variant_length"].values[i] == len(rec.ref)
        q = ds["variant_quality"].values[i]
        assert (rec.qual is None and np.isnan(q)) or np.float32(rec.qual) == q
        on = [f for f, flag in zip(fids, ds["variant_filter"].values[i]) if flag]
        assert on == list(rec.filter.keys())
        dp = int(ds["variant_DP"].values[i])
        assert rec.info.get("DP", MISSING) == dp
        assert rec.info["AN"] == ds["variant_AN"].values[i]
        n_alt = len(alleles) - 1
        assert list(rec.info.get("AC", ())) == ds["variant_AC"].values[i][:n_alt].tolist()
        for j, sample in enumerate(SAMPLES):
            call = rec.samples[sample]
            gt = ds["call_genotype"].values[i, j].tolist()
            expect_gt = tuple(MISSING if a is None else a for a in call["GT"])
            assert tuple(x for x in gt if x != FILL) == expect_gt
            assert (call["GQ"] if call["GQ"] is not None else MISSING) == ds["call_GQ"].values[i, j]
            assert (call["DP"] if call["DP"] is not None else MISSING) == ds["call_DP"].values[i, j]
            ad = ds["call_AD"].values[i, j].tolist()
            ad_vcf = [MISSING if x is None else x for x in call["AD"]]
            assert ad[: len(ad_vcf)] == ad_vcf or (
                ad_vcf == [MISSING] and set(ad) <= {MISSING, FILL}
            )
            assert set(ad[len(ad_vcf) :]) <= {FILL, MISSING}
            pl = ds["call_PL"].values[i, j].tolist()
            pl_vcf = [MISSING if x is None else x for x in call["PL"]]
            assert pl[: len(pl_vcf)] == pl_vcf or (
                pl_vcf == [MISSING] and set(pl) <= {MISSING, FILL}
            )


def test_header_lines_reach_the_store(tmp_path, callsets):
    result = write_outputs(
        tmp_path,
        callsets,
        contigs=CONTIGS,
        samples=SAMPLES,
        filter_ids=FILTER_IDS,
        max_alleles=MAX_ALLELES,
        header_kwargs={
            "extra_lines": ['##FILTER=<ID=StrandBias,Description="Fisher strand p < 0.001">']
        },
    )
    root = zarr.open_group(str(result.vcz_path), mode="r")
    descriptions = dict(zip(root["filter_id"][:].tolist(), root["filter_description"][:].tolist()))
    assert descriptions == {
        "PASS": "All filters passed",
        "LowQual": "QUAL below the --min-qual threshold",
        "StrandBias": "Fisher strand p < 0.001",
    }
    header = pysam.VariantFile(str(result.vcf_path)).header
    assert header.filters["StrandBias"].description == "Fisher strand p < 0.001"
    assert str(header).count("##FILTER=<ID=StrandBias") == 1
    assert f"##source=varcall {__version__}" in str(header)


def test_read_vcz_round_trip_and_region(merged, callsets):
    back = list(read_vcz(merged.vcz_path))
    assert [b.contig for b in back] == ["chr1", "chr2", "chrM"]
    for a, b in zip(callsets, back):
        assert same_records(a, b)
    pieces = list(read_vcz(merged.vcz_path, per_chunk=True))
    assert max(p.n_variants for p in pieces) <= 7
    # records overlapping the region, as read_vcf (htslib) gives them
    (sub,) = list(read_vcz(merged.vcz_path, region="chr1:1000-6000"))
    (expect,) = list(read_vcf(merged.vcf_path, region="chr1:1000-6000"))
    assert same_records(sub, expect)
    cs = callsets[0]
    end = cs.position + np.char.str_len(cs.alleles[:, 0])
    assert same_records(sub, cs.take((end > 999) & (cs.position < 6000)))
    pos = int(callsets[1].position[5])
    (one,) = list(read_vcz(merged.vcz_path, region=f"chr2:{pos + 1}-{pos + 1}"))
    assert one.position.tolist() == [pos]
    assert list(read_vcz(merged.vcz_path, region="chrM:1001-2000")) == []
    with pytest.raises(InputError, match="not in the store"):
        list(read_vcz(merged.vcz_path, region="chrX"))


def test_vcz_to_vcf_equals_merged_vcf(merged, tmp_path):
    out = vcz_to_vcf(merged.vcz_path, tmp_path / "back.vcf.gz")
    with gzip.open(out, "rt") as a, gzip.open(merged.vcf_path, "rt") as b:
        assert a.read() == b.read()


def test_read_vcz_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        list(read_vcz(tmp_path / "absent.vcz"))
    (tmp_path / "empty.vcz").mkdir()
    with pytest.raises(InputError):
        list(read_vcz(tmp_path / "empty.vcz"))


# ----------------------------------------------------------------------------- merge
def test_chunk_size_does_not_change_arrays(tmp_path, callsets, merged):
    big = _write(tmp_path / "big", callsets, chunk_size=10_000)
    a, b = _arrays(merged.vcz_path), _arrays(big.vcz_path)
    assert a.keys() == b.keys()
    for name in a:
        if name == "region_index":
            continue
        assert _same_array(a[name], b[name]), name
    assert b["region_index"].shape == (3, 6)
    assert big.contig_digests == merged.contig_digests


def test_region_layout_does_not_change_outputs(tmp_path, callsets, merged):
    """The same records cut into other pieces (empty ones too) give the same outputs."""
    pieces = []
    for cs in callsets:
        cuts = [0, 17, 17, 5000, 5001, 10**9]
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            pieces.append(cs.restrict(lo, hi))
    # narrower allele padding and a subset of the filter ids in some pieces
    pieces = [
        p if p.n_variants == 0 or (p.alleles[:, 2:] != "").any() else _narrow(p) for p in pieces
    ]
    other = _write(tmp_path / "other", pieces, chunk_size=7)
    assert other.contig_digests == merged.contig_digests
    assert other.contig_counts == merged.contig_counts
    assert other.callset_counts == [p.n_variants for p in pieces]
    assert other.callset_digests == [p.digest() for p in pieces]
    assert merged.contig_digests == {cs.contig: cs.digest() for cs in callsets}
    assert _body(other.vcf_path) == _body(merged.vcf_path)
    a, b = _arrays(other.vcz_path), _arrays(merged.vcz_path)
    for name in a:
        assert _same_array(a[name], b[name]), name


def test_filter_id_order_does_not_change_outputs(tmp_path, callsets, merged):
    other = write_outputs(
        tmp_path / "other",
        callsets,
        contigs=CONTIGS,
        samples=SAMPLES,
        filter_ids=tuple(reversed(FILTER_IDS)),
        max_alleles=MAX_ALLELES,
        header_kwargs={"command_line": "varcall call test", "reference": "/ref.fa"},
        chunk_size=7,
    )
    assert _body(other.vcf_path) == _body(merged.vcf_path)
    a, b = _arrays(other.vcz_path), _arrays(merged.vcz_path)
    for name in a:
        assert _same_array(a[name], b[name]), name


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    chunk_size=st.integers(min_value=4, max_value=40),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=6),
)
def test_property_any_chunking_and_split_gives_the_same_store(
    tmp_path, callsets, merged, chunk_size, cuts
):
    """For random chunk sizes and random region splits, the store's arrays (region_index
    aside) and the contig digests are those of the reference merge."""
    bounds = [0, *sorted(cuts), 10**9]
    pieces = [cs.restrict(lo, hi) for cs in callsets for lo, hi in zip(bounds[:-1], bounds[1:])]
    out = tmp_path / f"prop-{chunk_size}-{'-'.join(map(str, cuts))}"
    other = _write(out, pieces, chunk_size=chunk_size)
    assert other.contig_digests == merged.contig_digests
    a, b = _arrays(other.vcz_path), _arrays(merged.vcz_path)
    for name in a:
        if name != "region_index":
            assert _same_array(a[name], b[name]), name
    index = a["region_index"]
    assert index[:, 5].sum() == merged.n_variants
    assert index[:, 0].max() == (merged.n_variants - 1) // chunk_size


def test_allele_bound_and_padding_do_not_change_arrays(tmp_path, callsets, merged):
    padded = [cs.pad_alleles(6) for cs in callsets]
    other = write_outputs(
        tmp_path / "other",
        padded,
        contigs=CONTIGS,
        samples=SAMPLES,
        filter_ids=FILTER_IDS,
        max_alleles=9,
        header_kwargs={"command_line": "varcall call test", "reference": "/ref.fa"},
        chunk_size=7,
    )
    a, b = _arrays(other.vcz_path), _arrays(merged.vcz_path)
    assert a["call_PL"].shape[2] == n_genotypes(MAX_ALLELES)
    for name in a:
        assert _same_array(a[name], b[name]), name
    assert other.contig_digests == merged.contig_digests


def test_used_max_alleles(callsets):
    assert used_max_alleles(callsets[0]) == MAX_ALLELES
    assert used_max_alleles(callsets[0].pad_alleles(7)) == MAX_ALLELES
    assert used_max_alleles(callsets[0].take(np.zeros(callsets[0].n_variants, bool))) == 2
    assert used_max_alleles(hand_callset().take(np.array([2]))) == 2


def _body(path: Path) -> list[str]:
    with gzip.open(path, "rt") as fh:
        return [line for line in fh if not line.startswith("##fileDate")]


def _narrow(cs: CallSet) -> CallSet:
    return dataclasses.replace(
        cs, alleles=cs.alleles[:, :2], AD=cs.AD[:, :, :2], PL=cs.PL[:, :, :3]
    )


def test_merge_outputs_and_result(merged):
    out = merged.vcf_path.parent
    assert sorted(p.name for p in out.iterdir()) == [
        "calls.vcf.gz",
        "calls.vcf.gz.tbi",
        "calls.vcz",
    ]
    assert merged.index_path == out / "calls.vcf.gz.tbi"
    assert merged.n_variants == sum(merged.callset_counts) == 4 + 50 + 37 + 20
    json.dumps(dataclasses.asdict(merged), default=str)


def test_merge_failure_leaves_no_outputs(tmp_path, callsets):
    def failing():
        yield callsets[0]
        raise RuntimeError("worker lost")

    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="worker lost"):
        _write(out, failing(), chunk_size=7)
    assert list(out.iterdir()) == []


def test_merge_removes_temporaries_of_killed_runs(tmp_path, callsets):
    out = tmp_path / "out"
    out.mkdir()
    dead = 2**22 + 12345  # above the default pid_max: no such process
    (out / f".calls.vcz.tmp-{dead}-7f00").mkdir()
    (out / f".calls.vcz.tmp-{dead}-7f00" / "call_PL").mkdir()
    (out / f".calls.vcf.gz.tmp-{dead}-7f00.vcf.gz").write_bytes(b"x")
    (out / f".calls.vcf.gz.tmp-{os.getpid()}-1").write_bytes(b"mine")  # this process: kept
    (out / ".calls.vcz.tmp-notapid").mkdir()  # not ours to judge: kept
    _write(out, callsets)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "calls.vcf.gz",
            "calls.vcf.gz.tbi",
            "calls.vcz",
            f".calls.vcf.gz.tmp-{os.getpid()}-1",
            ".calls.vcz.tmp-notapid",
        ]
    )


def test_merge_failure_keeps_previous_outputs(tmp_path, callsets):
    out = tmp_path / "out"
    first = _write(out, callsets)
    before = first.vcf_path.read_bytes()
    with pytest.raises(ValueError, match="reference order"):
        _write(out, [callsets[1], callsets[0]])
    assert first.vcf_path.read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == [
        "calls.vcf.gz",
        "calls.vcf.gz.tbi",
        "calls.vcz",
    ]
    assert same_records(next(read_vcz(out / "calls.vcz")), callsets[0])


def test_merge_rejects_unsorted_and_wide_input(tmp_path, callsets):
    cs = callsets[0]
    with pytest.raises(ValueError, match="sorted by position"):
        _write(tmp_path / "a", [cs.restrict(5000, 10**9), cs.restrict(0, 5000)])
    wide = random_callset(np.random.default_rng(3), "chr1", 40, max_alleles=6)
    wide = wide.take(np.flatnonzero((wide.alleles[:, 4:] != "").any(axis=1)))
    with pytest.raises(ValueError, match="max_alleles"):
        _write(tmp_path / "b", [wide])
    with pytest.raises(ValueError, match="not among"):
        _write(tmp_path / "c", [dataclasses.replace(cs, contig="chrZ")])
    for d in ("a", "b", "c"):
        assert list((tmp_path / d).iterdir()) == []


def test_vcz_writer_empty_store(tmp_path):
    with VczWriter(
        tmp_path / "empty.vcz",
        contigs=CONTIGS,
        samples=SAMPLES,
        filter_ids=FILTER_IDS,
        max_alleles=2,
    ) as w:
        w.append(CallSet.empty("chr1", SAMPLES, FILTER_IDS))
    import sgkit

    ds = sgkit.load_dataset(str(tmp_path / "empty.vcz"))
    assert ds.sizes["variants"] == 0
    assert list(read_vcz(tmp_path / "empty.vcz")) == []


def test_float_missing_uses_vcf_zarr_sentinel(merged):
    root = zarr.open_group(str(merged.vcz_path), mode="r")
    q = root["variant_quality"][:]
    bits = q.view(np.int32)[np.isnan(q)]
    assert bits.size > 0 and set(bits.tolist()) == {0x7F800001}
