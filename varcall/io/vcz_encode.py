"""The VCF Zarr store written in parallel (bio2zarr's init -> encode partitions -> finalise).

The same store as :class:`varcall.io.vcz.VczWriter` (same arrays from
:data:`varcall.io.vcz_spec.VCZ_ARRAYS`, dtypes, chunks, codecs, attributes and chunk
bytes), in three steps:

1. :func:`create_store` (once): every array with its final shape along ``variants`` but
   no chunks yet (metadata only), and the arrays written when the store is opened.
2. :class:`ChunkEncoder` (any number of processes, each its own whole chunks along
   ``variants``): the rows of the records of one chunk, from their CallSets, written as
   that chunk of every array; returns the chunk's ``region_index`` rows.
3. :func:`finish_store` (once): the allele axes cut to the widest record, the arrays
   written on close, the attributes, consolidated metadata.

Writers of different chunks never touch the same file, so the encoders need no locks.
The store is built under a temporary name; renaming it into place is the caller's.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from varcall.core.callset import FILL, CallSet
from varcall.io.vcz import (
    _create_array,
    _narrow,
    chunk_region_index,
    filter_description_texts,
    root_attributes,
    used_max_alleles,
)
from varcall.io.vcz_spec import (
    ALLELE_DIMS,
    VCZ_ARRAYS,
    ArraySpec,
    CallSetRows,
    allele_dim_sizes,
    array_dtype,
    format_field_of,
)

__all__ = ["StoreLayout", "ChunkEncoder", "create_store", "finish_store"]

logger = logging.getLogger(__name__)

_Row = tuple[int, int, int, int, int, int]


@dataclasses.dataclass(frozen=True)
class StoreLayout:
    """What a store is made of (picklable: it travels to the encode tasks).

    path: the (temporary) store folder. contigs: (name, length) in reference order.
    samples: the output sample names. filter_ids: PASS first. max_alleles: the allele
    width the arrays are created with (cut to the widest record at the end). chunk_size:
    variants per chunk. n_variants: the store's records. format_fields: as
    :class:`~varcall.io.vcz.VczWriter` (None: all; empty: sites-only)."""

    path: str
    contigs: tuple[tuple[str, int], ...]
    samples: tuple[str, ...]
    filter_ids: tuple[str, ...]
    max_alleles: int
    chunk_size: int
    n_variants: int
    format_fields: tuple[str, ...] | None = None
    samples_chunk_size: int = 10_000

    @property
    def sample_ids(self) -> tuple[str, ...]:
        """``sample_id``: the samples, or none for a sites-only store."""
        return self.samples if self.format_fields != () else ()

    @property
    def appended(self) -> tuple[ArraySpec, ...]:
        """The variants-axis arrays written (the FORMAT fields chosen)."""
        return tuple(
            spec
            for spec in VCZ_ARRAYS
            if spec.written == "append"
            and (
                self.format_fields is None
                or format_field_of(spec) is None
                or format_field_of(spec) in self.format_fields
            )
        )

    @property
    def n_chunks(self) -> int:
        """Chunks along ``variants``."""
        return -(-self.n_variants // self.chunk_size)

    def sizes(self, n_alleles: int | None = None) -> dict[str, int]:
        """The sizes of the dimensions other than ``variants``."""
        return {
            "samples": len(self.sample_ids),
            "ploidy": 2,
            "filters": len(self.filter_ids),
            **allele_dim_sizes(n_alleles or self.max_alleles),
        }


@dataclasses.dataclass
class _State:
    """What the arrays that are not along ``variants`` are written from
    (:class:`varcall.io.vcz_spec.StoreState`)."""

    contigs: list[tuple[str, int]]
    samples: tuple[str, ...]
    sample_ids: tuple[str, ...]
    filter_ids: tuple[str, ...]
    filter_description_texts: list[str]
    region_index_rows: list[_Row]


def _state(
    layout: StoreLayout, meta: Mapping[str, Any], rows: Sequence[_Row] = ()
) -> _State:
    return _State(
        list(layout.contigs),
        layout.samples,
        layout.sample_ids,
        layout.filter_ids,
        filter_description_texts(layout.filter_ids, meta),
        list(rows),
    )


def _write_whole(root: Any, state: _State, written: str) -> None:
    """Write the arrays not along ``variants`` that are written at ``written``."""
    for spec in VCZ_ARRAYS:
        if spec.written != written or spec.values is None:
            continue
        data = spec.values(state)
        chunks = (max(1, data.shape[0]), *data.shape[1:])
        _create_array(root, spec, data.dtype, data.shape, chunks, data=data)


def create_store(layout: StoreLayout, meta: Mapping[str, Any]) -> None:
    """Create the store at ``layout.path`` (replacing anything there): every
    variants-axis array at its final length, without chunks, and the arrays written
    when a store is opened. meta: the root attributes to come (``vcf_header``)."""
    import zarr

    root = zarr.open_group(layout.path, mode="w")
    sizes = layout.sizes()
    samples_chunk = max(1, min(len(layout.samples), layout.samples_chunk_size))
    for spec in layout.appended:
        dtype = array_dtype(spec, len(layout.contigs))
        shape = tuple(sizes[d] for d in spec.dims[1:])
        chunks = tuple(samples_chunk if d == "samples" else sizes[d] for d in spec.dims[1:])
        arr = _create_array(
            root, spec, dtype, (layout.n_variants, *shape), (layout.chunk_size, *chunks)
        )
        if layout.n_variants:
            # rewrite the metadata as a resize does: the serial writer's arrays, grown
            # by appending, list their dimension_separator; the same bytes here
            arr.resize(*arr.shape)
    _write_whole(root, _state(layout, meta), "open")


class ChunkEncoder:
    """Writes whole chunks along ``variants`` into a store made by :func:`create_store`.

    :meth:`write` takes the CallSets of one chunk's records; :attr:`used_alleles` and
    :attr:`mixed_ploidy` collect what :func:`finish_store` needs."""

    def __init__(self, layout: StoreLayout) -> None:
        import zarr

        self.layout = layout
        root = zarr.open_group(layout.path, mode="r+")
        self.specs = layout.appended
        self.arrays = {spec.name: root[spec.name] for spec in self.specs}
        self._contig_index = {c: i for i, (c, _) in enumerate(layout.contigs)}
        self._dtypes = {s.name: array_dtype(s, len(layout.contigs)) for s in self.specs}
        self.used_alleles = 2
        self.mixed_ploidy = False

    def _normalise(self, cs: CallSet) -> CallSet:
        """``cs`` at the store's allele width and filter ids (as the serial writer)."""
        width = self.layout.max_alleles
        if cs.contig not in self._contig_index:
            raise ValueError(f"contig {cs.contig!r} of a CallSet is not among the store's contigs")
        if cs.max_alleles > width:
            if (cs.alleles[:, width:] != "").any():
                raise ValueError(
                    f"a CallSet of {cs.contig} has {cs.max_alleles} alleles, more than "
                    f"max_alleles={width}"
                )
            cs = _narrow(cs, width)
        return cs.pad_alleles(width).with_filter_ids(self.layout.filter_ids)

    def write(self, chunk: int, parts: Sequence[CallSet]) -> list[_Row]:
        """Write chunk ``chunk`` (0-based) from ``parts``, the CallSets of its records in
        order (their records must fill the chunk exactly); returns its ``region_index``
        rows."""
        layout = self.layout
        start = chunk * layout.chunk_size
        n = min(layout.chunk_size, layout.n_variants - start)
        if sum(p.n_variants for p in parts) != n:
            raise ValueError(f"chunk {chunk} holds {n} records, not the parts' count")
        sizes = layout.sizes()
        bufs = {
            s.name: np.empty((n, *(sizes[d] for d in s.dims[1:])), self._dtypes[s.name])
            for s in self.specs
        }
        done = 0
        for given in parts:
            if given.n_variants == 0:
                continue
            cs = self._normalise(given)
            self.mixed_ploidy = self.mixed_ploidy or bool((cs.genotype == FILL).any())
            self.used_alleles = max(self.used_alleles, used_max_alleles(cs))
            source = CallSetRows(cs, self._contig_index[cs.contig])
            stop = done + cs.n_variants
            for spec in self.specs:
                if spec.rows is not None:
                    bufs[spec.name][done:stop] = spec.rows(source)
            done = stop
        for name, arr in self.arrays.items():
            arr[start : start + n] = bufs[name]
        return chunk_region_index(
            chunk, bufs["variant_contig"], bufs["variant_position"], bufs["variant_length"]
        )


def finish_store(
    layout: StoreLayout,
    meta: Mapping[str, Any],
    region_index_rows: Sequence[_Row],
    used_alleles: int,
    mixed_ploidy: bool,
) -> None:
    """Finish the store after every chunk is written: the allele axes cut to
    ``used_alleles`` (the widest record, at least 2), ``region_index`` (rows in chunk
    order), ``mixed_ploidy``, the root attributes (``meta`` too), consolidated metadata."""
    import zarr

    root = zarr.open_group(layout.path, mode="r+")
    used = max(2, int(used_alleles))
    if used < layout.max_alleles:  # the store must not depend on the inputs' padding
        widths = allele_dim_sizes(used)
        for spec in layout.appended:
            if spec.dims[-1] in ALLELE_DIMS:
                arr = root[spec.name]
                arr.resize(*arr.shape[:-1], widths[spec.dims[-1]])
    _write_whole(root, _state(layout, meta, region_index_rows), "close")
    if "call_genotype" in root:
        root["call_genotype"].attrs["mixed_ploidy"] = bool(mixed_ploidy)
    root.attrs.update(root_attributes(meta))
    zarr.consolidate_metadata(layout.path)
