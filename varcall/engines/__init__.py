"""Calling engines: one interface, several implementations.

An engine turns (inputs, region, parameters) into a :class:`~varcall.callset.CallSet`
holding exactly the variants whose 0-based POS lies in ``[region.start, region.end)``.
It is a pure function of its arguments: the same call returns the same records whatever
the worker, the thread timing or the other regions of the run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Protocol

from varcall.callset import CallSet
from varcall.regions import Region

__all__ = ["CallInputs", "CallParams", "Engine", "get_engine", "ENGINE_NAMES"]

ENGINE_NAMES = ("native", "bcftools", "freebayes")


@dataclasses.dataclass(frozen=True)
class CallInputs:
    """What a run reads. Paths are absolute strings (they travel to remote workers).

    reference: FASTA path (indexed, .fai beside it).
    bams: alignment files (BAM/CRAM), one or more samples each (by @RG SM).
    samples: output sample order (sorted unique SM values, or as given).
    contigs: (name, length) of every reference contig, in reference order.
    """

    reference: str
    bams: tuple[str, ...]
    samples: tuple[str, ...]
    contigs: tuple[tuple[str, int], ...]

    def contig_length(self, name: str) -> int:
        for c, n in self.contigs:
            if c == name:
                return n
        raise KeyError(name)


@dataclasses.dataclass(frozen=True)
class CallParams:
    """Calling parameters; every field takes part in the checkpoint hash.

    ploidy: default ploidy (1 or 2); ploidy_by_contig overrides it per contig.
    engine_args: extra command-line words passed to an external engine.
    """

    engine: str = "native"
    min_mapq: int = 20
    min_baseq: int = 13
    include_supplementary: bool = False
    ploidy: int = 2
    ploidy_by_contig: tuple[tuple[str, int], ...] = ()
    min_qual: float = 20.0
    engine_args: str = ""

    def ploidy_of(self, contig: str) -> int:
        return dict(self.ploidy_by_contig).get(contig, self.ploidy)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class Engine(Protocol):
    """The engine interface."""

    name: str

    def check(self) -> None:
        """Raise :class:`varcall.errors.InputError` when the engine cannot run here
        (e.g. a missing binary), with a one-line fix."""

    def check_params(self, inputs: CallInputs, params: CallParams) -> None:
        """Raise :class:`varcall.errors.InputError` for parameters or inputs this engine
        cannot use (e.g. a forbidden ``--engine-args`` word), before any task runs."""

    def call_region(self, inputs: CallInputs, region: Region, params: CallParams) -> CallSet:
        """Calls whose POS lies in ``region`` (reads fetched with the padding it needs)."""

    def call_whole(self, inputs: CallInputs, params: CallParams) -> Iterator[CallSet]:
        """The engine's own single-process run over everything, one CallSet per contig in
        reference order (contigs without calls may be skipped). For external tools: the tool
        run once over the whole genome."""


def get_engine(name: str) -> Engine:
    """The engine registered under ``name``."""
    if name == "native":
        from varcall.engines.native import NativeEngine

        return NativeEngine()
    if name == "bcftools":
        from varcall.engines.bcftools import BcftoolsEngine

        return BcftoolsEngine()
    if name == "freebayes":
        from varcall.engines.freebayes import FreebayesEngine

        return FreebayesEngine()
    raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINE_NAMES)}")
