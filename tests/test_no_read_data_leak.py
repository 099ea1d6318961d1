"""No read name, read sequence or base-quality string of the inputs appears in any output
file or in the log of a run.

A small simulated cohort is called twice through the command line (distributed on 2
worker processes, and ``--single-process``), each with ``-vv`` (every log line, Dask's
included) and stdout/stderr captured. Then every file under OUT is read as the bytes a
reader could see: plain files as they are, gzip/BGZF files decompressed, ``.npz``
checkpoints and VCF Zarr arrays decoded (their text arrays), and searched for

- every read name (exactly);
- every 48-base stretch of every read sequence at offsets 0, 48, 96 (longer than any
  allele varcall writes: indels are at most 30 bp in this cohort, so only read data could
  match);
- every 48-character stretch of every read's base-quality string at the same offsets.

Each search is checked on planted data first, so a test that finds nothing found nothing
because there was nothing.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pysam
import pytest

K = 48
OFFSETS = (0, 48, 96)
_DNA_RUN = re.compile(rb"[ACGTNacgtn]{%d,}" % K)
_QUAL_RUN = re.compile(rb"[!-J]{%d,}" % K)  # Phred+33 up to Q41


class ReadData:
    """Read names, sequence K-mers and quality K-mers of every record of some BAMs."""

    def __init__(self, bams: list[Path]) -> None:
        self.names: set[bytes] = set()
        self.seq_kmers: set[bytes] = set()
        self.qual_kmers: set[bytes] = set()
        for bam in bams:
            with pysam.AlignmentFile(str(bam)) as fh:
                for read in fh.fetch(until_eof=True):
                    self.names.add(read.query_name.encode())
                    seq = (read.query_sequence or "").encode()
                    qual = pysam.qualities_to_qualitystring(read.query_qualities or []).encode()
                    for o in OFFSETS:
                        if len(seq) >= o + K:
                            self.seq_kmers.add(seq[o : o + K])
                        if len(qual) >= o + K:
                            self.qual_kmers.add(qual[o : o + K])
        self.name_alphabet = frozenset(b"".join(self.names))
        lengths = {len(n) for n in self.names}
        self.name_lengths = range(min(lengths), max(lengths) + 1)
        # bytes outside every read name split a blob into the tokens that may hold one
        outside = bytes(sorted(set(range(256)) - self.name_alphabet))
        self._splitter = re.compile(b"[" + re.escape(outside) + b"]+")

    def names_in(self, blob: bytes) -> set[bytes]:
        """Read names that occur anywhere in ``blob`` (also inside longer tokens)."""
        found = set()
        for token in self._splitter.split(blob):
            if len(token) < self.name_lengths.start:
                continue
            for n in self.name_lengths:
                for i in range(len(token) - n + 1):
                    if token[i : i + n] in self.names:
                        found.add(token[i : i + n])
        return found

    @staticmethod
    def _kmers_in(blob: bytes, run: re.Pattern, kmers: set[bytes]) -> set[bytes]:
        found = set()
        for m in run.finditer(blob):
            s = m.group(0)
            for i in range(len(s) - K + 1):
                if s[i : i + K] in kmers:
                    found.add(s[i : i + K])
        return found

    def leaks(self, blob: bytes) -> dict[str, list[bytes]]:
        """What of the read data ``blob`` holds: {kind: examples} (empty: nothing)."""
        out = {
            "read names": sorted(self.names_in(blob)),
            "read sequences": sorted(self._kmers_in(blob, _DNA_RUN, self.seq_kmers)),
            "base qualities": sorted(self._kmers_in(blob, _QUAL_RUN, self.qual_kmers)),
        }
        return {k: v[:3] for k, v in out.items() if v}


def _array_bytes(values: np.ndarray) -> bytes:
    """The text of an array with strings (others: nothing a read name could hide in)."""
    if values.dtype.kind in "OUS":
        return "\n".join(str(x) for x in values.ravel()).encode()
    return b""


def _zarr_blobs(store: Path) -> Iterator[tuple[str, bytes]]:
    import zarr

    group = zarr.open_group(str(store), mode="r")
    for name, array in group.arrays():
        yield f"{store.name}/{name} (decoded)", _array_bytes(np.asarray(array[...]))
        yield f"{store.name}/{name} attrs", repr(dict(array.attrs)).encode()
    yield f"{store.name} attrs", repr(dict(group.attrs)).encode()


def _file_blobs(path: Path) -> Iterator[tuple[str, bytes]]:
    """``path`` as stored, and decoded when it is gzip/BGZF or an ``.npz``."""
    raw = path.read_bytes()
    yield str(path), raw
    if raw[:2] == b"\x1f\x8b":
        with gzip.open(io.BytesIO(raw)) as fh:
            yield f"{path} (decompressed)", fh.read()
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                yield f"{path}:{key}", _array_bytes(npz[key])
        with zipfile.ZipFile(path) as z:  # member names too
            yield f"{path} members", "\n".join(z.namelist()).encode()


def output_blobs(out: Path) -> Iterator[tuple[str, bytes]]:
    """Every file under ``out`` (see :func:`_file_blobs`), VCF Zarr stores also decoded."""
    for root, dirs, files in os.walk(out):
        for d in list(dirs):
            if d.endswith(".vcz"):
                yield from _zarr_blobs(Path(root) / d)
        for f in files:
            yield from _file_blobs(Path(root) / f)


@pytest.fixture(scope="module")
def read_data(small_cohort: Path) -> ReadData:
    return ReadData(sorted(small_cohort.glob("S*.bam")))


def _call(cohort: Path, out: Path, *extra: str) -> bytes:
    """``varcall call -vv`` on ``cohort`` into ``out``; its stdout and stderr."""
    cmd = [
        sys.executable, "-m", "varcall.cli.main", "call", "-vv", "--no-progress",
        "-f", str(cohort / "reference.fa"), "--bam-list", str(cohort / "bams.txt"),
        "-o", str(out), *extra,
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    return res.stdout + res.stderr


@pytest.fixture(scope="module")
def runs(small_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    base = tmp_path_factory.mktemp("leak")
    out = {}
    for label, extra in (
        ("distributed", ("--workers", "2", "--worker-type", "process", "--region-count", "6")),
        ("single", ("--single-process",)),
    ):
        log = _call(small_cohort, base / label, *extra)
        out[label] = (base / label, log)
    return out


def test_detectors_find_planted_read_data(read_data: ReadData):
    name = sorted(read_data.names)[len(read_data.names) // 2]
    seq = sorted(read_data.seq_kmers)[0]
    qual = sorted(read_data.qual_kmers)[0]
    blob = b'{"x": "pre' + name + b'post"}\nCHR\t' + b"AC" + seq + b"GT\t" + qual + b"\n"
    assert name in read_data.names_in(blob)  # (names that are prefixes of it too)
    found = read_data.leaks(blob)
    assert found["read sequences"] == [seq]
    assert found["base qualities"] == [qual]
    assert read_data.leaks(b"chr1\t100\t.\tA\tC\t50\tPASS\tDP=20\tGT\t0/1\n") == {}


@pytest.mark.parametrize("label", ["distributed", "single"])
def test_no_read_data_in_outputs_or_log(read_data: ReadData, runs: dict, label: str):
    out, log = runs[label]
    leaks = {}
    blobs = [*output_blobs(out), ("the log (stdout + stderr)", log)]
    for where, blob in blobs:
        found = read_data.leaks(blob)
        if found:
            leaks[where] = found
    assert not leaks, f"read data in the outputs of the {label} run: {leaks}"
    names = {Path(w).name for w, _ in blobs}
    assert {"calls.vcf.gz", "manifest.json", "audit.jsonl"} <= names  # not vacuous
    assert any(w.endswith(".npz") for w, _ in blobs)
    assert any("calls.vcz/call_genotype (decoded)" in w for w, _ in blobs)
    assert len(log) > 200  # -vv logged
