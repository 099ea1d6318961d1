"""varcall's own engine: columnar pileup, joint genotyping model, numba kernels."""

from varcall.engines.native.engine import NativeEngine, warm

__all__ = ["NativeEngine", "warm"]
