"""Soft-clipped read ends realigned as indels (see :mod:`varcall.engines.native.pileup`,
step 1): an aligner clips a read end that carries an indel near it when the gap costs
more than the clip, so CIGARs alone miss indels near read ends (and long indels, which
many of the reads that reach them only clip). Kernels: :mod:`.clips_numba_fns`.

Each tail of at least ``CLIP_MIN_LENGTH`` soft-clipped bases (a left tail also takes the
inserted bases between the clip and the first aligned base) is realigned, together with
up to ``CLIP_ANCHOR`` aligned bases next to it, against the reference at the clip point:
the aligned bases up to a break stay where they are, and the rest of the tail faces the
reference after a deletion of 1..``MAX_INDEL_LENGTH`` bp, or after an insertion of that
many of its bases. Scores: +1 per matching base, -4 per mismatch, 0 per N, inserted
bases 0. The best hypothesis is kept when the bases after its gap score at least
``CLIP_MIN_SCORE``, the tail scores more than ``CLIP_GAP_OPEN`` above its gapless
alignment, and no hypothesis of another kind or length scores the same (a tail in a
repeat that fits several lengths gives nothing). An indel that lies in a tandem repeat of
its own sequence (it slides along the reference by at least its length) is not made
either: such a clipped tail holds few bases past the repeat to tell its length, and
repeats are where PCR stutter lives; their lengths come from the reads the aligner
gapped. The read's CIGAR then carries that gap
in place of the clip, so every later stage sees the read as if the aligner had opened
it: its indel is counted and left-normalised like any CIGAR indel (:mod:`.evidence`),
its bases count at the positions they now face, and pass 2 scores it at the indel site.
A tail that fits nothing (adapter, a structural-variant breakpoint, low-quality bases)
stays clipped.

A realignment moves the read's start (left tail) or end (right tail) by at most
``pileup.CLIP_REACH`` bp, else it is not made: a read's realigned span lies within
``CLIP_REACH`` of the span it was fetched by, and the fetch pad (``pileup.SHADOW_PAD``)
covers that as well as ``CALL_REACH``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from varcall.engines.native.clips_numba_fns import realign_pass, rewrite_cigars
from varcall.engines.native.pileup import CLIP_REACH, MAX_INDEL_LENGTH
from varcall.engines.native.reads import ReadBatch

__all__ = [
    "CLIP_MIN_LENGTH",
    "CLIP_ANCHOR",
    "CLIP_MIN_SCORE",
    "CLIP_GAP_OPEN",
    "CLIP_MIN_MARGIN",
    "clip_reference_margin",
    "realign_clips",
]

#: Soft clips shorter than this (bases) are not realigned.
CLIP_MIN_LENGTH = 5
#: Aligned bases next to a clip that the realignment may move behind the gap.
CLIP_ANCHOR = 10
#: The bases after the gap must score at least this (+1 match, -4 mismatch).
CLIP_MIN_SCORE = 8
#: The gapped tail must score more than this above its gapless alignment.
CLIP_GAP_OPEN = 6
#: ... and at least this above any explanation of another kind or length (1: no tie).
CLIP_MIN_MARGIN = 1


def clip_reference_margin(batch: ReadBatch) -> int:
    """Reference bases (bp) the realignment of ``batch``'s tails needs beyond its reads on
    either side: a tail faces reference up to its length plus the longest indel away, the
    tandem-repeat check slides an indel by up to its length, and a realigned read moves
    by up to ``CLIP_REACH``. Within that margin of a read, reference the kernels do not
    get counts as N only at the contig's ends, so no window changes a realignment."""
    longest = int(batch.qlen.max()) if batch.n_reads else 0
    tail = longest + CLIP_ANCHOR + MAX_INDEL_LENGTH
    return max(CLIP_REACH, tail, CLIP_ANCHOR + 2 * MAX_INDEL_LENGTH) + 1


def realign_clips(batch: ReadBatch, ref: np.ndarray, ref_lo: int) -> ReadBatch:
    """``batch`` with every soft-clipped tail that fits an indel (module docstring)
    realigned: its CIGAR gets the gap in place of the clip, and its start (left tail) or
    end (right tail) moves, by at most ``CLIP_REACH`` bp. Reads, bases and qualities are
    unchanged. ``ref`` holds base codes of the reference from 0-based ``ref_lo`` on; it
    must reach :func:`clip_reference_margin` bp beyond every read (or the contig's ends)."""
    n = batch.n_reads
    if n == 0:
        return batch
    res = np.zeros((n, 8), np.int64)
    realign_pass(
        batch.start, batch.end, batch.qoff, batch.qlen, batch.coff, batch.cn, batch.cig_op,
        batch.cig_len, batch.bases, ref, ref_lo, CLIP_MIN_LENGTH, CLIP_ANCHOR,
        MAX_INDEL_LENGTH, CLIP_MIN_SCORE, CLIP_GAP_OPEN, CLIP_MIN_MARGIN, CLIP_REACH, res,
    )  # fmt: skip
    if not (res[:, 0].any() or res[:, 4].any()):
        return batch
    size = batch.cig_op.shape[0] + 4 * n
    new_op = np.empty(size, np.uint8)
    new_len = np.empty(size, np.int32)
    new_coff = np.empty(n, np.int64)
    new_cn = np.empty(n, np.int32)
    new_start = np.empty(n, np.int64)
    new_end = np.empty(n, np.int64)
    k = rewrite_cigars(
        batch.start, batch.end, batch.qlen, batch.coff, batch.cn, batch.cig_op, batch.cig_len,
        res, new_op, new_len, new_coff, new_cn, new_start, new_end,
    )  # fmt: skip
    return dataclasses.replace(
        batch,
        start=new_start,
        end=new_end,
        coff=new_coff,
        cn=new_cn,
        cig_op=new_op[:k],
        cig_len=new_len[:k],
    )
