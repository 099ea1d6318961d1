"""File checks shared by input validation: readable regular files, first / last bytes,
BGZF detection, writable folders. Errors are :class:`varcall.core.errors.InputError` with
one line ``<file>: <what is wrong>; <the fix>``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from varcall.core.errors import InputError

__all__ = [
    "GZIP_MAGIC",
    "check_readable",
    "head_bytes",
    "tail_bytes",
    "is_bgzf",
    "nearest_existing",
    "folder_writable",
    "first_line",
]

#: The first two bytes of a gzip (and so BGZF) file.
GZIP_MAGIC = b"\x1f\x8b"


def check_readable(path: Path, what: str) -> None:
    """``path`` is an existing, readable, regular file."""
    if not path.exists():
        raise InputError(f"{path}: {what} not found; check the path")
    if path.is_dir():
        raise InputError(f"{path}: {what} is a folder, not a file; give the file's path")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: {what} is not readable; fix its permissions (chmod a+r)")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as e:
        raise InputError(f"{path}: {what} cannot be read ({e.strerror}); check the file") from e


def head_bytes(path: Path, n: int) -> bytes:
    """The first ``n`` bytes of a file (fewer when it is shorter)."""
    with open(path, "rb") as fh:
        return fh.read(n)


def tail_bytes(path: Path, n: int) -> bytes:
    """The last ``n`` bytes of a file (all of it when it is shorter)."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - n))
        return fh.read(n)


def is_bgzf(path: Path) -> bool:
    """True when the file starts with a BGZF block header (gzip + the 'BC' extra field)."""
    head = head_bytes(path, 18)
    return (
        len(head) >= 18
        and head[:2] == GZIP_MAGIC
        and head[3] & 4 != 0  # FEXTRA
        and head[12:14] == b"BC"
    )


def nearest_existing(path: Path) -> Path:
    """``path`` (made absolute) or its nearest existing parent."""
    p = path.absolute()
    while not p.exists():
        p = p.parent
    return p


def folder_writable(folder: Path) -> bool:
    """True when ``folder`` is a folder this process can create files in."""
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def first_line(text: str) -> str:
    """The first non-blank line of a tool's message (at most 200 characters)."""
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line[:200]
    return "unknown error"


@contextlib.contextmanager
def htslib_quiet() -> Iterator[None]:
    """htslib's own stderr lines (``[E::...]``) off inside the block, its verbosity restored
    after: varcall reports what went wrong in one line naming the file, and some of
    htslib's messages (``[E::sam_index]``) would name a read."""
    import pysam

    verbosity = pysam.set_verbosity(0)
    try:
        yield
    finally:
        pysam.set_verbosity(verbosity)
