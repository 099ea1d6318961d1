"""Pass 2 over a window's reads: per (site, read) allele penalties (see
:mod:`varcall.engines.native.pileup`, step 4). Kernels: :mod:`.observations_numba_fns`."""

from __future__ import annotations

import dataclasses

import numpy as np

from varcall.engines.native.observations_numba_fns import obs_pass
from varcall.engines.native.pileup import CALL_REACH, INDEL_LEFT_FLANK, MAX_ALLELES, SNV_CONTEXT
from varcall.engines.native.reads import ReadBatch
from varcall.engines.native.sites import Sites

__all__ = ["Observations", "site_observations"]


@dataclasses.dataclass
class Observations:
    """One row per (site, read) used: site (index into Sites), sample, pen (A,) float64
    phred penalty of each allele relative to the read's best (0 for the best; unused
    allele slots 0), best (int8 allele index the read supports uniquely, -1 if tied),
    read (int64 index of the read in the window's ReadBatch), qpos (int32 query offset of
    the read's base aligned at POS; for the site annotations)."""

    site: np.ndarray
    sample: np.ndarray
    pen: np.ndarray
    best: np.ndarray
    read: np.ndarray
    qpos: np.ndarray


def _output_columns(n: int) -> tuple[np.ndarray, ...]:
    """Uninitialised (site, sample, pen, best, read, qpos) columns of
    :class:`Observations`, n rows."""
    return (
        np.empty(n, np.int64),
        np.empty(n, np.int32),
        np.empty((n, MAX_ALLELES)),
        np.empty(n, np.int8),
        np.empty(n, np.int64),
        np.empty(n, np.int32),
    )


def site_observations(
    sites: Sites,
    batch: ReadBatch,
    ref: np.ndarray,
    ref_lo: int,
    min_baseq: int,
    emit: np.ndarray | None = None,
) -> Observations:
    """Pass 2: the per-read allele penalties at every candidate site (module docstring of
    :mod:`varcall.engines.native.pileup`).

    ``emit`` (N,) bool selects the sites to observe (default all); the others still serve
    as shadowing indel sites for SNV sites after them."""
    n_reads = batch.n_reads
    if sites.n_sites == 0 or n_reads == 0:
        return Observations(*_output_columns(0))
    order = np.argsort(batch.start, kind="stable")
    sorted_start = batch.start[order]
    max_span = int((batch.end - batch.start).max())
    if emit is None:
        emit = np.ones(sites.n_sites, bool)
    # the column tuples obs_pass unpacks (see its docstring for the order)
    site_cols = (
        sites.pos, sites.n_alleles, sites.hap, sites.cmp_len, sites.indel, sites.cap,
        sites.allele_indel, sites.shift, sites.del_end, sites.cand, sites.hap_cand,
        sites.n_neighbour, (sites.st_keep, sites.st_trans),
    )  # fmt: skip
    read_cols = (
        batch.start, batch.end, batch.mapq, batch.sample, batch.qoff, batch.qlen, batch.coff,
        batch.cn, batch.cig_op, batch.cig_len, batch.bases, batch.quals, batch.raw_quals,
        *batch.mates(),
    )  # fmt: skip
    args = (
        site_cols, read_cols, emit, order, sorted_start, max_span, ref, ref_lo, min_baseq,
        INDEL_LEFT_FLANK, SNV_CONTEXT, CALL_REACH,
    )  # fmt: skip
    n = obs_pass(*args, True, _output_columns(0))
    out = _output_columns(n)
    obs_pass(*args, False, out)
    return Observations(*out)
