"""Site annotations of the native engine (strand bias, allele balance, mapping quality,
read position; definitions and FILTERs in :mod:`varcall.core.filters`), from the reads the
engine uses at each site. Kernels: :mod:`.annotations_numba_fns`.

Everything at a site comes from the reads overlapping its POS (their observation rows,
or, for MQ0F, their spans), so windows and regions never change an annotation.

- :func:`drop_low_mapq` splits the MAPQ filter off the read fetch: the window's reads are
  fetched at any MAPQ, :func:`read_spans` keeps the spans MQ0F counts, and the batch the
  pileup sees is the one a fetch with ``--min-mapq`` gives (same reads, order and pairs).
- :func:`read_annotations`: FS, SOR, MQ, MQM, MQMR, MQRankSum, ReadPosRankSum per site.
- :func:`allele_balance`: AB and ABQ from the records' AD and GT.
- :func:`quality_by_depth`: QD from the records' QUAL, GT, AD and DP.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from varcall.engines.native.annotations_numba_fns import (
    N_READ_ANNOTATIONS,
    annotate_sites,
    binomial_lower_phred,
)
from varcall.engines.native.observations import Observations
from varcall.engines.native.reads import ReadBatch

__all__ = [
    "ReadSpans",
    "read_spans",
    "drop_low_mapq",
    "read_annotations",
    "record_annotations",
    "allele_balance",
    "quality_by_depth",
    "READ_ANNOTATION_KEYS",
]

#: The columns :func:`read_annotations` computes, in order.
READ_ANNOTATION_KEYS = ("FS", "SOR", "MQ", "MQM", "MQMR", "MQRankSum", "ReadPosRankSum")
assert len(READ_ANNOTATION_KEYS) == N_READ_ANNOTATIONS


@dataclasses.dataclass(frozen=True)
class ReadSpans:
    """Sorted 0-based starts and ends of a window's reads at any MAPQ (``all_*``) and of
    those with MAPQ 0 (``zero_*``): the reads overlapping p are those with start <= p < end."""

    all_start: np.ndarray
    all_end: np.ndarray
    zero_start: np.ndarray
    zero_end: np.ndarray

    def mq0_fraction(self, pos: np.ndarray) -> np.ndarray:
        """MQ0F (float64) at 0-based positions ``pos``: reads overlapping with MAPQ 0 /
        all reads overlapping (NaN where none overlaps)."""
        n_all = _overlapping(self.all_start, self.all_end, pos)
        n_zero = _overlapping(self.zero_start, self.zero_end, pos)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n_all > 0, n_zero / np.maximum(n_all, 1), np.nan)


def _overlapping(starts: np.ndarray, ends: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Reads with start <= p < end for each p of ``pos`` (starts, ends sorted)."""
    return np.searchsorted(starts, pos, side="right") - np.searchsorted(ends, pos, side="right")


def read_spans(batch: ReadBatch) -> ReadSpans:
    """The spans MQ0F counts, from a batch fetched at any MAPQ."""
    zero = batch.mapq == 0
    return ReadSpans(
        np.sort(batch.start), np.sort(batch.end), np.sort(batch.start[zero]), np.sort(batch.end[zero])
    )


def drop_low_mapq(batch: ReadBatch, min_mapq: int) -> ReadBatch:
    """The reads of ``batch`` with MAPQ >= ``min_mapq``, in order, and the mate pairs both
    of whose reads stay: read for read the batch :func:`varcall.engines.native.reads.fetch_reads`
    returns with that ``min_mapq``. The base, quality and CIGAR arrays are shared, not
    copied (the kept reads' offsets point into them; the dropped reads' entries are never
    visited)."""
    keep = batch.mapq >= min_mapq
    if keep.all():
        return batch
    idx = np.flatnonzero(keep)
    new_index = np.full(batch.n_reads, -1, np.int64)
    new_index[idx] = np.arange(idx.shape[0])
    pairs = new_index[batch.pairs].reshape(-1, 2)
    pairs = pairs[(pairs >= 0).all(axis=1)]
    return dataclasses.replace(
        batch, start=batch.start[idx], end=batch.end[idx], mapq=batch.mapq[idx],
        flag=batch.flag[idx], sample=batch.sample[idx], qoff=batch.qoff[idx],
        qlen=batch.qlen[idx], coff=batch.coff[idx], cn=batch.cn[idx], pairs=pairs,
    )  # fmt: skip


def read_annotations(
    obs: Observations, keep: np.ndarray, want: np.ndarray, batch: ReadBatch
) -> np.ndarray:
    """(N, 7) float64 FS, SOR, MQ, MQM, MQMR, MQRankSum, ReadPosRankSum
    (:data:`READ_ANNOTATION_KEYS`)
    of the sites ``want`` (N,) bool, from their observation rows with the kept alleles
    ``keep`` (N, A); NaN elsewhere and where undefined."""
    out = np.full((keep.shape[0], N_READ_ANNOTATIONS), np.nan)
    if obs.site.shape[0]:
        annotate_sites(
            obs.site, obs.pen, obs.read, obs.qpos, np.ascontiguousarray(keep), want,
            batch.flag, batch.mapq, batch.qlen, batch.coff, batch.cn, batch.cig_op,
            batch.cig_len, out,
        )  # fmt: skip
    return out


def record_annotations(
    obs: Observations,
    keep: np.ndarray,
    pos: np.ndarray,
    idx: np.ndarray,
    batch: ReadBatch,
    spans: ReadSpans,
) -> dict[str, np.ndarray]:
    """The read annotations and MQ0F of the sites ``idx`` (the records; sites at 0-based
    ``pos``, kept alleles ``keep``), ``{key: (len(idx),) float64}``."""
    want = np.zeros(keep.shape[0], bool)
    want[idx] = True
    ann = read_annotations(obs, keep, want, batch)[idx]
    out = {key: ann[:, j] for j, key in enumerate(READ_ANNOTATION_KEYS)}
    out["MQ0F"] = spans.mq0_fraction(pos[idx])
    return out


def allele_balance(genotype: np.ndarray, ad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(AB, ABQ) (V,) float64 over the samples whose GT is REF/ALT (one copy of REF and
    one of an ALT k): AB = sum of AD[k] / sum of (AD[0] + AD[k]), NaN without such samples
    or reads; ABQ = ``-10 log10 P(X <= sum AD[k])``, X ~ Binomial(sum (AD[0] + AD[k]), 1/2):
    how unlikely so few ALT reads are for true hets (NaN where AB is)."""
    g0 = genotype[:, :, 0].astype(np.int64)
    g1 = genotype[:, :, 1].astype(np.int64)
    alt = np.maximum(g0, g1)
    het = (np.minimum(g0, g1) == 0) & (alt > 0)
    a_alt = np.take_along_axis(ad, np.clip(alt, 0, None)[:, :, None], axis=2)[:, :, 0]
    a_ref = ad[:, :, 0]
    n_alt = np.where(het, np.maximum(a_alt, 0), 0).sum(axis=1)
    n_all = n_alt + np.where(het, np.maximum(a_ref, 0), 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ab = np.where(n_all > 0, n_alt / np.maximum(n_all, 1), np.nan)
    abq = np.array([binomial_lower_phred(int(k), int(n)) for k, n in zip(n_alt, n_all)])
    return ab, np.where(n_all > 0, abq.reshape(-1), np.nan)


def quality_by_depth(
    quality: np.ndarray, genotype: np.ndarray, ad: np.ndarray, dp: np.ndarray
) -> np.ndarray:
    """QD (V,) float64 of records with QUAL ``quality`` (V,), GT ``genotype`` (V, S, 2),
    FORMAT/AD ``ad`` (V, S, A) and FORMAT/DP ``dp`` (V, S), as GATK's QualByDepth
    (without its random jitter of QD above 35): QUAL / the depth of the carriers (samples
    whose GT holds an ALT allele), each carrier's depth the sum of its AD, or its DP when
    that sum is 0; when some carriers have at least 2 ALT-supporting reads (AD beyond
    REF) only those carriers' AD sums count. NaN where the depth is 0."""
    carrier = (genotype > 0).any(axis=2)
    ad_k = np.where(ad >= 0, ad, 0).astype(np.int64)
    ad_sum = ad_k.sum(axis=2)
    alt_reads = ad_sum - ad_k[:, :, 0]
    own = np.where(ad_sum > 0, ad_sum, np.maximum(dp, 0))
    depth = np.where(carrier, own, 0).sum(axis=1)
    restricted = np.where(carrier & (alt_reads > 1), ad_sum, 0).sum(axis=1)
    depth = np.where(restricted > 0, restricted, depth)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(depth > 0, quality.astype(np.float64) / np.maximum(depth, 1), np.nan)
