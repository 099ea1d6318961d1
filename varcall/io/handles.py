"""Per-process reuse of opened alignment files between region tasks.

A Dask worker calls many regions in a row, each of them over every alignment file of the
cohort. Opening a file (and, for pysam, loading its index) for every region makes a region's
fixed cost grow with the cohort; this module keeps the opened handles of the last files
used, so that a worker opens each file once:

- :func:`checkout` lends an open handle of one *file version* — keyed by kind, path, size
  and modification time (ns) — and takes it back afterwards; a replaced file (another
  size or mtime) is a new key, so it is reopened and the handles of its old version are
  closed. A handle is lent to one caller at a time (threads of one worker each get their
  own), and a handle whose use raised is closed, not reused.
- The pool is a bounded LRU: at most :data:`MAX_HANDLES` idle handles in all (the
  environment variable ``VARCALL_MAX_OPEN_FILES`` changes it; 0 turns reuse off), the
  least recently used closed first.
- :func:`find_index_cached` remembers where a file's index is, per file version.

Parsed BAI/CSI indexes are kept by :mod:`varcall.io.index` (keyed the same way). Nothing
here reads or logs a read.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any

from varcall.core.files import find_index

__all__ = [
    "MAX_HANDLES",
    "checkout",
    "clear",
    "file_version",
    "find_index_cached",
    "stats",
]

logger = logging.getLogger(__name__)


def _max_handles() -> int:
    try:
        return max(0, int(os.environ.get("VARCALL_MAX_OPEN_FILES", "256")))
    except ValueError:
        return 256


#: Idle open handles kept per process (at most; least recently used closed first).
MAX_HANDLES = _max_handles()

_lock = threading.Lock()
#: (kind, path) -> (size, mtime_ns) of the version whose handles the pool holds
_versions: dict[tuple[Hashable, str], tuple[int, int]] = {}
#: (kind, path, size, mtime_ns) -> idle handles, least recently used key first
_idle: OrderedDict[tuple, list[Any]] = OrderedDict()
_counts = {"opened": 0, "reused": 0, "closed": 0, "idle": 0}


def file_version(path: str | os.PathLike) -> tuple[int, int]:
    """(size in bytes, modification time in ns) of ``path``; OSError when it is missing."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _close(handle: Any) -> None:
    _counts["closed"] += 1
    try:
        handle.close()
    except Exception:  # closing a broken handle must not hide the caller's result
        logger.debug("closing a cached handle failed", exc_info=True)


def _take(kind: Hashable, path: str, version: tuple[int, int]) -> tuple[Any | None, list[Any]]:
    """(an idle handle of this version or None, stale handles to close); under ``_lock``."""
    stale: list[Any] = []
    old = _versions.get((kind, path))
    if old is not None and old != version:
        stale = _idle.pop((kind, path, *old), [])
        _counts["idle"] -= len(stale)
    _versions[(kind, path)] = version
    key = (kind, path, *version)
    handles = _idle.get(key)
    if not handles:
        return None, stale
    _idle.move_to_end(key)
    _counts["idle"] -= 1
    return handles.pop(), stale


def _give_back(kind: Hashable, path: str, version: tuple[int, int], handle: Any) -> list[Any]:
    """Put ``handle`` back; return the handles to close (a stale version, the LRU excess)."""
    if _versions.get((kind, path)) != version or MAX_HANDLES == 0:
        return [handle]
    key = (kind, path, *version)
    _idle.setdefault(key, []).append(handle)
    _idle.move_to_end(key)
    _counts["idle"] += 1
    evicted: list[Any] = []
    while _counts["idle"] > MAX_HANDLES:
        old_key, handles = next(iter(_idle.items()))
        evicted.append(handles.pop(0))
        _counts["idle"] -= 1
        if not handles:
            del _idle[old_key]
    return evicted


@contextlib.contextmanager
def checkout(
    path: str | os.PathLike, opener: Callable[[str], Any], kind: Hashable = "file"
) -> Iterator[Any]:
    """An open handle of ``path`` (``opener(path)`` when none of its current version is
    idle), lent for the ``with`` block and kept for the next caller afterwards.

    ``kind`` tells handles of the same file apart (e.g. a raw BGZF reader vs a pysam
    AlignmentFile with a given reference). A handle whose block raised is closed. The
    caller must leave no state in the handle that the next one relies on (seek before
    reading). Raises OSError when ``path`` cannot be stat'ed."""
    path = os.fspath(path)
    version = file_version(path)
    with _lock:
        handle, stale = _take(kind, path, version)
        _counts["reused" if handle is not None else "opened"] += 1
    for h in stale:
        _close(h)
    if handle is None:
        handle = opener(path)
    try:
        yield handle
    except BaseException:
        _close(handle)
        raise
    with _lock:
        to_close = _give_back(kind, path, version, handle)
    for h in to_close:
        _close(h)


@functools.lru_cache(maxsize=4096)
def _index_of(path: str, size: int, mtime_ns: int) -> Path | None:
    return find_index(path)


def find_index_cached(path: str | os.PathLike) -> Path | None:
    """:func:`varcall.core.files.find_index`, looked up once per version of ``path`` (and
    again when the index found before has gone)."""
    path = os.fspath(path)
    index = _index_of(path, *file_version(path))
    if index is not None and not index.exists():
        _index_of.cache_clear()
        index = _index_of(path, *file_version(path))
    return index


def stats() -> dict[str, int]:
    """Counts of this process: handles ``opened``, ``reused``, ``closed`` so far, and
    ``idle`` (kept open now)."""
    with _lock:
        return dict(_counts)


def _forget_in_child() -> None:
    """After a fork: the child never uses the parent's handles (their file offsets are
    shared with the parent), it forgets them without closing them."""
    global _lock
    _lock = threading.Lock()
    _idle.clear()
    _versions.clear()
    _counts["idle"] = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def clear() -> None:
    """Close every idle handle, forget the index locations and reset the counts."""
    with _lock:
        handles = [h for hs in _idle.values() for h in hs]
        _idle.clear()
        _versions.clear()
        _counts["idle"] = 0
    for h in handles:
        _close(h)
    with _lock:
        _counts.update(opened=0, reused=0, closed=0)
    _index_of.cache_clear()
