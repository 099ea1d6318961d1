"""The streaming merge of region results into the VCF and the VCF Zarr store.

:func:`write_outputs` takes the units' CallSets in genomic order, one at a time, writes
``calls.vcf.gz`` (+ ``.tbi``) and ``calls.vcz`` under temporary names and renames both into
place at the end; it returns the records' digests per contig and per CallSet, which the
run compares with the checkpoints' sidecars.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from varcall import __version__
from varcall.core.callset import CallSet
from varcall.core.files import remove_stale_temporaries
from varcall.io.vcf_header import vcf_header
from varcall.io.vcf_write import VcfWriter
from varcall.io.vcz import VczWriter

__all__ = [
    "MergeResult",
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
    index_path: Path
    vcz_path: Path


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
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in (vcf_name, vcz_name):
        remove_stale_temporaries(out, name)
    samples = tuple(samples)
    renamed = None if output_samples is None else tuple(output_samples)
    fields = None if format_fields is None else tuple(format_fields)
    # canonical order, so that the outputs do not depend on the order ids were discovered in
    fids = ["PASS", *sorted(set(filter_ids) - {"PASS"})]
    kwargs = dict(header_kwargs or {})
    kwargs.setdefault("source", f"varcall {__version__}")
    header = vcf_header(contigs, renamed or samples, fids, format_fields=fields, **kwargs)
    digests = _Digests(contigs)
    vcf, vcz = _open_writers(
        out,
        vcf_name,
        vcz_name,
        header,
        contigs=contigs,
        samples=renamed or samples,
        filter_ids=fids,
        max_alleles=max_alleles,
        chunk_size=chunk_size,
        compress_level=compress_level,
        format_fields=fields,
    )
    _write_all(callsets, vcf, vcz, digests, renamed or samples)
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
