"""``varcall audit OUT``: who read which input data, where and when, from a run's
``OUT/audit.jsonl`` (one JSON line per task attempt, written by
:mod:`varcall.run.record`) and its ``manifest.json`` when there.

:func:`summarise_audit` gives a JSON-ready summary: every task (region) with its attempts
(worker, host, start/end, outcome, error), every input with the regions read from it, the
workers and hosts, and the outcome counts; :func:`format_audit` the same as text.

Regions are 1-based inclusive strings (``chr1:1-40000``, as in the audit) in the output;
inside they are :class:`~varcall.core.regions.Region` (0-based half-open). An attempt
reads its region of each alignment file plus the engine's padding (a few hundred to a few
thousand bp on both sides, README "Why distributed equals single-machine"), and the same
stretch of the reference. Times are UTC, ISO 8601. Nothing here reads the alignments.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from varcall.core.errors import InputError
from varcall.core.manifest import read_manifest
from varcall.core.regions import Region, merge_regions, sort_regions

__all__ = ["AUDIT_NAME", "read_audit", "summarise_audit", "format_audit", "worker_host"]

logger = logging.getLogger(__name__)

#: The audit file of a run folder.
AUDIT_NAME = "audit.jsonl"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def read_audit(out: str | os.PathLike) -> list[dict[str, Any]]:
    """The attempt records of ``OUT/audit.jsonl`` in file order. Raises
    :class:`InputError` (one line, naming the file and the fix) when the file is missing
    or a line is not a JSON object with a ``region``."""
    path = Path(out) / AUDIT_NAME
    if not Path(out).is_dir():
        raise InputError(f"{out}: no such folder; give the --out folder of a 'varcall call'")
    if not path.is_file():
        raise InputError(
            f"{path}: not found; give the --out folder of a finished 'varcall call' "
            "(an interrupted run has its attempts in OUT/work/*.audit.jsonl)"
        )
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise InputError(f"{path}: line {number} is not JSON ({e}); the file is damaged") from e
        if not isinstance(rec, dict) or not isinstance(rec.get("region"), str):
            raise InputError(f"{path}: line {number} is not an attempt record; the file is damaged")
        records.append(rec)
    return records


def worker_host(worker: str | None) -> str:
    """The host of a worker name as the audit writes it: ``name@tcp://host:port`` (Dask),
    ``local@host:pid`` / ``single-process@host:pid`` (no Dask) or ``name@host-<digest>``
    (``--redact-paths``). ``unknown`` when there is none."""
    if not worker or "@" not in worker:
        return "unknown"
    where = worker.split("@", 1)[1]
    where = where.split("://", 1)[-1]
    if where.startswith("["):  # [ipv6]:port
        return where[1:].split("]", 1)[0]
    host, sep, tail = where.rpartition(":")
    return host if sep and tail.isdigit() else where


def _region(text: str) -> Region:
    """A 1-based inclusive region string of the audit (``chr:START-END``) as a Region."""
    name, _, span = text.rpartition(":")
    a, _, b = span.partition("-")
    try:
        return Region(name, int(a) - 1, int(b))
    except ValueError:
        return Region(text, 0, 0)  # not a span: kept by name


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat()


def _attempt_doc(rec: dict[str, Any]) -> dict[str, Any]:
    start, end = rec.get("start"), rec.get("end")
    doc = {
        "run_id": rec.get("run_id"),
        "worker": rec.get("worker"),
        "host": rec["host"],
        "start": _iso(start),
        "end": _iso(end),
        "seconds": round(end - start, 3) if start is not None and end is not None else None,
        "outcome": rec.get("outcome", "unknown"),
    }
    if rec.get("error"):
        doc["error"] = rec["error"]
    return doc


def _tasks(records: Sequence[dict[str, Any]], order: Sequence[str]) -> list[dict[str, Any]]:
    """One entry per region (task), in genomic order, with its attempts in time order."""
    by_region: dict[str, list[dict[str, Any]]] = {}
    for rec in sorted(records, key=lambda r: (r.get("start") or 0.0)):
        by_region.setdefault(rec["region"], []).append(rec)
    regions = sort_regions((_region(t) for t in by_region), order)
    names = {str(_region(t)): t for t in by_region}
    tasks = []
    for region in regions:
        recs = by_region[names[str(region)]]
        attempts = [_attempt_doc(r) for r in recs]
        outcomes = [a["outcome"] for a in attempts]
        tasks.append(
            {
                "region": names[str(region)],
                "key": recs[-1].get("key"),
                "inputs": sorted({b for r in recs for b in (r.get("bams") or [])}),
                "attempts": attempts,
                "n_attempts": len(attempts),
                "outcome": "ok" if {"ok", "won"} & set(outcomes) else outcomes[-1],
            }
        )
    return tasks


def _input_doc(
    path: str, role: str, recs: Sequence[dict[str, Any]], order: Sequence[str]
) -> dict[str, Any]:
    """What was read of one input: its regions (genomic order) and by whom, when."""
    regions = sort_regions({_region(r["region"]) for r in recs}, order)
    starts = [r["start"] for r in recs if r.get("start") is not None]
    ends = [r["end"] for r in recs if r.get("end") is not None]
    return {
        "path": path,
        "role": role,
        "regions": [str(r) for r in regions],
        "n_regions": len(regions),
        "bp": sum(r.length for r in merge_regions(regions, order)),
        "attempts": len(recs),
        "workers": sorted({r.get("worker") or "unknown" for r in recs}),
        "hosts": sorted({r["host"] for r in recs}),
        "first_read": _iso(min(starts)) if starts else None,
        "last_read": _iso(max(ends)) if ends else None,
    }


def _inputs(
    records: Sequence[dict[str, Any]], reference: str | None, order: Sequence[str]
) -> list[dict[str, Any]]:
    """Every alignment file named by an attempt (first-seen order), and the reference
    (read by every attempt) when the manifest names it."""
    by_path: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        for bam in rec.get("bams") or []:
            by_path.setdefault(str(bam), []).append(rec)
    docs = [_input_doc(p, "alignments", recs, order) for p, recs in by_path.items()]
    if reference is not None and records:
        docs.insert(0, _input_doc(reference, "reference", records, order))
    return docs


def _workers(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    by_worker: dict[str, Counter] = {}
    regions: dict[str, set[str]] = {}
    hosts: dict[str, str] = {}
    for rec in records:
        w = rec.get("worker") or "unknown"
        hosts[w] = rec["host"]
        by_worker.setdefault(w, Counter())[rec.get("outcome", "unknown")] += 1
        regions.setdefault(w, set()).add(rec["region"])
    return [
        {
            "worker": w,
            "host": hosts[w],
            "attempts": sum(c.values()),
            "outcomes": dict(sorted(c.items())),
            "n_regions": len(regions[w]),
        }
        for w, c in sorted(by_worker.items())
    ]


def summarise_audit(out: str | os.PathLike) -> dict[str, Any]:
    """The summary of run folder ``out`` (JSON-ready): ``runs`` (run ids), ``n_attempts``,
    ``n_tasks``, ``outcomes`` (attempts per outcome: ok, error, lost; won and cancelled for
    the two copies of a straggling task), ``first_start`` /
    ``last_end`` (UTC), ``hosts`` (a worker on loopback is on the run's host, named as
    in the manifest), ``workers``, ``inputs`` (each input's ``path``,
    ``role``, ``regions`` read (1-based strings, genomic order), ``bp`` (their merged
    length), ``attempts``, ``workers``, ``hosts``, first and last read) and ``tasks`` (each
    region's attempts). Raises :class:`InputError` when ``out`` has no readable audit."""
    records = read_audit(out)
    manifest = read_manifest(out)
    order: list[str] = []
    reference = None
    samples: list[str] = []
    if manifest is not None:
        order = [c["name"] for c in manifest.inputs.get("contigs", [])]
        reference = (manifest.inputs.get("reference") or {}).get("path")
        samples = list(manifest.inputs.get("samples", []))
        local = (manifest.host or {}).get("hostname")
        for rec in records:  # a local cluster's workers listen on loopback: this host
            host = worker_host(rec.get("worker"))
            rec["host"] = local if local and host in _LOOPBACK else host
    for rec in records:
        rec.setdefault("host", worker_host(rec.get("worker")))
    starts = [r["start"] for r in records if r.get("start") is not None]
    ends = [r["end"] for r in records if r.get("end") is not None]
    workers = _workers(records)
    return {
        "out": str(out),
        "finished": manifest is not None,
        "run_id": None if manifest is None else manifest.run_id,
        "runs": sorted({str(r.get("run_id")) for r in records}),
        "samples": samples,
        "n_attempts": len(records),
        "n_tasks": len({r["region"] for r in records}),
        "outcomes": dict(sorted(Counter(r.get("outcome", "unknown") for r in records).items())),
        "first_start": _iso(min(starts)) if starts else None,
        "last_end": _iso(max(ends)) if ends else None,
        "hosts": sorted({w["host"] for w in workers}),
        "workers": workers,
        "inputs": _inputs(records, reference, order),
        "tasks": _tasks(records, order),
    }


def _spans(regions: Sequence[str], limit: int = 6) -> str:
    """Regions as merged 1-based spans for text (contiguous task regions joined)."""
    merged: list[Region] = []
    for r in (_region(t) for t in regions):
        if merged and merged[-1].contig == r.contig and r.start <= merged[-1].end:
            merged[-1] = Region(r.contig, merged[-1].start, max(merged[-1].end, r.end))
        else:
            merged.append(r)
    text = ", ".join(str(r) for r in merged[:limit])
    return text + (f", ... ({len(merged) - limit} more)" if len(merged) > limit else "")


def _outcome_text(outcomes: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in outcomes.items()) or "none"


def format_audit(summary: dict[str, Any]) -> str:
    """The text form of :func:`summarise_audit`'s ``summary`` (no trailing newline)."""
    s = summary
    lines = [
        f"audit of {s['out']}: {s['n_attempts']} task attempts for {s['n_tasks']} regions "
        f"in {len(s['runs'])} run(s), {s['first_start']} to {s['last_end']}"
        + ("" if s["finished"] else " (no manifest: the run did not finish)"),
        f"outcomes: {_outcome_text(s['outcomes'])}",
        f"hosts: {', '.join(s['hosts'])}",
        "workers:",
    ]
    for w in s["workers"]:
        lines.append(
            f"  {w['worker']} (host {w['host']}): {w['attempts']} attempts "
            f"({_outcome_text(w['outcomes'])}), {w['n_regions']} regions"
        )
    lines.append("inputs (regions read, 1-based; plus the engine's padding):")
    for i in s["inputs"]:
        lines.append(
            f"  {i['path']} [{i['role']}]: {i['n_regions']} regions, {i['bp']:,} bp, "
            f"{i['attempts']} attempts on {', '.join(i['hosts'])}, "
            f"{i['first_read']} to {i['last_read']}"
        )
        lines.append(f"    {_spans(i['regions'])}")
    lines.append("tasks:")
    for t in s["tasks"]:
        tries = "; ".join(
            f"{a['outcome']} on {a['worker']} at {a['start']}"
            + (f" ({a['seconds']} s)" if a["seconds"] is not None else "")
            + (f": {a['error']}" if a.get("error") else "")
            for a in t["attempts"]
        )
        lines.append(f"  {t['region']}: {t['outcome']} after {t['n_attempts']} attempt(s): {tries}")
    return "\n".join(lines)
