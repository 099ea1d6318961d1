"""VCF Zarr output and the streaming merge of region results.

:class:`VczWriter` streams CallSets (genomic order) into a VCF Zarr store — Zarr format 2,
VCF Zarr spec 0.4, sgkit's conventions — holding at most one chunk of variants in memory.
:func:`write_outputs` is the merge: it feeds the same CallSets to the VCF writer and to the
store, each written under a temporary name and renamed into place at the end, and returns
record digests per contig (equal whatever the region layout) and per input.

Store layout (V variants, S samples, A = alleles of the widest record (at least 2),
G = A(A+1)/2, F filters, C contigs):

=====================  =====================================  ==========  ================
array                  dims                                   dtype       content
=====================  =====================================  ==========  ================
variant_contig         variants                               int8..32    index in contig_id
variant_position       variants                               int32       VCF POS (1-based)
variant_length         variants                               int32       len(REF) in bp
variant_id(_mask)      variants                               str / bool  "." / True
variant_allele         variants, alleles                      str         REF, ALTs, "" pad
variant_quality        variants                               float32     QUAL
variant_filter         variants, filters                      bool        FILTER
variant_DP             variants                               int32       INFO/DP
variant_AC             variants, alt_alleles                  int32       INFO/AC
variant_AN             variants                               int32       INFO/AN
call_genotype          variants, samples, ploidy              int8        GT (-1 / -2)
call_genotype_mask     variants, samples, ploidy              bool        GT < 0
call_genotype_phased   variants, samples                      bool        False
call_GQ, call_DP       variants, samples                      int32
call_AD                variants, samples, alleles             int32
call_PL                variants, samples, genotypes           int32
contig_id/_length      contigs                                str / int64
filter_id/_description filters                                str
sample_id              samples                                str
region_index           region_index_values, region_index_fields int32     as bio2zarr
=====================  =====================================  ==========  ================

Integer sentinels: -1 missing, -2 fill; float missing/fill are the VCF Zarr NaN bit
patterns 0x7F800001 / 0x7F800002. Every variants-axis array has the same chunk size. Every
array has ``_ARRAY_DIMENSIONS`` (and the variant/call ones a ``description``);
``call_genotype`` has ``mixed_ploidy`` (True when a haploid call pads with -2). Root
attributes: ``vcf_zarr_version`` "0.4", ``source``, ``vcf_header`` and
``vcf_meta_information`` (its ``##key=value`` lines); metadata is consolidated.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from varcall import __version__
from varcall.core.callset import FILL, CallSet, n_genotypes
from varcall.io.vcf import (
    FILTER_DESCRIPTIONS,
    allele_counts,
    header_filter_descriptions,
)

__all__ = [
    "VCF_ZARR_VERSION",
    "VczWriter",
    "used_max_alleles",
]

logger = logging.getLogger(__name__)

VCF_ZARR_VERSION = "0.4"
FLOAT32_MISSING_BITS = 0x7F800001
FLOAT32_FILL_BITS = 0x7F800002

_DESCRIPTIONS = {
    "variant_contig": "An identifier from the reference genome or an angle-bracketed ID string "
    "pointing to a contig in the assembly file",
    "variant_position": "The reference position (VCF POS, 1-based)",
    "variant_length": "The length of the variant measured in bases (length of REF)",
    "variant_id": "List of unique identifiers where applicable",
    "variant_id_mask": "True where variant_id is missing",
    "variant_allele": "List of the reference and alternate alleles",
    "variant_quality": "Phred-scaled quality score",
    "variant_filter": "Filter status of the variant",
    "variant_DP": "Total read depth at the site",
    "variant_AC": "Allele count in genotypes, for each ALT allele, in the same order as listed",
    "variant_AN": "Total number of alleles in called genotypes",
    "call_genotype": "Genotype",
    "call_genotype_mask": "True where call_genotype is missing or fill",
    "call_genotype_phased": "True where the genotype is phased",
    "call_GQ": "Phred-scaled genotype quality",
    "call_DP": "Read depth of the sample at the site",
    "call_AD": "Read depth for each allele",
    "call_PL": "Phred-scaled genotype likelihoods, normalised so the best is 0",
}


def _blosc(shuffle: str) -> Any:
    from numcodecs import Blosc

    mode = {"byte": Blosc.SHUFFLE, "bit": Blosc.BITSHUFFLE, "none": Blosc.NOSHUFFLE}[shuffle]
    return Blosc(cname="zstd", clevel=7, shuffle=mode)


def _contig_dtype(n: int) -> np.dtype:
    for dt in (np.int8, np.int16, np.int32):
        if n <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.int64)


def _float_sentinels(a: np.ndarray) -> np.ndarray:
    """float32 copy with NaN replaced by the VCF Zarr 'missing' NaN bit pattern."""
    out = np.asarray(a, np.float32).copy()
    bits = out.view(np.int32)
    bits[np.isnan(out)] = FLOAT32_MISSING_BITS
    return out


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
class VczWriter:
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
    or the ``vcf_header``'s, else a generic text). Memory: one chunk of every array, e.g.
    chunk_size x samples x genotypes x 4 bytes for call_PL.

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
    ) -> None:
        import numcodecs
        import zarr

        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.path = Path(path)
        self.contigs = [(str(c), int(n)) for c, n in contigs]
        self._contig_index = {c: i for i, (c, _) in enumerate(self.contigs)}
        self.samples = tuple(samples)
        fids = ["PASS"] + [f for f in filter_ids if f != "PASS"]
        self.filter_ids = tuple(fids)
        self.max_alleles = max(2, int(max_alleles))
        #: the widest record seen (REF + ALTs); the allele axes are cut to it on close
        self.used_alleles = 2
        self.chunk_size = int(chunk_size)
        self.meta = dict(meta or {})
        self.n_variants = 0
        self._mixed_ploidy = False
        self._last: tuple[int, int] = (-1, -1)
        self._region_index: list[tuple[int, int, int, int, int, int]] = []
        self._n_chunks = 0
        self._closed = False
        self._finished = False
        tag = f".tmp-{os.getpid()}-{id(self):x}"
        self._tmp = self.path.with_name(f".{self.path.name}{tag}")
        if self._tmp.exists():
            shutil.rmtree(self._tmp)

        s, a = len(self.samples), self.max_alleles
        g = n_genotypes(a)
        cs, ss = self.chunk_size, max(1, min(s, samples_chunk_size))
        contig_dt = _contig_dtype(len(self.contigs))
        # name: (dims, dtype, trailing shape, trailing chunks, shuffle)
        self._specs: dict[
            str, tuple[list[str], np.dtype, tuple[int, ...], tuple[int, ...], str]
        ] = {
            "variant_contig": (["variants"], contig_dt, (), (), "byte"),
            "variant_position": (["variants"], np.dtype(np.int32), (), (), "byte"),
            "variant_length": (["variants"], np.dtype(np.int32), (), (), "byte"),
            "variant_id": (["variants"], np.dtype(object), (), (), "none"),
            "variant_id_mask": (["variants"], np.dtype(bool), (), (), "bit"),
            "variant_allele": (["variants", "alleles"], np.dtype(object), (a,), (a,), "none"),
            "variant_quality": (["variants"], np.dtype(np.float32), (), (), "byte"),
            "variant_filter": (
                ["variants", "filters"],
                np.dtype(bool),
                (len(fids),),
                (len(fids),),
                "bit",
            ),
            "variant_DP": (["variants"], np.dtype(np.int32), (), (), "byte"),
            "variant_AC": (
                ["variants", "alt_alleles"],
                np.dtype(np.int32),
                (a - 1,),
                (a - 1,),
                "byte",
            ),
            "variant_AN": (["variants"], np.dtype(np.int32), (), (), "byte"),
            "call_genotype": (
                ["variants", "samples", "ploidy"],
                np.dtype(np.int8),
                (s, 2),
                (ss, 2),
                "bit",
            ),
            "call_genotype_mask": (
                ["variants", "samples", "ploidy"],
                np.dtype(bool),
                (s, 2),
                (ss, 2),
                "bit",
            ),
            "call_genotype_phased": (["variants", "samples"], np.dtype(bool), (s,), (ss,), "bit"),
            "call_GQ": (["variants", "samples"], np.dtype(np.int32), (s,), (ss,), "byte"),
            "call_DP": (["variants", "samples"], np.dtype(np.int32), (s,), (ss,), "byte"),
            "call_AD": (
                ["variants", "samples", "alleles"],
                np.dtype(np.int32),
                (s, a),
                (ss, a),
                "byte",
            ),
            "call_PL": (
                ["variants", "samples", "genotypes"],
                np.dtype(np.int32),
                (s, g),
                (ss, g),
                "byte",
            ),
        }
        self._buf = {
            name: np.empty((cs, *shape), dtype=dt)
            for name, (_, dt, shape, _, _) in self._specs.items()
        }
        self._n_buf = 0

        try:
            self.root = zarr.open_group(str(self._tmp), mode="w")
            self.arrays = {}
            for name, (dims, dt, shape, chunks, shuffle) in self._specs.items():
                kwargs: dict[str, Any] = {}
                if dt == np.dtype(object):
                    kwargs["object_codec"] = numcodecs.VLenUTF8()
                arr = self.root.create_dataset(
                    name,
                    shape=(0, *shape),
                    chunks=(cs, *chunks),
                    dtype=dt,
                    compressor=_blosc(shuffle),
                    fill_value=None,
                    **kwargs,
                )
                arr.attrs["_ARRAY_DIMENSIONS"] = dims
                arr.attrs["description"] = _DESCRIPTIONS[name]
                self.arrays[name] = arr
            self._static("contig_id", np.array([c for c, _ in self.contigs], object), ["contigs"])
            self._static(
                "contig_length", np.array([n for _, n in self.contigs], np.int64), ["contigs"]
            )
            self._static("filter_id", np.array(fids, object), ["filters"])
            descriptions = dict(FILTER_DESCRIPTIONS)
            header = self.meta.get("vcf_header")
            if isinstance(header, str):
                descriptions.update(header_filter_descriptions(header))
            descriptions.update(filter_descriptions or {})
            self._static(
                "filter_description",
                np.array(
                    [descriptions.get(f, f"Filter {f} set by the calling engine") for f in fids],
                    object,
                ),
                ["filters"],
            )
            self._static("sample_id", np.array(self.samples, object), ["samples"])
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise

    def _static(self, name: str, data: np.ndarray, dims: list[str]) -> None:
        import numcodecs

        kwargs: dict[str, Any] = {}
        if data.dtype == np.dtype(object):
            kwargs["object_codec"] = numcodecs.VLenUTF8()
        arr = self.root.create_dataset(
            name,
            data=data,
            shape=data.shape,
            chunks=(max(1, data.shape[0]), *data.shape[1:]),
            dtype=data.dtype,
            compressor=_blosc("none" if data.dtype == np.dtype(object) else "byte"),
            fill_value=None,
            **kwargs,
        )
        arr.attrs["_ARRAY_DIMENSIONS"] = dims

    # ------------------------------------------------------------------ append
    def _rows(self, cs: CallSet) -> dict[str, np.ndarray]:
        """The store's arrays for the records of ``cs`` (already padded / re-filtered)."""
        v = cs.n_variants
        ac, an = allele_counts(cs)
        n_alt = (cs.alleles[:, 1:] != "").sum(axis=1)
        ac = np.where(np.arange(ac.shape[1]) < n_alt[:, None], ac, FILL)
        alleles = cs.alleles.astype(object)
        gt = cs.genotype.astype(np.int8)
        return {
            "variant_contig": np.full(v, self._contig_index[cs.contig]),
            "variant_position": cs.position + 1,
            "variant_length": np.char.str_len(cs.alleles[:, 0]),
            "variant_id": np.full(v, ".", dtype=object),
            "variant_id_mask": np.ones(v, bool),
            "variant_allele": alleles,
            "variant_quality": _float_sentinels(cs.quality),
            "variant_filter": cs.filters,
            "variant_DP": cs.info_DP,
            "variant_AC": ac,
            "variant_AN": an,
            "call_genotype": gt,
            "call_genotype_mask": gt < 0,
            "call_genotype_phased": np.zeros(gt.shape[:2], bool),
            "call_GQ": cs.GQ,
            "call_DP": cs.DP,
            "call_AD": cs.AD,
            "call_PL": cs.PL,
        }

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
        rows = self._rows(cs)
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
        contig = self._buf["variant_contig"][:n]
        pos = self._buf["variant_position"][:n]
        end = pos + self._buf["variant_length"][:n] - 1
        bounds = np.flatnonzero(np.diff(contig, append=-1))
        start = 0
        for stop in bounds.tolist():
            self._region_index.append(
                (
                    self._n_chunks,
                    int(contig[start]),
                    int(pos[start]),
                    int(pos[stop]),
                    int(end[start : stop + 1].max()),
                    stop - start + 1,
                )
            )
            start = stop + 1
        self._n_chunks += 1
        self._n_buf = 0
        # object buffers would otherwise keep the strings of the previous chunk alive
        self._buf["variant_allele"][:] = None
        self._buf["variant_id"][:] = None

    # ------------------------------------------------------------------ close
    def finish(self) -> None:
        """Write the last chunk, the region index and the metadata (not yet renamed)."""
        import zarr

        if self._finished:
            return
        self._flush()
        if self.used_alleles < self.max_alleles:
            # the store must not depend on how wide the inputs were padded
            a = self.used_alleles
            for name, width in (
                ("variant_allele", a),
                ("variant_AC", a - 1),
                ("call_AD", a),
                ("call_PL", n_genotypes(a)),
            ):
                arr = self.arrays[name]
                arr.resize(*arr.shape[:-1], width)
        index = np.array(self._region_index, dtype=np.int32).reshape(-1, 6)
        arr = self.root.create_dataset(
            "region_index",
            data=index,
            shape=index.shape,
            chunks=(max(1, index.shape[0]), 6),
            dtype=np.int32,
            compressor=_blosc("none"),
            fill_value=None,
        )
        arr.attrs["_ARRAY_DIMENSIONS"] = ["region_index_values", "region_index_fields"]
        self.arrays["call_genotype"].attrs["mixed_ploidy"] = self._mixed_ploidy
        attrs: dict[str, Any] = {
            "vcf_zarr_version": VCF_ZARR_VERSION,
            "source": f"varcall-{__version__}",
        }
        header = self.meta.get("vcf_header")
        if isinstance(header, str):
            attrs["vcf_meta_information"] = _meta_information(header)
        attrs.update(self.meta)
        self.root.attrs.update(attrs)
        zarr.consolidate_metadata(str(self._tmp))
        self._finished = True

    def commit(self) -> None:
        """Rename the finished store onto ``path`` (replacing an existing one)."""
        self.finish()
        old = None
        if self.path.exists():
            old = self.path.with_name(f".{self.path.name}.old-{os.getpid()}-{id(self):x}")
            os.replace(self.path, old)
        os.replace(self._tmp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._closed = True
        logger.info("wrote %s (%d variants, %d chunks)", self.path, self.n_variants, self._n_chunks)

    def close(self) -> None:
        """Finish and rename into place."""
        if not self._closed:
            self.commit()

    def abort(self) -> None:
        """Remove the temporary store; ``path`` is left untouched."""
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._closed = True

    def __enter__(self) -> VczWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _narrow(cs: CallSet, width: int) -> CallSet:
    """Drop allele padding columns beyond ``width`` (they must be empty)."""
    g = n_genotypes(width)
    return dataclasses.replace(
        cs, alleles=cs.alleles[:, :width], AD=cs.AD[:, :, :width], PL=cs.PL[:, :, :g]
    )


# ----------------------------------------------------------------------------- merge




def used_max_alleles(callset: CallSet) -> int:
    """Largest number of alleles (REF + ALTs) of any record of ``callset``, at least 2:
    the allele width the store needs for it, whatever its padding."""
    if callset.n_variants == 0:
        return 2
    return max(2, int((callset.alleles != "").sum(axis=1).max()))








# ----------------------------------------------------------------------------- reading










