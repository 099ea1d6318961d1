"""varcall: germline short-variant calling from BAM files at any scale.

Data flows one way: regions -> engine per region -> partial results on disk -> merge ->
dataset/VCF -> concordance/report.

The Python API (:mod:`varcall.api`): ``varcall.call``, ``varcall.open_dataset`` and
``varcall.concordance``. They are loaded on first use, so ``import varcall`` stays light
(no Dask, numba or sgkit until then).
"""

from __future__ import annotations

import os as _os
from typing import TYPE_CHECKING, Any

# numba compiles for a generic CPU in every process varcall runs in (CLI, Dask workers,
# the fork server, batch jobs: each imports this package before any numba kernel), so the
# machine code, and every bit of a QUAL, is the same on every CPU of a heterogeneous
# cluster; numba's on-disk cache keys on the CPU name and features, so one cache serves
# them all. Must be set before numba is imported; a NUMBA_CPU_NAME the user set wins.
# See README "The native engine" (Same bits on every CPU).
_os.environ.setdefault("NUMBA_CPU_NAME", "generic")

__version__ = "0.1.0"

__all__ = ["__version__", "call", "open_dataset", "concordance"]

if TYPE_CHECKING:
    from varcall.api import call, concordance, open_dataset

_API = ("call", "open_dataset", "concordance")


def __getattr__(name: str) -> Any:
    """``varcall.call`` / ``open_dataset`` / ``concordance``, imported on first use."""
    if name in _API:
        from varcall import api

        return getattr(api, name)
    raise AttributeError(f"module 'varcall' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
