"""The run manifest (``OUT/manifest.json``): what a finished ``varcall call`` did, typed.

One dataclass, written by the run (:mod:`varcall.run.pipeline`) and read through
:func:`load_manifest` by concordance and the report. ``manifest_version`` counts format
changes; manifests written before it existed (no such key) read as version 1. Version 2:
the unit and contig digests are SHA-256 over per-record SHA-256 digests
(:meth:`varcall.core.callset.CallSet.update_digest`; version 1 hashed the record encodings
directly, so digests of the two versions never compare: :func:`same_digest_scheme`), and
``timing.encode_seconds``. Free-form
sections (``inputs``, ``versions``, ``host``, ``cluster``, ``outputs``, ``params``) stay
mappings: their content depends on the engine, the cluster and the installation.
Coordinates in units are 0-based half-open (``start``, ``end``); ``region`` is the
1-based text form.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from varcall.core.errors import InputError
from varcall.core.files import write_json_atomic

__all__ = [
    "MANIFEST_VERSION",
    "MANIFEST_NAME",
    "RUN_OUTPUTS",
    "EngineInfo",
    "UnitRecord",
    "Timing",
    "Memory",
    "Throughput",
    "Planning",
    "Manifest",
    "load_manifest",
    "read_manifest",
    "same_digest_scheme",
]

MANIFEST_VERSION = 2
#: The first manifest version whose digests are over per-record digests.
RECORD_DIGESTS_SINCE = 2
MANIFEST_NAME = "manifest.json"

#: What a finished run writes, relative to OUT (the manifest's ``outputs``); the manifest
#: itself is written last and marks the run finished.
RUN_OUTPUTS: dict[str, str] = {
    "vcf": "calls.vcf.gz",
    "vcf_index": "calls.vcf.gz.tbi",
    "zarr": "calls.vcz",
    "regions": "regions.bed",
    "audit": "audit.jsonl",
    "work": "work",
}


def _from(cls: type, doc: Any) -> Any:
    """An instance of dataclass ``cls`` from the known keys of ``doc`` (others ignored)."""
    if not isinstance(doc, dict):
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in doc.items() if k in names})


@dataclasses.dataclass
class EngineInfo:
    """The engine of a run. known_differences: why a distributed run of this engine may
    differ from its single-process run ("" when it never does)."""

    name: str | None = None
    version: str | None = None
    known_differences: str = ""


@dataclasses.dataclass
class UnitRecord:
    """One region task (a single-process run has one unit per contig). empty_by_index:
    the region's contig has no read in any alignment index, so it was not called (no
    task, no checkpoint: ``key`` is None, 0 variants; see :mod:`varcall.run.empty`)."""

    region: str | None = None
    contig: str | None = None
    start: int | None = None
    end: int | None = None
    key: str | None = None
    n_variants: int | None = None
    digest: str | None = None
    seconds: float | None = None
    worker: str | None = None
    attempts: int = 0
    resumed: bool = False
    #: its task got a second copy (a straggler, see varcall.run.speculate)
    speculated: bool = False
    empty_by_index: bool = False

    @property
    def has_span(self) -> bool:
        """Whether start and end are known."""
        return isinstance(self.start, int) and isinstance(self.end, int)


@dataclasses.dataclass
class Timing:
    """Seconds: the whole run, calling (with planning), merging, and the tasks' sum.
    merge_seconds: the serial part of the merge in the client (creating the store, the
    VCF header, concatenating the VCF pieces, the index, the store's metadata, renaming);
    encode_seconds: its parallel part (the encode tasks writing the store's chunks and the
    VCF pieces; None in manifests before version 2). Together: last region done -> outputs
    in place."""

    wall_seconds: float | None = None
    call_seconds: float | None = None
    merge_seconds: float | None = None
    encode_seconds: float | None = None
    task_seconds_sum: float | None = None


@dataclasses.dataclass
class Memory:
    """Peak resident set sizes in MiB (2**20 bytes) of the client and the busiest worker
    (0.0 where unknown)."""

    client_peak_rss_mb: float | None = None
    worker_peak_rss_mb: float | None = None


@dataclasses.dataclass
class Throughput:
    """Reference bases of the run's units and variants called, per second of wall time
    (None for a zero wall time)."""

    bp_per_second: float | None = None
    variants_per_second: float | None = None


@dataclasses.dataclass
class Planning:
    """How the regions were planned (as the user asked); regions_empty_by_index: how many
    of the run's units are on contigs without reads in any index (not called)."""

    region_size: int | None = None
    region_count: int | None = None
    regions_planned: int | None = None
    region_strings: list[str] = dataclasses.field(default_factory=list)
    regions_bed: str | None = None
    explicit_layout: bool = False
    pack: bool = True
    retries: int | None = None
    resume: bool = False
    #: straggler copies (enabled, factor, min_seconds); None without Dask
    speculation: dict[str, Any] | None = None
    regions_empty_by_index: int = 0


@dataclasses.dataclass
class Manifest:
    """A finished run. See the README's "Outputs" section for every key."""

    varcall_version: str | None = None
    code_digest: str | None = None
    units_run_by_other_code: int = 0
    command_line: str | None = None
    run_id: str | None = None
    started: str | None = None
    finished: str | None = None
    mode: str | None = None
    engine: EngineInfo = dataclasses.field(default_factory=EngineInfo)
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    inputs: dict[str, Any] = dataclasses.field(default_factory=dict)
    versions: dict[str, Any] = dataclasses.field(default_factory=dict)
    host: dict[str, Any] = dataclasses.field(default_factory=dict)
    cluster: dict[str, Any] | None = None
    planning: Planning = dataclasses.field(default_factory=Planning)
    units: list[UnitRecord] = dataclasses.field(default_factory=list)
    n_units: int | None = None
    n_variants: int | None = None
    contig_digests: dict[str, str] = dataclasses.field(default_factory=dict)
    contig_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    timing: Timing = dataclasses.field(default_factory=Timing)
    memory: Memory = dataclasses.field(default_factory=Memory)
    throughput: Throughput = dataclasses.field(default_factory=Throughput)
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)
    #: what the outputs carry (varcall.core.privacy.Privacy.describe): format_fields,
    #: sites_only, pseudonymised, redact_paths; empty for runs before the options existed
    output_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    manifest_version: int = MANIFEST_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (plain dicts and lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Manifest:
        """A manifest from its JSON document; unknown keys are ignored and missing ones take
        their defaults (older manifests: ``regions`` for ``units``, a plain engine name,
        ``wall_seconds`` at the top level)."""
        plain = {f.name for f in dataclasses.fields(cls)} - {
            "engine", "planning", "units", "timing", "memory", "throughput"
        }
        m = cls(**{k: v for k, v in doc.items() if k in plain and v is not None})
        m.manifest_version = int(doc.get("manifest_version", 1))
        engine = doc.get("engine")
        m.engine = EngineInfo(name=engine) if isinstance(engine, str) else (
            _from(EngineInfo, engine) or EngineInfo()
        )
        m.planning = _from(Planning, doc.get("planning")) or Planning()
        units = doc.get("units", doc.get("regions")) or []
        m.units = [u for u in (_from(UnitRecord, x) for x in units) if u is not None]
        m.timing = _from(Timing, doc.get("timing")) or Timing(wall_seconds=doc.get("wall_seconds"))
        m.memory = _from(Memory, doc.get("memory")) or Memory()
        m.throughput = _from(Throughput, doc.get("throughput")) or Throughput()
        return m

    def write(self, out: str | os.PathLike) -> Path:
        """Write ``out/manifest.json`` atomically; returns its path."""
        path = Path(out) / MANIFEST_NAME
        write_json_atomic(path, self.to_dict())
        return path


def same_digest_scheme(a: Manifest, b: Manifest) -> bool:
    """Whether the unit and contig digests of ``a`` and ``b`` are computed the same way
    (both before or both since :data:`RECORD_DIGESTS_SINCE`), so that they compare."""
    return (a.manifest_version >= RECORD_DIGESTS_SINCE) == (
        b.manifest_version >= RECORD_DIGESTS_SINCE
    )


def read_manifest(run_dir: str | os.PathLike) -> Manifest | None:
    """The manifest of run folder ``run_dir``; None when it has none. Raises
    :class:`InputError` when the file is there but unreadable."""
    path = Path(run_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        return Manifest.from_dict(doc)
    except (OSError, ValueError, TypeError) as e:
        raise InputError(
            f"{path}: not a readable JSON manifest ({e}); re-run 'varcall call' into a new folder"
        ) from e


def load_manifest(run_dir: str | os.PathLike) -> Manifest:
    """The manifest of the finished run in ``run_dir``; :class:`InputError` when absent."""
    m = read_manifest(run_dir)
    if m is None:
        raise InputError(
            f"{Path(run_dir) / MANIFEST_NAME}: no manifest; give the --out folder of a "
            "finished 'varcall call'"
        )
    return m
