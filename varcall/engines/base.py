"""Calling engines: one interface, several implementations.

An engine turns (inputs, region, parameters) into a :class:`~varcall.core.callset.CallSet`
holding exactly the variants whose 0-based POS lies in ``[region.start, region.end)``.
It is a pure function of its arguments: the same call returns the same records whatever
the worker, the thread timing or the other regions of the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from varcall.core.callset import CallSet
from varcall.core.params import CallInputs, CallParams
from varcall.core.regions import Region

__all__ = [ "Engine", "get_engine", "ENGINE_NAMES"]

ENGINE_NAMES = ("native", "bcftools", "freebayes")






class Engine(Protocol):
    """The engine interface."""

    name: str

    def check(self) -> None:
        """Raise :class:`varcall.core.errors.InputError` when the engine cannot run here
        (e.g. a missing binary), with a one-line fix."""

    def check_params(self, inputs: CallInputs, params: CallParams) -> None:
        """Raise :class:`varcall.core.errors.InputError` for parameters or inputs this engine
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
