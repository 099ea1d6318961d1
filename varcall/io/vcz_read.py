"""Reading VCF Zarr stores (varcall's and bio2zarr's) back into CallSets and VCF."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from varcall.core.callset import (
    FILL,
    INFO_FLOAT_KEYS,
    MISSING,
    CallSet,
    concat_callsets,
    n_genotypes,
)
from varcall.core.errors import InputError
from varcall.io.vcf_header import vcf_header
from varcall.io.vcf_read import parse_region
from varcall.io.vcf_write import VcfWriter

__all__ = [
    "read_vcz",
    "vcz_to_vcf",
]


def _open_store(path: str | os.PathLike) -> Any:
    import zarr

    p = Path(path)
    if not p.is_dir():
        raise InputError(f"{p}: VCF Zarr store not found; give the path of a .vcz folder")
    if (p / "zarr.json").is_file():
        raise InputError(
            f"{p}: a Zarr format 3 store, which this environment (zarr 2) cannot read; "
            "write it with --zarr-format 2 (vcf2zarr) or give the VCF"
        )
    try:
        root = zarr.open_consolidated(str(p), mode="r")
    except (KeyError, ValueError):
        try:
            root = zarr.open_group(str(p), mode="r")
        except Exception as e:
            raise InputError(f"{p}: not a Zarr store ({e}); give a VCF Zarr (.vcz) folder") from e
    required = ("variant_contig", "variant_position", "variant_allele", "contig_id", "sample_id")
    absent = [n for n in required if n not in root]
    if absent:
        raise InputError(
            f"{p}: not a VCF Zarr store (no {', '.join(absent)}); convert the VCF with "
            "'vcf2zarr convert' or give the VCF"
        )
    return root


def _int_or_missing(root: Any, name: str, sl: slice, shape: tuple[int, ...]) -> np.ndarray:
    if name in root:
        return np.asarray(root[name][sl]).astype(np.int32)
    return np.full(shape, MISSING, np.int32)


def _float_or_missing(root: Any, name: str, sl: slice, v: int) -> np.ndarray:
    """A float variants array as float32, every NaN (missing or fill sentinel) a plain NaN;
    all NaN when the store has no such float array (an integer one of another tool's
    field of the same name is not read)."""
    if name in root and root[name].dtype.kind == "f" and root[name].ndim == 1:
        x = np.asarray(root[name][sl]).astype(np.float32)
        return np.where(np.isnan(x), np.float32(np.nan), x)
    return np.full(v, np.nan, np.float32)


def _read_chunk(
    root: Any, sl: slice, contigs: list[str], samples: tuple[str, ...], fids: tuple[str, ...]
) -> Iterator[CallSet]:
    contig = np.asarray(root["variant_contig"][sl])
    v = contig.shape[0]
    s = len(samples)
    pos = np.asarray(root["variant_position"][sl]).astype(np.int64) - 1
    alleles_obj = np.asarray(root["variant_allele"][sl])
    a = alleles_obj.shape[1]
    g = n_genotypes(a)
    alleles = np.array(
        [["" if x is None else str(x) for x in row] for row in alleles_obj.tolist()], dtype=str
    ).reshape(v, a)
    if alleles.dtype.itemsize == 0:
        alleles = alleles.astype("U1")
    quality = np.full(v, np.nan, np.float32)
    if "variant_quality" in root:
        q = np.asarray(root["variant_quality"][sl]).astype(np.float32)
        keep = ~np.isnan(q)  # the missing / fill sentinels become a plain NaN
        quality[keep] = q[keep]
    filters = (
        np.asarray(root["variant_filter"][sl]).astype(bool)
        if "variant_filter" in root
        else np.zeros((v, len(fids)), bool)
    )
    fields = {
        "info_DP": _int_or_missing(root, "variant_DP", sl, (v,)),
        "genotype": (
            np.asarray(root["call_genotype"][sl]).astype(np.int8)
            if "call_genotype" in root
            else np.full((v, s, 2), MISSING, np.int8)
        ),
        "GQ": _int_or_missing(root, "call_GQ", sl, (v, s)),
        "DP": _int_or_missing(root, "call_DP", sl, (v, s)),
        "AD": _int_or_missing(root, "call_AD", sl, (v, s, a)),
        "PL": _int_or_missing(root, "call_PL", sl, (v, s, g)),
        **{f"info_{k}": _float_or_missing(root, f"variant_{k}", sl, v) for k in INFO_FLOAT_KEYS},
    }
    if fields["genotype"].shape[2] == 1:
        gt = np.full((v, s, 2), FILL, np.int8)
        gt[:, :, 0] = fields["genotype"][:, :, 0]
        fields["genotype"] = gt
    _conform_vectors(fields, (alleles != "").sum(axis=1))
    bounds = np.flatnonzero(np.diff(contig, append=-1))
    start = 0
    for stop in bounds.tolist():
        part = slice(start, stop + 1)
        yield CallSet(
            contig=contigs[int(contig[start])],
            samples=samples,
            filter_ids=fids,
            position=pos[part],
            alleles=alleles[part],
            quality=quality[part],
            filters=filters[part],
            **{k: x[part] for k, x in fields.items()},
        )
        start = stop + 1


def _conform_vectors(fields: dict[str, np.ndarray], n_alleles: np.ndarray) -> None:
    """Give AD and PL VCF Number semantics in place, as :func:`varcall.io.vcf_read.read_vcf` does:
    entries below the record's Number (R: alleles; G: genotypes of the sample's ploidy) that
    are FILL (e.g. a ``.`` stored by bio2zarr as MISSING, FILL...) become MISSING; entries
    beyond it become FILL. Replaces the two arrays of ``fields``."""
    ad, pl = fields["AD"], fields["PL"]
    n = n_alleles[:, None, None]
    k = np.arange(ad.shape[2])[None, None, :]
    ad = np.where((k < n) & (ad == FILL), MISSING, ad)
    fields["AD"] = np.where(k >= n, FILL, ad).astype(np.int32)
    haploid = (fields["genotype"][:, :, 1] == FILL)[:, :, None]
    number_g = np.where(haploid, n, n * (n + 1) // 2)
    k = np.arange(pl.shape[2])[None, None, :]
    pl = np.where((k < number_g) & (pl == FILL), MISSING, pl)
    fields["PL"] = np.where(k >= number_g, FILL, pl).astype(np.int32)


def read_vcz(
    path: str | os.PathLike, *, region: str | None = None, per_chunk: bool = False
) -> Iterator[CallSet]:
    """Read a VCF Zarr store (varcall's or bio2zarr's) into CallSets, in store order.

    Yields one CallSet per contig, or with ``per_chunk`` one per (variant chunk, contig)
    piece (bounded memory). region: ``chr`` or ``chr:start-end`` (1-based, inclusive);
    keeps the records whose REF overlaps it — as :func:`varcall.io.vcf_read.read_vcf`, bcftools
    ``-r`` and vcztools do. Allele width is the store's; missing fields read as MISSING;
    float sentinels read as NaN; AD/PL get VCF Number semantics (see
    :func:`_conform_vectors`).
    """
    root = _open_store(path)
    contigs = [str(x) for x in root["contig_id"][:].tolist()]
    samples = tuple(str(x) for x in root["sample_id"][:].tolist())
    fids = (
        tuple(str(x) for x in root["filter_id"][:].tolist()) if "filter_id" in root else ("PASS",)
    )
    if not fids or fids[0] != "PASS":
        raise InputError(f"{path}: filter_id does not start with PASS; the store is not VCF Zarr")
    want: tuple[int, int | None, int | None] | None = None
    if region is not None:
        name, start, end = parse_region(region)
        if name not in contigs:
            raise InputError(
                f"{path}: region contig {name} is not in the store; use one of its contigs"
            )
        want = (contigs.index(name), start, end)

    n = root["variant_position"].shape[0]
    step = root["variant_position"].chunks[0]
    chunks = range(0, (n + step - 1) // step)
    if want is not None and "region_index" in root:
        idx = np.asarray(root["region_index"][:])
        # rows: chunk, contig, first POS, last POS, max end (1-based, inclusive), count
        hit = idx[:, 1] == want[0]
        if want[1] is not None:
            hit &= idx[:, 4] >= want[1] + 1
        if want[2] is not None:
            hit &= idx[:, 2] <= want[2]
        chunks = sorted(set(idx[hit, 0].tolist()))

    pending: list[CallSet] = []

    def emit() -> Iterator[CallSet]:
        if pending:
            yield concat_callsets(pending) if len(pending) > 1 else pending[0]
            pending.clear()

    for c in chunks:
        sl = slice(c * step, min(n, (c + 1) * step))
        for cs in _read_chunk(root, sl, contigs, samples, fids):
            if want is not None:
                if cs.contig != contigs[want[0]]:
                    continue
                lo = want[1] if want[1] is not None else 0
                hi = want[2] if want[2] is not None else np.iinfo(np.int64).max
                end = cs.position + np.char.str_len(cs.alleles[:, 0])
                cs = cs.take((cs.position < hi) & (end > lo))
                if cs.n_variants == 0:
                    continue
            if per_chunk:
                yield cs
                continue
            if pending and pending[-1].contig != cs.contig:
                yield from emit()
            pending.append(cs)
    yield from emit()


def vcz_to_vcf(path: str | os.PathLike, out_vcf: str | os.PathLike) -> Path:
    """Write a VCF Zarr store as a bgzipped, indexed VCF (or BCF by extension); returns the
    path. The header is the store's ``vcf_header`` attribute when present, else rebuilt
    from its contigs, samples and filters."""
    root = _open_store(path)
    header = root.attrs.get("vcf_header")
    if not isinstance(header, str):
        contigs = [str(x) for x in root["contig_id"][:].tolist()]
        lengths = (
            root["contig_length"][:].tolist() if "contig_length" in root else [0] * len(contigs)
        )
        samples = [str(x) for x in root["sample_id"][:].tolist()]
        fids = [str(x) for x in root["filter_id"][:].tolist()] if "filter_id" in root else ["PASS"]
        header = vcf_header(
            list(zip(contigs, lengths)),
            samples,
            fids,
            source=str(root.attrs.get("source", "varcall")),
        )
    with VcfWriter(out_vcf, header) as w:
        for cs in read_vcz(path, per_chunk=True):
            w.write(cs)
    return Path(out_vcf)
