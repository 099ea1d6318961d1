"""Regions on contigs without reads in any index: their place in a run, at no cost.

Planning (:func:`varcall.run.prepare.prepare`) sets apart the regions whose contig has no
record in any alignment index (:func:`varcall.plan.empty.contigs_without_reads`; such a
region's calls are empty for every engine). They get no Dask task, no checkpoint, no audit
record and no file opened; the run adds them back as *units* (:func:`with_empty_units`):
a sidecar-like record with ``empty_by_index: true``, no checkpoint ``key``, 0 variants
and the digest of no records, in genomic order among the called units. So ``regions.bed``
and the manifest list every region of the run (the manifest counts the skipped ones in
``planning.regions_empty_by_index``), the outputs keep every contig (VCF header, VCF Zarr
``contig_id``) and are byte for byte those of a run that called them, and ``--resume``
needs nothing for them. Regions are 0-based half-open.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from varcall.core.callset import FILTER_IDS
from varcall.core.regions import Region

__all__ = [
    "EMPTY_DIGEST",
    "called_sidecars",
    "empty_unit",
    "split_empty",
    "with_empty_units",
]

#: The records digest of a CallSet without records (:meth:`CallSet.digest`).
EMPTY_DIGEST = hashlib.sha256().hexdigest()


def split_empty(
    regions: Sequence[Region], empty_contigs: frozenset[str] | set[str]
) -> tuple[list[Region], list[Region]]:
    """(regions to call, regions on ``empty_contigs``), each in the given order."""
    called = [r for r in regions if r.contig not in empty_contigs]
    empty = [r for r in regions if r.contig in empty_contigs]
    return called, empty


def empty_unit(region: Region) -> dict[str, Any]:
    """The unit record (sidecar fields) of a region set apart as empty by the indexes."""
    return {
        "key": None,
        "region": [region.contig, region.start, region.end],
        "contig": region.contig,
        "n_variants": 0,
        "max_alleles": 2,
        "filter_ids": list(FILTER_IDS),
        "digest": EMPTY_DIGEST,
        "seconds": 0.0,
        "worker": None,
        "resumed": False,
        "empty_by_index": True,
    }


def with_empty_units(
    sidecars: Sequence[dict[str, Any]],
    regions: Sequence[Region],
    empty: Sequence[Region],
    contig_order: Sequence[str],
) -> tuple[list[dict[str, Any]], list[Region]]:
    """The called units (``sidecars`` of ``regions``, same order) and the ``empty``
    regions' units merged in genomic order (``contig_order``, then start): (unit records,
    their regions)."""
    rank = {c: i for i, c in enumerate(contig_order)}
    items = [(r, s) for r, s in zip(regions, sidecars)] + [(r, empty_unit(r)) for r in empty]
    items.sort(key=lambda rs: (rank[rs[0].contig], rs[0].start, rs[0].end))
    return [s for _, s in items], [r for r, _ in items]


def called_sidecars(sidecars: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The units that have a checkpoint (not set apart as empty by the indexes)."""
    return [s for s in sidecars if not s.get("empty_by_index")]
