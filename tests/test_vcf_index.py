"""The tabix index built from the pieces' record places (varcall.io.vcf_index) is the
index ``tabix -p vcf`` writes for the joined file, byte for byte."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pysam
import pytest
from _callsets import CONTIGS, SAMPLES, random_callset
from hypothesis import given, settings
from hypothesis import strategies as st

from varcall.core.callset import CallSet
from varcall.io.vcf_header import vcf_header
from varcall.io.vcf_index import piece_entries
from varcall.io.vcf_pieces import PieceWriter, VcfAssembler


def _header(samples: tuple[str, ...]) -> str:
    return vcf_header(
        CONTIGS, samples, ("PASS", "LowQual", "StrandBias"),
        command_line="varcall call test", reference="/ref.fa",
    )  # fmt: skip


def _join(out: Path, pieces: list[list[CallSet]], *, entries: bool) -> Path:
    """The pieces joined into ``out`` (.vcf.gz) and indexed from entries or by tabix."""
    samples = next((cs.samples for parts in pieces for cs in parts), SAMPLES)
    out.parent.mkdir(parents=True, exist_ok=True)
    vcf = VcfAssembler(out, _header(samples))
    kept = []
    for i, parts in enumerate(pieces):
        w = PieceWriter(vcf.piece_path(i))
        for cs in parts:
            w.write(cs)
        w.close()
        kept.append(w.index_entries())
    vcf.finish(len(pieces), kept if entries else None)
    vcf.commit()
    return out


def _same_index(tmp_path: Path, pieces: list[list[CallSet]]) -> None:
    ours = _join(tmp_path / "a" / "calls.vcf.gz", pieces, entries=True)
    theirs = _join(tmp_path / "b" / "calls.vcf.gz", pieces, entries=False)
    assert ours.read_bytes() == theirs.read_bytes()
    a, b = Path(f"{ours}.tbi").read_bytes(), Path(f"{theirs}.tbi").read_bytes()
    assert gzip.decompress(a) == gzip.decompress(b)
    n = sum(cs.n_variants for parts in pieces for cs in parts)
    with pysam.TabixFile(str(ours)) as tbx:
        assert sum(1 for c in tbx.contigs for _ in tbx.fetch(c)) == n


def _cohort(seed: int, sizes: list[int], samples: int = 3) -> list[list[CallSet]]:
    """Pieces of random records over chr1, chr2, chrM in order (``sizes``: records per
    piece, cut from the whole run; 0 makes an empty piece)."""
    rng = np.random.default_rng(seed)
    names = SAMPLES if samples == 3 else tuple(f"S{i}" for i in range(samples))
    total = sum(sizes)
    per = [total // 2, total - total // 2 - total // 4, total // 4]
    whole = [
        random_callset(rng, c, n, samples=names, length=min(length, 10**6))
        for (c, length), n in zip(CONTIGS, per)
    ]
    bounds = np.cumsum([0] + [cs.n_variants for cs in whole])
    out, k = [], 0
    for size in sizes:
        part = []
        for cs, lo, hi in zip(whole, bounds[:-1], bounds[1:]):
            a, b = max(k, lo), min(k + size, hi)
            if a < b:
                part.append(cs.take(slice(int(a - lo), int(b - lo))))
        out.append(part)
        k += size
    return out


def test_index_matches_tabix_small(tmp_path: Path) -> None:
    _same_index(tmp_path, _cohort(1, [3, 0, 40, 1, 20]))


def test_index_matches_tabix_multi_block_records(tmp_path: Path) -> None:
    # 1,000 records of 40 samples: pieces of several 64 KiB blocks, lines across blocks
    _same_index(tmp_path, _cohort(2, [400, 350, 0, 250], samples=40))


def test_index_of_a_file_without_records(tmp_path: Path) -> None:
    _same_index(tmp_path, [[], []])
    _same_index(tmp_path / "none", [])


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(0, 60), min_size=1, max_size=5), st.integers(0, 2**16))
def test_index_matches_tabix_any_cut(tmp_path_factory, sizes: list[int], seed: int) -> None:
    _same_index(tmp_path_factory.mktemp("cut"), _cohort(seed, sizes))


@pytest.mark.parametrize("line", [100, 255, 65280, 65281, 30000])
def test_offsets_match_htslib_at_block_ends(tmp_path: Path, line: int) -> None:
    """Virtual offsets just past each line, as htslib's reader reports them, also when a
    line ends exactly where a block ends (65,280 inflated bytes each)."""
    path = tmp_path / "p.bgzf"
    text = b"".join(bytes([65 + i % 26]) * (line - 1) + b"\n" for i in range(9))
    with pysam.BGZFile(str(path), "wb") as fh:
        fh.write(text)
    with open(path, "r+b") as fh:  # the piece: no EOF block
        fh.truncate(path.stat().st_size - 28)
    ends = np.arange(1, 10, dtype=np.int64) * line
    entries = piece_entries(path, [("chr1", 9)], ends - 1, ends, ends)
    full = tmp_path / "full.gz"
    shutil.copy(path, full)
    with open(full, "ab") as fh:
        fh.write(bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000"))
    told = []
    with pysam.BGZFile(str(full), "rb") as fh:
        for _ in range(9):
            fh.readline()
            told.append(fh.tell())
    assert entries.voff.tolist() == told
