"""On-disk checkpoints of region tasks, and what names them.

A region's :class:`~varcall.core.callset.CallSet` is saved to ``WORK/<key>.npz``
(atomically) with a small JSON sidecar ``WORK/<key>.json`` written after it
(:func:`write_checkpoint`). ``key`` is the SHA-256 of the region, the inputs' identity
(paths, sizes, modification times, samples, contigs: :func:`inputs_identity`), the
parameters, the engine and its version, the varcall version and a digest of varcall's
source (:func:`checkpoint_key`): a checkpoint is valid for exactly one computation, so
``--resume`` can skip a region whose sidecar and file are present and consistent
(:func:`read_checkpoint`).

Each task attempt also appends JSON lines to ``WORK/<key>.audit.jsonl`` (start, then the
outcome: :func:`audit_event`), from which the run's ``audit.jsonl`` and attempt counts are
assembled.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import varcall
from varcall import __version__
from varcall.core.callset import CallSet, save_callset
from varcall.core.files import sha256_file, write_json_atomic
from varcall.core.params import CallInputs, CallParams
from varcall.core.regions import Region
from varcall.engines import Engine

__all__ = [
    "inputs_identity",
    "engine_version",
    "checkpoint_key",
    "checkpoint_keys",
    "code_digest",
    "write_checkpoint",
    "read_checkpoint",
    "audit_event",
]

logger = logging.getLogger(__name__)

#: The ``varcall`` package folder, whose ``.py`` files :func:`code_digest` hashes.
_PACKAGE_ROOT = Path(varcall.__file__).resolve().parent


def _file_identity(path: str) -> dict[str, Any]:
    st = os.stat(path)
    return {"path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def inputs_identity(inputs: CallInputs) -> dict[str, Any]:
    """What identifies the inputs of a run for checkpoints: every file's path, size and
    modification time, the samples and the contigs."""
    return {
        "reference": _file_identity(inputs.reference),
        "bams": [_file_identity(b) for b in inputs.bams],
        "samples": list(inputs.samples),
        "contigs": [[c, n] for c, n in inputs.contigs],
    }


def engine_version(engine: Engine) -> str:
    """The engine's version string (``engine.version`` if it has one, else varcall's)."""
    v = getattr(engine, "version", None)
    if callable(v):
        v = v()
    return str(v) if v else __version__


def checkpoint_key(
    region: Region | None,
    identity: dict[str, Any],
    params: CallParams,
    engine_name: str,
    engine_ver: str,
    *,
    kind: str = "region",
    contig: str | None = None,
) -> str:
    """SHA-256 (hex) naming a checkpoint. ``kind`` is ``region`` (one region of a
    distributed run) or ``whole`` (one contig of the engine's single-process run, then
    ``contig`` names it and ``region`` is None)."""
    shared = _shared_digest(identity, params, engine_name, engine_ver)
    return _unit_key(shared, region, kind, contig)


def checkpoint_keys(
    regions: Sequence[Region],
    identity: dict[str, Any],
    params: CallParams,
    engine_name: str,
    engine_ver: str,
    *,
    kind: str = "region",
) -> list[str]:
    """:func:`checkpoint_key` of every region, the shared part (inputs, parameters,
    engine, versions; large for many files or contigs) hashed once. ``kind`` ``whole``:
    the keys of the whole contigs of ``regions`` (by contig name)."""
    shared = _shared_digest(identity, params, engine_name, engine_ver)
    if kind == "whole":
        return [_unit_key(shared, None, kind, r.contig) for r in regions]
    return [_unit_key(shared, r, kind, None) for r in regions]


def _shared_digest(
    identity: dict[str, Any], params: CallParams, engine_name: str, engine_ver: str
) -> str:
    """SHA-256 of what every checkpoint key of a run shares."""
    doc = {
        "inputs": identity,
        "params": params.as_dict(),
        "engine": engine_name,
        "engine_version": engine_ver,
        "varcall": __version__,
        "code": code_digest(),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _unit_key(shared: str, region: Region | None, kind: str, contig: str | None) -> str:
    doc = {
        "kind": kind,
        "region": None if region is None else [region.contig, region.start, region.end],
        "contig": contig,
        "shared": shared,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 of varcall's own source: every ``.py`` file of the installed package, by
    relative path. Part of every checkpoint key (a patched install never reuses
    checkpoints of another), and compared on every worker with the client's (a worker
    running another varcall version stops the run; other code of the same version is
    recorded in the sidecar as ``code``). Computed once per process, so it describes the
    code that process loaded."""
    root = _PACKAGE_ROOT
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()


def write_checkpoint(
    work_dir: str | os.PathLike,
    key: str,
    callset: CallSet,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Save ``callset`` to ``WORK/<key>.npz`` and then its sidecar ``WORK/<key>.json``
    (both atomically); return the sidecar: key, contig, n_variants, max_alleles,
    filter_ids, digest (records), file_sha256, file_size plus ``extra``."""
    work = Path(work_dir)
    npz = work / f"{key}.npz"
    save_callset(callset, npz)
    sidecar = {
        **extra,
        "key": key,
        "contig": callset.contig,
        "n_variants": callset.n_variants,
        "max_alleles": callset.max_alleles,
        "filter_ids": list(callset.filter_ids),
        "digest": callset.digest(),
        "file_sha256": sha256_file(npz),
        "file_size": npz.stat().st_size,
    }
    write_json_atomic(work / f"{key}.json", sidecar)
    return sidecar


def read_checkpoint(work_dir: str | os.PathLike, key: str) -> dict[str, Any] | None:
    """The sidecar of a valid checkpoint, or None: the sidecar parses, names ``key``, and
    the ``.npz`` exists with the recorded size and SHA-256."""
    work = Path(work_dir)
    side, npz = work / f"{key}.json", work / f"{key}.npz"
    try:
        doc = json.loads(side.read_text())
        if doc.get("key") != key or not npz.is_file():
            return None
        if npz.stat().st_size != doc.get("file_size"):
            return None
        if sha256_file(npz) != doc.get("file_sha256"):
            return None
    except (OSError, ValueError):
        return None
    return doc


def audit_event(work: str | os.PathLike, key: str, event: dict[str, Any]) -> None:
    """Append one JSON line to ``WORK/<key>.audit.jsonl`` (one event of a task attempt)."""
    line = json.dumps(event, sort_keys=True) + "\n"
    with open(Path(work) / f"{key}.audit.jsonl", "a") as fh:
        fh.write(line)
