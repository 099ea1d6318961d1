"""Reading VCF/BCF files (cyvcf2) into :class:`~varcall.core.callset.CallSet` pieces.

:func:`read_vcf` maps the text back the way :mod:`varcall.io.vcf_write` writes it: POS
(1-based) becomes the 0-based ``position``; a vector shorter than its VCF Number (R:
alleles, G: genotypes of the sample's ploidy) is padded with MISSING up to the Number and
with FILL beyond, so a CallSet whose vectors hold FILL only beyond the Number round-trips
exactly (up to the width of the allele padding). Also :func:`read_vcf_header` and
:func:`parse_region` (a 1-based inclusive region text to 0-based half-open).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from varcall.core.callset import FILL, INFO_FLOAT_KEYS, MISSING, CallSet, n_genotypes
from varcall.core.errors import InputError, VarcallError

__all__ = [
    "read_vcf",
    "read_vcf_header",
    "parse_region",
]

logger = logging.getLogger(__name__)

_I32_MISSING = np.iinfo(np.int32).min
_I32_END = _I32_MISSING + 1


def parse_region(region: str) -> tuple[str, int | None, int | None]:
    """``chr``, ``chr:start-end`` or ``chr:start`` (1-based, inclusive) -> (contig, start,
    end) 0-based half-open; start/end are None when not given."""
    m = re.fullmatch(r"(.+?)(?::([\d,]+)(?:-([\d,]+))?)?", region.strip())
    if not m:
        raise InputError(f"region {region!r}: cannot parse; write chr, chr:start-end or chr:start")
    contig = m.group(1)
    if m.group(2) is None:
        return contig, None, None
    start = int(m.group(2).replace(",", "")) - 1
    end = int(m.group(3).replace(",", "")) if m.group(3) else None
    if start < 0 or (end is not None and end <= start):
        raise InputError(f"region {region!r}: start must be >= 1 and <= end (1-based, inclusive)")
    return contig, start, end


def read_vcf_header(path: str | os.PathLike) -> str:
    """The header text of a VCF/BCF file."""
    vcf = _open_vcf(path)
    try:
        return vcf.raw_header
    finally:
        vcf.close()


def _open_vcf(path: str | os.PathLike, samples: Sequence[str] | None = None):
    import cyvcf2

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: VCF not found; give the path of an existing VCF/BCF file")
    try:
        return cyvcf2.VCF(str(p), samples=list(samples) if samples is not None else None, lazy=True)
    except OSError as e:
        raise InputError(
            f"{p}: cannot read as VCF/BCF ({e}); check the file with 'bcftools view -h'"
        ) from e


def _header_filter_ids(vcf) -> list[str]:
    ids = ["PASS"]
    for rec in vcf.header_iter():
        info = rec.info()
        if info.get("HeaderType") == "FILTER":
            fid = info.get("ID")
            if fid and fid not in ids:
                ids.append(fid)
    return ids


def _header_float_info(vcf) -> tuple[str, ...]:
    """The :data:`INFO_FLOAT_KEYS` the header declares as varcall does (Number=1,
    Type=Float): another tool's field of the same name and another meaning (bcftools'
    Integer MQ) is not read."""
    keys = []
    for rec in vcf.header_iter():
        info = rec.info()
        if info.get("HeaderType") != "INFO" or info.get("ID") not in INFO_FLOAT_KEYS:
            continue
        if info.get("Number") == "1" and info.get("Type") == "Float":
            keys.append(info["ID"])
    return tuple(k for k in INFO_FLOAT_KEYS if k in keys)


# ----------------------------------------------------------------------------- columns
def _to_int(values: np.ndarray) -> np.ndarray:
    """float64 -> int32: NaN and negative values MISSING, others rounded."""
    bad = np.isnan(values) | (values < 0)
    return np.where(bad, MISSING, np.rint(np.where(bad, 0, values))).astype(np.int32)


def _genotypes(rows: list[np.ndarray | None], v: int, s: int) -> np.ndarray:
    """(V, S, 2) int8 GT from cyvcf2's per-record allele columns; haploid calls get FILL in
    slot 1, no call at all reads as MISSING."""
    gt = np.full((v, s, 2), MISSING, np.int8)
    for i, calls in enumerate(rows):
        if calls is not None:
            k = min(2, calls.shape[1])
            gt[i, :, :k] = calls[:, :k]
            if k == 1:
                gt[i, :, 1] = FILL
    gt[gt < FILL] = MISSING
    gt[:, :, 0][gt[:, :, 0] == FILL] = MISSING  # no call at all reads as [-2, -2]
    return gt


def _scalars(cols: list[np.ndarray | None], v: int, s: int) -> np.ndarray:
    """(V, S) int32 of a per-sample scalar FORMAT field (absent: MISSING)."""
    out = np.full((v, s), np.nan)
    for i, col in enumerate(cols):
        if col is not None:
            out[i] = col
    out[out <= _I32_END] = np.nan  # cyvcf2's integer missing / end-of-vector
    return _to_int(out)


def _vectors(
    rows: list[np.ndarray | None], number: np.ndarray, v: int, s: int, k: int
) -> np.ndarray:
    """(V, S, k) int32 of a vector FORMAT field: MISSING up to each call's ``number``
    (V, S), FILL beyond."""
    raw = np.full((v, s, k), np.nan)
    for i, row in enumerate(rows):
        if row is not None:
            m = min(k, row.shape[1])
            raw[i, :, :m] = row[:, :m]
    raw[raw <= _I32_END] = np.nan  # cyvcf2's integer missing / end-of-vector
    out = _to_int(raw)
    out[np.arange(k)[None, None, :] >= number[:, :, None]] = FILL
    return out


class _RecordColumns:
    """Records of one contig collected from cyvcf2 (raw, per record, one list per field),
    turned into a CallSet with whole-array operations."""

    def __init__(
        self,
        contig: str,
        samples: tuple[str, ...],
        filter_ids: list[str],
        float_keys: tuple[str, ...] = (),
    ) -> None:
        self.contig = contig
        self.samples = samples
        self.filter_ids = filter_ids
        #: INFO float annotations read, per key one value per record (NaN: absent)
        self.info_float: dict[str, list[float]] = {k: [] for k in float_keys}
        self.position: list[int] = []
        self.alleles: list[list[str]] = []
        self.quality: list[float] = []
        self.filters: list[list[str]] = []
        self.info_dp: list[int] = []
        #: per record: GT allele columns (S, P) as cyvcf2 gives them, or None
        self.gt: list[np.ndarray | None] = []
        #: per record: raw FORMAT values (S,) / (S, k), or None when absent
        self.gq: list[np.ndarray | None] = []
        self.dp: list[np.ndarray | None] = []
        self.ad: list[np.ndarray | None] = []
        self.pl: list[np.ndarray | None] = []

    def __len__(self) -> int:
        return len(self.position)

    def to_callset(self) -> CallSet:
        v, s = len(self.position), len(self.samples)
        n_alleles = np.array([len(x) for x in self.alleles], np.int64)
        a = max(2, int(n_alleles.max(initial=0)))
        g = n_genotypes(a)
        width = max([1] + [len(x) for row in self.alleles for x in row])
        alleles = np.full((v, a), "", dtype=f"U{width}")
        for i, row in enumerate(self.alleles):
            alleles[i, : len(row)] = row

        gt = _genotypes(self.gt, v, s)
        haploid = gt[:, :, 1] == FILL
        n = n_alleles[:, None]
        number_r = np.broadcast_to(n, (v, s))
        number_g = np.where(haploid, n, n * (n + 1) // 2)
        filters = np.zeros((v, len(self.filter_ids)), bool)
        index = {f: k for k, f in enumerate(self.filter_ids)}
        for i, fs in enumerate(self.filters):
            for f in fs:
                filters[i, index[f]] = True
        return CallSet(
            contig=self.contig,
            samples=self.samples,
            filter_ids=tuple(self.filter_ids),
            position=np.array(self.position, np.int64),
            alleles=alleles,
            quality=np.array(self.quality, np.float32),
            filters=filters,
            info_DP=np.array(self.info_dp, np.int32),
            genotype=gt,
            GQ=_scalars(self.gq, v, s),
            DP=_scalars(self.dp, v, s),
            AD=_vectors(self.ad, number_r, v, s, a),
            PL=_vectors(self.pl, number_g, v, s, g),
            **{f"info_{k}": np.array(x, np.float32) for k, x in self.info_float.items()},
        )


# ----------------------------------------------------------------------------- reader
def read_vcf(
    path: str | os.PathLike,
    *,
    samples: Sequence[str] | None = None,
    region: str | None = None,
    chunk_size: int | None = None,
) -> Iterator[CallSet]:
    """Read a VCF/BCF (plain, bgzipped) into CallSets, in file order.

    Yields one CallSet per contig, or, with ``chunk_size``, pieces of at most that many
    records of one contig (concatenating the pieces gives the per-contig CallSet).
    samples: the samples to keep, in this output order (default: all, file order).
    region: ``chr`` or ``chr:start-end`` (1-based, inclusive; needs a .tbi/.csi index);
    records are those htslib returns, i.e. overlapping the region.

    Fields: GT (haploid calls get FILL in slot 1; ploidy above 2 is an error), GQ (Float
    GQ is rounded), DP, AD, PL — or, when a record has GL but no PL (freebayes),
    PL = round(-10 * (GL - max GL)) per sample. QUAL (missing -> NaN), FILTER (ids from the
    header's ##FILTER lines, PASS first; undeclared ids are appended), INFO/DP, and the
    site annotations of :data:`~varcall.core.callset.INFO_FLOAT_KEYS` the header declares
    Number=1, Type=Float (missing: NaN; bcftools' MQ0F is read, its Integer MQ is not).
    Alleles are stored as written (symbolic alleles included).
    """
    p = Path(path)
    vcf = _open_vcf(p)
    file_samples = list(vcf.samples)
    vcf.close()
    if samples is None:
        out_samples = tuple(file_samples)
    else:
        out_samples = tuple(samples)
        absent = [x for x in out_samples if x not in file_samples]
        if absent:
            raise InputError(
                f"{p}: samples {', '.join(absent)} not in the file; "
                f"choose among {', '.join(file_samples[:10])}"
            )
    vcf = _open_vcf(p, samples=out_samples if samples is not None else None)
    try:
        read_order = list(vcf.samples)
        order: np.ndarray | None = np.array(
            [read_order.index(x) for x in out_samples], dtype=np.int64
        )
        if np.array_equal(order, np.arange(len(read_order))):
            order = None  # no reordering needed
        filter_ids = _header_filter_ids(vcf)
        float_keys = _header_float_info(vcf)
        records: Iterator = iter(vcf)
        if region is not None:
            try:
                # cyvcf2 loads the index when the first record is asked for
                records = iter(vcf(region))
                first = next(records, None)
            except Exception as e:  # cyvcf2 raises AssertionError / plain Exception here
                raise InputError(
                    f"{p}: cannot query region {region} ({e}); bgzip the file and index it "
                    f"with 'bcftools index -t'"
                ) from e
            records = itertools.chain([] if first is None else [first], records)
        yield from _read_records(
            p, records, out_samples, order, (filter_ids, float_keys), chunk_size
        )
    finally:
        vcf.close()


def _read_records(
    path: Path,
    records,
    samples: tuple[str, ...],
    order: np.ndarray | None,
    ids: tuple[list[str], tuple[str, ...]],
    chunk_size: int | None,
) -> Iterator[CallSet]:
    """CallSets of the records; ids: the header's filter ids and float INFO keys read."""
    filter_ids, float_keys = ids
    s = len(samples)
    columns: _RecordColumns | None = None
    seen: set[str] = set()
    last_pos = -1
    for rec in records:
        contig = rec.CHROM
        if columns is None or contig != columns.contig:
            if columns is not None and len(columns):
                yield columns.to_callset()
            if contig in seen:
                raise InputError(
                    f"{path}: records of contig {contig} are not contiguous; "
                    f"sort the file with 'bcftools sort'"
                )
            seen.add(contig)
            columns = _RecordColumns(contig, samples, filter_ids, float_keys)
            last_pos = -1
        elif chunk_size is not None and len(columns) >= chunk_size:
            yield columns.to_callset()
            columns = _RecordColumns(contig, samples, filter_ids, float_keys)
        pos0 = rec.POS - 1
        if pos0 < last_pos:
            raise InputError(
                f"{path}: {contig}:{rec.POS} comes after position {last_pos + 1}; "
                f"sort the file with 'bcftools sort'"
            )
        last_pos = pos0
        _add_record(path, columns, rec, s, order)
    if columns is not None and len(columns):
        yield columns.to_callset()


def _record_genotypes(path: Path, rec, s: int, order: np.ndarray | None) -> np.ndarray | None:
    """GT allele columns (S, P) of a cyvcf2 record in output sample order, or None."""
    if not s:
        return None
    geno = rec.genotype
    if geno is None:
        return None
    arr = geno.array()
    calls = arr[:, :-1] if order is None else arr[order, :-1]
    if calls.shape[1] > 2 and (calls[:, 2:] != -2).any():
        raise VarcallError(
            f"{path}: {rec.CHROM}:{rec.POS} has a genotype of ploidy above 2; "
            "only haploid and diploid calls are supported"
        )
    return calls


def _add_record(path: Path, columns: _RecordColumns, rec, s: int, order: np.ndarray | None) -> None:
    """Append one cyvcf2 record; ``order`` maps output samples to the file's (None: same)."""
    alts = [x for x in rec.ALT if x not in ("", ".")]
    alleles = [rec.REF, *alts]
    n = len(alleles)
    if n > 127:
        raise VarcallError(
            f"{path}: {rec.CHROM}:{rec.POS} has {n} alleles; at most 127 are supported"
        )
    columns.position.append(rec.POS - 1)
    columns.alleles.append(alleles)
    q = rec.QUAL
    columns.quality.append(np.nan if q is None else float(q))
    fs = [f for f in rec.FILTERS if f != "."]
    for f in fs:
        if f not in columns.filter_ids:
            columns.filter_ids.append(f)
    columns.filters.append(fs)
    dp = rec.INFO.get("DP")
    columns.info_dp.append(MISSING if dp is None else int(dp))
    for key, values in columns.info_float.items():
        x = rec.INFO.get(key)
        values.append(np.nan if x is None else float(x))
    columns.gt.append(_record_genotypes(path, rec, s, order))

    keys = set(rec.FORMAT) if s else set()

    def fmt(name: str) -> np.ndarray | None:
        if name not in keys:
            return None
        values = rec.format(name)
        if values is None or order is None:
            return values
        return values[order]

    gq = fmt("GQ")
    columns.gq.append(None if gq is None else gq[:, 0])
    dp_values = fmt("DP")
    columns.dp.append(None if dp_values is None else dp_values[:, 0])
    columns.ad.append(fmt("AD"))
    pl = fmt("PL")
    if pl is None:
        gl = fmt("GL")
        if gl is not None:
            gl = gl.astype(np.float64)
            with np.errstate(all="ignore"):
                best = np.nanmax(np.where(np.isnan(gl), -np.inf, gl), axis=1, keepdims=True)
                pl = np.where(np.isnan(gl) | ~np.isfinite(best), np.nan, -10.0 * (gl - best))
    columns.pl.append(pl)
