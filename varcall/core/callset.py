"""The internal, engine-independent form of variant calls: :class:`CallSet`.

Every engine returns a ``CallSet`` for a region; region results are saved to disk
(``OUT/work/*.npz``) with :func:`save_callset` and merged, in genomic order, into the
VCF and the VCF Zarr store. Nothing downstream of an engine looks at engine-specific
output; everything upstream of the merge produces this form.

Conventions
-----------
- ``position`` is **0-based** (the first base of REF); VCF text adds 1.
- Integer sentinels follow VCF Zarr/sgkit: ``MISSING = -1`` (value unknown, ``.`` in VCF),
  ``FILL = -2`` (no such entry: padding beyond the number of alleles, or the second
  genotype slot of a haploid call).
- Float missing is NaN (``.`` in VCF).
- Alleles: ``alleles[v, 0]`` is REF, ``alleles[v, 1:]`` the ALTs, padded with ``""``.
- Genotype-indexed arrays (``PL``) use VCF order: for alleles j<=k, index k*(k+1)/2 + j
  (diploid); for haploid calls index = allele, padded with ``FILL``.
- ``filters`` is a boolean matrix against ``filter_ids``; ``filter_ids[0]`` is always
  ``"PASS"``. A record with no filter set is written with FILTER ``.`` (unfiltered).
- Site annotations (:data:`INFO_FLOAT_KEYS`: QUAL by depth, strand bias, allele balance, mapping quality,
  read position) are float32 columns ``info_<KEY>``, NaN where an engine does not compute
  them or they are undefined (e.g. no REF or no ALT reads); what each counts is in
  :mod:`varcall.core.filters`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from varcall.core.files import atomic_output

__all__ = [
    "MISSING",
    "FILL",
    "FILTER_IDS",
    "INFO_FLOAT_KEYS",
    "CallSet",
    "save_callset",
    "load_callset",
    "concat_callsets",
    "n_genotypes",
]

MISSING = -1
FILL = -2
#: Filters varcall's own engines may set. Other engines may add their own ids.
FILTER_IDS: tuple[str, ...] = ("PASS", "LowQual")
#: Float site annotations: CallSet attribute ``info_<KEY>``, VCF INFO/<KEY>, VCF Zarr
#: ``variant_<KEY>`` (definitions: :mod:`varcall.core.filters`).
INFO_FLOAT_KEYS: tuple[str, ...] = (
    "QD", "FS", "SOR", "AB", "ABQ", "MQ0F", "MQ", "MQM", "MQMR", "MQRankSum", "ReadPosRankSum",
)  # fmt: skip
_INFO_FLOAT_FIELDS = tuple(f"info_{k}" for k in INFO_FLOAT_KEYS)


def n_genotypes(n_alleles: int, ploidy: int = 2) -> int:
    """Number of unordered genotypes for ``n_alleles`` alleles at ``ploidy`` (1 or 2)."""
    if ploidy == 1:
        return n_alleles
    if ploidy == 2:
        return n_alleles * (n_alleles + 1) // 2
    raise ValueError(f"ploidy {ploidy} is not supported (1 or 2)")


_ARRAY_FIELDS = (
    "position",
    "alleles",
    "quality",
    "filters",
    "info_DP",
    "genotype",
    "GQ",
    "DP",
    "AD",
    "PL",
    *_INFO_FLOAT_FIELDS,
)


@dataclasses.dataclass
class CallSet:
    """Calls of one contig stretch, columnar. V variants, S samples, A max alleles,
    G max genotypes, P ploidy slots (always 2; haploid calls have FILL in slot 1).

    Attributes (shape, dtype):
        contig: contig name.
        samples: sample ids, in output order.
        filter_ids: ids of the columns of ``filters``; ``filter_ids[0] == "PASS"``.
        position: (V,) int64, 0-based.
        alleles: (V, A) numpy unicode, REF first, padded with "".
        quality: (V,) float32, NaN = missing.
        filters: (V, F) bool.
        info_DP: (V,) int32 total depth (INFO/DP), MISSING if unknown.
        genotype: (V, S, 2) int8 allele indexes, MISSING / FILL.
        GQ: (V, S) int32.  DP: (V, S) int32.
        AD: (V, S, A) int32.  PL: (V, S, G) int32.
        info_QD, info_FS, info_SOR, info_AB, info_ABQ, info_MQ0F, info_MQ, info_MQM, info_MQMR,
        info_MQRankSum, info_ReadPosRankSum: (V,) float32 site annotations (:data:`INFO_FLOAT_KEYS`),
        NaN = missing; None when constructed means all missing.
    """

    contig: str
    samples: tuple[str, ...]
    filter_ids: tuple[str, ...]
    position: np.ndarray
    alleles: np.ndarray
    quality: np.ndarray
    filters: np.ndarray
    info_DP: np.ndarray
    genotype: np.ndarray
    GQ: np.ndarray
    DP: np.ndarray
    AD: np.ndarray
    PL: np.ndarray
    info_QD: np.ndarray | None = None
    info_FS: np.ndarray | None = None
    info_SOR: np.ndarray | None = None
    info_AB: np.ndarray | None = None
    info_ABQ: np.ndarray | None = None
    info_MQ0F: np.ndarray | None = None
    info_MQ: np.ndarray | None = None
    info_MQM: np.ndarray | None = None
    info_MQMR: np.ndarray | None = None
    info_MQRankSum: np.ndarray | None = None
    info_ReadPosRankSum: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.samples = tuple(self.samples)
        self.filter_ids = tuple(self.filter_ids)
        for name in _INFO_FLOAT_FIELDS:
            value = getattr(self, name)
            if value is None:
                value = np.full(self.n_variants, np.nan, np.float32)
            setattr(self, name, np.asarray(value, np.float32))
        self.validate()

    # ------------------------------------------------------------------ shape
    @property
    def n_variants(self) -> int:
        return int(self.position.shape[0])

    @property
    def n_samples(self) -> int:
        return len(self.samples)

    @property
    def max_alleles(self) -> int:
        return int(self.alleles.shape[1])

    def validate(self) -> None:
        """Raise ``ValueError`` when arrays disagree in shape or order."""
        v, s = self.n_variants, self.n_samples
        a = self.alleles.shape[1] if self.alleles.ndim == 2 else -1
        expect = {
            "position": (v,),
            "alleles": (v, a),
            "quality": (v,),
            "filters": (v, len(self.filter_ids)),
            "info_DP": (v,),
            "genotype": (v, s, 2),
            "GQ": (v, s),
            "DP": (v, s),
            "AD": (v, s, a),
            "PL": (v, s, self.PL.shape[2] if self.PL.ndim == 3 else -1),
            **{name: (v,) for name in _INFO_FLOAT_FIELDS},
        }
        for name, shape in expect.items():
            got = getattr(self, name).shape
            if got != shape:
                raise ValueError(f"CallSet.{name} has shape {got}, expected {shape}")
        if not self.filter_ids or self.filter_ids[0] != "PASS":
            raise ValueError("CallSet.filter_ids must start with 'PASS'")
        if v > 1 and np.any(np.diff(self.position) < 0):
            raise ValueError("CallSet positions are not sorted")

    # ------------------------------------------------------------------ build
    @classmethod
    def empty(
        cls,
        contig: str,
        samples: Sequence[str],
        filter_ids: Sequence[str] = FILTER_IDS,
        max_alleles: int = 2,
    ) -> CallSet:
        """A CallSet with no variants."""
        s = len(samples)
        g = n_genotypes(max_alleles)
        return cls(
            contig=contig,
            samples=tuple(samples),
            filter_ids=tuple(filter_ids),
            position=np.zeros(0, np.int64),
            alleles=np.zeros((0, max_alleles), dtype="U1"),
            quality=np.zeros(0, np.float32),
            filters=np.zeros((0, len(filter_ids)), bool),
            info_DP=np.zeros(0, np.int32),
            genotype=np.zeros((0, s, 2), np.int8),
            GQ=np.zeros((0, s), np.int32),
            DP=np.zeros((0, s), np.int32),
            AD=np.zeros((0, s, max_alleles), np.int32),
            PL=np.zeros((0, s, g), np.int32),
        )

    def take(self, index: np.ndarray) -> CallSet:
        """Rows selected by a boolean mask or integer index (order kept)."""
        return dataclasses.replace(
            self, **{name: getattr(self, name)[index] for name in _ARRAY_FIELDS}
        )

    def restrict(self, start: int, end: int) -> CallSet:
        """Variants whose 0-based position lies in [start, end) (region ownership by POS)."""
        mask = (self.position >= start) & (self.position < end)
        return self.take(mask)

    def pad_alleles(self, max_alleles: int) -> CallSet:
        """Widen the allele and genotype axes to ``max_alleles`` (padding "" / FILL)."""
        a = self.max_alleles
        if max_alleles < a:
            raise ValueError(f"cannot shrink alleles from {a} to {max_alleles}")
        if max_alleles == a:
            return self
        v, s = self.n_variants, self.n_samples
        g_new = n_genotypes(max_alleles)
        alleles = np.full((v, max_alleles), "", dtype=f"U{max(1, self.alleles.itemsize // 4)}")
        alleles[:, :a] = self.alleles
        ad = np.full((v, s, max_alleles), FILL, np.int32)
        ad[:, :, :a] = self.AD
        pl = np.full((v, s, g_new), FILL, np.int32)
        pl[:, :, : self.PL.shape[2]] = self.PL
        return dataclasses.replace(self, alleles=alleles, AD=ad, PL=pl)

    def with_filter_ids(self, filter_ids: Sequence[str]) -> CallSet:
        """Re-express ``filters`` against a superset list of filter ids."""
        filter_ids = tuple(filter_ids)
        if filter_ids == self.filter_ids:
            return self
        missing = set(self.filter_ids) - set(filter_ids)
        if missing:
            raise ValueError(f"filter ids {sorted(missing)} missing from {filter_ids}")
        out = np.zeros((self.n_variants, len(filter_ids)), bool)
        for i, fid in enumerate(self.filter_ids):
            out[:, filter_ids.index(fid)] = self.filters[:, i]
        return dataclasses.replace(self, filter_ids=filter_ids, filters=out)

    def equals(self, other: CallSet) -> bool:
        """Exact equality of every field (NaN == NaN)."""
        if (self.contig, self.samples, self.filter_ids) != (
            other.contig,
            other.samples,
            other.filter_ids,
        ):
            return False
        for name in _ARRAY_FIELDS:
            a, b = getattr(self, name), getattr(other, name)
            if a.shape != b.shape:
                return False
            if a.dtype.kind == "f":
                if not np.array_equal(a, b, equal_nan=True):
                    return False
            elif not np.array_equal(a, b):
                return False
        return True

    def digest(self) -> str:
        """SHA-256 of the records' content (independent of allele padding width).
        Equal for a CallSet and for its pieces fed in order to :meth:`update_digest`."""
        h = hashlib.sha256()
        self.update_digest(h)
        return h.hexdigest()

    def update_digest(self, h: hashlib._Hash) -> None:
        """Feed every record, in order, into the hash object ``h``: the record digests
        (:meth:`record_digests`), 32 bytes a record. The bytes fed for a CallSet equal the
        bytes fed for its pieces in order, and pieces can be digested apart (in parallel)
        and fed in order afterwards."""
        step = max(1, _DIGEST_WORDS // max(1, self._words_per_record()))
        for lo in range(0, self.n_variants, step):
            h.update(self.record_digests(lo, min(self.n_variants, lo + step)))

    def record_digests(self, lo: int = 0, hi: int | None = None) -> bytes:
        """The SHA-256 (32 bytes) of each record of ``[lo, hi)`` (default: all), in order,
        concatenated. A record's digest is of its canonical encoding as little-endian
        int64 words (see :func:`_record_words`), which never depends on the allele padding
        width, on the string width of ``alleles``, on the order or number of
        ``filter_ids`` columns, nor on the other records. Vectorised over blocks."""
        hi = self.n_variants if hi is None else hi
        step = max(1, _DIGEST_WORDS // max(1, self._words_per_record()))
        out: list[bytes] = []
        for start in range(lo, hi, step):
            words, counts = _record_words(self, start, min(hi, start + step))
            data = memoryview(words.tobytes())
            ends = np.cumsum(counts * 8).tolist()
            begin = 0
            for end in ends:
                out.append(hashlib.sha256(data[begin:end]).digest())
                begin = end
        return b"".join(out)

    def _words_per_record(self) -> int:
        s, a = self.n_samples, self.max_alleles
        width = max(1, self.alleles.dtype.itemsize // 4)
        words = 8 + 4 * s + a + a * width + self.filters.shape[1] + s * a + self.PL.shape[2] * s
        return words + len(_INFO_FLOAT_FIELDS)


#: Upper bound on the int64 words one block of :meth:`CallSet.update_digest` builds.
_DIGEST_WORDS = 1 << 21


def _name_code(name: str) -> int:
    """A stable signed 64-bit code of a contig or filter name (its SHA-256 prefix)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little", signed=True)


def _float_bits(values: np.ndarray) -> np.ndarray:
    """float32 bits of ``values`` as int64, every NaN as 0x7FC00000."""
    f = np.asarray(values, np.float32)
    bits = f.view(np.int32).astype(np.int64)
    bits[np.isnan(f)] = 0x7FC00000
    return bits


def _record_words(cs: CallSet, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """The canonical encoding of records ``[lo, hi)`` of ``cs``, record after record, as
    one little-endian int64 array, and the number of words of each record. A record is:
    contig code, POS (0-based), QUAL as float32
    bits (every NaN as 0x7FC00000), INFO/DP, number of alleles ``na``, number of filters
    set, number of PL entries, number of samples; GT (S x 2), GQ (S), DP (S); the length of
    each of the ``na`` alleles, then their code points; the codes of the set filters
    (ascending); AD (S x na); PL (S x entries below ``na*(na+1)/2`` that are not FILL);
    the :data:`INFO_FLOAT_KEYS` annotations as float32 bits (NaN as QUAL's)."""
    v = hi - lo
    s = cs.n_samples
    alleles = cs.alleles[lo:hi]
    if alleles.dtype.kind != "U":  # e.g. object arrays of str: same text, same words
        alleles = alleles.astype(str)
    alleles = np.ascontiguousarray(alleles)
    a = alleles.shape[1]
    width = max(1, alleles.dtype.itemsize // 4)
    points = alleles.view(np.uint32).reshape(v, a, width).astype(np.int64)
    present = points != 0  # numpy strings never hold NUL: the padding of each string
    lengths = present.sum(axis=2)
    na = (lengths > 0).sum(axis=1)  # "" only pads after the last allele
    allele_ok = np.arange(a)[None, :] < na[:, None]
    ng = na * (na + 1) // 2
    pl = cs.PL[lo:hi].astype(np.int64)
    pl_ok = (np.arange(pl.shape[2])[None, None, :] < ng[:, None, None]) & (pl != FILL)
    codes = np.array([_name_code(f) for f in cs.filter_ids], np.int64)
    order = np.argsort(codes, kind="stable")
    filters = cs.filters[lo:hi][:, order]
    qbits = _float_bits(cs.quality[lo:hi])
    fixed = np.stack(
        [
            np.full(v, _name_code(cs.contig), np.int64),
            cs.position[lo:hi].astype(np.int64),
            qbits,
            cs.info_DP[lo:hi].astype(np.int64),
            na.astype(np.int64),
            filters.sum(axis=1).astype(np.int64),
            pl_ok.sum(axis=(1, 2)).astype(np.int64),
            np.full(v, s, np.int64),
        ],
        axis=1,
    )
    blocks = [
        (fixed, np.ones_like(fixed, bool)),
        (cs.genotype[lo:hi].reshape(v, 2 * s).astype(np.int64), None),
        (cs.GQ[lo:hi].astype(np.int64), None),
        (cs.DP[lo:hi].astype(np.int64), None),
        (lengths, allele_ok),
        (points.reshape(v, a * width), (present & allele_ok[:, :, None]).reshape(v, a * width)),
        (np.broadcast_to(codes[order], filters.shape), filters),
        (
            cs.AD[lo:hi].astype(np.int64).reshape(v, s * a),
            np.broadcast_to(allele_ok[:, None, :], (v, s, a)).reshape(v, s * a),
        ),
        (pl.reshape(v, -1), pl_ok.reshape(v, -1)),
        (np.stack([_float_bits(getattr(cs, n)[lo:hi]) for n in _INFO_FLOAT_FIELDS], axis=1), None),
    ]
    values = np.concatenate([b for b, _ in blocks], axis=1)
    mask = np.concatenate([np.ones(b.shape, bool) if m is None else m for b, m in blocks], axis=1)
    return values[mask].astype("<i8", copy=False), mask.sum(axis=1)


def concat_callsets(parts: Sequence[CallSet]) -> CallSet:
    """Concatenate CallSets of one contig in order, padding alleles and filters to the widest."""
    if not parts:
        raise ValueError("nothing to concatenate")
    contig, samples = parts[0].contig, parts[0].samples
    filter_ids = list(parts[0].filter_ids)
    for p in parts[1:]:
        if p.contig != contig or p.samples != samples:
            raise ValueError("CallSets to concatenate must share contig and samples")
        for f in p.filter_ids:
            if f not in filter_ids:
                filter_ids.append(f)
    width = max(p.max_alleles for p in parts)
    parts = [p.pad_alleles(width).with_filter_ids(filter_ids) for p in parts]
    out = {
        name: np.concatenate([getattr(p, name) for p in parts], axis=0) for name in _ARRAY_FIELDS
    }
    return CallSet(contig=contig, samples=samples, filter_ids=tuple(filter_ids), **out)


def save_callset(callset: CallSet, path: str | os.PathLike) -> None:
    """Write atomically: to a temporary name in the same folder, fsync, then rename."""
    path = Path(path)
    buf = io.BytesIO()
    np.savez(
        buf,
        contig=np.array(callset.contig),
        samples=np.array(callset.samples, dtype=str),
        filter_ids=np.array(callset.filter_ids, dtype=str),
        **{name: getattr(callset, name) for name in _ARRAY_FIELDS},
    )
    with atomic_output(path, "wb") as fh:
        fh.write(buf.getvalue())


def load_callset(path: str | os.PathLike) -> CallSet:
    """Read a CallSet written by :func:`save_callset` (no pickles are loaded)."""
    with np.load(path, allow_pickle=False) as z:
        return CallSet(
            contig=str(z["contig"]),
            samples=tuple(z["samples"].tolist()),
            filter_ids=tuple(z["filter_ids"].tolist()),
            # annotations absent from a file of an older version: missing
            **{name: z[name] for name in _ARRAY_FIELDS if name in z.files},
        )
