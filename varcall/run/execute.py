"""Stage 2 of a ``varcall call`` run: call every unit into a checkpoint under ``OUT/work``.

This is the stage that creates OUT. Three ways, with identical checkpoints' contents:
the engine's whole-genome run in this process (:mod:`varcall.run.single`, single mode
without a region restriction), the layout's regions one after the other in this process
(:func:`run_sequential`, single mode with a restriction), or one Dask task per region
(:func:`scatter_regions`, distributed mode) on the given client, the local cluster started
while planning, or a cluster opened here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from varcall.core.errors import InputError
from varcall.core.manifest import MANIFEST_NAME, RUN_OUTPUTS
from varcall.core.regions import Region
from varcall.run.checkpoints import checkpoint_keys, engine_version, inputs_identity
from varcall.run.clusters import open_client
from varcall.run.empty import with_empty_units
from varcall.run.prepare import PreparedRun
from varcall.run.single import run_whole_genome
from varcall.run.speculate import Speculation
from varcall.run.tasks import run_sequential, scatter_regions

__all__ = ["ExecutedRun", "execute", "probe_workers"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ExecutedRun:
    """The called units. identity: the inputs as checkpoint keys see them
    (:func:`inputs_identity`); engine_ver: the engine's version; sidecars: one per unit
    (checkpoint key, region, digest, ...), in genomic order; keys: their checkpoint keys;
    bed_regions: what ``OUT/regions.bed`` lists (0-based half-open); cluster_doc: the
    cluster as the manifest records it (None without Dask); speculation: the straggler
    policy of a Dask run as the manifest records it (None without Dask)."""

    run_id: str
    work: Path
    identity: dict[str, Any]
    engine_ver: str
    keys: list[str] = dataclasses.field(default_factory=list)
    sidecars: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    bed_regions: list[Region] = dataclasses.field(default_factory=list)
    cluster_doc: dict[str, Any] | None = None
    speculation: dict[str, Any] | None = None


@contextlib.contextmanager
def _session(prep: PreparedRun, doc: dict[str, Any]) -> Iterator[Any]:
    """The Dask client of a distributed run: the given one, the local cluster started
    while planning, or a cluster opened now (closed on exit). What it is goes into
    ``doc``."""
    if prep.client is not None:
        doc["kind"] = "client"
        doc["scheduler"] = getattr(prep.client, "scheduler", None) and prep.client.scheduler.address
        yield prep.client
        return
    doc.update(prep.spec.describe())
    session = (
        prep.starter.attach(record=doc)
        if prep.starter is not None
        else open_client(prep.spec, record=doc)
    )
    with session as client:
        doc["dashboard"] = client.dashboard_link
        yield client


def _worker_sees(paths: list[str], marker: str, token: str) -> tuple[str, str] | None:
    """Run on a worker by :func:`probe_workers`: (this host, the first path it cannot
    read), or (host, the work folder) when it cannot see the client's ``marker`` file
    holding ``token`` there or cannot write there; None when all is well. Never raises."""
    host = socket.gethostname()
    for path in paths:
        if not os.access(path, os.R_OK):
            return host, path
    folder = os.path.dirname(marker)
    try:
        with open(marker) as fh:
            seen = fh.read() == token
    except OSError:
        seen = False
    if not (seen and os.access(folder, os.W_OK | os.X_OK)):
        return host, folder
    return None


def probe_workers(client: Any, paths: list[str], work: Path) -> None:
    """Check, with one small task on every worker of ``client``, that the workers read
    ``paths`` (absolute: the reference, the alignments) and see and can write ``work``
    (``OUT/work``, through a marker file written here). Raises a one-line
    :class:`InputError` naming the first worker host and path that fail. A scheduler
    without workers yet passes."""
    token = uuid.uuid4().hex
    marker = work / f".probe-{token}"
    marker.write_text(token)
    try:
        answers = client.run(_worker_sees, [str(p) for p in paths], str(marker), token)
    finally:
        marker.unlink(missing_ok=True)
    for address in sorted(answers):
        if answers[address] is not None:
            host, path = answers[address]
            raise InputError(
                f"workers on {host} cannot read {path}; use a shared filesystem (the same "
                "paths on the workers as here)"
            )
    logger.info("%d workers read the inputs and OUT", len(answers))


def _probe_or_undo(prep: PreparedRun, client: Any, run: ExecutedRun, fresh: bool) -> None:
    """:func:`probe_workers` for an existing scheduler or a given client (a local cluster
    shares this machine); on failure the folders this run created are removed again (the
    run ends before calling, as bad input)."""
    if prep.client is None and prep.spec.kind != "scheduler":
        return
    try:
        probe_workers(client, [prep.inputs.reference, *prep.inputs.bams], run.work)
    except InputError:
        if fresh:
            for folder in (run.work, prep.out):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty: never removes anything else
        raise


#: What runs once every unit is called, while the Dask client (None without Dask) is open.
AfterCalling = Callable[[ExecutedRun, Any], None]


def _scatter(
    prep: PreparedRun,
    run: ExecutedRun,
    layout: list[Region],
    retries: int,
    progress: bool,
    fresh: bool = False,
    speculation: Speculation | None = None,
    then: Callable[[Any], None] | None = None,
) -> None:
    """One Dask task per region of ``layout``; sets ``run.sidecars`` and ``run.cluster_doc``
    (``fresh``: this run created OUT, see :func:`_probe_or_undo`); ``then(client)`` runs
    before the client closes."""
    run.cluster_doc = {}
    speculation = speculation or Speculation()
    run.speculation = speculation.describe()
    with _session(prep, run.cluster_doc) as client:
        _probe_or_undo(prep, client, run, fresh)
        run.sidecars = scatter_regions(
            layout,
            run.keys,
            prep.inputs,
            prep.params,
            run.work,
            client=client,
            run_id=run.run_id,
            engine=prep.engine,
            retries=retries,
            resume=prep.flags.resume,
            progress=progress,
            packs=prep.packs,
            speculation=speculation,
        )
        if then is not None:
            then(client)


def _drop_outputs(out: Path) -> None:
    """Remove an earlier run's outputs from ``out`` (``--overwrite``), its checkpoints in
    ``work/`` excepted: a run that then fails or is stopped leaves no calls, audit or
    regions of other inputs that ``varcall audit`` or ``concordance`` would read as this
    run's. Files of other names in ``out`` are left alone."""
    for name in (name for kind, name in RUN_OUTPUTS.items() if kind != "work"):
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _start(prep: PreparedRun) -> ExecutedRun:
    """Create ``OUT/work`` and drop an earlier run's manifest (and, with ``--overwrite``,
    its other outputs); a new run id."""
    work = (prep.out / "work").absolute()  # tasks may run in another folder
    work.mkdir(parents=True, exist_ok=True)
    # the manifest marks a finished run: drop an earlier run's (--overwrite / --resume) so
    # that a crash of this run never leaves new outputs beside an old, complete-looking one
    (prep.out / MANIFEST_NAME).unlink(missing_ok=True)
    if prep.flags.overwrite:
        _drop_outputs(prep.out)
    run_id = uuid.uuid4().hex
    identity = inputs_identity(prep.inputs)
    return ExecutedRun(run_id, work, identity, engine_version(prep.engine))


def execute(
    prep: PreparedRun,
    *,
    retries: int = 2,
    progress: bool = False,
    speculation: Speculation | None = None,
    then: AfterCalling | None = None,
) -> ExecutedRun:
    """Call every unit of the prepared run into ``OUT/work`` (valid checkpoints reused with
    ``--resume``). retries: Dask retries per region. speculation: when a straggling Dask
    task gets a second copy (default :class:`Speculation`; unused without Dask). then:
    called as ``then(run, client)`` once every unit is called, while the Dask client is
    still open (None in single mode): the merge's encode tasks run on the same workers.
    Raises :class:`RegionError` when units failed (finished checkpoints are kept)."""
    fresh = not prep.out.exists()
    run = _start(prep)
    inputs, params, layout, identity = prep.inputs, prep.params, prep.layout, run.identity
    if prep.mode == "single" and layout is None:
        run.sidecars = run_whole_genome(
            inputs, params, prep.engine, identity, run.engine_ver, run.work, run.run_id,
            prep.flags.resume, progress, frozenset(r.contig for r in prep.empty_regions),
        )  # fmt: skip
        run.keys = [s["key"] for s in run.sidecars if s["key"] is not None]
        run.bed_regions = [Region(c, 0, n) for c, n in inputs.contigs]
        if then is not None:
            then(run, None)
        return run
    assert layout is not None
    run.keys = checkpoint_keys(layout, identity, params, params.engine, run.engine_ver)
    run.bed_regions = list(layout)

    def called(client: Any) -> None:
        """Every unit called: the empty-by-index units join, then ``then``."""
        if prep.empty_regions:  # no task, no checkpoint: varcall.run.empty
            order = [c for c, _ in inputs.contigs]
            run.sidecars, run.bed_regions = with_empty_units(
                run.sidecars, layout, prep.empty_regions, order
            )
        if then is not None:
            then(run, client)

    if layout and prep.mode != "single":
        _scatter(prep, run, layout, retries, progress, fresh, speculation, called)
        return run
    if layout:  # single mode: the layout's regions one after the other, here
        run.sidecars = run_sequential(
            layout, run.keys, inputs, params, run.work, run_id=run.run_id, engine=prep.engine,
            resume=prep.flags.resume, progress=progress,
        )  # fmt: skip
    called(None)  # (no layout: every region is on a contig without reads)
    return run
