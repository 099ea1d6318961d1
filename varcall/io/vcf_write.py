"""VCF text for :class:`~varcall.core.callset.CallSet`: records and a BGZF+tabix writer.

Coordinates: ``CallSet.position`` is 0-based; VCF POS (written here) is 1-based. The header
comes from :func:`varcall.io.vcf_header.vcf_header`.

:func:`format_bytes` (a numba kernel in :mod:`varcall.io.vcf_numba_fns` writes the records,
about 5 us a record of 3 samples), :func:`format_records`, :class:`VcfWriter`:
    - CHROM, POS = position + 1, ID ``.``, REF, ALT (``.`` when there is no ALT).
    - QUAL: the shortest decimal text that reads back as the same float32 (``30``, ``12.35``);
      ``.`` when NaN. Engines that want two decimals round before storing; the VCF and the
      VCF Zarr store then hold the same value.
    - FILTER: ``PASS`` when only PASS is set, ``.`` when nothing is set, else the set ids
      (PASS dropped) joined by ``;`` in ``filter_ids`` order.
    - INFO: ``DP=`` (omitted when MISSING); ``AC=`` per ALT and ``AN=``, computed from GT;
      then the site annotations ``QD= FS= SOR= AB= MQ0F= MQ= MQM= MQMR= MQRankSum=
      ReadPosRankSum=``
      (:data:`~varcall.core.callset.INFO_FLOAT_KEYS`, each omitted when NaN), as QUAL.
    - FORMAT ``GT:GQ:DP:AD:PL`` (or the chosen subset, GT first; none for sites-only) for
      every record and sample. MISSING is ``.``; a vector is
      written up to its last non-FILL entry (trailing FILL dropped); a vector with no known
      value is a single ``.``. GT is unphased: ``0/1``, ``./.``, haploid ``1`` / ``.``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from varcall.core.callset import FILTER_IDS, INFO_FLOAT_KEYS, CallSet, n_genotypes
from varcall.core.files import temporary_name
from varcall.io.staged import StagedWriter
from varcall.io.vcf_header import FORMAT_KEYS, header_contigs

__all__ = [
    "format_records",
    "format_bytes",
    "warm",
    "format_quality",
    "quality_texts",
    "VcfWriter",
]

logger = logging.getLogger(__name__)

#: Contigs longer than this need a CSI index (TBI cannot address them).
_TBI_MAX_LENGTH = 2**29 - 1
#: Bytes of the largest record :func:`format_bytes` writes in one kernel call (a bound).
_BLOCK_BYTES = 16 * 2**20
_FORMAT_KEYS_BYTES = np.frombuffer(FORMAT_KEYS.encode(), np.uint8)
_ALL_KEYS = tuple(FORMAT_KEYS.split(":"))


# ----------------------------------------------------------------------------- records
def format_quality(q: float) -> str:
    """QUAL text: shortest decimal that reads back as the same float32; ``.`` for NaN."""
    if np.isnan(q):
        return "."
    return np.format_float_positional(np.float32(q), unique=True, trim="-")


def quality_texts(quality: np.ndarray) -> list[str]:
    """:func:`format_quality` of every value, fast: ``%.6g`` is the shortest round-trip text
    whenever one of at most 6 significant digits exists (a float32 lies within 6e-8 of it,
    far inside the 6th digit's rounding), and is checked; others take the slow path."""
    q = np.asarray(quality, np.float32)
    with np.errstate(invalid="ignore"):  # NaN sentinels with payload bits are fine here
        texts = [f"{x:.6g}" for x in q.astype(np.float64).tolist()]
    nan = np.isnan(q)
    with np.errstate(all="ignore"):
        parsed = np.array([float(t) for t in texts], np.float64).astype(np.float32)
    bad = ~nan & ((parsed != q) | np.array(["e" in t for t in texts], bool))
    for i in np.flatnonzero(bad).tolist():
        texts[i] = format_quality(float(q[i]))
    for i in np.flatnonzero(nan).tolist():
        texts[i] = "."
    return texts


def _text_table(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """ASCII texts as one uint8 array and offsets (text i at [off[i], off[i+1]))."""
    data = "".join(texts).encode("ascii")
    off = np.zeros(len(texts) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)), out=off[1:])
    return np.frombuffer(data, np.uint8), off


def _filter_table(callset: CallSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FILTER texts of the distinct filter rows (a text table) and each record's row."""
    filters = callset.filters
    if filters.shape[1] <= 62:  # one integer per row: a 1-D unique is much faster
        keys = filters.astype(np.int64) @ (
            np.int64(1) << np.arange(filters.shape[1], dtype=np.int64)
        )
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        rows = filters[first]
    else:
        rows, inverse = np.unique(filters, axis=0, return_inverse=True)
    texts = []
    for row in rows:
        on = [f for f, flag in zip(callset.filter_ids, row.tolist()) if flag]
        if not on:
            texts.append(".")
        elif on == ["PASS"]:
            texts.append("PASS")
        else:
            texts.append(";".join(f for f in on if f != "PASS"))
    data, off = _text_table(texts)
    return data, off, np.asarray(inverse, np.int64).ravel()


def _info_table(callset: CallSet) -> tuple[np.ndarray, np.ndarray]:
    """The INFO annotation texts (``;FS=1.2;MQ=60``, without the NaN ones) of every record,
    as a text table."""
    columns = []
    for key in INFO_FLOAT_KEYS:
        values = getattr(callset, f"info_{key}")
        missing = np.isnan(values)
        if missing.all():
            continue
        texts = quality_texts(values)
        columns.append([t and f";{key}={t}" for t in np.where(missing, "", texts).tolist()])
    rows = ["".join(parts) for parts in zip(*columns)] if columns else [""] * callset.n_variants
    return _text_table(rows)


def _fields_arrays(format_fields: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """The FORMAT text and the (5,) uint8 flags of GT, GQ, DP, AD, PL for the kernel."""
    if format_fields is None:
        return _FORMAT_KEYS_BYTES, np.ones(len(_ALL_KEYS), np.uint8)
    chosen = [k for k in _ALL_KEYS if k in format_fields]
    unknown = set(format_fields) - set(_ALL_KEYS)
    if unknown:
        raise ValueError(f"unknown FORMAT field(s): {', '.join(sorted(unknown))}")
    if chosen and chosen[0] != "GT":
        raise ValueError("FORMAT fields must include GT")
    flags = np.array([k in chosen for k in _ALL_KEYS], np.uint8)
    return np.frombuffer(":".join(chosen).encode(), np.uint8), flags


def format_bytes(callset: CallSet, format_fields: Sequence[str] | None = None) -> bytes:
    """The VCF data lines of ``callset`` as ASCII bytes, each ending in a newline.

    format_fields: the per-sample fields written, in VCF order, GT first (None: all of
    ``GT:GQ:DP:AD:PL``; empty: sites-only, no FORMAT and sample columns; INFO AC/AN are
    counted from the genotypes either way)."""
    from varcall.io.vcf_numba_fns import INT_WIDTH, POS_WIDTH, write_lines

    v = callset.n_variants
    if v == 0:
        return b""
    s, a = callset.n_samples, callset.max_alleles
    alleles = callset.alleles if callset.alleles.dtype.kind == "U" else callset.alleles.astype(str)
    width = max(1, alleles.dtype.itemsize // 4)
    codes = np.ascontiguousarray(alleles, dtype=f"U{width}").view(np.uint32).reshape(v, a, width)
    if (codes >= 128).any():
        raise ValueError(f"{callset.contig}: alleles must be ASCII text")
    allele_bytes = codes.astype(np.uint8)
    allele_len = np.char.str_len(callset.alleles).astype(np.int64)
    qual_bytes, qual_off = _text_table(quality_texts(callset.quality))
    filt_bytes, filt_off, filt_idx = _filter_table(callset)
    info_bytes, info_off = _info_table(callset)
    contig = np.frombuffer(callset.contig.encode("ascii"), np.uint8)
    i32 = np.int32
    genotype = np.ascontiguousarray(callset.genotype, i32)
    gq = np.ascontiguousarray(callset.GQ, i32)
    dp = np.ascontiguousarray(callset.DP, i32)
    ad = np.ascontiguousarray(callset.AD, i32)
    pl = np.ascontiguousarray(callset.PL, i32)
    info_dp = np.ascontiguousarray(callset.info_DP, i32)
    pos = np.ascontiguousarray(callset.position, np.int64)

    # an upper bound of each record's length, to size the buffer of a block of records
    per_sample = 2 * INT_WIDTH + 2 * INT_WIDTH + (a + pl.shape[2]) * (INT_WIDTH + 1) + 8
    bound = (
        contig.shape[0]
        + POS_WIDTH
        + allele_len.sum(axis=1)
        + a
        + np.diff(qual_off)
        + (filt_off[1:] - filt_off[:-1])[filt_idx]
        + np.diff(info_off)
        + (a + 3) * (INT_WIDTH + 4)
        + len(FORMAT_KEYS)
        + 16
        + s * per_sample
    )
    keys, flags = _fields_arrays(format_fields)
    ends = np.cumsum(bound)
    out = []
    lo = 0
    while lo < v:
        base = ends[lo - 1] if lo else 0
        hi = max(lo + 1, int(np.searchsorted(ends, base + _BLOCK_BYTES, side="right")))
        hi = min(hi, v)
        buf = np.empty(int(ends[hi - 1] - base), np.uint8)
        n = write_lines(
            buf, lo, hi, contig, pos, allele_bytes, allele_len, qual_bytes, qual_off,
            filt_bytes, filt_off, filt_idx, info_dp, genotype, gq, dp, ad, pl,
            keys, flags, info_bytes, info_off,
        )  # fmt: skip
        out.append(buf[:n].tobytes())
        lo = hi
    return b"".join(out)


def warm() -> None:
    """Load the numba kernel of :func:`format_bytes` (about 0.25 s of CPU the first call
    of a process pays) by formatting a one-record CallSet. The client of a distributed
    run calls it while the workers call regions, so that the merge starts warm."""
    one = CallSet(
        contig="w",
        samples=("w",),
        filter_ids=FILTER_IDS,
        position=np.zeros(1, np.int64),
        alleles=np.array([["A", "C"]]),
        quality=np.ones(1, np.float32),
        filters=np.ones((1, len(FILTER_IDS)), bool),
        info_DP=np.ones(1, np.int32),
        genotype=np.zeros((1, 1, 2), np.int8),
        GQ=np.ones((1, 1), np.int32),
        DP=np.ones((1, 1), np.int32),
        AD=np.ones((1, 1, 2), np.int32),
        PL=np.zeros((1, 1, n_genotypes(2)), np.int32),
    )
    format_bytes(one)


def format_records(callset: CallSet, format_fields: Sequence[str] | None = None) -> list[str]:
    """VCF data lines (no trailing newline) for every record of ``callset``, in order
    (format_fields: as :func:`format_bytes`)."""
    text = format_bytes(callset, format_fields).decode("ascii")
    return text.split("\n")[:-1] if text else []


# ----------------------------------------------------------------------------- writer
class VcfWriter(StagedWriter):
    """Write a bgzipped, indexed VCF (``.vcf.gz``/``.vcf.bgz`` + ``.tbi``), a BCF (``.bcf`` +
    ``.csi``) or, for a ``.vcf`` name, plain text without an index.

    Everything is written under temporary names in the destination folder and renamed into
    place by :meth:`close`; if the ``with`` block raises, the temporaries are removed and no
    final-looking file is left (an existing file at ``path`` is kept). Records must come in
    the contig order of the header, sorted by position. A TBI index is written unless a
    contig is longer than 2^29-1 bp, when a CSI index (``.csi``) is written instead.
    compress_level: BGZF deflate level 0-9 (None: htslib's default, 6); level 1 writes about
    4x faster for files about 10% larger. format_fields: the per-sample fields written (see
    :func:`format_bytes`; the header must declare the same).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        header: str,
        *,
        compress_level: int | None = None,
        format_fields: Sequence[str] | None = None,
    ) -> None:
        import pysam

        if compress_level is not None and not 0 <= compress_level <= 9:
            raise ValueError(f"compress_level must be 0..9, not {compress_level}")

        self.path = Path(path)
        self.header = header
        self.format_fields = None if format_fields is None else tuple(format_fields)
        name = self.path.name
        if not name.endswith((".vcf.gz", ".vcf.bgz", ".bcf", ".vcf")):
            raise ValueError(f"{self.path}: name a VCF output .vcf.gz, .vcf.bgz, .bcf or .vcf")
        self.bcf = name.endswith(".bcf")
        self.plain = name.endswith(".vcf")
        lengths = [n for _, n in header_contigs(header) if n is not None]
        self.csi = self.bcf or any(n > _TBI_MAX_LENGTH for n in lengths)
        # the temporary text is BGZF VCF (plain text for .vcf); a BCF is converted on close
        self._tmp_final = temporary_name(self.path)
        self._tmp = self._tmp_final.with_name(
            self._tmp_final.name + ("" if self.plain else ".vcf.gz")
        )
        ext = ".csi" if self.csi else ".tbi"
        #: the index written beside the file (None for plain text)
        self.index_path: Path | None = (
            None if self.plain else self.path.with_name(self.path.name + ext)
        )
        self._tmp_index = self._tmp_final.with_name(self._tmp_final.name + ext)
        mode = "wb" if compress_level is None else f"wb{compress_level}"
        self._fh = open(self._tmp, "wb") if self.plain else pysam.BGZFile(str(self._tmp), mode)
        self._fh.write(header.encode())
        self._finished = False
        self._closed = False
        self.n_records = 0

    def write(self, callset: CallSet) -> None:
        """Append the records of ``callset``."""
        if callset.n_variants:
            self._fh.write(format_bytes(callset, self.format_fields))
            self.n_records += callset.n_variants

    def finish(self) -> None:
        """Finish the temporary file and its index (nothing is renamed yet)."""
        if self._finished:
            return
        import pysam
        import pysam.bcftools

        self._fh.close()
        if self.plain:
            pass  # already under its temporary final name
        elif self.bcf:
            pysam.bcftools.view(
                "-O", "b", "-o", str(self._tmp_final), str(self._tmp), catch_stdout=False
            )
            pysam.bcftools.index("-c", "-o", str(self._tmp_index), str(self._tmp_final))
            self._tmp.unlink()
        else:
            os.replace(self._tmp, self._tmp_final)
            pysam.tabix_index(
                str(self._tmp_final),
                preset="vcf",
                force=True,
                csi=self.csi,
                index=str(self._tmp_index),
            )
        self._finished = True

    def commit(self) -> None:
        """Rename the finished file and index into place (index first)."""
        self.finish()
        if self.index_path is not None:
            os.replace(self._tmp_index, self.index_path)
        os.replace(self._tmp_final, self.path)
        # an index from an earlier run that is not ours would no longer match
        for ext in (".tbi", ".csi"):
            other = self.path.with_name(self.path.name + ext)
            if other != self.index_path and other.exists():
                other.unlink()
        self._closed = True
        logger.info("wrote %s (%d records)", self.path, self.n_records)

    def abort(self) -> None:
        """Remove every temporary file; the destination is left untouched."""
        try:
            self._fh.close()
        except Exception:  # noqa: BLE001 - best effort while already failing
            pass
        for p in (self._tmp, self._tmp_final, self._tmp_index):
            if p.exists():
                p.unlink()
        self._closed = True
