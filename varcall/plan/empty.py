"""Contigs without reads in any alignment index: nothing to call there, known before calling.

A reference may carry thousands of contigs that no read maps to (GRCh38 analysis sets:
alts, decoys, HLA, unplaced scaffolds). :func:`contigs_without_reads` finds them from the
indexes alone, so that a run gives them their (empty) place in the outputs without a task,
a checkpoint or a file opened for them (:mod:`varcall.run.empty`).

Why the index answer is exact
-----------------------------
Every engine reads a region's reads through the file's index: a region query visits the
byte ranges ("chunks") that the index lists for the bins overlapping the region (SAM spec
5.2/5.3 for BAI, CSIv1 for CSI), or the CRAM slices that the CRAI lists for the reference.
An indexer puts every record placed on a reference — mapped, or unmapped but placed at its
mate's position (flag 0x4 with RNAME/POS set) — into a bin of that reference; only records
without a reference (RNAME ``*``) have none. So a reference whose bins hold no chunk in the
BAI/CSI, or that no CRAI line names, has no record at all, and no region query on it (of
the native decoder, pysam or an external tool) returns a read: every engine's calls there
are empty. A contig counts as empty only when that holds for *every* alignment file (a file
whose header lacks the contig has no read on it); when any file has no readable BAI, CSI
or CRAI, or a CRAI with multi-reference slices (reference id -2, which name no single
reference), no contig is known to be empty and every contig is called as before.
Unmapped-but-placed reads make a contig count as having reads (the engines drop them, so
this only costs a task, never a call).
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from varcall.core.files import find_index
from varcall.io.index import read_crai, references_with_records

if TYPE_CHECKING:  # pragma: no cover - typing only
    from varcall.core.params import CallInputs

__all__ = ["contigs_with_reads_in_file", "contigs_without_reads"]

logger = logging.getLogger(__name__)


def _header_names(path: str, reference: str | None) -> tuple[str, ...]:
    """The reference names of an alignment file's header, in header (tid) order."""
    import pysam

    kw = {"reference_filename": reference} if reference and path.endswith(".cram") else {}
    with pysam.AlignmentFile(path, check_sq=False, **kw) as f:
        return tuple(f.references)


def contigs_with_reads_in_file(path: str | os.PathLike, reference: str | None) -> set[str] | None:
    """Names of the contigs on which the index of alignment file ``path`` lists any record
    (see the module docstring); None when that cannot be known (no index, an unknown or
    unreadable one, CRAM multi-reference slices)."""
    path = os.fspath(path)
    idx = find_index(path)
    if idx is None:
        return None
    try:
        names = _header_names(path, reference)
        if idx.suffix == ".crai":
            slices = read_crai(idx)
            if any(s.ref_id < -1 for s in slices):
                return None
            tids = {s.ref_id for s in slices if s.ref_id >= 0}
        else:
            has = references_with_records(idx)
            if has is None:
                return None
            tids = set(np.flatnonzero(has).tolist())
    except (OSError, ValueError, struct.error) as e:
        logger.debug("%s: index %s not usable to find empty contigs (%s)", path, idx, e)
        return None
    return {names[t] for t in tids if t < len(names)}


def contigs_without_reads(
    inputs: CallInputs, contigs: Sequence[str] | None = None
) -> frozenset[str]:
    """The contigs of ``contigs`` (default: every reference contig) on which no alignment
    file of ``inputs`` has a record, from the indexes only (no read is read); empty when
    any file's index cannot tell (see the module docstring). Every index is read (not a
    sample of them): one file with a read on a contig makes it a contig to call."""
    left = {c for c, _ in inputs.contigs} if contigs is None else set(contigs)
    for bam in inputs.bams:
        if not left:
            break
        found = contigs_with_reads_in_file(Path(bam), inputs.reference)
        if found is None:
            return frozenset()
        left -= found
    if left:
        logger.info("%d contigs have no reads in any index; they get no task", len(left))
    return frozenset(left)
