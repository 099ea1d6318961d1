"""VCF Zarr output: :class:`VczWriter` streams CallSets (genomic order) into a VCF Zarr
store — Zarr format 2, VCF Zarr spec 0.4, sgkit's conventions — holding at most one chunk
of variants in memory. The merge (:func:`varcall.run.merge.write_outputs`) feeds it the
same CallSets as the VCF writer.

The arrays (names, dims, dtypes, codecs, descriptions, sentinels, where their values come
from) are declared once in :data:`varcall.io.vcz_spec.VCZ_ARRAYS`. Every variants-axis
array has the same chunk size. Every array has ``_ARRAY_DIMENSIONS`` (and the variant/call
ones a ``description``); ``call_genotype`` has ``mixed_ploidy`` (True when a haploid call
pads with -2). Root attributes: ``vcf_zarr_version`` "0.4", ``source``, ``vcf_header`` and
``vcf_meta_information`` (its ``##key=value`` lines); metadata is consolidated.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from varcall import __version__
from varcall.core.callset import FILL, CallSet, n_genotypes
from varcall.core.files import temporary_name
from varcall.io.staged import StagedWriter
from varcall.io.vcf_header import FILTER_DESCRIPTIONS, header_filter_descriptions
from varcall.io.vcz_spec import (
    ALLELE_DIMS,
    VCZ_ARRAYS,
    ArraySpec,
    CallSetRows,
    allele_dim_sizes,
    array_dtype,
    format_field_of,
)

__all__ = [
    "VCF_ZARR_VERSION",
    "VczWriter",
    "chunk_region_index",
    "filter_description_texts",
    "root_attributes",
    "used_max_alleles",
]

logger = logging.getLogger(__name__)

VCF_ZARR_VERSION = "0.4"
_APPENDED = tuple(spec for spec in VCZ_ARRAYS if spec.written == "append")


def _blosc(shuffle: str) -> Any:
    from numcodecs import Blosc

    mode = {"byte": Blosc.SHUFFLE, "bit": Blosc.BITSHUFFLE, "none": Blosc.NOSHUFFLE}[shuffle]
    return Blosc(cname="zstd", clevel=7, shuffle=mode)


def _create_array(
    root: Any,
    spec: ArraySpec,
    dtype: np.dtype,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    data: np.ndarray | None = None,
) -> Any:
    """Create ``spec``'s array in ``root`` (with ``data`` when given) and its attributes."""
    import numcodecs

    kwargs: dict[str, Any] = {}
    if data is not None:
        kwargs["data"] = data
    if dtype == np.dtype(object):
        kwargs["object_codec"] = numcodecs.VLenUTF8()
    arr = root.create_dataset(
        spec.name,
        shape=shape,
        chunks=chunks,
        dtype=dtype,
        compressor=_blosc(spec.shuffle),
        fill_value=None,
        **kwargs,
    )
    attrs: dict[str, Any] = {"_ARRAY_DIMENSIONS": list(spec.dims)}
    if spec.description is not None:
        attrs["description"] = spec.description
    arr.attrs.update(attrs)  # one write of .zattrs, not one per key
    return arr


def filter_description_texts(
    filter_ids: Sequence[str], meta: Mapping[str, Any], given: Mapping[str, str] | None = None
) -> list[str]:
    """The ``filter_description`` texts of ``filter_ids``: ``given``, else the ``##FILTER``
    lines of ``meta["vcf_header"]``, else varcall's own, else a generic text."""
    descriptions = dict(FILTER_DESCRIPTIONS)
    header = meta.get("vcf_header")
    if isinstance(header, str):
        descriptions.update(header_filter_descriptions(header))
    descriptions.update(given or {})
    return [descriptions.get(f, f"Filter {f} set by the calling engine") for f in filter_ids]


def chunk_region_index(
    chunk: int, contig: np.ndarray, pos: np.ndarray, length: np.ndarray
) -> list[tuple[int, int, int, int, int, int]]:
    """The ``region_index`` rows of variants chunk ``chunk`` (its ``variant_contig``,
    ``variant_position`` and ``variant_length`` values): one per contig, with 1-based
    first / last POS, max end (inclusive) and the number of records."""
    end = pos + length - 1
    bounds = np.flatnonzero(np.diff(contig, append=-1))
    rows = []
    start = 0
    for stop in bounds.tolist():
        rows.append(
            (
                chunk,
                int(contig[start]),
                int(pos[start]),
                int(pos[stop]),
                int(end[start : stop + 1].max()),
                stop - start + 1,
            )
        )
        start = stop + 1
    return rows


def root_attributes(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The store's root attributes: ``vcf_zarr_version``, ``source``,
    ``vcf_meta_information`` (from ``meta["vcf_header"]``) and ``meta``."""
    attrs: dict[str, Any] = {
        "vcf_zarr_version": VCF_ZARR_VERSION,
        "source": f"varcall-{__version__}",
    }
    header = meta.get("vcf_header")
    if isinstance(header, str):
        attrs["vcf_meta_information"] = _meta_information(header)
    attrs.update(meta)
    return attrs


def _meta_information(header: str) -> list[list[str]]:
    """[key, value] for the unstructured ``##key=value`` header lines (not fileformat)."""
    out = []
    for line in header.splitlines():
        if not line.startswith("##") or "=" not in line:
            continue
        key, value = line[2:].split("=", 1)
        if key == "fileformat" or value.startswith("<"):
            continue
        out.append([key, value])
    return out


# ----------------------------------------------------------------------------- writer
class VczWriter(StagedWriter):
    """Stream CallSets into a VCF Zarr store (Zarr format 2) at ``path``.

    contigs: (name, length in bp) in reference order; CallSets must come in this order and
    sorted by position. samples: output sample order (each CallSet must have it). filter_ids:
    every filter id a CallSet may carry (PASS first). max_alleles: an upper bound of the
    alleles (REF + ALTs) of any record (a wider record is an error); on close the allele
    axes are cut to the widest record written (at least 2), so the arrays do not depend on
    the bound or on the inputs' padding. chunk_size: variants per chunk.
    meta: extra root attributes (JSON-serialisable); a ``vcf_header`` entry also fills
    ``vcf_meta_information`` and the filter descriptions. samples_chunk_size: samples per
    chunk. filter_descriptions: ``filter_description`` texts by id (default: varcall's own,
    or the ``vcf_header``'s, else a generic text). format_fields: the FORMAT fields whose
    ``call_*`` arrays are written (None: all; empty: sites-only, no ``call_*`` array and an
    empty ``sample_id``; ``samples`` still names the CallSets' samples). Memory: one chunk
    of every array, e.g. chunk_size x samples x genotypes x 4 bytes for call_PL.

    The store is built in a temporary folder beside ``path`` and renamed onto ``path`` by
    :meth:`close` (an existing store there is replaced); if the ``with`` block raises, the
    temporary folder is removed.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        contigs: Sequence[tuple[str, int]],
        samples: Sequence[str],
        filter_ids: Sequence[str],
        max_alleles: int,
        chunk_size: int = 10_000,
        meta: Mapping[str, Any] | None = None,
        samples_chunk_size: int = 10_000,
        filter_descriptions: Mapping[str, str] | None = None,
        format_fields: Sequence[str] | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.path = Path(path)
        self.contigs = [(str(c), int(n)) for c, n in contigs]
        self._contig_index = {c: i for i, (c, _) in enumerate(self.contigs)}
        self.samples = tuple(samples)
        #: the FORMAT fields written (None: all)
        self.format_fields = None if format_fields is None else tuple(format_fields)
        #: ``sample_id``: the samples, or none for a sites-only store
        self.sample_ids = self.samples if self.format_fields != () else ()
        self._appended = tuple(
            spec
            for spec in _APPENDED
            if self.format_fields is None
            or format_field_of(spec) is None
            or format_field_of(spec) in self.format_fields
        )
        self.filter_ids = tuple(["PASS"] + [f for f in filter_ids if f != "PASS"])
        self.max_alleles = max(2, int(max_alleles))
        #: the widest record seen (REF + ALTs); the allele axes are cut to it on close
        self.used_alleles = 2
        self.chunk_size = int(chunk_size)
        self.meta = dict(meta or {})
        #: the ``filter_description`` texts, in ``filter_ids`` order
        self.filter_description_texts = self._filter_descriptions(filter_descriptions)
        #: rows of ``region_index``: chunk, contig, first POS, last POS, max end, count
        self.region_index_rows: list[tuple[int, int, int, int, int, int]] = []
        self.n_variants = 0
        self._mixed_ploidy = False
        self._last: tuple[int, int] = (-1, -1)
        self._n_chunks = 0
        self._closed = False
        self._finished = False
        self._tmp = temporary_name(self.path)
        if self._tmp.exists():
            shutil.rmtree(self._tmp)
        try:
            self._open_store(max(1, min(len(self.samples), samples_chunk_size)))
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise

    def _filter_descriptions(self, given: Mapping[str, str] | None) -> list[str]:
        return filter_description_texts(self.filter_ids, self.meta, given)

    def _open_store(self, samples_chunk: int) -> None:
        """Create the temporary store: the (empty) variants-axis arrays with their chunk
        buffers, and the arrays written when the store is opened."""
        import zarr

        sizes = {
            "samples": len(self.sample_ids),
            "ploidy": 2,
            "filters": len(self.filter_ids),
            **allele_dim_sizes(self.max_alleles),
        }
        self.root = zarr.open_group(str(self._tmp), mode="w")
        self.arrays: dict[str, Any] = {}
        self._buf: dict[str, np.ndarray] = {}
        for spec in self._appended:
            dtype = array_dtype(spec, len(self.contigs))
            shape = tuple(sizes[d] for d in spec.dims[1:])
            chunks = tuple(samples_chunk if d == "samples" else sizes[d] for d in spec.dims[1:])
            self._buf[spec.name] = np.empty((self.chunk_size, *shape), dtype=dtype)
            self.arrays[spec.name] = _create_array(
                self.root, spec, dtype, (0, *shape), (self.chunk_size, *chunks)
            )
        self._n_buf = 0
        self._write_whole("open")

    def _write_whole(self, written: str) -> None:
        """Write the arrays that are not along ``variants`` and are written at ``written``
        (``open`` / ``close``), each in one chunk."""
        for spec in VCZ_ARRAYS:
            if spec.written != written or spec.values is None:
                continue
            data = spec.values(self)
            chunks = (max(1, data.shape[0]), *data.shape[1:])
            _create_array(self.root, spec, data.dtype, data.shape, chunks, data=data)

    # ------------------------------------------------------------------ append
    def _check(self, cs: CallSet) -> CallSet:
        if cs.contig not in self._contig_index:
            raise ValueError(f"contig {cs.contig!r} of a CallSet is not among the store's contigs")
        if cs.samples != self.samples:
            raise ValueError("CallSet samples differ from the store's samples")
        if cs.max_alleles > self.max_alleles:
            wider = cs.alleles[:, self.max_alleles :]
            if (wider != "").any():
                raise ValueError(
                    f"a CallSet of {cs.contig} has {cs.max_alleles} alleles, more than "
                    f"max_alleles={self.max_alleles}"
                )
            cs = _narrow(cs, self.max_alleles)
        cs = cs.pad_alleles(self.max_alleles).with_filter_ids(self.filter_ids)
        ci = self._contig_index[cs.contig]
        last_ci, last_pos = self._last
        if ci < last_ci:
            raise ValueError(
                f"CallSet of {cs.contig} comes after contig {self.contigs[last_ci][0]}; "
                "CallSets must come in reference order"
            )
        if cs.n_variants:
            first = int(cs.position[0])
            if ci == last_ci and first < last_pos:
                raise ValueError(
                    f"CallSet of {cs.contig} starts at 0-based {first}, before the previous "
                    f"record at {last_pos}; CallSets must come sorted by position"
                )
            self._last = (ci, int(cs.position[-1]))
        else:
            self._last = (ci, last_pos if ci == last_ci else -1)
        return cs

    def append(self, callset: CallSet) -> None:
        """Add the records of ``callset`` (contig order, sorted, after what came before)."""
        if self._closed or self._finished:
            raise ValueError("VczWriter is closed")
        cs = self._check(callset)
        if cs.n_variants == 0:
            return
        if (cs.genotype == FILL).any():
            self._mixed_ploidy = True
        self.used_alleles = max(self.used_alleles, used_max_alleles(cs))
        source = CallSetRows(cs, self._contig_index[cs.contig])
        rows = {spec.name: spec.rows(source) for spec in self._appended if spec.rows is not None}
        done = 0
        while done < cs.n_variants:
            take = min(self.chunk_size - self._n_buf, cs.n_variants - done)
            for name, buf in self._buf.items():
                buf[self._n_buf : self._n_buf + take] = rows[name][done : done + take]
            self._n_buf += take
            done += take
            if self._n_buf == self.chunk_size:
                self._flush()
        self.n_variants += cs.n_variants

    def _flush(self) -> None:
        n = self._n_buf
        if n == 0:
            return
        for name, arr in self.arrays.items():
            arr.append(self._buf[name][:n], axis=0)
        self._index_chunk(n)
        self._n_chunks += 1
        self._n_buf = 0
        # object buffers would otherwise keep the strings of the previous chunk alive
        for buf in self._buf.values():
            if buf.dtype == np.dtype(object):
                buf[:] = None

    def _index_chunk(self, n: int) -> None:
        """Add the ``region_index`` rows of the chunk in the buffers (its first ``n`` rows)."""
        self.region_index_rows.extend(
            chunk_region_index(
                self._n_chunks,
                self._buf["variant_contig"][:n],
                self._buf["variant_position"][:n],
                self._buf["variant_length"][:n],
            )
        )

    # ------------------------------------------------------------------ close
    def finish(self) -> None:
        """Write the last chunk, the region index and the metadata (not yet renamed)."""
        import zarr

        if self._finished:
            return
        self._flush()
        if self.used_alleles < self.max_alleles:
            # the store must not depend on how wide the inputs were padded
            widths = allele_dim_sizes(self.used_alleles)
            for spec in self._appended:
                if spec.dims[-1] in ALLELE_DIMS:
                    arr = self.arrays[spec.name]
                    arr.resize(*arr.shape[:-1], widths[spec.dims[-1]])
        self._write_whole("close")
        if "call_genotype" in self.arrays:
            self.arrays["call_genotype"].attrs["mixed_ploidy"] = self._mixed_ploidy
        self.root.attrs.update(root_attributes(self.meta))
        zarr.consolidate_metadata(str(self._tmp))
        self._finished = True

    def commit(self) -> None:
        """Rename the finished store onto ``path`` (replacing an existing one)."""
        self.finish()
        old = None
        if self.path.exists():
            old = temporary_name(self.path, "old")
            os.replace(self.path, old)
        os.replace(self._tmp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._closed = True
        logger.info("wrote %s (%d variants, %d chunks)", self.path, self.n_variants, self._n_chunks)

    def abort(self) -> None:
        """Remove the temporary store; ``path`` is left untouched."""
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._closed = True


def _narrow(cs: CallSet, width: int) -> CallSet:
    """Drop allele padding columns beyond ``width`` (they must be empty)."""
    g = n_genotypes(width)
    return dataclasses.replace(
        cs, alleles=cs.alleles[:, :width], AD=cs.AD[:, :, :width], PL=cs.PL[:, :, :g]
    )


def used_max_alleles(callset: CallSet) -> int:
    """Largest number of alleles (REF + ALTs) of any record of ``callset``, at least 2:
    the allele width the store needs for it, whatever its padding."""
    if callset.n_variants == 0:
        return 2
    return max(2, int((callset.alleles != "").sum(axis=1).max()))
