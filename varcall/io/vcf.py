"""VCF text for :class:`~varcall.core.callset.CallSet`: header, records, a BGZF+tabix writer and a reader.

Coordinates: ``CallSet.position`` is 0-based; VCF POS (written here) is 1-based.

Writing (:func:`format_bytes` — a numba kernel in :mod:`varcall.io.vcf_numba_fns` writes the
records, about 5 us a record of 3 samples — :func:`format_records`, :class:`VcfWriter`)
    - CHROM, POS = position + 1, ID ``.``, REF, ALT (``.`` when there is no ALT).
    - QUAL: the shortest decimal text that reads back as the same float32 (``30``, ``12.35``);
      ``.`` when NaN. Engines that want two decimals round before storing; the VCF and the
      VCF Zarr store then hold the same value.
    - FILTER: ``PASS`` when only PASS is set, ``.`` when nothing is set, else the set ids
      (PASS dropped) joined by ``;`` in ``filter_ids`` order.
    - INFO: ``DP=`` (omitted when MISSING); ``AC=`` per ALT and ``AN=``, computed from GT.
    - FORMAT ``GT:GQ:DP:AD:PL`` for every record and sample. MISSING is ``.``; a vector is
      written up to its last non-FILL entry (trailing FILL dropped); a vector with no known
      value is a single ``.``. GT is unphased: ``0/1``, ``./.``, haploid ``1`` / ``.``.

Reading (:func:`read_vcf`) maps back the other way: a vector shorter than its VCF Number
(R: alleles, G: genotypes of the sample's ploidy) is padded with MISSING up to the Number
and with FILL beyond, so a CallSet whose vectors hold FILL only beyond the Number round-trips
exactly (up to the width of the allele padding).
"""

from __future__ import annotations

import datetime
import itertools
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import numpy as np

from varcall.core.callset import FILL, FILTER_IDS, MISSING, CallSet, n_genotypes
from varcall.core.errors import InputError, VarcallError

__all__ = [
    "FILTER_DESCRIPTIONS",
    "vcf_header",
    "format_records",
    "format_bytes",
    "warm",
    "format_quality",
    "quality_texts",
    "allele_counts",
    "header_contigs",
    "header_filter_descriptions",
    "VcfWriter",
    "read_vcf",
    "read_vcf_header",
    "parse_region",
]

logger = logging.getLogger(__name__)

#: Descriptions of the filters varcall itself sets; other ids get a generic line.
FILTER_DESCRIPTIONS: dict[str, str] = {
    "PASS": "All filters passed",
    "LowQual": "QUAL below the --min-qual threshold",
}

INFO_LINES: tuple[str, ...] = (
    '##INFO=<ID=DP,Number=1,Type=Integer,Description="Total read depth at the site">',
    '##INFO=<ID=AC,Number=A,Type=Integer,Description="Allele count in genotypes, for each ALT allele, in the same order as listed">',
    '##INFO=<ID=AN,Number=1,Type=Integer,Description="Total number of alleles in called genotypes">',
)
FORMAT_LINES: tuple[str, ...] = (
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
    '##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Phred-scaled genotype quality">',
    '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth of the sample at the site">',
    '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Read depth for each allele">',
    '##FORMAT=<ID=PL,Number=G,Type=Integer,Description="Phred-scaled genotype likelihoods, normalised so the best is 0">',
)
FORMAT_KEYS = "GT:GQ:DP:AD:PL"
#: Contigs longer than this need a CSI index (TBI cannot address them).
_TBI_MAX_LENGTH = 2**29 - 1
_CONTIG_RE = re.compile(r"^##contig=<ID=([^,>]+)(?:,.*?length=(\d+))?")
_FILTER_RE = re.compile(r"^##FILTER=<ID=([^,>]+)")


# ----------------------------------------------------------------------------- header
def vcf_header(
    contigs: Sequence[tuple[str, int]],
    samples: Sequence[str],
    filter_ids: Sequence[str],
    *,
    source: str = "varcall",
    command_line: str | None = None,
    reference: str | None = None,
    extra_lines: Sequence[str] = (),
) -> str:
    """The complete VCF 4.2 header (meta lines and the ``#CHROM`` line), ending in a newline.

    contigs: (name, length in bp) in reference order. filter_ids: every id a record may carry
    (PASS is always declared). ``extra_lines`` are ``##`` lines added before the command line;
    an extra ``##FILTER=<ID=X,...>`` line replaces varcall's generic line for X.
    """
    extra = [line.rstrip("\n") for line in extra_lines]
    for line in extra:
        if not line.startswith("##"):
            raise ValueError(f"extra VCF header line does not start with '##': {line!r}")
    extra_filters = {m.group(1) for m in map(_FILTER_RE.match, extra) if m}
    lines = [
        "##fileformat=VCFv4.2",
        f"##fileDate={datetime.date.today().strftime('%Y%m%d')}",
        f"##source={source}",
    ]
    if reference is not None:
        ref = str(reference)
        lines.append(f"##reference={ref if '://' in ref else 'file://' + ref}")
    for name, length in contigs:
        lines.append(f"##contig=<ID={name},length={int(length)}>")
    ids = ["PASS"] + [f for f in filter_ids if f != "PASS"]
    for fid in ids:
        if fid in extra_filters:
            continue
        desc = FILTER_DESCRIPTIONS.get(fid, f"Filter {fid} set by the calling engine")
        lines.append(f'##FILTER=<ID={fid},Description="{desc}">')
    lines.extend(INFO_LINES)
    lines.extend(FORMAT_LINES)
    lines.extend(extra)
    if command_line is not None:
        lines.append(f"##varcallCommand={' '.join(command_line.splitlines())}")
    cols = ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]
    if samples:
        cols += ["FORMAT", *samples]
    lines.append("\t".join(cols))
    return "\n".join(lines) + "\n"


_FILTER_DESC_RE = re.compile(r'^##FILTER=<ID=([^,>]+),.*?Description="((?:[^"\\]|\\.)*)"')


def header_filter_descriptions(header: str) -> dict[str, str]:
    """{id: description} of the ``##FILTER`` lines of a header text."""
    out = {}
    for line in header.splitlines():
        m = _FILTER_DESC_RE.match(line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def header_contigs(header: str) -> list[tuple[str, int | None]]:
    """(name, length or None) of the ``##contig`` lines of a header text."""
    out: list[tuple[str, int | None]] = []
    for line in header.splitlines():
        m = _CONTIG_RE.match(line)
        if m:
            out.append((m.group(1), int(m.group(2)) if m.group(2) else None))
    return out


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


#: Bytes of the largest record :func:`format_bytes` writes in one kernel call (a bound).
_BLOCK_BYTES = 16 * 2**20
_FORMAT_KEYS_BYTES = np.frombuffer(FORMAT_KEYS.encode(), np.uint8)


def _text_table(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """ASCII texts as one uint8 array and offsets (text i at [off[i], off[i+1]))."""
    data = "".join(texts).encode("ascii")
    off = np.zeros(len(texts) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)), out=off[1:])
    return np.frombuffer(data, np.uint8), off


def _filter_table(callset: CallSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def format_bytes(callset: CallSet) -> bytes:
    """The VCF data lines of ``callset`` as ASCII bytes, each ending in a newline."""
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
        + (a + 3) * (INT_WIDTH + 4)
        + len(FORMAT_KEYS)
        + 16
        + s * per_sample
    )
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
            _FORMAT_KEYS_BYTES,
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


def format_records(callset: CallSet) -> list[str]:
    """VCF data lines (no trailing newline) for every record of ``callset``, in order."""
    text = format_bytes(callset).decode("ascii")
    return text.split("\n")[:-1] if text else []


# ----------------------------------------------------------------------------- writer
class VcfWriter:
    """Write a bgzipped, indexed VCF (``.vcf.gz``/``.vcf.bgz`` + ``.tbi``), a BCF (``.bcf`` +
    ``.csi``) or, for a ``.vcf`` name, plain text without an index.

    Everything is written under temporary names in the destination folder and renamed into
    place by :meth:`close`; if the ``with`` block raises, the temporaries are removed and no
    final-looking file is left (an existing file at ``path`` is kept). Records must come in
    the contig order of the header, sorted by position. A TBI index is written unless a
    contig is longer than 2^29-1 bp, when a CSI index (``.csi``) is written instead.
    compress_level: BGZF deflate level 0-9 (None: htslib's default, 6); level 1 writes about
    4x faster for files about 10% larger.
    """

    def __init__(
        self, path: str | os.PathLike, header: str, *, compress_level: int | None = None
    ) -> None:
        import pysam

        if compress_level is not None and not 0 <= compress_level <= 9:
            raise ValueError(f"compress_level must be 0..9, not {compress_level}")

        self.path = Path(path)
        self.header = header
        name = self.path.name
        if not name.endswith((".vcf.gz", ".vcf.bgz", ".bcf", ".vcf")):
            raise ValueError(f"{self.path}: name a VCF output .vcf.gz, .vcf.bgz, .bcf or .vcf")
        self.bcf = name.endswith(".bcf")
        self.plain = name.endswith(".vcf")
        lengths = [n for _, n in header_contigs(header) if n is not None]
        self.csi = self.bcf or any(n > _TBI_MAX_LENGTH for n in lengths)
        tag = f".tmp-{os.getpid()}-{id(self):x}"
        # the temporary text is BGZF VCF (plain text for .vcf); a BCF is converted on close
        self._tmp = self.path.with_name(f".{name}{tag}" + ("" if self.plain else ".vcf.gz"))
        self._tmp_final = self.path.with_name(f".{name}{tag}")
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
            self._fh.write(format_bytes(callset))
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

    def close(self) -> None:
        """Finish and rename into place."""
        if not self._closed:
            self.commit()

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

    def __enter__(self) -> VcfWriter:
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


# ----------------------------------------------------------------------------- reader
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


_I32_MISSING = np.iinfo(np.int32).min
_I32_END = _I32_MISSING + 1


def _to_int(values: np.ndarray) -> np.ndarray:
    """float64 -> int32: NaN and negative values MISSING, others rounded."""
    bad = np.isnan(values) | (values < 0)
    return np.where(bad, MISSING, np.rint(np.where(bad, 0, values))).astype(np.int32)


class _Batch:
    """Records of one contig collected from cyvcf2 (raw, per record), turned into a
    CallSet with whole-batch array operations."""

    def __init__(self, contig: str, samples: tuple[str, ...], filter_ids: list[str]) -> None:
        self.contig = contig
        self.samples = samples
        self.filter_ids = filter_ids
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

        gt = np.full((v, s, 2), MISSING, np.int8)
        for i, calls in enumerate(self.gt):
            if calls is not None:
                k = min(2, calls.shape[1])
                gt[i, :, :k] = calls[:, :k]
                if k == 1:
                    gt[i, :, 1] = FILL
        gt[gt < FILL] = MISSING
        gt[:, :, 0][gt[:, :, 0] == FILL] = MISSING  # no call at all reads as [-2, -2]
        haploid = gt[:, :, 1] == FILL

        def scalars(cols: list[np.ndarray | None]) -> np.ndarray:
            out = np.full((v, s), np.nan)
            for i, col in enumerate(cols):
                if col is not None:
                    out[i] = col
            out[out <= _I32_END] = np.nan  # cyvcf2's integer missing / end-of-vector
            return _to_int(out)

        def vectors(rows: list[np.ndarray | None], number: np.ndarray, k: int) -> np.ndarray:
            raw = np.full((v, s, k), np.nan)
            for i, row in enumerate(rows):
                if row is not None:
                    m = min(k, row.shape[1])
                    raw[i, :, :m] = row[:, :m]
            raw[raw <= _I32_END] = np.nan  # cyvcf2's integer missing / end-of-vector
            out = _to_int(raw)
            out[np.arange(k)[None, None, :] >= number[:, :, None]] = FILL
            return out

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
            GQ=scalars(self.gq),
            DP=scalars(self.dp),
            AD=vectors(self.ad, number_r, a),
            PL=vectors(self.pl, number_g, g),
        )


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
    header's ##FILTER lines, PASS first; undeclared ids are appended), INFO/DP.
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
        yield from _read_records(p, records, out_samples, order, filter_ids, chunk_size)
    finally:
        vcf.close()


def _read_records(
    path: Path,
    records,
    samples: tuple[str, ...],
    order: np.ndarray | None,
    filter_ids: list[str],
    chunk_size: int | None,
) -> Iterator[CallSet]:
    s = len(samples)
    batch: _Batch | None = None
    seen: set[str] = set()
    last_pos = -1
    for rec in records:
        contig = rec.CHROM
        if batch is None or contig != batch.contig:
            if batch is not None and len(batch):
                yield batch.to_callset()
            if contig in seen:
                raise InputError(
                    f"{path}: records of contig {contig} are not contiguous; "
                    f"sort the file with 'bcftools sort'"
                )
            seen.add(contig)
            batch = _Batch(contig, samples, filter_ids)
            last_pos = -1
        elif chunk_size is not None and len(batch) >= chunk_size:
            yield batch.to_callset()
            batch = _Batch(contig, samples, filter_ids)
        pos0 = rec.POS - 1
        if pos0 < last_pos:
            raise InputError(
                f"{path}: {contig}:{rec.POS} comes after position {last_pos + 1}; "
                f"sort the file with 'bcftools sort'"
            )
        last_pos = pos0
        _add_record(path, batch, rec, s, order)
    if batch is not None and len(batch):
        yield batch.to_callset()


def _add_record(path: Path, batch: _Batch, rec, s: int, order: np.ndarray | None) -> None:
    """Append one cyvcf2 record; ``order`` maps output samples to the file's (None: same)."""
    alts = [x for x in rec.ALT if x not in ("", ".")]
    alleles = [rec.REF, *alts]
    n = len(alleles)
    if n > 127:
        raise VarcallError(
            f"{path}: {rec.CHROM}:{rec.POS} has {n} alleles; at most 127 are supported"
        )
    batch.position.append(rec.POS - 1)
    batch.alleles.append(alleles)
    q = rec.QUAL
    batch.quality.append(np.nan if q is None else float(q))
    fs = [f for f in rec.FILTERS if f != "."]
    for f in fs:
        if f not in batch.filter_ids:
            batch.filter_ids.append(f)
    batch.filters.append(fs)
    dp = rec.INFO.get("DP")
    batch.info_dp.append(MISSING if dp is None else int(dp))

    calls = None
    if s:
        geno = rec.genotype
        if geno is not None:
            arr = geno.array()
            calls = arr[:, :-1] if order is None else arr[order, :-1]
            if calls.shape[1] > 2 and (calls[:, 2:] != -2).any():
                raise VarcallError(
                    f"{path}: {rec.CHROM}:{rec.POS} has a genotype of ploidy above 2; "
                    "only haploid and diploid calls are supported"
                )
    batch.gt.append(calls)

    keys = set(rec.FORMAT) if s else set()

    def fmt(name: str) -> np.ndarray | None:
        if name not in keys:
            return None
        values = rec.format(name)
        if values is None or order is None:
            return values
        return values[order]

    gq = fmt("GQ")
    batch.gq.append(None if gq is None else gq[:, 0])
    dp_values = fmt("DP")
    batch.dp.append(None if dp_values is None else dp_values[:, 0])
    batch.ad.append(fmt("AD"))
    pl = fmt("PL")
    if pl is None:
        gl = fmt("GL")
        if gl is not None:
            gl = gl.astype(np.float64)
            with np.errstate(all="ignore"):
                best = np.nanmax(np.where(np.isnan(gl), -np.inf, gl), axis=1, keepdims=True)
                pl = np.where(np.isnan(gl) | ~np.isfinite(best), np.nan, -10.0 * (gl - best))
    batch.pl.append(pl)
