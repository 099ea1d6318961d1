"""numba, as every varcall kernel module imports it (``from varcall.core.jit import numba``).

Importing this module loads numba's CPU typing and lowering registries once per process,
the work numba otherwise does when it loads or compiles its first kernel, with one
difference: numba's array-math module asks whether SciPy's BLAS is importable (to pick
the inner product of ``np.correlate`` / ``np.convolve`` on floats) by importing
``scipy.linalg``, about 0.1 s of every process's start. No varcall kernel uses those
functions (``tests/test_jit.py`` checks the kernel sources), so the question is answered
"no" here without the import: while the registries load, ``scipy.linalg.cython_blas`` is
marked absent in ``sys.modules``; the mark is removed right after, so any later code that
uses BLAS from numba (``np.dot``, ``np.linalg``) or imports SciPy works as usual. Where
SciPy or numba's array math were loaded before, nothing is changed.

NUMBA_CPU_NAME is set by :mod:`varcall` before numba is imported (see its ``__init__``).
"""

from __future__ import annotations

import sys

import numba
from numba.core.compiler_lock import global_compiler_lock
from numba.core.registry import cpu_target

__all__ = ["numba", "BLAS_MODULE"]

#: The module numba imports to learn whether BLAS is available.
BLAS_MODULE = "scipy.linalg.cython_blas"


def _load_registries() -> None:
    """Load numba's CPU registries now, with :data:`BLAS_MODULE` marked absent when
    neither it nor numba's array math is loaded yet (module docstring)."""
    block = BLAS_MODULE not in sys.modules and "numba.np.arraymath" not in sys.modules
    if block:
        sys.modules[BLAS_MODULE] = None  # type: ignore[assignment]  # import -> ImportError
    try:
        with global_compiler_lock:
            cpu_target.target_context.refresh()
    finally:
        if block and BLAS_MODULE in sys.modules and sys.modules[BLAS_MODULE] is None:
            del sys.modules[BLAS_MODULE]


_load_registries()
