"""File helpers shared by every stage: atomic writes, the temporaries a killed writer left,
alignment-index lookup, the reference's ``.fai``, file checksums.

Atomic writes go to ``DIR/.NAME.tmp-PID-HEX`` and are renamed onto ``DIR/NAME`` only when
complete (flushed and fsynced), so a crash never leaves a half-written file under the final
name; :func:`remove_stale_temporaries` removes what killed writers left.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from varcall.core.errors import InputError

__all__ = [
    "temporary_name",
    "atomic_output",
    "write_text_atomic",
    "write_json_atomic",
    "write_tsv_atomic",
    "remove_stale_temporaries",
    "find_index",
    "read_fai",
    "sha256_file",
]

logger = logging.getLogger(__name__)


def temporary_name(path: str | os.PathLike, kind: str = "tmp") -> Path:
    """A unique sibling name for a temporary of ``path``: ``.NAME.KIND-PID-HEX``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; on a clean exit flush, fsync and
    rename it onto ``path``; on an error remove it (``path`` is never touched then)."""
    tmp = temporary_name(path)
    try:
        with open(tmp, mode, **open_kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_output(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def _finite(o: Any) -> Any:
    """``o`` with numpy scalars as Python numbers and NaN / infinities as None."""
    if getattr(o, "ndim", None) == 0 and hasattr(o, "item"):  # numpy scalar
        o = o.item()
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    return o


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json_atomic(
    path: str | os.PathLike, doc: Any, *, indent: int | None = None, sort_keys: bool = True
) -> None:
    """Write ``doc`` as JSON to ``path`` atomically. NaN and infinities become null (JSON
    has no spelling for them); numpy scalars, sets, tuples and paths are converted. With
    ``indent`` the text is indented and ends with a newline."""
    text = json.dumps(
        _finite(doc), indent=indent, sort_keys=sort_keys, default=_json_default, allow_nan=False
    )
    write_text_atomic(path, text + ("\n" if indent is not None else ""))


def write_tsv_atomic(
    path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str]
) -> None:
    """Write ``rows`` as a tab-separated table with a header line of ``columns``
    (missing values empty) to ``path`` atomically."""
    with atomic_output(path, "w", encoding="utf-8") as fh:
        fh.write("\t".join(columns) + "\n")
        for r in rows:
            fh.write("\t".join(str(r.get(c, "")) for c in columns) + "\n")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: Path, name: str) -> list[Path]:
    """Remove the temporaries (``.NAME.tmp-PID-*``, ``.NAME.old-PID-*`` and what starts
    with them) that a killed writer of ``folder/NAME`` left, i.e. whose PID is not a live
    process on this host; returns what was removed."""
    removed = []
    for p in folder.glob(f".{name}.*-*"):
        rest = p.name[len(name) + 2 :]
        kind, _, tail = rest.partition("-")
        pid = tail.split("-", 1)[0]
        if kind not in ("tmp", "old") or not pid.isdigit() or int(pid) == os.getpid():
            continue
        if _pid_alive(int(pid)):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
        logger.info("removed %s, left by an interrupted run", p)
    return removed


def find_index(path: str | os.PathLike) -> Path | None:
    """The index htslib would use for a BAM/CRAM (``X.bam.bai``, ``X.bai``, ``X.bam.csi``,
    ``X.csi``; ``X.cram.crai``, ``X.crai``), or None."""
    path = Path(path)
    exts = [".crai"] if path.suffix == ".cram" else [".bai", ".csi"]
    for ext in exts:
        for cand in (Path(f"{path}{ext}"), path.with_suffix(ext)):
            if cand.is_file():
                return cand
    return None


def read_fai(reference: str | os.PathLike) -> tuple[tuple[str, int], ...]:
    """(name, length) of every contig in the reference's ``.fai``, in file order. Raises
    :class:`InputError` naming the file when it is missing, malformed, empty or names a
    contig twice."""
    fai = Path(f"{reference}.fai")
    if not fai.is_file():
        raise InputError(
            f"{reference}: reference index {fai.name} not found; run 'samtools faidx {reference}'"
        )
    contigs: list[tuple[str, int]] = []
    seen: set[str] = set()
    for lineno, line in enumerate(fai.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 5 or not all(f.strip().isdigit() for f in fields[1:5]):
            raise InputError(
                f"{fai}: line {lineno} is not a faidx line (name, length, offset, linebases, "
                f"linewidth); delete it and run 'samtools faidx {reference}'"
            )
        name, length = fields[0], int(fields[1])
        if name in seen:
            raise InputError(
                f"{reference}: contig {name} appears twice; give each sequence a unique name"
            )
        seen.add(name)
        contigs.append((name, length))
    if not contigs:
        raise InputError(
            f"{fai}: reference index lists no contigs; delete it and run 'samtools faidx {reference}'"
        )
    return tuple(contigs)


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
