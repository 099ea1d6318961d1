"""Haplotypes and read alignments: a sample haplotype from the reference and its truth
edits, the per-base reference positions of its bases, indel left-alignment as aligners do
it, and CIGARs (one read at a time, or a whole window of reads sliced from a haplotype).
Positions are 0-based reference coordinates; -1 marks an inserted base, -2 a clipped one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["haplotype", "left_align", "cigar_from_refpos", "read_cigar", "HapAlignment"]


def haplotype(ref_seq: str, edits: Sequence[tuple[int, str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Apply non-overlapping (pos, ref, alt) edits (0-based, sorted) to ``ref_seq``.

    Returns (bases, refpos): the haplotype as ASCII uint8 and, for each haplotype base,
    the 0-based reference position it is aligned to, or -1 for an inserted base. Each
    edit is aligned anchored on its first base: shared length as matches, the rest of
    the longer allele inserted (ALT) or deleted (REF).
    """
    pieces: list[np.ndarray] = []
    posmap: list[np.ndarray] = []
    prev = 0
    raw = ref_seq.encode("ascii")
    for pos, ref, alt in edits:
        if pos < prev:
            raise ValueError(f"overlapping edits at {pos}")
        pieces.append(np.frombuffer(raw[prev:pos], dtype=np.uint8))
        posmap.append(np.arange(prev, pos, dtype=np.int64))
        pieces.append(np.frombuffer(alt.encode("ascii"), dtype=np.uint8))
        m = min(len(ref), len(alt))
        rp = np.full(len(alt), -1, dtype=np.int64)
        rp[:m] = np.arange(pos, pos + m)
        posmap.append(rp)
        prev = pos + len(ref)
    pieces.append(np.frombuffer(raw[prev:], dtype=np.uint8))
    posmap.append(np.arange(prev, len(raw), dtype=np.int64))
    return np.concatenate(pieces).copy(), np.concatenate(posmap)


# ----------------------------------------------------------------------------- CIGAR
def _indel_events(rp: np.ndarray) -> np.ndarray:
    """Indices i where an insertion starts (rp[i] == -1 after an aligned base) or a
    deletion lies between aligned bases i-1 and i."""
    prev, cur = rp[:-1], rp[1:]
    ins_start = (cur == -1) & (prev >= 0)
    dele = (cur >= 0) & (prev >= 0) & (cur > prev + 1)
    return np.flatnonzero(ins_start | dele) + 1


def left_align(bases: bytes, rp: np.ndarray, ref: bytes, first: int = 0) -> np.ndarray:
    """Shift every indel of an alignment left, in place; return ``rp``.

    ``bases`` are the aligned sequence's bases, ``rp[i]`` the 0-based reference position of
    base i (-1 inserted, -2 clipped), ``first`` the index of the first aligned base. An
    indel moves one base left while the alignment keeps the same bases against the same
    reference bases: for a deletion of ``ref[s:e)`` when ``ref[s-1] == ref[e-1]``, for an
    insertion ``bases[i:m]`` when the base before it equals ``bases[m-1]``; it stops before
    the base preceding it would stop being a contiguous aligned base (so an indel never
    starts an alignment or touches another indel), as aligners and GATK place indels.
    """
    n = rp.size
    for i in _indel_events(rp).tolist():
        if rp[i] == -1:  # insertion bases[i:m] after base i-1
            m = i
            while m < n and rp[m] == -1:
                m += 1
            if m == n:
                continue
            j = i - 1
            while (
                j > first and rp[j - 1] >= 0 and rp[j - 1] == rp[j] - 1 and bases[j] == bases[m - 1]
            ):
                rp[m - 1] = rp[j]
                rp[j] = -1
                j -= 1
                m -= 1
        else:  # deletion of ref[s:e) between bases i-1 and i
            j = i - 1
            s, e = int(rp[j]) + 1, int(rp[i])
            while (
                j > first and rp[j - 1] >= 0 and rp[j - 1] == rp[j] - 1 and ref[s - 1] == ref[e - 1]
            ):
                rp[j] = e - 1
                s, e = s - 1, e - 1
                j -= 1
    return rp


def cigar_from_refpos(rp: np.ndarray | Sequence[int]) -> tuple[int, str, int] | None:
    """(pos, CIGAR, end) of an alignment given as per-base reference positions (0-based;
    -1 inserted, -2 clipped). Inserted or clipped bases before the first / after the last
    aligned base are soft clips, inside they are insertions; a jump is a deletion. None
    when no base is aligned. ``end`` is one past the last aligned base."""
    rpl = rp.tolist() if isinstance(rp, np.ndarray) else list(rp)
    n = len(rpl)
    first = 0
    while first < n and rpl[first] < 0:
        first += 1
    if first == n:
        return None
    last = n - 1
    while rpl[last] < 0:
        last -= 1
    parts = [f"{first}S"] if first else []
    cur_op, cur_len = "M", 0
    prev = rpl[first] - 1
    for r in rpl[first : last + 1]:
        if r < 0:
            op = "I"
        else:
            op = "M"
            if r > prev + 1:
                if cur_len:
                    parts.append(f"{cur_len}{cur_op}")
                parts.append(f"{r - prev - 1}D")
                cur_op, cur_len = "M", 0
            prev = r
        if op != cur_op:
            if cur_len:
                parts.append(f"{cur_len}{cur_op}")
            cur_op, cur_len = op, 0
        cur_len += 1
    parts.append(f"{cur_len}{cur_op}")
    if last < n - 1:
        parts.append(f"{n - 1 - last}S")
    return rpl[first], "".join(parts), rpl[last] + 1


def read_cigar(
    read: np.ndarray | bytes, refpos: np.ndarray, ref_seq: str | bytes
) -> tuple[int, str, int] | None:
    """Alignment of one read: (pos, CIGAR, end) with its indels left-aligned, or None.

    ``read`` holds the read bases (reference orientation); ``refpos[i]`` is the 0-based
    reference position read base i is aligned to, -1 for an inserted base, -2 for a
    clipped base. Leading/trailing clipped or inserted bases become soft clips; a jump in
    ``refpos`` is a deletion; indels are shifted left as :func:`left_align` says.
    Returns ``pos`` = first aligned base and ``end`` = one past the last aligned base
    (0-based half-open); None when no base is aligned.
    """
    rd = read if isinstance(read, bytes) else bytes(read)
    ref = ref_seq.encode("ascii") if isinstance(ref_seq, str) else ref_seq
    rp = np.array(refpos, dtype=np.int64)
    al = np.flatnonzero(rp >= 0)
    if al.size == 0:
        return None
    first, last = int(al[0]), int(al[-1])
    rp[:first] = -2
    rp[last + 1 :] = -2
    inner = rp[first : last + 1]
    inner[inner == -2] = -1  # clipped bases inside the alignment count as inserted
    left_align(rd, rp, ref, first)
    return cigar_from_refpos(rp)


class HapAlignment:
    """A haplotype's left-aligned alignment to the reference, for slicing reads from it.

    ``refpos`` as in :func:`haplotype` after :func:`left_align`; ``events`` the sorted
    hap indices of indel events with their CIGAR op and length."""

    def __init__(self, bases: np.ndarray, refpos: np.ndarray, ref: bytes):
        self.refpos = left_align(bases.tobytes(), refpos, ref, 0)
        ev = _indel_events(self.refpos)
        self.ev_idx = ev
        kinds, lens = [], []
        rp = self.refpos
        n = rp.size
        for i in ev.tolist():
            if rp[i] == -1:
                m = i
                while m < n and rp[m] == -1:
                    m += 1
                kinds.append("I")
                lens.append(m - i)
            else:
                kinds.append("D")
                lens.append(int(rp[i] - rp[i - 1] - 1))
        self.kinds = kinds
        self.lens = lens
        self.inserted = rp < 0

    def window_cigars(
        self, starts: np.ndarray, length: int
    ) -> tuple[np.ndarray, np.ndarray, dict[int, bytes], np.ndarray]:
        """Alignment of reads covering hap ``[a, a+length)`` for each start ``a``.

        Returns (pos, end, cigars, dropped): ``cigars`` maps the index of every read that is
        not a plain ``{length}M`` to its CIGAR; ``dropped`` marks reads with no aligned base.
        """
        rp = self.refpos
        lo = np.searchsorted(self.ev_idx, starts, side="right")  # events strictly inside
        hi = np.searchsorted(self.ev_idx, starts + length, side="left")
        lead = self.inserted[starts]
        complex_ = np.flatnonzero((hi > lo) | lead)
        pos = rp[starts].copy()
        end = pos + length
        cigars: dict[int, bytes] = {}
        dropped = np.zeros(starts.size, dtype=bool)
        ev_idx, kinds, lens = self.ev_idx.tolist(), self.kinds, self.lens
        ins = self.inserted
        for r in complex_.tolist():
            a = int(starts[r])
            b = a + length
            parts: list[str] = []
            cur = a
            if ins[a]:  # starts inside an insertion: those bases are soft-clipped
                while cur < b and ins[cur]:
                    cur += 1
                if cur == b:
                    dropped[r] = True
                    continue
                parts.append(f"{cur - a}S")
            first = cur
            for k in range(int(lo[r]), int(hi[r])):
                i = ev_idx[k]
                if i < cur:
                    continue
                if kinds[k] == "D":
                    if i > cur:
                        parts.append(f"{i - cur}M")
                        cur = i
                    if cur > first:
                        parts.append(f"{lens[k]}D")
                else:
                    if i > cur:
                        parts.append(f"{i - cur}M")
                    if i + lens[k] >= b:  # runs to the read end: soft clip
                        parts.append(f"{b - i}S")
                        cur = b
                        break
                    parts.append(f"{lens[k]}I")
                    cur = i + lens[k]
            if cur < b:
                parts.append(f"{b - cur}M")
            last = b - 1
            while ins[last]:
                last -= 1
            pos[r] = rp[first]
            end[r] = rp[last] + 1
            cigars[r] = "".join(parts).encode()
        return pos, end, cigars, dropped
