"""The encode tasks of the parallel merge: region checkpoints -> VCF Zarr chunks + VCF pieces.

bio2zarr's explode/encode split, with the region checkpoints (``OUT/work/<key>.npz``) as
the exploded intermediate. The client knows every checkpoint's record count from its
sidecar, hence each region's first row in the outputs (:func:`plan_encode`); the rows
are cut into ranges of whole variants-chunks, one :class:`EncodeTask` each. A task
(:func:`encode_range`, on a Dask worker or in the client) loads the checkpoints covering
its range one at a time, checks each against its sidecar (record count and digest),
writes the store's chunks of its range (:class:`varcall.io.vcz_encode.ChunkEncoder`) and
its records as one BGZF piece of the VCF (:class:`varcall.io.vcf_pieces.PieceWriter`),
and returns what the client needs to finish: ``region_index`` rows, the widest record,
mixed ploidy, the records' digests (per contig, in order), the digests of the
checkpoints it owns and its records' tabix entries (so the client indexes the VCF without
reading it back). A task rewrites the same files on a retry.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from varcall.core.callset import CallSet, load_callset
from varcall.core.errors import VarcallError
from varcall.io.vcf_index import IndexEntries
from varcall.io.vcf_pieces import PieceWriter
from varcall.io.vcz_encode import ChunkEncoder, StoreLayout

__all__ = ["EncodeTask", "EncodeResult", "UnitRows", "plan_encode", "encode_range"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class UnitRows:
    """One checkpoint as a task sees it: its index among the run's units, its ``.npz``
    path, its first row in the outputs, its record count and digest (the sidecar's)."""

    index: int
    path: str
    offset: int
    n_variants: int
    digest: str


@dataclasses.dataclass(frozen=True)
class EncodeTask:
    """Rows ``[start, stop)`` of the outputs (whole chunks: ``chunks``), from ``units``
    (those with rows there, and the empty ones it owns), into piece ``index`` of the VCF.
    ``owns``: the unit indexes whose digests this task reports (each unit is owned by
    exactly one task)."""

    index: int
    start: int
    stop: int
    chunks: tuple[int, ...]
    units: tuple[UnitRows, ...]
    owns: frozenset[int]


@dataclasses.dataclass
class EncodeResult:
    """What a task wrote: ``region_index`` rows (chunk order), the widest record, whether
    a haploid call pads with FILL, (contig, record digests) runs in row order, the owned
    units' digests (unit index -> hex), its seconds and peak RSS (MiB), and its piece's
    tabix entries (:mod:`varcall.io.vcf_index`)."""

    index: int
    region_index_rows: list[tuple[int, int, int, int, int, int]]
    used_alleles: int
    mixed_ploidy: bool
    record_digests: list[tuple[str, bytes]]
    unit_digests: dict[int, str]
    seconds: float
    peak_rss_mb: float
    index_entries: IndexEntries


def plan_encode(
    paths: Sequence[str],
    counts: Sequence[int],
    digests: Sequence[str],
    chunk_size: int,
    n_tasks: int,
) -> list[EncodeTask]:
    """The encode tasks of units (checkpoint ``paths`` with their sidecars' record
    ``counts`` and ``digests``, in genomic order): at most ``n_tasks`` tasks of
    contiguous whole chunks (at least one task, also without records). A unit belongs
    to the task holding its first row (an empty one: the task whose range holds its
    offset, the last task at the end)."""
    offsets = [0]
    for n in counts:
        offsets.append(offsets[-1] + int(n))
    total = offsets[-1]
    n_chunks = -(-total // chunk_size)
    n_tasks = max(1, min(int(n_tasks), n_chunks))
    per = -(-n_chunks // n_tasks) if n_chunks else 0
    n_tasks = -(-n_chunks // per) if n_chunks else 1  # no task without chunks
    units = [
        UnitRows(i, str(p), offsets[i], int(n), str(d))
        for i, (p, n, d) in enumerate(zip(paths, counts, digests))
    ]
    starts = offsets[:-1]  # each unit's first row, non-decreasing
    tasks = []
    for t in range(n_tasks):
        chunks = tuple(range(t * per, min(n_chunks, (t + 1) * per)))
        start = min(total, t * per * chunk_size)
        last = t == n_tasks - 1
        stop = total if last else min(total, (t + 1) * per * chunk_size)
        # owned: the units whose first row is in [start, stop) (the last task: also the
        # empty ones at the end); before them at most one unit runs into the range
        lo = bisect.bisect_left(starts, start)
        hi = len(units) if last else bisect.bisect_left(starts, stop)
        mine = list(units[lo:hi])
        if lo and units[lo - 1].offset + units[lo - 1].n_variants > start:
            mine.insert(0, units[lo - 1])
        tasks.append(EncodeTask(t, start, stop, chunks, tuple(mine), frozenset(range(lo, hi))))
    return tasks


def _load(unit: UnitRows) -> tuple[CallSet, bytes]:
    """The unit's CallSet and its record digests, checked against its sidecar."""
    path = Path(unit.path)
    try:
        cs = load_callset(path)
    except (OSError, ValueError, KeyError) as e:
        raise VarcallError(
            f"{path}: checkpoint cannot be read ({e}); delete it and rerun with --resume"
        ) from e
    records = cs.record_digests()
    if cs.n_variants != unit.n_variants or hashlib.sha256(records).hexdigest() != unit.digest:
        raise VarcallError(
            f"{path}: content differs from its sidecar digest; delete OUT/work and run again"
        )
    return cs, records


def _slices(
    task: EncodeTask, digests: dict[int, str], runs: list[tuple[str, bytes]]
) -> Iterator[CallSet]:
    """The task's records as pieces of its units, in order (units loaded one at a time
    and checked); owned units' digests go into ``digests``, the records' into ``runs``."""
    for unit in task.units:
        cs, records = _load(unit)
        if unit.index in task.owns:
            digests[unit.index] = hashlib.sha256(records).hexdigest()
        lo = max(task.start, unit.offset) - unit.offset
        hi = min(task.stop, unit.offset + unit.n_variants) - unit.offset
        if hi <= lo:
            continue
        part = records[32 * lo : 32 * hi]
        if runs and runs[-1][0] == cs.contig:
            runs[-1] = (cs.contig, runs[-1][1] + part)
        else:
            runs.append((cs.contig, part))
        yield cs if (lo, hi) == (0, cs.n_variants) else cs.take(slice(lo, hi))


def _chunks(
    task: EncodeTask, chunk_size: int, pieces: Iterator[CallSet]
) -> Iterator[tuple[int, list[CallSet]]]:
    """(chunk, its records as CallSet pieces, in order) for every chunk of the task; every
    piece is consumed (empty units are checked too)."""
    parts: list[CallSet] = []
    have = 0
    k = 0
    for cs in pieces:
        lo = 0
        while lo < cs.n_variants:
            chunk = task.chunks[k]
            size = min(chunk_size, task.stop - chunk * chunk_size)
            take = min(size - have, cs.n_variants - lo)
            whole = lo == 0 and take == cs.n_variants
            parts.append(cs if whole else cs.take(slice(lo, lo + take)))
            have += take
            lo += take
            if have == size:
                yield chunk, parts
                parts, have, k = [], 0, k + 1


def encode_range(
    task: EncodeTask,
    layout: StoreLayout,
    piece: str,
    *,
    format_fields: tuple[str, ...] | None,
    compress_level: int | None,
) -> EncodeResult:
    """Run one encode task: the store's chunks ``task.chunks`` and VCF piece ``piece``
    (BGZF blocks, no EOF block). Raises :class:`VarcallError` for a checkpoint that
    cannot be read or differs from its sidecar."""
    from varcall.run.tasks import peak_rss_mb

    t0 = time.time()
    encoder = ChunkEncoder(layout)
    writer = PieceWriter(piece, compress_level=compress_level, format_fields=format_fields)
    digests: dict[int, str] = {}
    runs: list[tuple[str, bytes]] = []
    rows: list[tuple[int, int, int, int, int, int]] = []
    try:
        for chunk, parts in _chunks(task, layout.chunk_size, _slices(task, digests, runs)):
            rows.extend(encoder.write(chunk, parts))
            for part in parts:
                writer.write(part.with_filter_ids(layout.filter_ids))
        writer.close()
        entries = writer.index_entries()
    except BaseException:
        writer.abort()
        raise
    return EncodeResult(
        task.index,
        rows,
        encoder.used_alleles,
        encoder.mixed_ploidy,
        runs,
        digests,
        round(time.time() - t0, 6),
        peak_rss_mb(),
        entries,
    )
