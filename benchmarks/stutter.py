"""PCR stutter in simulated reads (``DatasetSpec.hard``).

:func:`simulate_reads` runs ART with its true-alignment SAM; :func:`sam_to_fastq` writes the
FASTQ pair from it, where each fragment (both mates alike) that spans a planted repeat array
gains or loses one unit with a probability that grows with the array's length
(:func:`stutter_rate`); :func:`stutter_read` edits one read, qualities kept aligned with the
bases and the read length kept.

Coordinates are 0-based half-open (haplotype coordinates), SAM POS aside.
"""

from __future__ import annotations

import bisect
import re
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from hard_cases import HardSpec, revcomp

# ----------------------------------------------------------------------------- stutter
_CIGAR = re.compile(r"(\d+)([MIDNSHP=X])")


def stutter_rate(length: int, hs: HardSpec) -> float:
    """Share of molecules that gain or lose one unit in a ``length`` bp array: linear from
    ``hs.stutter_at_10bp`` at 10 bp to ``hs.stutter_at_30bp`` at 30 bp, 0 below (where the
    line falls under 0), capped at ``hs.stutter_max``."""
    r = hs.stutter_at_10bp + (hs.stutter_at_30bp - hs.stutter_at_10bp) * (length - 10) / 20
    return float(min(hs.stutter_max, max(0.0, r)))


def read_offset(ref_pos: int, start: int, cigar: str) -> int | None:
    """Offset in the read (SAM orientation) of reference position ``ref_pos`` for a read
    aligned at ``start`` (0-based) with ``cigar``; None when it is deleted or outside."""
    r, q = start, 0
    for n, op in _CIGAR.findall(cigar):
        n = int(n)
        if op in "M=X":
            if r <= ref_pos < r + n:
                return q + ref_pos - r
            r, q = r + n, q + n
        elif op in "IS":
            q += n
        elif op in "DN":
            if r <= ref_pos < r + n:
                return None
            r += n
    return None


def ref_span(start: int, cigar: str) -> int:
    """Reference bases a CIGAR covers."""
    return sum(int(n) for n, op in _CIGAR.findall(cigar) if op in "MDN=X")


def stutter_read(
    seq: str,
    qual: str,
    start: int,
    cigar: str,
    reverse: bool,
    edits: Sequence[tuple[int, int, int]],
    hap: str,
) -> tuple[str, str] | None:
    """Apply stutter ``edits`` (array start on the haplotype, unit length, +1 or -1 unit) to
    a read given in SAM orientation (aligned at ``start`` on ``hap`` with ``cigar``). An
    inserted unit repeats the array's first unit with its qualities; a deleted one takes its
    qualities along. The read keeps its length: bases are dropped from, or taken from
    ``hap`` onto, its 3' end (the left end of a reverse read), the added bases with the
    quality of the 3' base. None when no edit applies (the 3' end would leave ``hap``)."""
    s, q = list(seq), list(qual)
    net = 0
    for a, u, sign in sorted(edits, reverse=True):
        o = read_offset(a, start, cigar)
        if o is None or o + u > len(s):
            continue
        if sign < 0:
            del s[o : o + u], q[o : o + u]
        else:
            s[o:o] = s[o : o + u]
            q[o:o] = q[o : o + u]
        net += sign * u
    if net == 0:
        return None
    end = start + ref_span(start, cigar)
    if net > 0:
        s, q = (s[net:], q[net:]) if reverse else (s[:-net], q[:-net])
    elif reverse:
        if start + net < 0:
            return None
        s, q = list(hap[start + net : start]) + s, [q[0]] * -net + q
    else:
        if end - net > len(hap):
            return None
        s, q = s + list(hap[end : end - net]), q + [q[-1]] * -net
    return "".join(s), "".join(q)


class Stutter:
    """Stutter decisions for the arrays of one haplotype FASTA: per fragment (both mates
    alike) and array, drawn once from :func:`stutter_rate`; with counts by array length
    (reads spanning an array, reads edited there)."""

    BINS = ((0, 10), (10, 20), (20, 30), (30, 10**9))

    def __init__(self, arrays: dict[str, list[tuple[int, int, int]]], hs: HardSpec, seed: int):
        self.arrays = {k: sorted(v) for k, v in arrays.items()}  # (start, end, unit length)
        self.starts = {k: [a for a, _, _ in v] for k, v in self.arrays.items()}
        self.hs = hs
        self.rng = np.random.default_rng(seed)
        self.fragment, self.decided = "", {}
        self.spanning = [0] * len(self.BINS)
        self.edited = [0] * len(self.BINS)

    def _bin(self, length: int) -> int:
        return next(i for i, (lo, hi) in enumerate(self.BINS) if lo <= length < hi)

    def edits(self, qname: str, contig: str, start: int, end: int) -> list[tuple[int, int, int]]:
        """Edits for a read of fragment ``qname`` aligned to ``[start, end)`` of ``contig``:
        arrays it spans with at least one flanking base each side."""
        if qname != self.fragment:
            self.fragment, self.decided = qname, {}
        arrays, starts = self.arrays.get(contig, []), self.starts.get(contig, [])
        out = []
        for i in range(bisect.bisect_right(starts, start), len(arrays)):
            a, b, u = arrays[i]
            if a >= end:
                break
            if b >= end:
                continue
            if (contig, a) not in self.decided:
                sign = 0
                if self.rng.random() < stutter_rate(b - a, self.hs):
                    sign = -1 if self.rng.random() < self.hs.stutter_deletion_share else 1
                    if sign < 0 and b - a < 2 * u:
                        sign = 0
                self.decided[(contig, a)] = sign
            k = self._bin(b - a)
            self.spanning[k] += 1
            if self.decided[(contig, a)]:
                self.edited[k] += 1
                out.append((a, u, self.decided[(contig, a)]))
        return out


def sam_to_fastq(sam: Path, fq1: Path, fq2: Path, stutter: Stutter, haps: dict[str, str]) -> int:
    """Write ART's true-alignment SAM as a FASTQ pair (names ``QNAME/1`` and ``/2``), with
    stutter applied. Returns the number of reads edited."""
    n_edit = 0
    with open(sam) as fh, open(fq1, "w") as o1, open(fq2, "w") as o2:
        for line in fh:
            if line.startswith("@"):
                continue
            f = line.rstrip("\n").split("\t")
            qname, flag, contig, pos, cigar, seq, qual = (
                f[0], int(f[1]), f[2], int(f[3]) - 1, f[5], f[9], f[10]
            )  # fmt: skip
            reverse = bool(flag & 16)
            edits = stutter.edits(qname, contig, pos, pos + ref_span(pos, cigar))
            if edits:
                new = stutter_read(seq, qual, pos, cigar, reverse, edits, haps[contig])
                if new is not None:
                    seq, qual = new
                    n_edit += 1
            if reverse:
                seq, qual = revcomp(seq), qual[::-1]
            out, mate = (o2, 2) if flag & 128 else (o1, 1)
            out.write(f"@{qname}/{mate}\n{seq}\n+\n{qual}\n")
    return n_edit


def simulate_reads(
    hap_fa: Path,
    prefix: Path,
    coverage: float,
    read_length: int,
    fragment: tuple[int, int],
    seed: int,
    stutter: Stutter,
    haps: dict[str, str],
) -> tuple[Path, Path]:
    """ART (HiSeq 2500 profile) paired reads from ``hap_fa`` at ``coverage``, through
    :func:`sam_to_fastq`; returns the FASTQ pair."""
    cmd = ["art_illumina", "-ss", "HS25", "-i", str(hap_fa), "-p", "-l", str(read_length)]
    cmd += ["-f", f"{coverage:g}", "-m", str(fragment[0]), "-s", str(fragment[1])]
    cmd += ["-rs", str(seed), "-na", "-q", "-sam", "-o", str(prefix)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"art_illumina failed ({r.returncode}): {r.stderr[-2000:]}")
    sam = Path(f"{prefix}.sam")
    fq1, fq2 = Path(f"{prefix}1.fq"), Path(f"{prefix}2.fq")
    sam_to_fastq(sam, fq1, fq2, stutter, haps)
    sam.unlink()
    return fq1, fq2


def stutter_summary(stutters: Iterable[Stutter]) -> list[dict]:
    """Reads spanning a planted array and the share of them stuttered, by array length."""
    out, stutters = [], list(stutters)
    for k, (lo, hi) in enumerate(Stutter.BINS):
        span = sum(s.spanning[k] for s in stutters)
        edit = sum(s.edited[k] for s in stutters)
        label = f"{lo}+ bp" if hi > 10**8 else f"{lo}-{hi - 1} bp"
        out.append({"array_length": label, "reads_spanning": span, "stuttered": edit,
                    "share": round(edit / span, 4) if span else None})  # fmt: skip
    return out
