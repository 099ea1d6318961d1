"""The per-worker cache of opened alignment files (:mod:`varcall.io.handles`).

A worker keeps its open readers between region tasks, keyed by path, size and mtime: a
file replaced between two tasks must be reopened (never read through the old handle),
the pool stays bounded, a handle is never lent twice at once, and a handle whose use
raised is closed.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from varcall.core.params import CallParams
from varcall.core.regions import Region
from varcall.engines import get_engine
from varcall.io import handles
from varcall.io.bam import ReadColumns, fetch_into
from varcall.plan.inputs import resolve_inputs


@pytest.fixture(autouse=True)
def _fresh_pool():
    handles.clear()
    yield
    handles.clear()


def _bams(cohort: Path) -> list[Path]:
    return [cohort / line.strip() for line in (cohort / "bams.txt").read_text().splitlines()]


def _decode(bam: Path, start: int, end: int) -> list[np.ndarray]:
    out = ReadColumns(1)
    bad = fetch_into(
        str(bam), 0, start, end, out, drop_flags=0xF04, min_mapq=0, default_sample=0,
        rg_to_sample={},
    )  # fmt: skip
    assert bad == -1
    return [np.asarray(a) for a in out.arrays().values()]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def _replace(src: Path, dst: Path) -> None:
    """Put a copy of ``src`` (and its index) at ``dst`` by renaming over it, as a pipeline
    rewriting a BAM would; the mtime is moved on so that it differs even on coarse clocks."""
    for suffix in ("", ".bai"):
        tmp = dst.with_name(dst.name + suffix + ".new")
        shutil.copyfile(str(src) + suffix, tmp)
        os.replace(tmp, str(dst) + suffix)
    st = os.stat(dst)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000_000))


def test_reused_between_calls(small_cohort: Path) -> None:
    bam = _bams(small_cohort)[0]
    first = _decode(bam, 1_000, 2_000)
    assert handles.stats()["opened"] == 1
    again = _decode(bam, 1_000, 2_000)
    other = _decode(bam, 30_000, 31_000)
    s = handles.stats()
    assert s["opened"] == 1 and s["reused"] == 2 and s["idle"] == 1
    assert _same(first, again)
    assert not _same(first, other)


def test_replaced_bam_is_reopened(small_cohort: Path, tmp_path: Path) -> None:
    a, b = _bams(small_cohort)[:2]
    work = tmp_path / "x.bam"
    _replace(a, work)
    from_a = _decode(work, 5_000, 6_000)
    assert _same(from_a, _decode(a, 5_000, 6_000))
    _replace(b, work)  # replaced between two tasks
    from_b = _decode(work, 5_000, 6_000)
    assert _same(from_b, _decode(b, 5_000, 6_000))
    assert not _same(from_a, from_b)
    s = handles.stats()
    assert s["closed"] >= 1  # the old version's handle was closed, not reused


def test_replaced_bam_same_calls_as_fresh(small_cohort: Path, tmp_path: Path) -> None:
    """End to end through the engine: a task after the replacement calls the new file."""
    a, b = _bams(small_cohort)[:2]
    work = tmp_path / "S.bam"
    _replace(a, work)
    eng, params, region = get_engine("native"), CallParams(), Region("chr1", 0, 12_000)
    eng.call_region(resolve_inputs(str(small_cohort / "reference.fa"), [str(work)]), region, params)
    _replace(b, work)
    inputs = resolve_inputs(str(small_cohort / "reference.fa"), [str(work)])
    cached = eng.call_region(inputs, region, params)
    handles.clear()
    fresh = eng.call_region(inputs, region, params)
    assert cached.digest() == fresh.digest()


def test_pool_is_bounded(small_cohort: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handles, "MAX_HANDLES", 2)
    for bam in _bams(small_cohort)[:3]:
        _decode(bam, 1_000, 2_000)
    s = handles.stats()
    assert s["opened"] == 3 and s["idle"] == 2 and s["closed"] == 1


def test_no_reuse_when_off(small_cohort: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handles, "MAX_HANDLES", 0)
    bam = _bams(small_cohort)[0]
    assert _same(_decode(bam, 1_000, 2_000), _decode(bam, 1_000, 2_000))
    assert handles.stats()["idle"] == 0


class _Handle:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_lent_to_one_caller_at_a_time(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x")
    with handles.checkout(f, lambda p: _Handle()) as h1:
        with handles.checkout(f, lambda p: _Handle()) as h2:
            assert h1 is not h2
    with handles.checkout(f, lambda p: _Handle()) as h3:
        assert h3 in (h1, h2)


def test_failed_use_closes_the_handle(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x")
    with pytest.raises(RuntimeError):
        with handles.checkout(f, lambda p: _Handle()) as h:
            raise RuntimeError("boom")
    assert h.closed
    assert handles.stats()["idle"] == 0


def test_threads_share_the_pool(small_cohort: Path) -> None:
    bam = _bams(small_cohort)[0]
    want = _decode(bam, 1_000, 20_000)
    results: list[bool] = []

    def work() -> None:
        for _ in range(5):
            results.append(_same(_decode(bam, 1_000, 20_000), want))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 15


@pytest.fixture(params=["isal", "zlib"])
def inflater(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The BGZF reader with ISA-L's inflate (the default) and with zlib's (the fallback
    where isal is not installed)."""
    import zlib

    import varcall.io.bgzf as bgzf

    if request.param == "isal":
        from isal import isal_zlib

        monkeypatch.setattr(bgzf, "_inflater", isal_zlib)
    else:
        monkeypatch.setattr(bgzf, "_inflater", zlib)
    return request.param


def test_bgzf_reader_matches_htslib(small_cohort: Path, inflater: str) -> None:
    """The block-keeping reader returns htslib's bytes from any virtual offset."""
    import pysam.libcbgzf

    from varcall.io.bgzf import BgzfReader
    from varcall.io.index import read_bai, start_offset

    bam = _bams(small_cohort)[1]
    index = read_bai(str(bam) + ".bai")
    offsets = [start_offset(index, t, s, s + 50) for t in (0, 1) for s in range(0, 40_000, 1_333)]
    mine, theirs = BgzfReader(bam), pysam.libcbgzf.BGZFile(str(bam), "rb")
    try:
        for v in [0, *[o for o in offsets if o is not None]]:
            for n in (1, 777, 1 << 16, 1 << 20):
                mine.seek(v)
                theirs.seek(v)
                assert mine.read(n) == theirs.read(n)
            # block by block (fetch_into's way): the rest of the current block, then whole
            # blocks, each ending where the next one starts
            mine.seek(v)
            theirs.seek(v)
            got = bytearray()
            sizes = [mine.read_block_into(got) for _ in range(4)]
            assert bytes(got) == theirs.read(len(got))
            assert all(0 < n <= 1 << 16 for n in sizes[1:] if n) and mine._within == 0
    finally:
        mine.close()
        theirs.close()


@pytest.mark.parametrize("where", [200, -6, -2, -1])  # deflate data, CRC32, inflated size
def test_bgzf_reader_rejects_damage(
    small_cohort: Path, tmp_path: Path, inflater: str, where: int
) -> None:
    from varcall.io.bgzf import BgzfReader

    data = bytearray(_bams(small_cohort)[0].read_bytes())
    first_block = 1 + int.from_bytes(data[16:18], "little")  # BSIZE + 1
    data[where if where > 0 else first_block + where] ^= 0xFF
    bad = tmp_path / "bad.bam"
    bad.write_bytes(bytes(data))
    reader = BgzfReader(bad)
    with pytest.raises(OSError, match=r"BGZF block at byte \d+"):
        reader.read(1 << 16)
    reader.close()


def test_parsed_indexes_are_kept_by_bytes(
    small_cohort: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsed BAIs are kept while their files fit the byte budget (not a count: a large
    cohort's small indexes are all kept), least recently used dropped first."""
    import varcall.io.index as index

    bais = [Path(f"{b}.bai") for b in _bams(small_cohort)]
    parsed: list[str] = []
    real = index.load_binning_index

    def counting(path):
        parsed.append(str(path))
        return real(path)

    monkeypatch.setattr(index, "load_binning_index", counting)
    monkeypatch.setattr(index, "_cache", type(index._cache)())
    monkeypatch.setattr(index, "_cache_used", 0)
    sizes = [p.stat().st_size for p in bais]
    assert sum(sizes) > 2 * max(sizes)  # room for any two of the three, not for all
    monkeypatch.setattr(index, "CACHE_BYTES", 2 * max(sizes))
    for p in bais[:2]:
        index.read_bai(p)
    for p in bais[:2]:  # kept: not parsed again
        index.read_bai(p)
    assert parsed == [str(bais[0]), str(bais[1])]
    index.read_bai(bais[2])  # over budget: the least recently used (bais[0]) goes
    index.read_bai(bais[1])
    index.read_bai(bais[0])
    assert parsed == [str(bais[0]), str(bais[1]), str(bais[2]), str(bais[0])]
    assert index._cache_used <= index.CACHE_BYTES
