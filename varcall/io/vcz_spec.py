"""The arrays of varcall's VCF Zarr store, declared once as data (bio2zarr's
``ZarrArraySpec`` pattern): :data:`VCZ_ARRAYS`, one :class:`ArraySpec` per array, in the
order they are created. :class:`~varcall.io.vcz.VczWriter` loops over it to create, append
and finish the store, and the README's table of the store lists the same arrays.

Dimension sizes: ``variants`` V (grows as records come; chunked by the writer's chunk
size), ``samples`` S (chunked by its samples chunk size), ``alleles`` A = alleles of the
widest record (at least 2), ``alt_alleles`` A-1, ``genotypes`` G = A(A+1)/2, ``ploidy`` 2,
``filters`` F, ``contigs`` C, ``region_index_values`` (one row per chunk and contig),
``region_index_fields`` 6. Integer sentinels: -1 missing, -2 fill; float missing/fill are
the VCF Zarr NaN bit patterns 0x7F800001 / 0x7F800002.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

import numpy as np

from varcall.core.callset import FILL, INFO_FLOAT_KEYS, CallSet, n_genotypes
from varcall.core.filters import INFO_FLOAT_DESCRIPTIONS

__all__ = [
    "FLOAT32_MISSING_BITS",
    "FLOAT32_FILL_BITS",
    "ALLELE_DIMS",
    "ArraySpec",
    "CallSetRows",
    "StoreState",
    "VCZ_ARRAYS",
    "allele_counts",
    "allele_dim_sizes",
    "array_dtype",
    "format_field_of",
]

logger = logging.getLogger(__name__)

FLOAT32_MISSING_BITS = 0x7F800001
FLOAT32_FILL_BITS = 0x7F800002
#: The dimensions whose size follows the allele width A (cut to the widest record on close).
ALLELE_DIMS = ("alleles", "alt_alleles", "genotypes")


def allele_dim_sizes(n_alleles: int) -> dict[str, int]:
    """Sizes of the :data:`ALLELE_DIMS` for ``n_alleles`` (REF + ALTs) per record."""
    return {"alleles": n_alleles, "alt_alleles": n_alleles - 1, "genotypes": n_genotypes(n_alleles)}


def allele_counts(callset: CallSet) -> tuple[np.ndarray, np.ndarray]:
    """INFO AC (V, A-1) and AN (V,) counted from the genotypes (FILL/MISSING not counted;
    AC columns beyond a record's ALTs are 0)."""
    gt = callset.genotype.reshape(callset.n_variants, -1)
    an = (gt >= 0).sum(axis=1)
    a = callset.max_alleles
    ac = np.zeros((callset.n_variants, max(a - 1, 0)), np.int64)
    for k in range(1, a):
        ac[:, k - 1] = (gt == k).sum(axis=1)
    return ac, an


def _float_sentinels(a: np.ndarray) -> np.ndarray:
    """float32 copy with NaN replaced by the VCF Zarr 'missing' NaN bit pattern."""
    out = np.asarray(a, np.float32).copy()
    bits = out.view(np.int32)
    bits[np.isnan(out)] = FLOAT32_MISSING_BITS
    return out


class CallSetRows:
    """What the variants-axis arrays take from one CallSet (already padded to the store's
    allele width and re-filtered to its filter ids); derived columns are computed once."""

    def __init__(self, callset: CallSet, contig_index: int) -> None:
        self.cs = callset
        self.contig_index = contig_index

    @functools.cached_property
    def info_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """INFO AC (FILL beyond each record's ALTs) and AN."""
        cs = self.cs
        ac, an = allele_counts(cs)
        n_alt = (cs.alleles[:, 1:] != "").sum(axis=1)
        ac = np.where(np.arange(ac.shape[1]) < n_alt[:, None], ac, FILL)
        return ac, an

    @functools.cached_property
    def genotype(self) -> np.ndarray:
        """GT as int8 (V, S, 2)."""
        return self.cs.genotype.astype(np.int8)


class StoreState(Protocol):
    """What the arrays that are not along ``variants`` are written from (the writer)."""

    contigs: list[tuple[str, int]]
    samples: tuple[str, ...]
    sample_ids: tuple[str, ...]
    filter_ids: tuple[str, ...]
    filter_description_texts: list[str]
    region_index_rows: list[tuple[int, int, int, int, int, int]]


@dataclasses.dataclass(frozen=True)
class ArraySpec:
    """One array of the store.

    name, dims: the array and its ``_ARRAY_DIMENSIONS``. dtype: a numpy dtype name, ``str``
    (variable-length UTF-8: object dtype with the VLenUTF8 codec) or ``contig`` (the
    smallest signed integer that holds the contig indexes). shuffle: the Blosc (zstd,
    level 7) shuffle, ``byte``, ``bit`` or ``none``. description: the ``description``
    attribute (None: none). content: what the values are, and their sentinels. written:
    ``append`` (rows of each CallSet, taken by ``rows``), ``open`` or ``close`` (the whole
    array, taken by ``values`` from the writer when the store is opened / finished).
    Every array has fill value None; ``append`` arrays are chunked (chunk size, samples
    chunk size, whole other axes), the others in one chunk.
    """

    name: str
    dims: tuple[str, ...]
    dtype: str
    shuffle: Literal["byte", "bit", "none"]
    description: str | None
    content: str
    written: Literal["append", "open", "close"]
    rows: Callable[[CallSetRows], np.ndarray] | None = None
    values: Callable[[StoreState], np.ndarray] | None = None


def format_field_of(spec: ArraySpec) -> str | None:
    """The VCF FORMAT field a ``call_*`` array holds (``GT`` for the genotype arrays), or
    None for the arrays that are no per-sample field (they are always written)."""
    if not spec.name.startswith("call_"):
        return None
    if spec.name.startswith("call_genotype"):
        return "GT"
    return spec.name[len("call_") :]


def array_dtype(spec: ArraySpec, n_contigs: int) -> np.dtype:
    """The numpy dtype of ``spec``'s array in a store of ``n_contigs`` contigs."""
    if spec.dtype == "str":
        return np.dtype(object)
    if spec.dtype == "contig":
        for dt in (np.int8, np.int16, np.int32):
            if n_contigs <= np.iinfo(dt).max:
                return np.dtype(dt)
        return np.dtype(np.int64)
    return np.dtype(spec.dtype)


def _strings(values: Sequence[str]) -> np.ndarray:
    return np.array(values, object)


def _variant(
    name: str,
    dims: tuple[str, ...],
    dtype: str,
    shuffle: Literal["byte", "bit", "none"],
    description: str,
    content: str,
    rows: Callable[[CallSetRows], np.ndarray],
) -> ArraySpec:
    """A variants-axis array, appended with the rows of each CallSet."""
    return ArraySpec(name, dims, dtype, shuffle, description, content, "append", rows=rows)


_V, _VS = ("variants",), ("variants", "samples")
#: Every array of the store, in creation order.
VCZ_ARRAYS: tuple[ArraySpec, ...] = (
    _variant("variant_contig", _V, "contig", "byte",
             "An identifier from the reference genome or an angle-bracketed ID string "
             "pointing to a contig in the assembly file",
             "index into contig_id", lambda r: np.full(r.cs.n_variants, r.contig_index)),
    _variant("variant_position", _V, "int32", "byte", "The reference position (VCF POS, 1-based)",
             "VCF POS (1-based)", lambda r: r.cs.position + 1),
    _variant("variant_length", _V, "int32", "byte",
             "The length of the variant measured in bases (length of REF)",
             "len(REF) in bp", lambda r: np.char.str_len(r.cs.alleles[:, 0])),
    _variant("variant_id", _V, "str", "none", "List of unique identifiers where applicable",
             '"."', lambda r: np.full(r.cs.n_variants, ".", dtype=object)),
    _variant("variant_id_mask", _V, "bool", "bit", "True where variant_id is missing",
             "True", lambda r: np.ones(r.cs.n_variants, bool)),
    _variant("variant_allele", (*_V, "alleles"), "str", "none",
             "List of the reference and alternate alleles",
             'REF, ALTs, "" padding', lambda r: r.cs.alleles.astype(object)),
    _variant("variant_quality", _V, "float32", "byte", "Phred-scaled quality score",
             "QUAL (missing: NaN 0x7F800001)", lambda r: _float_sentinels(r.cs.quality)),
    _variant("variant_filter", (*_V, "filters"), "bool", "bit", "Filter status of the variant",
             "FILTER", lambda r: r.cs.filters),
    _variant("variant_DP", _V, "int32", "byte", "Total read depth at the site",
             "INFO/DP", lambda r: r.cs.info_DP),
    _variant("variant_AC", (*_V, "alt_alleles"), "int32", "byte",
             "Allele count in genotypes, for each ALT allele, in the same order as listed",
             "INFO/AC (-2 beyond the record's ALTs)", lambda r: r.info_counts[0]),
    _variant("variant_AN", _V, "int32", "byte", "Total number of alleles in called genotypes",
             "INFO/AN", lambda r: r.info_counts[1]),
    *(
        _variant(f"variant_{key}", _V, "float32", "byte", INFO_FLOAT_DESCRIPTIONS[key],
                 f"INFO/{key} (missing: NaN 0x7F800001)",
                 lambda r, key=key: _float_sentinels(getattr(r.cs, f"info_{key}")))
        for key in INFO_FLOAT_KEYS
    ),
    _variant("call_genotype", (*_VS, "ploidy"), "int8", "bit", "Genotype",
             "GT (-1 missing, -2 fill for haploid calls)", lambda r: r.genotype),
    _variant("call_genotype_mask", (*_VS, "ploidy"), "bool", "bit",
             "True where call_genotype is missing or fill", "GT < 0", lambda r: r.genotype < 0),
    _variant("call_genotype_phased", _VS, "bool", "bit", "True where the genotype is phased",
             "all False", lambda r: np.zeros(r.genotype.shape[:2], bool)),
    _variant("call_GQ", _VS, "int32", "byte", "Phred-scaled genotype quality",
             "FORMAT/GQ", lambda r: r.cs.GQ),
    _variant("call_DP", _VS, "int32", "byte", "Read depth of the sample at the site",
             "FORMAT/DP", lambda r: r.cs.DP),
    _variant("call_AD", (*_VS, "alleles"), "int32", "byte", "Read depth for each allele",
             "FORMAT/AD", lambda r: r.cs.AD),
    _variant("call_PL", (*_VS, "genotypes"), "int32", "byte",
             "Phred-scaled genotype likelihoods, normalised so the best is 0",
             "FORMAT/PL", lambda r: r.cs.PL),
    ArraySpec("contig_id", ("contigs",), "str", "none", None, "contig names", "open",
              values=lambda w: _strings([c for c, _ in w.contigs])),
    ArraySpec("contig_length", ("contigs",), "int64", "byte", None, "contig lengths (bp)",
              "open", values=lambda w: np.array([n for _, n in w.contigs], np.int64)),
    ArraySpec("filter_id", ("filters",), "str", "none", None, "filter ids, PASS first", "open",
              values=lambda w: _strings(w.filter_ids)),
    ArraySpec("filter_description", ("filters",), "str", "none", None, "filter descriptions",
              "open", values=lambda w: _strings(w.filter_description_texts)),
    ArraySpec("sample_id", ("samples",), "str", "none", None, "sample names", "open",
              values=lambda w: _strings(w.sample_ids)),
    ArraySpec("region_index", ("region_index_values", "region_index_fields"), "int32", "none",
              None, "per chunk and contig: chunk, contig, first POS, last POS, max end, count "
              "(as bio2zarr)", "close",
              values=lambda w: np.array(w.region_index_rows, dtype=np.int32).reshape(-1, 6)),
)  # fmt: skip
