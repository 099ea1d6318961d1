"""Resolve what a run reads into a :class:`~varcall.engines.CallInputs`.

Reads headers only (the .fai and each BAM/CRAM header), never reads. Thorough checks
(indexes, truncation, sort order, contig agreement) live in :mod:`varcall.plan.validate`.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import pysam

from varcall.core.errors import InputError
from varcall.core.files import find_index, read_fai
from varcall.core.params import CallInputs

__all__ = [
    "bam_samples",
    "resolve_inputs",
    "sample_columns",
    "file_record",
    "input_checksums",
    "dependency_versions",
    "KEY_DEPENDENCIES",
]

#: Distributions whose versions a run's manifest records.
KEY_DEPENDENCIES = (
    "pysam",
    "numpy",
    "numba",
    "dask",
    "distributed",
    "dask-jobqueue",
    "xarray",
    "zarr",
    "numcodecs",
    "sgkit",
    "cyvcf2",
    "click",
)


def bam_samples(path: str | Path) -> list[str]:
    """Sample names (@RG SM) of one alignment file, in header order, unique.
    A file without @RG SM is named after its file name (without extension)."""
    with pysam.AlignmentFile(str(path), "r", check_sq=False) as f:
        header = f.header.to_dict()
    names: list[str] = []
    for rg in header.get("RG", []):
        sm = rg.get("SM")
        if sm and sm not in names:
            names.append(sm)
    if not names:
        names = [Path(path).name.split(".")[0]]
    return names


def resolve_inputs(reference: str | Path, bams: Sequence[str | Path]) -> CallInputs:
    """CallInputs with absolute paths, the samples in input order, and the reference contigs."""
    samples: list[str] = []
    for b in bams:
        samples.extend(bam_samples(b))
    return CallInputs(
        reference=str(Path(reference).resolve()),
        bams=tuple(str(Path(b).resolve()) for b in bams),
        samples=tuple(samples),
        contigs=read_fai(reference),
    )


@functools.lru_cache(maxsize=4096)
def _bam_samples_cached(path: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    return tuple(bam_samples(path))


def sample_columns(inputs: CallInputs) -> tuple[dict[str, int], ...]:
    """For each file of ``inputs.bams`` (same order): @RG SM -> its column in
    ``inputs.samples``.

    When every SM is unique across the files, names are looked up in ``inputs.samples``
    (any order; names absent from it are left out, so a caller can report them). When a
    name repeats across files (the run renamed them, ``--rename-duplicate-samples``), the
    columns are positional: file order, then header order, as :func:`resolve_inputs` and
    :func:`varcall.plan.validate.validate_call` list the samples. A file without @RG maps its
    file-name sample (see :func:`bam_samples`). Headers are read once per file version."""
    per_file = []
    for b in inputs.bams:
        st = os.stat(b)
        per_file.append(_bam_samples_cached(str(b), st.st_mtime_ns, st.st_size))
    names = [sm for names in per_file for sm in names]
    if len(set(names)) == len(names):
        index = {sm: i for i, sm in enumerate(inputs.samples)}
        return tuple({sm: index[sm] for sm in f if sm in index} for f in per_file)
    if len(names) != len(inputs.samples):
        raise InputError(
            f"{inputs.bams[0]}: the files hold {len(names)} samples but the run lists "
            f"{len(inputs.samples)}; the headers changed since validation, start the run again"
        )
    out: list[dict[str, int]] = []
    col = 0
    for f in per_file:
        out.append({sm: col + i for i, sm in enumerate(f)})
        col += len(f)
    return tuple(out)


# ----------------------------------------------------------------------------- provenance
def _digest_file(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_record(path: str | Path, *, checksum: bool = False) -> dict[str, Any]:
    """Path (absolute), size in bytes, modification time (ns since the epoch and ISO 8601
    UTC) of a file; with ``checksum`` also its SHA-256."""
    p = Path(path).absolute()
    st = p.stat()
    rec: dict[str, Any] = {
        "path": str(p),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "mtime": datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc).isoformat(),
    }
    if checksum:
        rec["sha256"] = _digest_file(p)
    return rec


def input_checksums(inputs: CallInputs) -> dict[str, Any]:
    """Checksums identifying what a run read, for ``OUT/manifest.json``: the reference's
    .fai (SHA-256 and MD5; names, lengths and layout of every contig) and .gzi when
    bgzip-compressed, and for every alignment file the SHA-256 of its header text (as
    htslib writes it) and its index (path, size, mtime, SHA-256). Reads headers and index
    files only, never reads or sequence."""
    ref = Path(inputs.reference)
    fai = Path(f"{ref}.fai")
    reference: dict[str, Any] = {
        "path": str(ref.absolute()),
        "fai": {**file_record(fai, checksum=True), "md5": _digest_file(fai, "md5")},
    }
    gzi = Path(f"{ref}.gzi")
    if gzi.is_file():
        reference["gzi"] = file_record(gzi, checksum=True)
    alignments = []
    for b in inputs.bams:
        path = Path(b)
        kw = {"reference_filename": str(ref)} if path.suffix == ".cram" else {}
        with pysam.AlignmentFile(str(path), "r", check_sq=False, **kw) as f:
            header_text = str(f.header)
        index = find_index(path)
        alignments.append(
            {
                "path": str(path.absolute()),
                "header_sha256": hashlib.sha256(header_text.encode()).hexdigest(),
                "index": None if index is None else file_record(index, checksum=True),
            }
        )
    return {"reference": reference, "alignments": alignments}


def dependency_versions() -> dict[str, str]:
    """Versions of varcall, Python, htslib (through pysam) and :data:`KEY_DEPENDENCIES`
    ("not installed" for a missing one)."""
    from varcall import __version__

    out = {
        "varcall": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "htslib": getattr(pysam.version, "__htslib_version__", "unknown"),
    }
    for name in KEY_DEPENDENCIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
