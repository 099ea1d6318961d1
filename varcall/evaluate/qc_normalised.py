"""The QC of a concordance input measured on its normalised PASS records.

:func:`varcall.evaluate.qc.qc_stats` (sgkit) runs on a genotype dataset built here from a
:class:`NormalisedSet`: the records ``bcftools norm`` wrote (multi-allelic records split,
indels left-aligned and trimmed), PASS/unfiltered ones only, symbolic and ``*`` alleles left
out. So Ti/Tv counts the SNVs the truth comparison sees (a padded SNV is an SNV, a LowQual
record is not counted) and the other figures describe the same records.

``variant_position`` is VCF POS (1-based), as in the VCF Zarr store; haploid calls have
FILL (-2) in the second ploidy slot, missing alleles MISSING (-1).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from varcall.core.callset import FILL, MISSING
from varcall.evaluate.normalise import NormalisedSet
from varcall.evaluate.qc import qc_for_input, qc_stats

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

    from varcall.evaluate.sources import ResolvedInput

__all__ = ["dataset_from_normalised", "qc_normalised"]

logger = logging.getLogger(__name__)


def _slots(alleles: tuple) -> list[int]:
    """Two genotype slots of a normalised genotype's allele tuple."""
    if not alleles:
        return [MISSING, MISSING]
    vals = [MISSING if a is None else int(a) for a in alleles[:2]]
    return vals if len(vals) == 2 else [vals[0], FILL]


def dataset_from_normalised(ns: NormalisedSet) -> xr.Dataset:
    """An sgkit genotype-call dataset of the PASS/unfiltered records of ``ns`` (with
    ``call_DP`` when FORMAT/DP is defined)."""
    import sgkit

    contigs = list(ns.contigs)
    index = {c: i for i, c in enumerate(contigs)}
    n_samples = len(ns.samples)
    has_dp = "DP" in ns.format_ids
    cidx, pos, alleles, gts, dps = [], [], [], [], []
    for key, (_q, filters, _info, fmt) in ns.records.items():
        alt = key[3]
        if filters not in ((), ("PASS",)) or alt in ("*", ".") or alt.startswith("<"):
            continue
        if key[0] not in index:
            index[key[0]] = len(contigs)
            contigs.append(key[0])
        cidx.append(index[key[0]])
        pos.append(key[1] + 1)
        alleles.append((key[2], alt))
        gt = fmt.get("GT") or ((),) * n_samples
        gts.append([_slots(g[0]) for g in gt])
        if has_dp:
            dp = fmt.get("DP") or (None,) * n_samples
            dps.append([v if isinstance(v, int) else MISSING for v in dp])
    n = len(pos)
    ds = sgkit.create_genotype_call_dataset(
        variant_contig_names=contigs,
        variant_contig=np.array(cidx, dtype=np.int32),
        variant_position=np.array(pos, dtype=np.int32),
        variant_allele=np.array(alleles, dtype=object).reshape(n, 2),
        sample_id=np.array(ns.samples, dtype=object),
        call_genotype=np.array(gts, dtype=np.int8).reshape(n, n_samples, 2),
    )
    if has_dp:
        ds["call_DP"] = (("variants", "samples"), np.array(dps, np.int32).reshape(n, n_samples))
    return ds


def qc_normalised(resolved: ResolvedInput, ns: NormalisedSet) -> dict[str, Any]:
    """The QC of one input on its normalised PASS records; ``source`` names the input and
    ``records`` says ``"normalised PASS"``. An input without genotypes goes to
    :func:`qc_for_input`, which says why it has no QC."""
    if "GT" not in ns.format_ids or not ns.samples:
        return qc_for_input(resolved)
    res = qc_stats(dataset_from_normalised(ns))
    res["source"] = str(resolved.path)
    res["records"] = "normalised PASS"
    return res
