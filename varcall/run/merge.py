"""The merge of region results into the VCF and the VCF Zarr store.

:func:`merge_checkpoints` (what a run uses, distributed or single-process) is the
parallel merge: from the checkpoints' sidecars it knows each region's rows in the
outputs, creates the store's arrays (metadata only), lets encode tasks
(:mod:`varcall.run.encode`, on the Dask workers or one after the other here) write the
store's chunks and bgzipped pieces of the VCF, then joins the pieces after the header
(a byte copy), indexes the VCF and finishes the store's metadata. :func:`write_outputs`
is the serial streaming merge of CallSets given in genomic order (one at a time, in this
process), which writes the same outputs. Both build ``calls.vcf.gz`` (+ ``.tbi``) and
``calls.vcz`` under temporary names and rename them into place at the end (on error
neither is touched); both return the records' digests per contig and per CallSet, which
the run compares with the checkpoints' sidecars.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from varcall import __version__
from varcall.core.callset import CallSet
from varcall.core.errors import VarcallError
from varcall.core.files import remove_stale_temporaries, temporary_name
from varcall.io.vcf_header import vcf_header
from varcall.io.vcf_pieces import VcfAssembler
from varcall.io.vcf_write import VcfWriter
from varcall.io.vcz import VczWriter
from varcall.io.vcz_encode import StoreLayout, create_store, finish_store
from varcall.run.encode import EncodeResult, EncodeTask, encode_range, plan_encode

__all__ = [
    "MergeResult",
    "merge_checkpoints",
    "write_outputs",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class MergeResult:
    """What :func:`write_outputs` wrote.

    contig_digests: per contig of ``contigs`` (all of them, in order), the SHA-256 of its
    records fed through :meth:`CallSet.update_digest` — equal for any region layout.
    callset_digests / callset_counts: per input CallSet, in input order.
    """

    n_variants: int
    contig_digests: dict[str, str]
    contig_counts: dict[str, int]
    callset_digests: list[str]
    callset_counts: list[int]
    vcf_path: Path
    index_path: Path | None
    vcz_path: Path
    #: seconds of the encode tasks (the parallel part; 0 for the serial writer)
    encode_seconds: float = 0.0
    #: the encode tasks run
    n_encode_tasks: int = 0


class _Tee:
    """Feed the same bytes to several hash objects."""

    def __init__(self, *hashes: Any) -> None:
        self.hashes = hashes

    def update(self, data: bytes) -> None:
        for h in self.hashes:
            h.update(data)


class _Digests:
    """The SHA-256 of the records (:meth:`CallSet.update_digest`) and the record counts,
    per contig and per CallSet, as the CallSets stream past."""

    def __init__(self, contigs: Sequence[tuple[str, int]]) -> None:
        self.contig_hash = {c: hashlib.sha256() for c, _ in contigs}
        self.contig_counts = {c: 0 for c, _ in contigs}
        self.digests: list[str] = []
        self.counts: list[int] = []

    def add(self, cs: CallSet) -> None:
        h = hashlib.sha256()
        cs.update_digest(_Tee(h, self.contig_hash[cs.contig]))
        self.digests.append(h.hexdigest())
        self.counts.append(cs.n_variants)
        self.contig_counts[cs.contig] += cs.n_variants


def _prepare(
    out_dir: str | os.PathLike,
    names: tuple[str, str],
    contigs: Sequence[tuple[str, int]],
    samples: Sequence[str],
    filter_ids: Sequence[str],
    header_kwargs: Mapping[str, Any] | None,
    format_fields: Sequence[str] | None,
    output_samples: Sequence[str] | None,
) -> tuple[Path, tuple[str, ...], tuple[str, ...] | None, list[str], str]:
    """The output folder (created; stale temporaries of ``names`` removed), the output
    sample names, the FORMAT fields, the filter ids in canonical order and the header."""
    out = Path(out_dir).absolute()  # tasks may run in another folder
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        remove_stale_temporaries(out, name)
    shown = tuple(samples) if output_samples is None else tuple(output_samples)
    fields = None if format_fields is None else tuple(format_fields)
    # canonical order, so that the outputs do not depend on the order ids were discovered in
    fids = ["PASS", *sorted(set(filter_ids) - {"PASS"})]
    kwargs = dict(header_kwargs or {})
    kwargs.setdefault("source", f"varcall {__version__}")
    header = vcf_header(contigs, shown, fids, format_fields=fields, **kwargs)
    return out, shown, fields, fids, header


def _open_writers(
    out: Path,
    vcf_name: str,
    vcz_name: str,
    header: str,
    *,
    contigs: Sequence[tuple[str, int]],
    samples: tuple[str, ...],
    filter_ids: list[str],
    max_alleles: int,
    chunk_size: int,
    compress_level: int | None,
    format_fields: tuple[str, ...] | None,
) -> tuple[VcfWriter, VczWriter]:
    """The VCF and VCF Zarr writers (both under temporary names until committed)."""
    vcf = VcfWriter(
        out / vcf_name, header, compress_level=compress_level, format_fields=format_fields
    )
    try:
        vcz = VczWriter(
            out / vcz_name,
            contigs=contigs,
            samples=samples,
            filter_ids=filter_ids,
            max_alleles=max_alleles,
            chunk_size=chunk_size,
            meta={"vcf_header": header},
            format_fields=format_fields,
        )
    except BaseException:
        vcf.abort()
        raise
    return vcf, vcz


def _write_all(
    callsets: Iterable[CallSet],
    vcf: VcfWriter,
    vcz: VczWriter,
    digests: _Digests,
    output_samples: tuple[str, ...] | None,
) -> None:
    """Stream ``callsets`` into both writers and commit them; on error abort both. The
    digests are of the CallSets as given (the checkpoints'); the writers see them with the
    samples renamed to ``output_samples`` (same order) when given."""
    try:
        for given in callsets:
            cs = given
            if output_samples is not None and cs.samples != output_samples:
                if len(cs.samples) != len(output_samples):
                    raise ValueError(f"a CallSet of {cs.contig} has another number of samples")
                cs = dataclasses.replace(cs, samples=output_samples)
            vcz.append(cs)  # checks the CallSet (contig, order, width) first
            vcf.write(cs.with_filter_ids(vcz.filter_ids))
            digests.add(given)
        vcz.finish()
        vcf.finish()
        vcz.commit()
        vcf.commit()
    except BaseException:
        vcz.abort()
        vcf.abort()
        raise


def write_outputs(
    out_dir: str | os.PathLike,
    callsets: Iterable[CallSet],
    *,
    contigs: Sequence[tuple[str, int]],
    samples: Sequence[str],
    filter_ids: Sequence[str],
    max_alleles: int,
    header_kwargs: Mapping[str, Any] | None = None,
    chunk_size: int = 10_000,
    vcf_name: str = "calls.vcf.gz",
    vcz_name: str = "calls.vcz",
    compress_level: int | None = None,
    format_fields: Sequence[str] | None = None,
    output_samples: Sequence[str] | None = None,
) -> MergeResult:
    """The streaming merge: write ``OUT/calls.vcf.gz`` (+ .tbi) and ``OUT/calls.vcz``.

    callsets: in genomic order (reference contig order, sorted by position), typically a
    generator loading ``OUT/work/*.npz`` one at a time; only the current CallSet and one
    chunk of the store are in memory. max_alleles: an upper bound of the alleles of any
    record (e.g. the widest padding of the inputs); the store's allele axes end up as wide as
    the widest record, whatever the bound — passing the largest
    :func:`varcall.io.vcz.used_max_alleles` also makes the chunk shapes independent of it.
    filter_ids: every id the inputs carry; the outputs list them as PASS, then the others
    sorted. header_kwargs: keyword arguments of :func:`varcall.io.vcf_header.vcf_header`
    (source — default "varcall VERSION" —, command_line, reference, extra_lines;
    ``##FILTER`` lines among extra_lines also describe the filters in the store). Both outputs are built under
    temporary names and renamed into place only when everything has been written; on error
    neither is touched. compress_level: the VCF's BGZF level (see
    :class:`varcall.io.vcf_write.VcfWriter`). format_fields: the per-sample FORMAT fields
    written, GT first (None: all of GT,GQ,DP,AD,PL; empty: sites-only, no sample columns nor
    ``call_*`` arrays). output_samples: the names the outputs give ``samples`` (same order,
    e.g. pseudonyms; None: ``samples``). Neither changes the returned digests, which are of
    the full CallSets.
    """
    out, names, fields, fids, header = _prepare(
        out_dir, (vcf_name, vcz_name), contigs, samples, filter_ids, header_kwargs,
        format_fields, output_samples,
    )  # fmt: skip
    digests = _Digests(contigs)
    vcf, vcz = _open_writers(
        out,
        vcf_name,
        vcz_name,
        header,
        contigs=contigs,
        samples=names,
        filter_ids=fids,
        max_alleles=max_alleles,
        chunk_size=chunk_size,
        compress_level=compress_level,
        format_fields=fields,
    )
    _write_all(callsets, vcf, vcz, digests, names)
    return MergeResult(
        n_variants=vcz.n_variants,
        contig_digests={c: h.hexdigest() for c, h in digests.contig_hash.items()},
        contig_counts=digests.contig_counts,
        callset_digests=digests.digests,
        callset_counts=digests.counts,
        vcf_path=vcf.path,
        index_path=vcf.index_path,
        vcz_path=vcz.path,
    )


# ----------------------------------------------------------------------------- parallel
def _run_encode(
    tasks: Sequence[EncodeTask],
    layout: StoreLayout,
    vcf: VcfAssembler,
    fields: tuple[str, ...] | None,
    compress_level: int | None,
    client: Any,
    retries: int,
) -> list[EncodeResult]:
    """Run the encode tasks: on ``client`` (Dask) or, without one, here one after the
    other; results in task order. A failed task cancels the others and raises its error."""
    kwargs = {"format_fields": fields, "compress_level": compress_level}
    pieces = [str(vcf.piece_path(t.index)) for t in tasks]
    if client is None:
        return [encode_range(t, layout, p, **kwargs) for t, p in zip(tasks, pieces)]
    from distributed import as_completed, wait

    token = uuid.uuid4().hex[:12]  # Dask keys unique per call, even on a shared scheduler
    futures = client.map(
        encode_range,
        list(tasks),
        [layout] * len(tasks),
        pieces,
        key=[f"varcall-encode-{token}-{t.index}" for t in tasks],
        retries=retries,
        pure=False,
        **kwargs,
    )
    results: dict[int, EncodeResult] = {}
    try:
        for fut in as_completed(futures):
            if fut.status != "finished":
                # the others finish first: a task still running could write into the
                # temporaries after they were removed
                wait(futures)
                raise fut.exception()
            result = fut.result()
            results[result.index] = result
    except BaseException:
        client.cancel(futures)
        raise
    return [results[t.index] for t in tasks]


def _encode_error(e: Exception, vcz: Path) -> VarcallError:
    """The one-line error of a failed encode task."""
    if isinstance(e, VarcallError):
        return e
    msg = " ".join(f"{type(e).__name__}: {e}".split())
    return VarcallError(
        f"{vcz}: writing the outputs failed ({msg}); nothing was written, fix the cause "
        "and rerun with --resume"
    )


def _collect(
    results: Sequence[EncodeResult], contigs: Sequence[tuple[str, int]], n_units: int
) -> tuple[dict[str, str], list[str]]:
    """The contig digests (every contig of ``contigs``) and the units' digests."""
    hashes = {c: hashlib.sha256() for c, _ in contigs}
    units: dict[int, str] = {}
    for r in results:
        for contig, records in r.record_digests:
            hashes[contig].update(records)
        units.update(r.unit_digests)
    return {c: h.hexdigest() for c, h in hashes.items()}, [units[i] for i in range(n_units)]


def _commit_store(tmp: Path, path: Path) -> None:
    """Rename the finished store ``tmp`` onto ``path`` (replacing an existing one)."""
    old = None
    if path.exists():
        old = temporary_name(path, "old")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def merge_checkpoints(
    out_dir: str | os.PathLike,
    sidecars: Sequence[Mapping[str, Any]],
    work: str | os.PathLike,
    *,
    contigs: Sequence[tuple[str, int]],
    samples: Sequence[str],
    filter_ids: Sequence[str],
    max_alleles: int,
    header_kwargs: Mapping[str, Any] | None = None,
    chunk_size: int = 10_000,
    compress_level: int | None = None,
    format_fields: Sequence[str] | None = None,
    output_samples: Sequence[str] | None = None,
    client: Any = None,
    n_tasks: int | None = None,
    retries: int = 0,
) -> MergeResult:
    """The parallel merge of the checkpoints ``WORK/<key>.npz`` of ``sidecars`` (genomic
    order; their ``n_variants`` and ``digest`` are trusted for the layout and checked by
    the tasks) into ``OUT/calls.vcf.gz`` (+ index) and ``OUT/calls.vcz``: the same
    outputs and digests as :func:`write_outputs` of the loaded CallSets, with the same
    keyword arguments. client: a Dask client whose workers run the encode tasks (None:
    here, one after the other); n_tasks: at most this many tasks (default: four per
    worker thread, one without a client); retries: Dask retries per task. Raises
    :class:`VarcallError` (one line) when a task fails; nothing is put in place then."""
    out, names, fields, fids, header = _prepare(
        out_dir, ("calls.vcf.gz", "calls.vcz"), contigs, samples, filter_ids, header_kwargs,
        format_fields, output_samples,
    )  # fmt: skip
    counts = [int(s["n_variants"]) for s in sidecars]
    index = {c: i for i, (c, _) in enumerate(contigs)}
    order = [index[str(s["contig"])] for s in sidecars]
    if any(b < a for a, b in zip(order, order[1:])):
        raise ValueError("the checkpoints must come in reference contig order")
    layout = StoreLayout(
        str(temporary_name(out / "calls.vcz")), tuple((str(c), int(n)) for c, n in contigs),
        names, tuple(fids), max(2, int(max_alleles)), int(chunk_size), sum(counts), fields,
    )  # fmt: skip
    if n_tasks is None:
        n_tasks = 1 if client is None else 4 * max(1, sum(client.nthreads().values()))
    tasks = plan_encode(
        [str(Path(work).absolute() / f"{s['key']}.npz") for s in sidecars],
        counts, [str(s["digest"]) for s in sidecars], layout.chunk_size, n_tasks,
    )  # fmt: skip
    meta = {"vcf_header": header}
    vcf = VcfAssembler(out / "calls.vcf.gz", header, compress_level=compress_level)
    try:
        create_store(layout, meta)
        t0 = time.time()
        try:
            results = _run_encode(tasks, layout, vcf, fields, compress_level, client, retries)
        except Exception as e:
            raise _encode_error(e, out / "calls.vcz") from e
        encode_seconds = time.time() - t0
        finish_store(
            layout, meta, [row for r in results for row in r.region_index_rows],
            max(r.used_alleles for r in results), any(r.mixed_ploidy for r in results),
        )  # fmt: skip
        vcf.finish(len(tasks), [r.index_entries for r in results])
        _commit_store(Path(layout.path), out / "calls.vcz")
        vcf.commit()
    except BaseException:
        vcf.abort()
        shutil.rmtree(layout.path, ignore_errors=True)
        raise
    return _result(results, sidecars, counts, contigs, vcf, out, encode_seconds)


def _result(
    results: Sequence[EncodeResult],
    sidecars: Sequence[Mapping[str, Any]],
    counts: Sequence[int],
    contigs: Sequence[tuple[str, int]],
    vcf: VcfAssembler,
    out: Path,
    encode_seconds: float,
) -> MergeResult:
    """What :func:`merge_checkpoints` wrote, from its tasks' results."""
    contig_digests, unit_digests = _collect(results, contigs, len(sidecars))
    contig_counts = {c: 0 for c, _ in contigs}
    for s, n in zip(sidecars, counts):
        contig_counts[str(s["contig"])] += n
    return MergeResult(
        n_variants=sum(counts),
        contig_digests=contig_digests,
        contig_counts=contig_counts,
        callset_digests=unit_digests,
        callset_counts=list(counts),
        vcf_path=vcf.path,
        index_path=vcf.index_path,
        vcz_path=out / "calls.vcz",
        encode_seconds=round(encode_seconds, 6),
        n_encode_tasks=len(results),
    )
