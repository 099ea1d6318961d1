"""Calling engines: one interface (:mod:`varcall.engines.base`), several implementations:
``native`` (varcall's own, :mod:`varcall.engines.native`), ``bcftools``, ``freebayes``."""

from varcall.engines.base import ENGINE_NAMES, Engine, get_engine

__all__ = ["ENGINE_NAMES", "Engine", "get_engine"]
