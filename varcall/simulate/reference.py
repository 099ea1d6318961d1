"""Simulated reference contigs: GC variation, homopolymers, STRs, N runs and one
soft-masked stretch per contig (positions 0-based half-open), and their FASTA."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from varcall.simulate.config import SimulationConfig, contig_names, keyed_rng

__all__ = ["ASCII_BASES", "ContigTexture", "simulate_reference", "write_fasta"]

#: The four bases as ASCII codes (uint8), indexed by base code 0..3.
ASCII_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)


@dataclasses.dataclass
class ContigTexture:
    """The simulated sequence of one contig and where its features lie (0-based half-open).

    seq: upper-case sequence (A/C/G/T/N); masked: (start, end) lower-case in the FASTA.
    homopolymers: (start, end, base); strs: (start, end, unit); n_runs: (start, end).
    """

    name: str
    seq: str
    masked: tuple[int, int]
    homopolymers: list[tuple[int, int, str]]
    strs: list[tuple[int, int, str]]
    n_runs: list[tuple[int, int]]

    def fasta_seq(self) -> str:
        """The sequence as written to FASTA (soft-masked stretch in lower case)."""
        a, b = self.masked
        return self.seq[:a] + self.seq[a:b].lower() + self.seq[b:]


def simulate_reference(config: SimulationConfig, contig_index: int) -> ContigTexture:
    """Simulate one contig's sequence with GC variation, homopolymers, STRs, N runs and
    a soft-masked stretch. Positions near boundary positions (first contig) are kept free
    of repeats and N runs so the planted boundary variants are unambiguous."""
    rng = keyed_rng(config, 1, contig_index)
    length = config.contig_length
    # GC content varies in segments of a few kb
    seg_lengths = rng.geometric(1 / 2000, size=length // 200 + 2)
    seg_gc = rng.uniform(0.3, 0.65, size=seg_lengths.size)
    gc = np.repeat(seg_gc, seg_lengths)[:length]
    if gc.size < length:
        gc = np.concatenate([gc, np.full(length - gc.size, 0.45)])
    strong = rng.random(length) < gc
    pick = rng.random(length) < 0.5
    arr = np.where(strong, np.where(pick, ord("G"), ord("C")), np.where(pick, ord("A"), ord("T")))
    arr = arr.astype(np.uint8)

    protected = np.zeros(length, dtype=bool)
    if contig_index == 0:
        for b in config.boundary_positions:
            protected[max(0, b - 40) : b + 40] = True
    end_zone = config.read_length
    homopolymers: list[tuple[int, int, str]] = []
    for _ in range(max(2, length // 1500)):
        n = int(min(25, 6 + rng.geometric(0.25) - 1))
        s = int(rng.integers(end_zone // 2, length - n - end_zone // 2))
        if protected[s - 2 : s + n + 2].any():
            continue
        base = int(ASCII_BASES[rng.integers(4)])
        arr[s : s + n] = base
        homopolymers.append((s, s + n, chr(base)))
    strs: list[tuple[int, int, str]] = []
    for _ in range(max(2, length // 2000)):
        k = int(rng.integers(2, 5))
        unit = ASCII_BASES[rng.integers(0, 4, size=k)]
        while len(set(unit.tolist())) == 1:
            unit = ASCII_BASES[rng.integers(0, 4, size=k)]
        copies = int(rng.integers(4, 16))
        n = k * copies
        s = int(rng.integers(end_zone // 2, length - n - end_zone // 2))
        if protected[s - 2 : s + n + 2].any():
            continue
        arr[s : s + n] = np.tile(unit, copies)
        strs.append((s, s + n, unit.tobytes().decode()))

    n_runs: list[tuple[int, int]] = []
    if length >= 20_000:
        margin = config.insert_mean + 4 * config.read_length
        for _ in range(max(1, length // 150_000)):
            n = int(rng.integers(50, min(500, length // 80) + 1))
            for _try in range(50):
                s = int(rng.integers(length // 10, length - length // 10 - n))
                lo, hi = max(0, s - margin), s + n + margin
                if not protected[lo:hi].any() and all(
                    hi <= a - margin or lo >= b + margin for a, b in n_runs
                ):
                    break
            else:
                continue
            arr[s : s + n] = ord("N")
            n_runs.append((s, s + n))
        n_runs.sort()
    seq = arr.tobytes().decode("ascii")
    # features overwritten by a later one or by N are dropped from the lists
    homopolymers = [h for h in homopolymers if seq[h[0] : h[1]] == h[2] * (h[1] - h[0])]
    strs = [t for t in strs if seq[t[0] : t[1]] == t[2] * ((t[1] - t[0]) // len(t[2]))]
    mlen = min(2000, length // 20)
    for _try in range(100):  # the soft-masked stretch avoids the N runs
        ms = int(rng.integers(length // 4, length // 2))
        if all(ms + mlen <= a or ms >= b for a, b in n_runs):
            break
    return ContigTexture(
        name=contig_names(config.n_contigs)[contig_index],
        seq=seq,
        masked=(ms, ms + mlen),
        homopolymers=sorted(homopolymers),
        strs=sorted(strs),
        n_runs=n_runs,
    )


def write_fasta(path: Path, textures: list[ContigTexture]) -> None:
    """Write the contigs to ``path`` as FASTA, 60 bases a line, soft-masked stretches in
    lower case."""
    with open(path, "w") as fh:
        for t in textures:
            s = t.fasta_seq()
            fh.write(f">{t.name}\n")
            fh.write("\n".join(s[i : i + 60] for i in range(0, len(s), 60)))
            fh.write("\n")
