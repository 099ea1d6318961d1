"""glibc malloc settings for varcall's own processes: the ``varcall`` command and the local
Dask workers it starts (never a process that merely imports varcall, such as a notebook).

Each window of reads is decoded into new numpy arrays (bases, qualities, CIGARs, the
observation rows), tens to hundreds of MB for a large cohort, and freed when the window
is done. glibc serves blocks over its mmap threshold (at most 32 MiB) with a fresh
``mmap`` and unmaps them on ``free``, so every window faults all of those pages in again,
and on a virtual machine a page fault is slow and uneven (3.7-10 us here, and the VM's
memory reclaim makes it worse at times). Measured on the 32-sample benchmark cohort, two
of its four contigs single-process: 836,000 minor faults and 6.3 s of system time in a
38.2 s run. With no mmap for large blocks (``M_MMAP_MAX`` 0: they come from the heap and
a freed block is reused by the next window) and no trimming of the heap below 1 GiB
(``M_TRIM_THRESHOLD``): 122,000 faults, 2.3 s, 34.5 s, the same calls; peak RSS 4 % higher
(the heap keeps its freed blocks until the process ends). One arena (``M_ARENA_MAX`` 1):
a Dask worker runs its tasks in a thread, whose own arena lives in 64 MiB heaps of its
own mappings; without mmap a larger block there first fails, then falls back to the main
heap, which made 2 workers slower (50 s instead of 38-43 s on the cohort).

:data:`ENVIRON` are the same settings as environment variables, for a process started
with them (the fork server of the local workers: :mod:`varcall.run.forkserver`; glibc
reads them when the process starts, and forked workers inherit the settings).
:func:`keep_freed_memory` applies them to the running process through ``mallopt``. A
user's own ``MALLOC_*`` variables win: then nothing is changed.

Transparent huge pages: numpy asks the kernel for huge pages (``madvise(MADV_HUGEPAGE)``)
on every array of 4 MiB or more. Where the kernel's THP ``defrag`` setting is ``madvise``
(Debian's default) each such fault then compacts memory to find 2 MiB, and on a virtual
machine the host must back all of it at once: measured on one 1.3 Mb contig of the
32-sample cohort, single-process, 2.6-2.9 s of system time in an 18.3-18.8 s run, and
0.6-0.7 s in 15.4-16.6 s without (more faults, each far cheaper; the same calls). The
arrays are reused window after window from the kept heap, so huge pages would save TLB
misses only. :func:`no_huge_pages` turns numpy's request off in the running process and
:func:`worker_environ` gives the workers ``NUMPY_MADVISE_HUGEPAGE=0`` (numpy reads it at
import), unless the environment sets that variable: then it is left as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

__all__ = [
    "ENVIRON",
    "HUGEPAGE_VARIABLE",
    "keep_freed_memory",
    "no_huge_pages",
    "user_malloc_settings",
    "worker_environ",
]

logger = logging.getLogger(__name__)

#: ``mallopt`` parameters (glibc ``malloc.h``).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4
M_ARENA_MAX = -8

#: Heap kept before glibc trims it (bytes), and extra heap requested per growth.
TRIM_THRESHOLD = 1 << 30
TOP_PAD = 64 << 20

#: numpy's switch for huge-page requests, read when numpy is imported.
HUGEPAGE_VARIABLE = "NUMPY_MADVISE_HUGEPAGE"

#: The settings as the environment variables glibc reads at process start.
ENVIRON = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
    "MALLOC_TOP_PAD_": str(TOP_PAD),
}


def user_malloc_settings() -> bool:
    """Whether the environment already holds glibc malloc settings (the user's own, or
    this module's in a process started with :data:`ENVIRON`)."""
    return any(k.startswith("MALLOC_") for k in os.environ)


def worker_environ() -> dict[str, str]:
    """The variables a local worker process gets: :data:`ENVIRON` unless the environment
    already holds ``MALLOC_*`` settings, and ``NUMPY_MADVISE_HUGEPAGE=0`` unless it sets
    that variable (what the environment holds passes on as it is)."""
    out = {} if user_malloc_settings() else dict(ENVIRON)
    if HUGEPAGE_VARIABLE not in os.environ:
        out[HUGEPAGE_VARIABLE] = "0"
    return out


def no_huge_pages() -> bool:
    """Turn off numpy's huge-page requests for large arrays in this process (module
    docstring) unless the environment sets ``NUMPY_MADVISE_HUGEPAGE``; returns whether
    they were turned off."""
    if HUGEPAGE_VARIABLE in os.environ:
        return False
    import numpy as np

    core = getattr(np, "_core", None) or getattr(np, "core", None)
    setter = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    if setter is None:
        return False
    setter(False)
    return True


def keep_freed_memory() -> bool:
    """Apply :data:`ENVIRON`'s settings to this process with ``mallopt`` (module
    docstring). Returns whether they were applied: False on a C library other than glibc
    (musl, macOS) and where the environment holds ``MALLOC_*`` variables."""
    if user_malloc_settings():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = all(
        mallopt(param, value) == 1
        for param, value in (
            (M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)
        )  # fmt: skip
    )
    logger.debug("malloc settings for large arrays %s", "applied" if ok else "refused")
    return ok
