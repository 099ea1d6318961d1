"""Reads of one window -> :class:`ReadBatch` (flat numpy columns), and mate-overlap masking.

:func:`fetch_reads` decodes every read overlapping ``contig:[start, end)`` (0-based
half-open) from every BAM/CRAM (indexed BAM through the numba decoder of
:mod:`varcall.io.bam`, anything else through pysam), applies the read filters, assigns
each read to a sample by its ``@RG SM`` and records the overlapping mate pairs;
:func:`mask_mate_overlaps` then counts each reference base covered by both mates once
(see :mod:`varcall.engines.native.pileup`). Kernels: :mod:`.reads_numba_fns`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pysam

from varcall.core.errors import InputError
from varcall.engines.native.pileup import encode_bases
from varcall.engines.native.reads_numba_fns import mask_pairs, parse_cigars
from varcall.io import bam as _bam
from varcall.io import handles as _handles

__all__ = ["ReadBatch", "fetch_reads", "mask_mate_overlaps"]

logger = logging.getLogger(__name__)

# CIGAR operation letter -> BAM code ("MIDNSHP=X" -> 0..8, anything else 255)
_CIGAR_CODES = np.full(256, 255, np.uint8)
for _i, _c in enumerate(b"MIDNSHP=X"):
    _CIGAR_CODES[_c] = _i

_FILTER_FLAGS = 0x4 | 0x100 | 0x200 | 0x400  # unmapped, secondary, QC fail, duplicate
_SUPPLEMENTARY = 0x800
_UNKNOWN_RG = (
    "{path}: a read on {contig} has a read group without an @RG SM header line; "
    "fix the header with 'samtools addreplacerg'"
)


@dataclasses.dataclass
class ReadBatch:
    """Reads of one window, columnar. R reads; Q bases in all; C CIGAR ops in all.

    start/end: (R,) int64 0-based reference span ``[start, end)`` of the alignment.
    mapq, flag, sample: (R,) int32. qoff: (R,) int64 offset of the read in bases/quals;
    qlen: (R,) int32. coff: (R,) int64 offset in cig_op/cig_len; cn: (R,) int32 op count.
    bases: (Q,) uint8 codes; quals: (Q,) uint8 phred after mate-overlap masking (0 =
    masked: the base is counted through the other mate); raw_quals: (Q,) uint8 phred as
    read. Masked qualities are only consulted at the position being counted (where both
    mates are fetched); comparisons of read stretches use raw_quals. cig_op: (C,) uint8;
    cig_len: (C,) int32. pairs: (K, 2) int64 read indexes of overlapping mates
    (first mate, second mate).
    """

    start: np.ndarray
    end: np.ndarray
    mapq: np.ndarray
    flag: np.ndarray
    sample: np.ndarray
    qoff: np.ndarray
    qlen: np.ndarray
    coff: np.ndarray
    cn: np.ndarray
    bases: np.ndarray
    quals: np.ndarray
    raw_quals: np.ndarray
    cig_op: np.ndarray
    cig_len: np.ndarray
    pairs: np.ndarray

    @property
    def n_reads(self) -> int:
        return int(self.start.shape[0])

    def mates(self) -> tuple[np.ndarray, np.ndarray]:
        """(mate (R,) int64: the index of the read's overlapping mate or -1; first (R,)
        bool: the read is the first mate of such a pair) from :attr:`pairs`."""
        mate = np.full(self.n_reads, -1, np.int64)
        first = np.zeros(self.n_reads, bool)
        if self.pairs.shape[0]:
            mate[self.pairs[:, 0]] = self.pairs[:, 1]
            mate[self.pairs[:, 1]] = self.pairs[:, 0]
            first[self.pairs[:, 0]] = True
        return mate, first

    @classmethod
    def concatenate(cls, parts: Sequence[ReadBatch]) -> ReadBatch:
        """One batch of the reads of ``parts``, in order (offsets and pair indexes shifted).
        When every part's ``quals`` is its ``raw_quals`` (fresh from a decoder), so is the
        result's: one copy less of the largest column."""
        if len(parts) == 1:
            return parts[0]
        qshift = np.cumsum([0] + [p.bases.shape[0] for p in parts[:-1]])
        cshift = np.cumsum([0] + [p.cig_op.shape[0] for p in parts[:-1]])
        rshift = np.cumsum([0] + [p.n_reads for p in parts[:-1]])
        cat = np.concatenate
        raw = cat([p.raw_quals for p in parts])
        fresh = all(p.quals is p.raw_quals for p in parts)
        return cls(
            start=cat([p.start for p in parts]),
            end=cat([p.end for p in parts]),
            mapq=cat([p.mapq for p in parts]),
            flag=cat([p.flag for p in parts]),
            sample=cat([p.sample for p in parts]),
            qoff=cat([p.qoff + s for p, s in zip(parts, qshift)]),
            qlen=cat([p.qlen for p in parts]),
            coff=cat([p.coff + s for p, s in zip(parts, cshift)]),
            cn=cat([p.cn for p in parts]),
            bases=cat([p.bases for p in parts]),
            quals=raw if fresh else cat([p.quals for p in parts]),
            raw_quals=raw,
            cig_op=cat([p.cig_op for p in parts]),
            cig_len=cat([p.cig_len for p in parts]),
            pairs=cat([p.pairs + s for p, s in zip(parts, rshift)]).reshape(-1, 2),
        )

    @classmethod
    def empty(cls) -> ReadBatch:
        """A batch without reads."""
        z64 = np.zeros(0, np.int64)
        z32 = np.zeros(0, np.int32)
        return cls(
            start=z64,
            end=z64.copy(),
            mapq=z32,
            flag=z32.copy(),
            sample=z32.copy(),
            qoff=z64.copy(),
            qlen=z32.copy(),
            coff=z64.copy(),
            cn=z32.copy(),
            bases=np.zeros(0, np.uint8),
            quals=np.zeros(0, np.uint8),
            raw_quals=np.zeros(0, np.uint8),
            cig_op=np.zeros(0, np.uint8),
            cig_len=z32.copy(),
            pairs=np.zeros((0, 2), np.int64),
        )


#: The per-read, per-base and per-CIGAR-op columns of a ReadBatch (``raw_quals`` and
#: ``pairs`` aside), as :class:`varcall.io.bam.ReadColumns` fills them.
_BATCH_COLUMNS = tuple(
    f for f in dataclasses.fields(ReadBatch) if f.name not in ("raw_quals", "pairs")
)


def _sample_maps(
    header: dict, path: str, sample_index: dict[str, int]
) -> tuple[int, dict[str, int]]:
    """(default sample index or -1, RG ID -> sample index) of one alignment file."""
    rgs = header.get("RG", [])
    by_rg: dict[str, int] = {}
    sms = []
    for rg in rgs:
        sm = rg.get("SM")
        if sm is None:
            continue
        if sm not in sample_index:
            raise InputError(
                f"{path}: sample {sm!r} (read group {rg.get('ID')}) is not among the run's "
                "samples; resolve inputs again from these BAM files"
            )
        by_rg[rg["ID"]] = sample_index[sm]
        if sm not in sms:
            sms.append(sm)
    if len(sms) <= 1:
        if sms:
            return sample_index[sms[0]], by_rg
        # no SM: the file is one sample named after the file (see varcall.plan.inputs)
        name = Path(path).name.split(".")[0]
        if name not in sample_index:
            raise InputError(
                f"{path}: no @RG SM and no sample named {name!r} in the run; add read groups "
                "with 'samtools addreplacerg'"
            )
        return sample_index[name], by_rg
    return -1, by_rg


@functools.lru_cache(maxsize=16384)  # small; one per file version of a cohort
def _header_info(path: str, reference: str, mtime: float) -> tuple[tuple[str, ...], dict]:
    with pysam.AlignmentFile(path, reference_filename=reference, check_sq=False) as f:
        return tuple(f.references), {"RG": f.header.to_dict().get("RG", [])}


def fetch_reads(
    bams: Sequence[str],
    reference: str,
    sample_index: dict[str, int] | Sequence[dict[str, int]],
    contig: str,
    start: int,
    end: int,
    *,
    min_mapq: int,
    include_supplementary: bool,
    fast: bool = True,
) -> ReadBatch:
    """Decode every read overlapping ``contig:[start, end)`` (0-based half-open) from all
    files into one :class:`ReadBatch`, with overlapping mate pairs recorded.

    Reads are in file order, files in the given order. Reads failing the flag or MAPQ
    filters are dropped; reads of a read group outside ``sample_index`` raise InputError.
    ``sample_index`` maps SM -> output column, for all files or one mapping per file.
    Indexed BAM files (``.bai``) are decoded by :mod:`varcall.io.bam` unless ``fast`` is
    False; CRAM and other files go through pysam. Both give the same batch.
    """
    drop = _FILTER_FLAGS | (0 if include_supplementary else _SUPPLEMENTARY)
    # every file's reads decoded in place after the previous file's (no concatenation)
    out = _bam.ReadColumns(len(bams))
    # one SM -> column mapping for all files, or one per file (varcall.plan.inputs.sample_columns:
    # needed when a name repeats across files and the run renamed the copies)
    per_file = not isinstance(sample_index, dict)
    for i, path in enumerate(bams):
        refs, header = _header_info(path, reference, os.path.getmtime(path))
        file_index = sample_index[i] if per_file else sample_index
        default, by_rg = _sample_maps(header, path, file_index)
        if contig not in refs:
            continue
        query = _FileQuery(path, contig, start, end, drop, min_mapq, default, by_rg)
        if not (fast and _fetch_bam(query, refs.index(contig), out)):
            part = _fetch_pysam(query, reference)
            out.append({f.name: getattr(part, f.name) for f in _BATCH_COLUMNS}, part.pairs)
    if out.n == 0:
        return ReadBatch.empty()
    cols = out.arrays()
    batch = ReadBatch(**cols, raw_quals=cols["quals"])
    # the decoder's quals are raw_quals; the mate-overlap mask writes quals
    batch.quals = batch.raw_quals.copy()
    pair_arr, flag_arr = batch.pairs, batch.flag
    if pair_arr.shape[0]:
        # order each pair (first mate, second mate); a pair without a clear first mate
        # keeps file order
        swap = ((flag_arr[pair_arr[:, 1]] & 0x40) != 0) & ((flag_arr[pair_arr[:, 0]] & 0x40) == 0)
        pair_arr[swap] = pair_arr[swap][:, ::-1]
    return batch


@dataclasses.dataclass(frozen=True)
class _FileQuery:
    """The reads wanted from one alignment file: those overlapping ``contig:[start, end)``
    (0-based half-open) without a flag of ``drop`` and with MAPQ >= ``min_mapq``; their
    sample column is ``default`` (-1: by read group through ``by_rg``)."""

    path: str
    contig: str
    start: int
    end: int
    drop: int
    min_mapq: int
    default: int
    by_rg: dict[str, int]


def _fetch_bam(query: _FileQuery, tid: int, out: _bam.ReadColumns) -> bool:
    """Add the reads of one indexed BAM file (``tid``: the contig's index in its header)
    to ``out`` through :func:`varcall.io.bam.fetch_into`; False, adding nothing, when that
    decoder cannot read the file (the caller falls back to pysam)."""
    bad = _bam.fetch_into(
        query.path,
        tid,
        query.start,
        query.end,
        out,
        drop_flags=query.drop,
        min_mapq=query.min_mapq,
        default_sample=query.default,
        rg_to_sample=query.by_rg,
    )
    if bad is None:
        return False
    if bad >= 0:
        raise InputError(_UNKNOWN_RG.format(path=query.path, contig=query.contig))
    return True


@dataclasses.dataclass
class _PysamColumns:
    """Per-read lists gathered from pysam records, turned into a ReadBatch by :meth:`batch`."""

    starts: list[int] = dataclasses.field(default_factory=list)
    ends: list[int] = dataclasses.field(default_factory=list)
    mapqs: list[int] = dataclasses.field(default_factory=list)
    flags: list[int] = dataclasses.field(default_factory=list)
    samples: list[int] = dataclasses.field(default_factory=list)
    qlens: list[int] = dataclasses.field(default_factory=list)
    seqs: list[str] = dataclasses.field(default_factory=list)
    quals: list = dataclasses.field(default_factory=list)
    cigars: list[str] = dataclasses.field(default_factory=list)
    pairs: list[tuple[int, int]] = dataclasses.field(default_factory=list)

    def add(self, r: pysam.AlignedSegment, seq: str, sample: int) -> None:
        """Append read ``r`` (its query sequence ``seq``) of column ``sample``."""
        self.samples.append(sample)
        q = r.query_qualities
        self.quals.append(q if q is not None else b"\x1e" * len(seq))
        self.seqs.append(seq)
        self.cigars.append(r.cigarstring)
        self.starts.append(r.reference_start)
        self.ends.append(r.reference_end)
        self.mapqs.append(r.mapping_quality)
        self.flags.append(r.flag)
        self.qlens.append(len(seq))

    def batch(self) -> ReadBatch:
        n = len(self.starts)
        if n == 0:
            return ReadBatch.empty()
        qlen = np.array(self.qlens, np.int32)
        qoff = np.zeros(n, np.int64)
        np.cumsum(qlen[:-1], out=qoff[1:])
        text = np.frombuffer(";".join(self.cigars).encode("ascii") + b";", np.uint8)
        ops, lens, coff, cn = parse_cigars(text, _CIGAR_CODES, n)
        raw_quals = np.frombuffer(b"".join(self.quals), np.uint8)
        return ReadBatch(
            start=np.array(self.starts, np.int64),
            end=np.array(self.ends, np.int64),
            mapq=np.array(self.mapqs, np.int32),
            flag=np.array(self.flags, np.int32),
            sample=np.array(self.samples, np.int32),
            qoff=qoff,
            qlen=qlen,
            coff=coff,
            cn=cn,
            bases=encode_bases("".join(self.seqs)),
            quals=raw_quals,
            raw_quals=raw_quals,
            cig_op=ops,
            cig_len=lens,
            pairs=np.array(self.pairs, np.int64).reshape(-1, 2),
        )


#: CIGAR ops that consume reference bases (M, D, N, =, X).
_REF_OPS = frozenset((0, 2, 3, 7, 8))


def _kept_sequence(r: pysam.AlignedSegment, drop: int, min_mapq: int) -> str | None:
    """The query sequence of ``r`` if the read passes the filters (flags, MAPQ, a
    sequence, a CIGAR that consumes reference bases), else None.

    A read whose CIGAR consumes no reference base (``151I``, ``151S``, ``2S40I33S``,
    ``7P2I2P``) has no base aligned anywhere, so it can give no evidence; it is dropped
    here as in the fast decoder (:mod:`varcall.io.bam`). htslib reports such a read as
    spanning one base (``reference_end == reference_start + 1``), hence the CIGAR check."""
    if r.flag & drop:
        return None
    if r.mapping_quality < min_mapq:
        return None
    seq = r.query_sequence
    if not seq:
        return None
    re_ = r.reference_end
    if re_ is None or re_ <= r.reference_start:
        return None
    if re_ == r.reference_start + 1 and not any(op in _REF_OPS for op, _ in r.cigartuples):
        return None
    return seq


def _pair_mate(
    r: pysam.AlignedSegment, idx: int, open_mates: dict[str, int], pairs: list[tuple[int, int]]
) -> None:
    """Record read ``idx`` (``r``) as waiting for a mate that starts inside it, or close
    the pair with its earlier mate (pairs: (earlier read, later read) indexes)."""
    flag = r.flag
    if flag & 0x1 and not flag & 0x8 and r.next_reference_id == r.reference_id:
        rs, re_ = r.reference_start, r.reference_end
        ns = r.next_reference_start
        if rs <= ns < re_:
            # the mate starts inside this read: it may overlap it
            if ns == rs:
                mate = open_mates.pop(r.query_name, -1)
                if mate >= 0:
                    pairs.append((mate, idx))
                else:
                    open_mates[r.query_name] = idx
            else:
                open_mates[r.query_name] = idx
        elif ns < rs:
            mate = open_mates.pop(r.query_name, -1)
            if mate >= 0:
                pairs.append((mate, idx))


def _open_alignment(path: str, reference: str) -> pysam.AlignmentFile:
    return pysam.AlignmentFile(path, reference_filename=reference)


def _fetch_pysam(query: _FileQuery, reference: str) -> ReadBatch:
    """The reads of one file through pysam (CRAM, unindexed-by-BAI files, tests)."""
    path, contig, default, by_rg = query.path, query.contig, query.default, query.by_rg
    cols = _PysamColumns()
    # the worker's open file (and loaded index) of this file version: varcall.io.handles
    opener = functools.partial(_open_alignment, reference=reference)
    with _handles.checkout(path, opener, ("aln", reference)) as f:
        open_mates: dict[str, int] = {}
        try:
            reads = f.fetch(contig, query.start, query.end)
        except ValueError as e:
            raise InputError(
                f"{path}: cannot fetch reads by region ({e}); index it with 'samtools index {path}'"
            ) from None
        for r in reads:
            seq = _kept_sequence(r, query.drop, query.min_mapq)
            if seq is None:
                continue
            idx = len(cols.starts)
            if default >= 0:
                sample = default
            else:
                rg = r.get_tag("RG") if r.has_tag("RG") else None
                if rg not in by_rg:
                    raise InputError(_UNKNOWN_RG.format(path=path, contig=contig))
                sample = by_rg[rg]
            cols.add(r, seq, sample)
            _pair_mate(r, idx, open_mates, cols.pairs)
    return cols.batch()


def mask_mate_overlaps(batch: ReadBatch) -> None:
    """Count each reference base covered by both mates of a pair once, in place: the base
    with the lower quality gets quality 0 (ties: the second mate's)."""
    if batch.pairs.shape[0]:
        mask_pairs(
            batch.pairs,
            batch.start,
            batch.end,
            batch.qoff,
            batch.coff,
            batch.cn,
            batch.cig_op,
            batch.cig_len,
            batch.quals,
        )
