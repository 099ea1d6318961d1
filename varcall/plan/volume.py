"""Read volume along a contig, from the alignment indexes: how many bytes of reads a
window of the contig holds, without reading a read.

The native engine sizes its windows by this volume (:mod:`varcall.engines.native.windows`),
so that a task's memory stays under a budget at any depth. The estimate is that of region
planning (:mod:`varcall.plan.regions`): per 16 kb index window, the compressed bytes of
the reads starting there (BAI linear index; CSI bins spread over their span; CRAI slices
spread over their span), turned into *uncompressed* bytes (the size of the decoded BAM
records) with the file's BGZF compression ratio, or :data:`CRAM_RATIO` for CRAM. Summed
over the alignment files. Files without a usable index give None (the caller falls back
to windows sized by length). Results are kept per contig and file versions (path, size,
modification time), so a worker computes them once per contig.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from varcall.io.handles import file_version, find_index_cached
from varcall.io.index import read_binning_index, read_crai
from varcall.plan.regions import (
    WINDOW,
    _bgzf_ratio,
    _crai_windows,
    _csi_windows,
    _windows_from_linear,
)

__all__ = ["CRAM_RATIO", "WINDOW", "contig_volume"]

logger = logging.getLogger(__name__)

#: Compressed / decoded size assumed for CRAM slices (CRAM packs reads about twice as
#: tightly as BAM's ~0.3-0.4; a low value over-estimates the volume: smaller windows).
CRAM_RATIO = 0.15


@functools.lru_cache(maxsize=16384)  # small; one per file version of a cohort
def _names(path: str, size: int, mtime_ns: int, reference: str | None) -> tuple[str, ...]:
    import pysam

    kw = {"reference_filename": reference} if reference and path.endswith(".cram") else {}
    with pysam.AlignmentFile(path, check_sq=False, **kw) as f:
        return tuple(f.references)


@functools.lru_cache(maxsize=16384)  # small; one per file version of a cohort
def _ratio(path: str, size: int, mtime_ns: int) -> float:
    return _bgzf_ratio(Path(path))


def _file_volume(path: str, reference: str | None, contig: str, length: int) -> np.ndarray | None:
    """Decoded bytes of the reads starting in every :data:`WINDOW` window of ``contig``
    in one file; None when its index cannot tell."""
    version = file_version(path)
    idx = find_index_cached(path)
    if idx is None:
        return None
    n = (length + WINDOW - 1) // WINDOW
    try:
        names = _names(path, *version, reference)
        if contig not in names:
            return np.zeros(n)
        lengths = {contig: length}
        if idx.suffix == ".crai":
            prof = _crai_windows(read_crai(idx), names, lengths).get(contig)
            return np.zeros(n) if prof is None else prof / CRAM_RATIO
        index = read_binning_index(idx)
        if index is None:
            return None
        ratio = _ratio(path, *version)
        tid = names.index(contig)
        if tid >= len(index.references):
            return np.zeros(n)
        if index.kind == "BAI":
            ref = index.references[tid]
            prof = _windows_from_linear(ref.linear, ref.end_voff, length, ratio, 14)
        else:  # this reference's bins only
            one = dataclasses.replace(index, references=(index.references[tid],))
            prof = _csi_windows(one, [contig], lengths, ratio)[contig]
    except (OSError, ValueError, struct.error) as e:
        logger.debug("%s: no read volume from index %s (%s)", path, idx, e)
        return None
    out = np.zeros(n)
    k = min(n, prof.size)
    out[:k] = np.maximum(prof[:k], 0.0)
    return out / max(ratio, 1e-3)


@functools.lru_cache(maxsize=32)
def _volume_cached(
    files: tuple[tuple[str, int, int], ...], reference: str | None, contig: str, length: int
) -> np.ndarray | None:
    total = np.zeros((length + WINDOW - 1) // WINDOW)
    for path, _, _ in files:
        v = _file_volume(path, reference, contig, length)
        if v is None:
            return None
        total += v
    total.setflags(write=False)
    return total


def contig_volume(
    bams: Sequence[str | os.PathLike], reference: str | None, contig: str, length: int
) -> np.ndarray | None:
    """Decoded bytes (float64, read-only) of the reads starting in every 16 kb window
    ``[i * WINDOW, (i + 1) * WINDOW)`` (0-based) of ``contig`` (``length`` bp), summed over
    ``bams``; None when some file's index cannot tell. Cached per contig and file
    versions."""
    files = tuple((os.fspath(b), *file_version(b)) for b in bams)
    return _volume_cached(files, reference, contig, length)
