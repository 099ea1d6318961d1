"""Shared machinery of the engines that wrap an external caller (bcftools, freebayes).

An external engine scales out exactly by two rules:

1. **Padding.** The tool runs on a *padded window* ``[start - pad, end + pad)`` (clipped
   to the contig), so every position of the region sees the same reads and the same
   read context (BAQ, indel realignment, haplotype windows) as in a whole-genome run.
2. **Ownership by POS.** Of the tool's records only those whose 0-based POS lies in
   ``[region.start, region.end)`` are kept; a record that starts in the padding belongs
   to the neighbouring region, whatever its length.

The tool's VCF is turned into a :class:`~varcall.core.callset.CallSet` by
:func:`varcall.io.vcf_read.read_vcf` (one parser for the whole project).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import shlex
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from varcall.core.callset import INFO_FLOAT_KEYS, CallSet, concat_callsets
from varcall.core.errors import InputError, VarcallError
from varcall.core.params import CallInputs, CallParams
from varcall.core.regions import Region
from varcall.engines import Engine

__all__ = [
    "padded_window",
    "split_args",
    "reject_options",
    "run_tool",
    "read_tool_vcf",
    "contig_callset",
    "per_contig",
    "ploidy_exceptions",
    "RecordDifference",
    "compare_callsets",
    "distributed_differences",
]

logger = logging.getLogger(__name__)


def padded_window(inputs: CallInputs, region: Region, pad: int) -> Region:
    """``region`` widened by ``pad`` bp on both sides, clipped to ``[0, contig length)``
    (0-based half-open)."""
    length = inputs.contig_length(region.contig)
    return Region(region.contig, max(0, region.start - pad), min(length, region.end + pad))


def split_args(engine_args: str) -> list[str]:
    """Shell-like split of ``--engine-args`` (quotes respected); InputError when unbalanced."""
    try:
        return shlex.split(engine_args)
    except ValueError as e:
        raise InputError(f"--engine-args {engine_args!r}: {e}; fix the quoting") from None


def _matches(word: str, option: str) -> bool:
    """Whether one command-line word sets ``option`` (``-r``, ``-rX``, ``--region``,
    ``--region=X``)."""
    if option.startswith("--"):
        return word == option or word.startswith(option + "=")
    return word == option or (word.startswith(option) and not word.startswith("--"))


def reject_options(words: Sequence[str], forbidden: dict[str, str], tool: str) -> None:
    """Raise InputError when ``words`` set an option varcall controls itself.

    ``forbidden`` maps option spellings (``-r``, ``--region``) to the reason / what to use
    instead.
    """
    for word in words:
        for option, why in forbidden.items():
            if _matches(word, option):
                raise InputError(
                    f"--engine-args: {tool} option {word!r} is set by varcall ({why}); "
                    f"remove it from --engine-args"
                )


def run_tool(argv: Sequence[str], *, tool: str, where: str) -> None:
    """Run ``argv`` to completion; on failure raise a one-line VarcallError naming the
    tool, the place (region or 'whole genome') and the tool's last stderr line."""
    logger.debug("running %s", shlex.join(argv))
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise InputError(f"{argv[0]}: not found; install {tool} or fix PATH") from None
    # htslib reports damaged input ("[E::bgzf_read] ...") on stderr, yet tools such as
    # bcftools mpileup may still exit 0 with the reads after the damage silently missing
    htslib_errors = [x.strip() for x in proc.stderr.splitlines() if x.startswith("[E::")]
    if proc.returncode != 0 or htslib_errors:
        lines = htslib_errors or [x.strip() for x in proc.stderr.splitlines() if x.strip()]
        # Prefer a line that looks like an error over usage text.
        errs = [x for x in lines if "error" in x.lower() or "fail" in x.lower()]
        detail = (errs or lines or [f"exit status {proc.returncode}"])[-1]
        raise VarcallError(
            f"{tool} failed on {where} (exit {proc.returncode}): {detail}; "
            "check --engine-args and the input files"
        )
    for line in proc.stderr.splitlines():
        if line.strip():
            logger.debug("%s: %s", tool, line.strip())


def read_tool_vcf(path: str | Path, samples: Sequence[str]) -> Iterator[CallSet]:
    """The tool's VCF as CallSets (one per contig, chunks of a contig concatenated)."""
    from varcall.io.vcf_read import read_vcf

    return per_contig(read_vcf(path, samples=samples))


def per_contig(callsets: Iterable[CallSet]) -> Iterator[CallSet]:
    """Concatenate consecutive CallSets of the same contig (a reader may yield chunks)."""
    for _, group in itertools.groupby(callsets, key=lambda c: c.contig):
        parts = list(group)
        yield parts[0] if len(parts) == 1 else concat_callsets(parts)


def contig_callset(callsets: Iterable[CallSet], region: Region, samples: Sequence[str]) -> CallSet:
    """The records of ``callsets`` owned by ``region`` (0-based POS in [start, end))."""
    owned = [c.restrict(region.start, region.end) for c in callsets if c.contig == region.contig]
    owned = [c for c in owned if c.n_variants]
    if not owned:
        return CallSet.empty(region.contig, samples)
    return owned[0] if len(owned) == 1 else concat_callsets(owned)


def ploidy_exceptions(inputs: CallInputs, params: CallParams) -> list[tuple[str, int, int]]:
    """(contig, length, ploidy) for the reference contigs whose ploidy differs from the
    default ``params.default_ploidy``. Unknown contig names in ``params.ploidy_by_contig`` raise
    InputError."""
    known = dict(inputs.contigs)
    for contig, ploidy in params.ploidy_by_contig:
        if contig not in known:
            raise InputError(
                f"{inputs.reference}: contig {contig!r} of --ploidy-contig is not in the "
                "reference; use a contig name from the .fai"
            )
        if ploidy not in (1, 2):
            raise InputError(f"--ploidy-contig {contig}={ploidy}: ploidy must be 1 or 2")
    if params.default_ploidy not in (1, 2):
        raise InputError(f"--ploidy {params.ploidy}: ploidy must be 1 or 2")
    return [
        (contig, length, params.ploidy_of(contig))
        for contig, length in inputs.contigs
        if params.ploidy_of(contig) != params.default_ploidy
    ]


# ----------------------------------------------------------------------------- identity
_COMPARED_FIELDS = (
    "quality", "filters", "info_DP", "genotype", "GQ", "DP", "AD", "PL",
    *(f"info_{key}" for key in INFO_FLOAT_KEYS),
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class RecordDifference:
    """One record on which the union of region runs and the whole-genome run disagree.

    position is 0-based; side is ``"whole-only"``, ``"regions-only"`` or ``"changed"``
    (same POS and alleles, different ``fields``); ``whole`` / ``regions`` hold the
    record's QUAL and GT in each run (None when absent).
    """

    contig: str
    position: int
    alleles: tuple[str, ...]
    side: str
    fields: tuple[str, ...] = ()
    whole: str | None = None
    regions: str | None = None

    def __str__(self) -> str:
        where = f"{self.contig}:{self.position + 1} {'/'.join(self.alleles)}"
        if self.side == "changed":
            return f"{where} differs in {','.join(self.fields)} (whole {self.whole}; regions {self.regions})"
        return f"{where} {self.side} ({self.whole or self.regions})"


def _record_keys(cs: CallSet) -> list[tuple[int, tuple[str, ...]]]:
    return [
        (int(cs.position[i]), tuple(a for a in cs.alleles[i].tolist() if a != ""))
        for i in range(cs.n_variants)
    ]


def _summary(cs: CallSet, i: int) -> str:
    q = cs.quality[i]
    gts = ["/".join(str(int(x)) for x in g if x != -2) for g in cs.genotype[i]]
    return f"QUAL={'.' if np.isnan(q) else f'{float(q):g}'} GT={','.join(gts)}"


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def compare_callsets(whole: CallSet, regions: CallSet) -> list[RecordDifference]:
    """Record-level differences between two CallSets of one contig (keyed by POS and
    alleles; compared on QUAL, FILTER, INFO/DP, GT, GQ, DP, AD, PL)."""
    width = max(whole.max_alleles, regions.max_alleles)
    whole, regions = whole.pad_alleles(width), regions.pad_alleles(width)
    ids = list(whole.filter_ids) + [f for f in regions.filter_ids if f not in whole.filter_ids]
    whole, regions = whole.with_filter_ids(ids), regions.with_filter_ids(ids)
    wk, rk = _record_keys(whole), _record_keys(regions)
    rindex: dict[tuple[int, tuple[str, ...]], list[int]] = {}
    for j, key in enumerate(rk):
        rindex.setdefault(key, []).append(j)
    out: list[RecordDifference] = []
    seen: set[int] = set()
    for i, key in enumerate(wk):
        js = rindex.get(key)
        if not js:
            out.append(
                RecordDifference(
                    whole.contig, key[0], key[1], "whole-only", whole=_summary(whole, i)
                )
            )
            continue
        j = js.pop(0)
        seen.add(j)
        fields = tuple(
            f for f in _COMPARED_FIELDS if not _same(getattr(whole, f)[i], getattr(regions, f)[j])
        )
        if fields:
            out.append(
                RecordDifference(
                    whole.contig,
                    key[0],
                    key[1],
                    "changed",
                    fields,
                    whole=_summary(whole, i),
                    regions=_summary(regions, j),
                )
            )
    for j, key in enumerate(rk):
        if j not in seen:
            out.append(
                RecordDifference(
                    regions.contig, key[0], key[1], "regions-only", regions=_summary(regions, j)
                )
            )
    out.sort(key=lambda d: d.position)
    return out


def distributed_differences(
    engine: Engine, inputs: CallInputs, params: CallParams, regions: Sequence[Region]
) -> list[RecordDifference]:
    """Run ``engine`` once over the whole genome and once per region of ``regions`` (which
    must tile the contigs they touch), and list every record on which the two disagree.
    An empty list means the distributed run is identical to the single-process one."""
    by_contig: dict[str, list[CallSet]] = {}
    for region in sorted(
        regions, key=lambda r: ([c for c, _ in inputs.contigs].index(r.contig), r.start)
    ):
        by_contig.setdefault(region.contig, []).append(engine.call_region(inputs, region, params))
    whole = {cs.contig: cs for cs in engine.call_whole(inputs, params)}
    out: list[RecordDifference] = []
    for contig, _ in inputs.contigs:
        if contig not in by_contig:
            continue
        union = concat_callsets(by_contig[contig])
        w = whole.get(contig, CallSet.empty(contig, inputs.samples))
        out.extend(compare_callsets(w, union))
    return out
