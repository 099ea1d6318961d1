"""Indel events from soft-clipped read ends (see :mod:`varcall.engines.native.pileup`,
step 2): an aligner clips a read end that carries an indel near it when the gap costs
more than the clip, so CIGARs alone miss indels near read ends (and long indels, which
most reads that reach them only clip). Kernels: :mod:`.clips_numba_fns`.

Each tail of at least ``CLIP_MIN_LENGTH`` soft-clipped bases (a left tail also takes the
inserted bases between the clip and the first aligned base) is realigned, together with
up to ``CLIP_ANCHOR`` aligned bases next to it, against the reference at the clip point:
the aligned bases up to a break stay where they are, and the rest of the tail faces the
reference after a deletion of 1..``MAX_INDEL_LENGTH`` bp, or after an insertion of that
many of its bases. Scores: +1 per matching base, -4 per mismatch, 0 per N, inserted
bases 0. The best hypothesis is kept when the bases after its gap score at least
``CLIP_MIN_SCORE``, the tail scores more than ``CLIP_GAP_OPEN`` above its gapless
alignment, and no hypothesis of another kind or length scores the same (a tail in a
repeat that fits several lengths gives nothing). Its indel is left-normalised and
counted like a CIGAR indel (:mod:`.evidence`); a tail that fits nothing (adapter, a
structural-variant breakpoint, low-quality bases) gives no event.

An event from a left tail can lie before the read's first aligned base; it is not
shifted more than ``pileup.CLIP_REACH`` bp before it, so every event at POS comes from
a read overlapping ``[POS, POS + CLIP_REACH]``: the fetch pad (``pileup.SHADOW_PAD``)
covers that as well as ``CALL_REACH``.
"""

from __future__ import annotations

import numpy as np

from varcall.engines.native.clips_numba_fns import clip_pass
from varcall.engines.native.pileup import CLIP_REACH, MAX_INDEL_LENGTH
from varcall.engines.native.reads import ReadBatch

__all__ = [
    "CLIP_MIN_LENGTH",
    "CLIP_ANCHOR",
    "CLIP_MIN_SCORE",
    "CLIP_GAP_OPEN",
    "clip_events",
    "clip_reference_margin",
]

#: Soft clips shorter than this (bases) are not realigned.
CLIP_MIN_LENGTH = 5
#: Aligned bases next to a clip that the realignment may move behind the gap.
CLIP_ANCHOR = 10
#: The bases after the gap must score at least this (+1 match, -4 mismatch).
CLIP_MIN_SCORE = 8
#: The gapped tail must score more than this above its gapless alignment.
CLIP_GAP_OPEN = 6


def clip_reference_margin(batch: ReadBatch) -> int:
    """Reference bases (bp) the realignment of ``batch``'s tails needs beyond its reads on
    either side: a tail faces reference up to its length plus the longest indel away."""
    longest = int(batch.qlen.max()) if batch.n_reads else 0
    return max(CLIP_REACH, longest + CLIP_ANCHOR + MAX_INDEL_LENGTH) + 1


def clip_events(
    batch: ReadBatch, ref: np.ndarray, ref_lo: int, ws: int, we: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The left-normalised indel events of the reads' realigned soft-clipped tails with
    anchor in ``[ws, we)``: (ev_pos, ev_len, ev_read, ev_qoff) as in
    :class:`varcall.engines.native.evidence.Evidence`. ``ref`` holds base codes of the
    reference from 0-based ``ref_lo`` on; it must reach :func:`clip_reference_margin` bp
    beyond every read (or the contig's ends)."""
    n = 2 * batch.n_reads
    ev_pos = np.empty(n, np.int64)
    ev_len = np.empty(n, np.int64)
    ev_read = np.empty(n, np.int64)
    ev_qoff = np.empty(n, np.int64)
    ne = clip_pass(
        batch.start, batch.end, batch.qoff, batch.qlen, batch.coff, batch.cn, batch.cig_op,
        batch.cig_len, batch.bases, batch.quals, ref, ref_lo, ws, we, CLIP_MIN_LENGTH,
        CLIP_ANCHOR, MAX_INDEL_LENGTH, CLIP_MIN_SCORE, CLIP_GAP_OPEN, CLIP_REACH,
        ev_pos, ev_len, ev_read, ev_qoff,
    )  # fmt: skip
    return ev_pos[:ne], ev_len[:ne], ev_read[:ne], ev_qoff[:ne]
