"""Minimised provenance of a finished run (``--pseudonymise-key``, ``--redact-paths``):
the manifest document, the audit lines and the files under ``OUT/work``.

The checkpoints stay full engine output (every FORMAT field, so a later run with other
``--format-fields`` can ``--resume`` them); only the sample names they carry become the
pseudonyms, and their sidecars and per-key audit files lose absolute paths and host names.
The records (and so the sidecars' record digests) do not change.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from varcall.core.callset import load_callset, save_callset
from varcall.core.files import sha256_file, write_json_atomic, write_text_atomic
from varcall.core.manifest import Manifest
from varcall.core.privacy import REDACTED, Privacy

__all__ = ["minimise_manifest", "minimise_work", "minimise_audit_lines"]

logger = logging.getLogger(__name__)


def minimise_manifest(manifest: Manifest, privacy: Privacy) -> Manifest:
    """The manifest with sample names pseudonymised and, under ``redact_paths``, paths cut
    to basenames (the digests stay) and no host name; the manifest itself when nothing is
    minimised. Its ``output_options`` say what was done."""
    manifest.output_options = privacy.describe()
    if not (privacy.options.pseudonymise_key or privacy.options.redact_paths):
        return manifest
    command = privacy.command_line(manifest.command_line)
    doc = privacy.tree(manifest.to_dict())
    doc["command_line"] = command
    if privacy.options.redact_paths:
        doc["host"] = {**doc.get("host", {}), "hostname": REDACTED}
    return Manifest.from_dict(doc)


def minimise_audit_lines(lines: Sequence[dict[str, Any]], privacy: Privacy) -> list[dict[str, Any]]:
    """Audit records with sample names, paths and host names minimised as the manifest."""
    if not (privacy.options.pseudonymise_key or privacy.options.redact_paths):
        return list(lines)
    return [privacy.tree(rec) for rec in lines]


def _rewrite_checkpoint(work: Path, key: str, privacy: Privacy) -> None:
    """Pseudonymise the samples of one checkpoint and redact its sidecar and audit file."""
    npz, side = work / f"{key}.npz", work / f"{key}.json"
    if not side.is_file():
        return
    doc = json.loads(side.read_text())
    if npz.is_file() and privacy.options.pseudonymise_key is not None:
        cs = load_callset(npz)
        renamed = privacy.samples(cs.samples)
        if renamed != cs.samples:
            save_callset(dataclasses.replace(cs, samples=renamed), npz)
            doc["file_sha256"] = sha256_file(npz)
            doc["file_size"] = npz.stat().st_size
    write_json_atomic(side, privacy.tree(doc))
    audit = work / f"{key}.audit.jsonl"
    if audit.is_file():
        out = []
        for raw in audit.read_text().splitlines():
            try:
                out.append(json.dumps(privacy.tree(json.loads(raw)), sort_keys=True) + "\n")
            except ValueError:
                continue  # a line cut short by a killed worker
        write_text_atomic(audit, "".join(out))


def minimise_work(work: Path, keys: Sequence[str], privacy: Privacy) -> None:
    """Minimise the checkpoints of ``keys`` in ``work`` (nothing when nothing is asked)."""
    if not (privacy.options.pseudonymise_key or privacy.options.redact_paths):
        return
    for key in keys:
        _rewrite_checkpoint(work, key, privacy)
    logger.info("minimised %d checkpoints", len(keys))
