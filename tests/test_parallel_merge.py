"""The parallel merge (varcall.run.merge.merge_checkpoints: encode tasks writing the store's
chunks and BGZF pieces of the VCF, joined by the client) writes exactly the outputs of the
serial writer (write_outputs): the VCF text, every file of the VCF Zarr store, the
digests; for chunk sizes that cut regions, empty regions, 1 and 2 workers, the privacy
options; and nothing is put in place when a task fails."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from pathlib import Path

import numpy as np
import pysam
import pytest
import zarr
from _callsets import CONTIGS, SAMPLES, hand_callset, random_callset
from hypothesis import given
from hypothesis import strategies as st

from varcall.core.callset import CallSet, concat_callsets, save_callset
from varcall.core.errors import VarcallError
from varcall.io.vcf_pieces import BGZF_EOF, PieceWriter
from varcall.run.encode import plan_encode
from varcall.run.merge import merge_checkpoints, write_outputs

HEADER = {"command_line": "varcall call test", "reference": "/ref.fa"}


@pytest.fixture(scope="module")
def units() -> list[CallSet]:
    """Regions of three contigs in genomic order: empty ones (a whole empty contig too),
    narrower allele padding and fewer filter ids in some, mixed ploidy."""
    rng = np.random.default_rng(5)
    chr1 = concat_callsets([hand_callset(), random_callset(rng, "chr1", 60, start=5000)])
    chr2 = random_callset(rng, "chr2", 23)
    chrm = random_callset(rng, "chrM", 9, length=1000, haploid=True)
    out = []
    for cs, cuts in ((chr1, [0, 17, 17, 5000, 6100, 10**9]), (chr2, [0, 10**9]), (chrm, [0, 0])):
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            out.append(cs.restrict(lo, hi))
    biallelic = random_callset(rng, "chr2", 5, max_alleles=2, start=9000, length=100)
    out.insert(-1, dataclasses.replace(biallelic, filter_ids=("PASS", "LowQual"),
                                       filters=biallelic.filters[:, :2]))  # fmt: skip
    out.append(CallSet.empty("chrM", SAMPLES))
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory, units) -> tuple[Path, list[dict]]:
    """The units as checkpoints with minimal sidecars."""
    folder = tmp_path_factory.mktemp("work")
    sidecars = []
    for i, cs in enumerate(units):
        key = f"unit{i:03d}"
        save_callset(cs, folder / f"{key}.npz")
        sidecars.append(
            {"key": key, "contig": cs.contig, "n_variants": cs.n_variants, "digest": cs.digest()}
        )
    return folder, sidecars


def _kwargs(units: list[CallSet], **kw) -> dict:
    filter_ids = sorted({f for cs in units for f in cs.filter_ids})
    return {
        "contigs": CONTIGS,
        "samples": SAMPLES,
        "filter_ids": filter_ids,
        "max_alleles": max(cs.max_alleles for cs in units),
        "header_kwargs": HEADER,
        **kw,
    }


def _files(folder: Path) -> dict[str, bytes]:
    """Every file of a store: metadata as written, chunks decompressed (Blosc's bytes
    for the same input vary from call to call; what they decompress to does not)."""
    from numcodecs import Blosc

    return {
        p.relative_to(folder).as_posix(): (
            p.read_bytes() if p.name.startswith(".") else bytes(Blosc().decode(p.read_bytes()))
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _text(path: Path) -> str:
    with gzip.open(path, "rt") as fh:
        return fh.read()


def _assert_same(a, b) -> None:
    """Same VCF text, same store files (byte for byte), same digests and counts."""
    assert _text(a.vcf_path) == _text(b.vcf_path)
    assert _files(a.vcz_path) == _files(b.vcz_path)
    assert a.n_variants == b.n_variants
    assert a.contig_digests == b.contig_digests
    assert a.contig_counts == b.contig_counts
    assert a.callset_digests == b.callset_digests
    assert a.callset_counts == b.callset_counts
    assert a.index_path.name == b.index_path.name
    with pysam.TabixFile(str(a.vcf_path)) as tbx:  # the index finds every record
        for contig in tbx.contigs:
            assert sum(1 for _ in tbx.fetch(contig)) == a.contig_counts[contig]


@pytest.mark.parametrize("chunk_size", [1, 4, 7, 10_000])
@pytest.mark.parametrize("n_tasks", [1, 3, 100])
def test_parallel_merge_equals_serial_writer(tmp_path, units, work, chunk_size, n_tasks):
    folder, sidecars = work
    kw = _kwargs(units, chunk_size=chunk_size)
    serial = write_outputs(tmp_path / "serial", units, **kw)
    parallel = merge_checkpoints(tmp_path / "parallel", sidecars, folder, n_tasks=n_tasks, **kw)
    _assert_same(parallel, serial)
    assert parallel.n_encode_tasks == min(n_tasks, -(-serial.n_variants // chunk_size))
    assert parallel.contig_digests["chr1"] == concat_callsets(units[:5]).digest()
    assert sorted(p.name for p in (tmp_path / "parallel").iterdir()) == [
        "calls.vcf.gz", "calls.vcf.gz.tbi", "calls.vcz",
    ]  # fmt: skip


@pytest.mark.parametrize("n_workers", [1, 2])
def test_parallel_merge_on_dask_workers(tmp_path, units, work, client, n_workers):
    folder, sidecars = work
    kw = _kwargs(units, chunk_size=5)
    serial = write_outputs(tmp_path / "serial", units, **kw)
    workers = list(client.scheduler_info()["workers"])[:n_workers]
    with _restricted(client, workers):
        parallel = merge_checkpoints(tmp_path / "dask", sidecars, folder, client=client, **kw)
    _assert_same(parallel, serial)
    assert parallel.n_encode_tasks > 1


class _restricted:
    """Run the client's tasks on ``workers`` only (the others are retired meanwhile)."""

    def __init__(self, client, workers) -> None:
        self.client, self.workers = client, workers

    def __enter__(self):
        import dask

        self._cfg = dask.config.set({"distributed.scheduler.worker-saturation": 1.0})
        self._cfg.__enter__()
        self._submit = self.client.map

        def restricted_map(*args, **kwargs):
            return self._submit(*args, workers=self.workers, allow_other_workers=False, **kwargs)

        self.client.map = restricted_map
        return self

    def __exit__(self, *exc) -> None:
        self.client.map = self._submit
        self._cfg.__exit__(*exc)


@pytest.mark.parametrize(
    "options",
    [
        {"format_fields": ("GT", "DP")},
        {"format_fields": ()},
        {"output_samples": ("p1", "p2", "p3")},
        {"format_fields": ("GT",), "output_samples": ("x", "y", "z"), "compress_level": 1},
    ],
)
def test_parallel_merge_privacy_options(tmp_path, units, work, options):
    folder, sidecars = work
    kw = _kwargs(units, chunk_size=6, **options)
    serial = write_outputs(tmp_path / "serial", units, **kw)
    parallel = merge_checkpoints(tmp_path / "parallel", sidecars, folder, n_tasks=4, **kw)
    _assert_same(parallel, serial)


def test_parallel_merge_without_records(tmp_path):
    units = [CallSet.empty(c, SAMPLES) for c, _ in CONTIGS]
    folder = tmp_path / "work"
    folder.mkdir()
    sidecars = []
    for i, cs in enumerate(units):
        save_callset(cs, folder / f"u{i}.npz")
        sidecars.append({"key": f"u{i}", "contig": cs.contig, "n_variants": 0,
                         "digest": cs.digest()})  # fmt: skip
    kw = _kwargs(units, chunk_size=3)
    _assert_same(
        merge_checkpoints(tmp_path / "p", sidecars, folder, n_tasks=3, **kw),
        write_outputs(tmp_path / "s", units, **kw),
    )


def test_plan_encode_cuts_whole_chunks_and_owns_each_unit_once():
    counts = [0, 5, 0, 0, 12, 3, 0]
    tasks = plan_encode([f"u{i}" for i in range(7)], counts, ["d"] * 7, 4, 3)
    assert [(t.start, t.stop, t.chunks) for t in tasks] == [
        (0, 8, (0, 1)), (8, 16, (2, 3)), (16, 20, (4,)),
    ]  # fmt: skip
    owned = sorted(i for t in tasks for i in t.owns)
    assert owned == list(range(7))
    assert [sorted(u.index for u in t.units) for t in tasks] == [[0, 1, 2, 3, 4], [4], [4, 5, 6]]


@given(
    counts=st.lists(st.integers(0, 9), min_size=1, max_size=30),
    chunk_size=st.integers(1, 12),
    n_tasks=st.integers(1, 12),
)
def test_plan_encode_invariants(counts, chunk_size, n_tasks):
    tasks = plan_encode([f"u{i}" for i in range(len(counts))], counts, ["d"] * len(counts),
                        chunk_size, n_tasks)  # fmt: skip
    total = sum(counts)
    assert 1 <= len(tasks) <= max(1, n_tasks)
    assert [t.start for t in tasks] == [0, *(t.stop for t in tasks[:-1])]
    assert tasks[-1].stop == total
    assert [c for t in tasks for c in t.chunks] == list(range(-(-total // chunk_size)))
    assert sorted(i for t in tasks for i in t.owns) == list(range(len(counts)))
    offsets = np.cumsum([0, *counts])
    for t in tasks:
        assert t.start == (t.chunks[0] * chunk_size if t.chunks else total)
        overlapping = {i for i, n in enumerate(counts)
                       if offsets[i] < t.stop and offsets[i] + n > t.start}  # fmt: skip
        assert overlapping | set(t.owns) == {u.index for u in t.units}
        assert [u.index for u in t.units] == sorted(u.index for u in t.units)


def test_piece_writer_leaves_out_the_eof_block(tmp_path):
    pieces = []
    for i, text in enumerate([b"a\n" * 50_000, b"", b"b\n"]):
        w = PieceWriter(tmp_path / f"{i}.bgzf")
        w.write_text(text)
        w.close()
        pieces.append((tmp_path / f"{i}.bgzf").read_bytes())
    assert pieces[1] == b""
    assert not pieces[0].endswith(BGZF_EOF)
    joined = tmp_path / "joined.gz"
    joined.write_bytes(b"".join(pieces) + BGZF_EOF)
    assert gzip.decompress(joined.read_bytes()) == b"a\n" * 50_000 + b"b\n"


# ----------------------------------------------------------------------------- failures
def _outputs(out: Path) -> dict[str, bytes]:
    return {p.name: hashlib.sha256(p.read_bytes()).digest() for p in out.iterdir() if p.is_file()}


def test_changed_checkpoint_fails_and_writes_nothing(tmp_path, units, work):
    folder, sidecars = work
    changed = tmp_path / "work"
    changed.mkdir()
    for s, cs in zip(sidecars, units):
        save_callset(cs, changed / f"{s['key']}.npz")
    victim = sidecars[4]
    cs = units[4]
    save_callset(dataclasses.replace(cs, quality=cs.quality + 1), changed / f"{victim['key']}.npz")
    kw = _kwargs(units, chunk_size=4)
    out = tmp_path / "out"
    before = write_outputs(out, units, **kw)  # an earlier run's outputs stay untouched
    old = _outputs(out)
    old_store = _files(before.vcz_path)
    with pytest.raises(VarcallError, match=f"{victim['key']}.npz: content differs"):
        merge_checkpoints(out, sidecars, changed, n_tasks=3, **kw)
    assert _outputs(out) == old
    assert _files(before.vcz_path) == old_store
    assert sorted(p.name for p in out.iterdir()) == [
        "calls.vcf.gz",
        "calls.vcf.gz.tbi",
        "calls.vcz",
    ]


def test_failing_encode_task_writes_nothing(tmp_path, units, work, client, monkeypatch):
    """A task that raises (on a Dask worker): one-line VarcallError, no outputs, no
    temporaries."""
    from varcall.io import vcz_encode

    folder, sidecars = work

    def broken(self, chunk, parts):
        if chunk == 3:
            raise OSError("disk full")
        return original(self, chunk, parts)

    original = vcz_encode.ChunkEncoder.write
    monkeypatch.setattr(vcz_encode.ChunkEncoder, "write", broken)
    out = tmp_path / "out"
    with pytest.raises(VarcallError, match="calls.vcz: writing the outputs failed") as e:
        merge_checkpoints(out, sidecars, folder, client=client, retries=0,
                          **_kwargs(units, chunk_size=2))  # fmt: skip
    assert "\n" not in str(e.value) and "disk full" in str(e.value)
    assert list(out.iterdir()) == []


def test_unreadable_checkpoint_fails_in_one_line(tmp_path, units, work):
    folder, sidecars = work
    broken = tmp_path / "work"
    broken.mkdir()
    for s, cs in zip(sidecars, units):
        save_callset(cs, broken / f"{s['key']}.npz")
    (broken / f"{sidecars[2]['key']}.npz").write_bytes(b"not a zip")
    out = tmp_path / "out"
    with pytest.raises(VarcallError, match="checkpoint cannot be read"):
        merge_checkpoints(out, sidecars, broken, **_kwargs(units, chunk_size=3))
    assert list(out.iterdir()) == []


def test_store_reads_back(tmp_path, units, work):
    folder, sidecars = work
    merged = merge_checkpoints(
        tmp_path, sidecars, folder, n_tasks=2, **_kwargs(units, chunk_size=8)
    )
    root = zarr.open_consolidated(str(merged.vcz_path), mode="r")
    assert root["variant_position"].shape == (merged.n_variants,)
    assert root["region_index"][:, 5].sum() == merged.n_variants


# ----------------------------------------------------------------------------- manifest
def test_manifest_version_1_still_loads_and_its_digests_never_compare():
    from varcall.core.manifest import Manifest
    from varcall.evaluate.identity import compare_manifests

    units = [{"region": "chr1:1-100", "contig": "chr1", "start": 0, "end": 100, "digest": "a"}]
    old = {"units": units, "contig_digests": {"chr1": "x"}, "timing": {"merge_seconds": 1.5}}
    m = Manifest.from_dict(old)
    assert m.manifest_version == 1
    assert m.timing.merge_seconds == 1.5 and m.timing.encode_seconds is None
    new = {**old, "manifest_version": 2}
    assert compare_manifests(old, dict(old))["identical"] is True
    assert compare_manifests(new, dict(new))["identical"] is True
    mixed = compare_manifests(old, new)
    assert mixed["identical"] is None and "manifest versions" in mixed["reason"]
