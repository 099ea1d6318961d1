"""Pass 1 over a window's reads: per-position base counts and left-normalised indel
events (see :mod:`varcall.engines.native.pileup`, step 2). Kernels:
:mod:`.evidence_numba_fns`."""

from __future__ import annotations

import dataclasses

import numpy as np

from varcall.engines.native.evidence_numba_fns import count_pass
from varcall.engines.native.pileup import CIGAR_DEL, CIGAR_INS, MAX_INDEL_LENGTH
from varcall.engines.native.reads import ReadBatch

__all__ = ["Evidence", "count_evidence"]


@dataclasses.dataclass
class Evidence:
    """Per-position evidence of one window ``[ws, we)``.

    counts: (S, W, 4) int32 reads per base (A, C, G, T) with quality >= min_baseq.
    depth: (S, W) int32 sum of counts. cover: (S, W) int32 reads with an unmasked base
    aligned at the position (the denominator of indel fractions). err: (W,) float64 sum
    over the samples of the error probabilities of the bases counted (the expected
    sequencing errors there).
    Indel events (E,): ev_pos 0-based anchor (the base before the indel, VCF POS - 1),
    ev_len (+L insertion, -L deletion), ev_read (read index), ev_qoff (query offset of the
    normalised inserted sequence within its read; -1 for deletions).
    """

    ws: int
    we: int
    counts: np.ndarray
    depth: np.ndarray
    cover: np.ndarray
    err: np.ndarray
    ev_pos: np.ndarray
    ev_len: np.ndarray
    ev_read: np.ndarray
    ev_qoff: np.ndarray


def count_evidence(
    batch: ReadBatch,
    ref: np.ndarray,
    ref_lo: int,
    ws: int,
    we: int,
    n_samples: int,
    min_baseq: int,
) -> Evidence:
    """Pass 1 over the reads: base counts for positions in ``[ws, we)`` and the
    left-normalised indel events anchored there. ``ref`` holds base codes of the
    reference from 0-based ``ref_lo`` on, covering every read of the batch plus margin."""
    w = we - ws
    counts = np.zeros((n_samples, w, 4), np.int32)
    cover = np.zeros((n_samples, w), np.int32)
    err = np.zeros(w)
    n_ind = int(np.count_nonzero((batch.cig_op == CIGAR_INS) | (batch.cig_op == CIGAR_DEL)))
    ev_pos = np.empty(n_ind, np.int64)
    ev_len = np.empty(n_ind, np.int64)
    ev_read = np.empty(n_ind, np.int64)
    ev_qoff = np.empty(n_ind, np.int64)
    ne = count_pass(
        batch.start, batch.qoff, batch.coff, batch.cn, batch.cig_op, batch.cig_len,
        batch.bases, batch.quals, batch.sample, ref, ref_lo, ws, we, min_baseq,
        MAX_INDEL_LENGTH, counts, cover, err, ev_pos, ev_len, ev_read, ev_qoff,
    )  # fmt: skip
    return Evidence(
        ws=ws,
        we=we,
        counts=counts,
        # the four bases added as slices: a reduction over a length-4 axis is 4x slower
        depth=counts[:, :, 0] + counts[:, :, 1] + counts[:, :, 2] + counts[:, :, 3],
        cover=cover,
        err=err,
        ev_pos=ev_pos[:ne],
        ev_len=ev_len[:ne],
        ev_read=ev_read[:ne],
        ev_qoff=ev_qoff[:ne],
    )
