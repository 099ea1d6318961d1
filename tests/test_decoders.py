"""The two read decoders (numba BAM decoder and pysam) agree read for read.

``fetch_reads(fast=True)`` (indexed BAM through :mod:`varcall.io.bam`) and
``fetch_reads(fast=False)`` (pysam, as for CRAM) must return the same ReadBatch for every
window, so a CRAM and a BAM of the same reads, or a window that falls back to pysam, see
the same evidence. Besides planted cases, the test runs over the SAM/BAM/CRAM files of
htslib's and pysam's own test suites (Debian packages ``htslib-test`` and
``python-pysam-tests``; skipped when they are absent).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pysam
import pytest
from test_pileup import CONTIG, REF, Bam, assert_same_batch, mixed_bam, seq_from_ref

from varcall.core.errors import InputError
from varcall.engines.native.reads import ReadBatch, fetch_reads

_PACKAGES = ("htslib-test", "python-pysam-tests")


def test_reads_without_reference_bases_are_dropped_by_both_decoders(tmp_path):
    """Reads whose CIGAR consumes no reference base have no aligned base: both decoders
    drop them (htslib reports them as spanning one base)."""
    bam = Bam(tmp_path)
    for i in range(3):
        bam.add(f"ok{i}", 40 + i, [("M", 30)])
    bam.add("ins", 50, [("I", 20)], "ACGTACGTACGTACGTACGT")
    bam.add("clip", 50, [("S", 20)], "ACGTACGTACGTACGTACGT")
    bam.add("clip_ins", 51, [("S", 2), ("I", 10), ("S", 3)], "ACGTACGTACGTACG")
    bam.add("pad", 52, [("P", 7), ("I", 2), ("P", 2)], "AC")
    cig = [("S", 2), ("M", 20)]
    bam.add("clip_m", 53, cig, "NN" + seq_from_ref(53, cig[1:]))
    path, ref = bam.write()
    kw = dict(min_mapq=0, include_supplementary=True)
    for window in [(0, len(REF)), (50, 51), (51, 53), (45, 60)]:
        fast = fetch_reads([path], ref, {"S1": 0}, CONTIG, *window, **kw)
        slow = fetch_reads([path], ref, {"S1": 0}, CONTIG, *window, fast=False, **kw)
        assert_same_batch(fast, slow)
        assert (fast.end > fast.start).all()
    full = fetch_reads([path], ref, {"S1": 0}, CONTIG, 0, len(REF), **kw)
    assert full.n_reads == 4  # ok0..ok2 and clip_m
    # the same reads as CRAM (always pysam) give the same batch
    cram = tmp_path / "reads.cram"
    pysam.view("-C", "-T", ref, "-o", str(cram), path, catch_stdout=False)
    pysam.index(str(cram))
    assert_same_batch(full, fetch_reads([str(cram)], ref, {"S1": 0}, CONTIG, 0, len(REF), **kw))


def test_files_decode_into_one_batch_that_grows(tmp_path):
    """Several files decode into one batch in place (varcall.io.bam.ReadColumns): its room,
    predicted from the first file (2 reads), grows twice; a CRAM between BAMs (pysam) is
    added in its place. The batch equals the files' own batches concatenated."""
    folders = [tmp_path / name for name in ("few", "mixed", "many")]
    for f in folders:
        f.mkdir()
    few = Bam(folders[0])
    few.add("a", 10, [("M", 30)])
    few.add(
        "b",
        12,
        [("M", 20), ("I", 2), ("M", 8)],
        seq_from_ref(12, [("M", 20)]) + "TT" + seq_from_ref(32, [("M", 8)]),
    )
    many = Bam(folders[2])
    for i in range(120):
        many.add(f"m{i}", i % 150, [("M", 30)], flag=0x1 | 0x40, mate_start=(i % 150) + 10)
    paths = [few.write()[0], mixed_bam(folders[1]).write()[0], many.write()[0]]
    ref = few.write()[1]
    index = {"S1": 0, "S2": 1}
    kw = dict(min_mapq=20, include_supplementary=False)
    own = [fetch_reads([p], ref, index, CONTIG, 0, len(REF), fast=False, **kw) for p in paths]
    expected = ReadBatch.concatenate(own)
    expected.quals = expected.raw_quals.copy()
    batch = fetch_reads(paths, ref, index, CONTIG, 0, len(REF), **kw)
    assert batch.n_reads == sum(b.n_reads for b in own) > 120 and batch.pairs.shape[0] > 6
    assert_same_batch(batch, expected)
    cram = tmp_path / "mixed.cram"
    pysam.view("-C", "-T", ref, "-o", str(cram), paths[1], catch_stdout=False)
    pysam.index(str(cram))
    assert_same_batch(
        fetch_reads([paths[0], str(cram), paths[2]], ref, index, CONTIG, 0, len(REF), **kw),
        expected,
    )


def _corpus_files() -> list[str]:
    """The SAM/BAM/CRAM files of the Debian test packages, [] when they are absent."""
    if shutil.which("dpkg") is None:
        return []
    out = subprocess.run(
        ["dpkg", "-L", *_PACKAGES], capture_output=True, text=True, check=False
    ).stdout
    return sorted(x for x in out.split() if x.endswith((".bam", ".sam", ".cram")))


def _sorted_copy(src: str, dst: Path) -> bool:
    """Sort ``src`` into the indexed BAM ``dst``; False when pysam cannot read it (a CRAM
    is tried with each FASTA beside it, as its reference)."""
    refs = [None] + sorted(str(p) for p in Path(src).parent.glob("*.fa"))
    for ref in refs if src.endswith(".cram") else [None]:
        opts = ["--reference", ref] if ref else []
        try:
            pysam.sort(*opts, "-o", str(dst), src, catch_stdout=False)
            pysam.index(str(dst))
            with pysam.AlignmentFile(str(dst)) as f:
                return f.nreferences > 0 and f.mapped + f.unmapped > 0
        except (pysam.SamtoolsError, OSError, ValueError):
            continue
    return False


def _windows(length: int, starts: list[int]) -> list[tuple[int, int]]:
    """The windows checked on a contig: the whole contig (first 1 Mb), 1-bp and 100-bp
    windows at read starts (the first 8), 500-bp tiles over the first 2 kb."""
    cap = min(length, 1_000_000)
    out = {(0, cap)}
    for s in starts[:8]:
        out.add((s, min(length, s + 1)))
        out.add((max(0, s - 50), min(length, s + 50)))
    out.update((ws, min(cap, ws + 500)) for ws in range(0, min(cap, 2000), 500))
    return sorted(w for w in out if w[0] < w[1])


def _fetch(path: str, index: dict[str, int], contig: str, window: tuple, fast: bool, kw: dict):
    try:
        return fetch_reads([path], "", index, contig, *window, fast=fast, **kw)
    except InputError as e:
        return f"InputError: {e}"


def _check_file(path: Path) -> int:
    """Compare both decoders on every window of every contig of ``path``; the windows."""
    with pysam.AlignmentFile(str(path)) as f:
        header = f.header.to_dict()
        contigs = list(zip(f.references, f.lengths))
        starts: dict[str, list[int]] = {}
        for r in f.fetch(until_eof=True):
            if r.reference_name is not None and not r.is_unmapped:
                starts.setdefault(r.reference_name, []).append(r.reference_start)
    names = {rg["SM"] for rg in header.get("RG", []) if "SM" in rg} | {path.name.split(".")[0]}
    index = {s: i for i, s in enumerate(sorted(names))}
    n = 0
    for contig, length in contigs:
        for window in _windows(length, starts.get(contig, [])):
            for kw in (dict(min_mapq=0, include_supplementary=True),
                       dict(min_mapq=20, include_supplementary=False)):  # fmt: skip
                fast = _fetch(str(path), index, contig, window, True, kw)
                slow = _fetch(str(path), index, contig, window, False, kw)
                where = f"{path.name} {contig}:{window} {kw}"
                if isinstance(fast, ReadBatch) and isinstance(slow, ReadBatch):
                    try:
                        assert_same_batch(fast, slow)
                    except AssertionError as e:
                        raise AssertionError(f"{where}: {e}") from None
                else:
                    assert isinstance(fast, str) and isinstance(slow, str), where
                n += 1
    return n


def test_decoders_agree_on_htslib_and_pysam_test_files(tmp_path):
    files = _corpus_files()
    if not files:
        pytest.skip(f"Debian packages {', '.join(_PACKAGES)} not installed")
    checked = windows = 0
    for i, src in enumerate(files):
        dst = tmp_path / f"f{i}.bam"
        if not _sorted_copy(src, dst):
            continue
        windows += _check_file(dst)
        checked += 1
    assert checked >= 50, checked
    assert windows > 500, windows
    print(f"{checked} files, {windows} windows")
