"""The decorator of every varcall kernel: ``@kernel`` (``from varcall.core.jit import kernel``).

``kernel`` is ``numba.njit(cache=True, nogil=True)`` with one change to how a kernel is
loaded from numba's on-disk cache. numba loads a cached kernel by first "refreshing" its
CPU target: it imports and installs every typing and lowering registry it has (string,
set, dict, datetime, random, linear algebra; SciPy's BLAS is imported to decide how
``np.correlate`` is lowered), about 0.3 s of every process's start (CLI, each Dask
worker). None of that is used to load machine code that is already compiled: a cached
kernel is a serialised LLVM library plus its environment, and loading it needs only the
native runtime (NRT) whose allocation functions it links against. So a varcall kernel's
cache load initialises the NRT and reads the cache entry, and skips the refresh.

Reading a cache entry imports the numba modules its environment was built in; one of
them, numba's array math, asks whether SciPy's BLAS is importable (to pick the inner
product of ``np.correlate`` / ``np.convolve`` on floats) by importing ``scipy.linalg``,
another 0.1 s. No varcall kernel uses those functions (``tests/test_jit.py`` checks the
kernel sources), so the question is answered "no" without the import: while a cache
entry is read, ``scipy.linalg.cython_blas`` is marked absent in ``sys.modules``, unless
SciPy's BLAS or numba's array math is loaded already; the mark is removed right after,
so later code that uses BLAS from numba (``np.dot``, ``np.linalg``) or imports SciPy
works as usual.

Nothing else changes:

- on a cache miss (first run, new argument types, another numba) the kernel is compiled
  by numba's own compiler, which refreshes the registries itself before compiling;
- code outside varcall (a user's own numba functions in the same process) is loaded and
  compiled as numba always does: only varcall's dispatchers are changed;
- where this numba lacks the cache methods used here, a kernel loads the usual way.

``tests/test_jit.py`` checks that a warm run loads every kernel without the registries,
with the same results, and that a cold cache still compiles.

NUMBA_CPU_NAME is set by :mod:`varcall` before numba is imported (see its ``__init__``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numba
from numba.core.runtime import nrt

__all__ = ["BLAS_MODULE", "kernel", "numba"]

#: The module numba imports to learn whether BLAS is available.
BLAS_MODULE = "scipy.linalg.cython_blas"

#: numba's array-math modules: importing one asks whether BLAS is available.
ARRAY_MATH = ("numba.np.arraymath", "numba.np.old_arraymath", "numba.np.new_arraymath")

#: Options every kernel compiles with: cached on disk, and free of the GIL, so that a
#: worker's threads (and the client's warm-up thread) run kernels at the same time.
KERNEL_OPTIONS: dict[str, Any] = {"cache": True, "nogil": True}


def kernel(fn: Callable | None = None, /, **options: Any) -> Any:
    """``numba.njit(cache=True, nogil=True, **options)`` for ``fn``, loaded from the disk
    cache without numba's registry refresh (module docstring). As ``@kernel`` or
    ``@kernel(inline="always")``."""

    def build(f: Callable) -> Any:
        dispatcher = numba.njit(**KERNEL_OPTIONS, **options)(f)
        _load_without_refresh(dispatcher)
        return dispatcher

    return build(fn) if fn is not None else build


def _load_without_refresh(dispatcher: Any) -> None:
    """Replace ``dispatcher``'s cache-load method by one that initialises the native runtime
    instead of refreshing the target context; left as is where numba's cache object does
    not have the methods this relies on."""
    cache = getattr(dispatcher, "_cache", None)
    load = getattr(cache, "_load_overload", None)
    guard = getattr(cache, "_guard_against_spurious_io_errors", None)
    if load is None or guard is None:
        return

    def load_overload(sig: Any, target_context: Any) -> Any:
        nrt.rtsys.initialize(target_context)  # the NRT functions cached code links to
        with guard(), _without_blas():
            return load(sig, target_context)
        return None  # the guard swallowed an I/O error: compile instead

    cache.load_overload = load_overload


@contextmanager
def _without_blas() -> Iterator[None]:
    """While a cache entry is read, :data:`BLAS_MODULE` marked absent, unless it or one of
    numba's array-math modules is loaded already (module docstring)."""
    block = BLAS_MODULE not in sys.modules and not any(m in sys.modules for m in ARRAY_MATH)
    if block:
        sys.modules[BLAS_MODULE] = None  # type: ignore[assignment]  # import -> ImportError
    try:
        yield
    finally:
        if block and BLAS_MODULE in sys.modules and sys.modules[BLAS_MODULE] is None:
            del sys.modules[BLAS_MODULE]
