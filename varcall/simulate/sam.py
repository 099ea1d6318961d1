"""SAM text of simulated reads: the header of a sample's file and the body of one contig,
sorted by position. POS / PNEXT are 1-based (0-based positions inside plus 1)."""

from __future__ import annotations

import dataclasses
from typing import BinaryIO

import numpy as np

from varcall import __version__
from varcall.simulate.config import SimulationConfig
from varcall.simulate.reads import WRITE_BLOCK, Reads
from varcall.simulate.reference import ContigTexture

__all__ = ["sam_header", "write_sam_body"]


def sam_header(config: SimulationConfig, textures: list[ContigTexture], sample: str) -> str:
    """The SAM header of one sample's file: coordinate-sorted, one @SQ per contig, the
    sample's read group and the simulator's @PG line."""
    lines = ["@HD\tVN:1.6\tSO:coordinate"]
    lines += [f"@SQ\tSN:{t.name}\tLN:{len(t.seq)}" for t in textures]
    lines.append(f"@RG\tID:{sample}\tSM:{sample}\tPL:ILLUMINA\tLB:{sample}-lib1")
    lines.append(f"@PG\tID:varcall-simulate\tPN:varcall\tVN:{__version__}\tCL:seed={config.seed}")
    return "\n".join(lines) + "\n"


def _concat_reads(parts: list[Reads]) -> Reads:
    """The reads of several haplotypes as one set, except ``seq``/``qual``: those stay in
    their parts (see :func:`_gather_rows`), so no second copy of the bases is made."""
    return Reads(
        *(
            np.concatenate([getattr(p, f.name) for p in parts])
            if f.name not in ("seq", "qual")
            else np.empty((0, 0), dtype=np.uint8)
            for f in dataclasses.fields(Reads)[:-1]
        ),
        cigar=[c for p in parts for c in p.cigar],
    )


def _gather_rows(arrays: list[np.ndarray], offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of the virtual concatenation of ``arrays`` (first row of array k at
    ``offsets[k]``)."""
    part = np.searchsorted(offsets, rows, side="right") - 1
    local = rows - offsets[part]
    out = np.empty((rows.size, arrays[0].shape[1]), dtype=arrays[0].dtype)
    for k, arr in enumerate(arrays):
        m = part == k
        out[m] = arr[local[m]]
    return out


def write_sam_body(
    fh: BinaryIO, parts: list[Reads], sample: str, contig: str, contig_index: int
) -> None:
    """Append the reads of one contig (one part per haplotype) as SAM text, sorted by
    position (ties: haplotype, pair number, read order)."""
    reads = _concat_reads(parts)
    seq_parts = [p.seq for p in parts]
    qual_parts = [p.qual for p in parts]
    offsets = np.cumsum([0] + [p.pos.size for p in parts])[:-1]
    order = np.lexsort((np.arange(reads.pos.size), reads.pair, reads.hap, reads.pos))
    rl = seq_parts[0].shape[1]
    prefix = f"{sample}:{contig_index + 1}:".encode()
    ctg = contig.encode()
    tail = b"\tRG:Z:" + sample.encode() + b"\n"
    cig = reads.cigar
    for lo in range(0, order.size, WRITE_BLOCK):
        o = order[lo : lo + WRITE_BLOCK]
        seqs = _gather_rows(seq_parts, offsets, o).view(f"S{rl}").ravel().tolist()
        quals = _gather_rows(qual_parts, offsets, o).view(f"S{rl}").ravel().tolist()
        pos = (reads.pos[o] + 1).tolist()
        mpos = (reads.mpos[o] + 1).tolist()
        flag = reads.flag[o].tolist()
        mapq = reads.mapq[o].tolist()
        tlen = reads.tlen[o].tolist()
        hap = reads.hap[o].tolist()
        pair = reads.pair[o].tolist()
        nm = reads.nm[o].tolist()
        ol = o.tolist()
        lines = [
            b"%s%d:%d\t%d\t%s\t%d\t%d\t%s\t=\t%d\t%d\t%s\t%s\tNM:i:%d%s"
            % (
                prefix,
                hap[k],
                pair[k],
                flag[k],
                ctg,
                pos[k],
                mapq[k],
                cig[ol[k]],
                mpos[k],
                tlen[k],
                seqs[k],
                quals[k],
                nm[k],
                tail,
            )
            for k in range(len(ol))
        ]
        fh.write(b"".join(lines))
