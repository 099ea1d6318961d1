"""The merge's driver time against the number of samples (issue 16: "driver merge time grows
by at most 2.5x from 50 to 500 samples").

For each sample count this simulates a cohort (``varcall simulate``: low coverage, small
genome; cached under ``benchmarks/cache/merge-scale-<samples>-<key>/``), runs ``varcall
call`` on it once (distributed, ``--workers`` local workers) and then merges that run's
checkpoints again ``--repeat`` times, each way in the same process, one after the other:

- ``parallel``: :func:`varcall.run.merge.merge_checkpoints` with the encode tasks on a
  LocalCluster of ``--workers`` process workers: ``driver_s`` is its serial part (what
  ``manifest.json`` calls ``timing.merge_seconds``), ``encode_s`` the encode tasks;
- ``serial``: the streaming writer :func:`varcall.run.merge.write_outputs` fed the loaded
  checkpoints (the merge before the parallel one: everything in the driver).

``--synthetic V`` replaces the cohort runs by checkpoints of V random biallelic records
(20 regions, 2 contigs; records x samples large enough that the store has several chunks:
``--chunk-size``), to see the encode tasks share the work.

Usage::

    python benchmarks/merge_scale.py --samples 50 500 --workers 2 --repeat 3 \\
        --out benchmarks/results/merge_scale.json
    python benchmarks/merge_scale.py --samples 50 500 --synthetic 20000 --chunk-size 2000

Prints a table (medians of the repeats) and writes the JSON (every repeat). Timings on a
busy machine are noisy: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import varcall  # noqa: F401 - before numba (generic CPU target)
from varcall.core.callset import load_callset, save_callset
from varcall.run.merge import merge_checkpoints, write_outputs
from varcall.simulate.cohort import simulate_cohort
from varcall.simulate.config import SimulationConfig

CACHE = Path(__file__).resolve().parent / "cache"


def cohort(n_samples: int, length: int, coverage: float) -> Path:
    """The simulated cohort of ``n_samples`` (built once, cached)."""
    config = SimulationConfig(
        n_samples=n_samples, n_contigs=2, contig_length=length, coverage=coverage, seed=7
    )
    key = hashlib.sha256(json.dumps([n_samples, length, coverage, 7]).encode()).hexdigest()[:10]
    folder = CACHE / f"merge-scale-{n_samples}-{key}"
    if not (folder / "simulation.json").exists():
        simulate_cohort(folder, config, overwrite=True)
    return folder


def call(folder: Path, out: Path, workers: int) -> dict[str, Any]:
    """``varcall call`` of the cohort into ``out``; its manifest."""
    from varcall.api import call as varcall_call

    bams = [folder / line for line in (folder / "bams.txt").read_text().split()]
    varcall_call(folder / "reference.fa", bams, out, workers=workers, overwrite=True)
    return json.loads((out / "manifest.json").read_text())


def synthetic_run(folder: Path, n_samples: int, n_variants: int) -> dict[str, Any]:
    """Checkpoints of ``n_variants`` random biallelic records in 20 regions of 2 contigs
    under ``folder/work``, and a manifest-like document naming them."""
    import numpy as np

    from varcall.core.callset import FILTER_IDS, CallSet

    rng = np.random.default_rng(n_samples)
    work = folder / "work"
    work.mkdir(parents=True, exist_ok=True)
    samples = [f"S{i:04d}" for i in range(n_samples)]
    units, per = [], n_variants // 20
    for i in range(20):
        v, s, contig = per, n_samples, f"chr{1 + i // 10}"
        pos = (i % 10) * 100 * per + np.sort(rng.choice(100 * per, v, replace=False))
        cs = CallSet(
            contig=contig, samples=tuple(samples), filter_ids=FILTER_IDS,
            position=pos.astype(np.int64), alleles=np.array([["A", "C"]] * v),
            quality=rng.uniform(0, 100, v).astype(np.float32),
            filters=np.tile([True, False], (v, 1)),
            info_DP=rng.integers(0, 1000, v).astype(np.int32),
            genotype=rng.integers(0, 2, (v, s, 2)).astype(np.int8),
            GQ=rng.integers(0, 99, (v, s)).astype(np.int32),
            DP=rng.integers(0, 40, (v, s)).astype(np.int32),
            AD=rng.integers(0, 20, (v, s, 2)).astype(np.int32),
            PL=rng.integers(0, 200, (v, s, 3)).astype(np.int32),
        )  # fmt: skip
        key = f"synthetic{i:03d}"
        save_callset(cs, work / f"{key}.npz")
        side = {"key": key, "contig": contig, "n_variants": v, "digest": cs.digest(),
                "max_alleles": 2, "filter_ids": list(FILTER_IDS)}  # fmt: skip
        (work / f"{key}.json").write_text(json.dumps(side))
        units.append({"key": key})
    length = 1000 * per
    return {
        "units": units,
        "n_variants": per * 20,
        "inputs": {"samples": samples, "contigs": [{"name": "chr1", "length": length},
                                                   {"name": "chr2", "length": length}]},
        "timing": {"merge_seconds": None, "encode_seconds": None},
    }  # fmt: skip


def _merge_kwargs(run: Path, manifest: dict[str, Any]) -> tuple[list[dict], dict[str, Any]]:
    work = run / "work"
    sidecars = [json.loads((work / f"{u['key']}.json").read_text()) for u in manifest["units"]]
    return sidecars, {
        "contigs": [(c["name"], c["length"]) for c in manifest["inputs"]["contigs"]],
        "samples": manifest["inputs"]["samples"],
        "filter_ids": sorted({f for s in sidecars for f in s["filter_ids"]}),
        "max_alleles": max([2, *(int(s["max_alleles"]) for s in sidecars)]),
    }


def remerge(
    run: Path, manifest: dict[str, Any], workers: int, repeat: int, chunk_size: int
) -> dict[str, list]:
    """Merge ``run``'s checkpoints again, ``repeat`` times each way (see the module doc)."""
    from distributed import Client, LocalCluster

    sidecars, kw = _merge_kwargs(run, manifest)
    kw["chunk_size"] = chunk_size
    times: dict[str, list] = {"driver_s": [], "encode_s": [], "serial_s": []}
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as lc,
        Client(lc) as client,
        tempfile.TemporaryDirectory(dir=run) as tmp,
    ):
        for _ in range(repeat):
            t0 = time.perf_counter()
            merged = merge_checkpoints(Path(tmp) / "p", sidecars, run / "work", client=client, **kw)
            total = time.perf_counter() - t0
            times["driver_s"].append(total - merged.encode_seconds)
            times["encode_s"].append(merged.encode_seconds)
            t0 = time.perf_counter()
            units = (load_callset(run / "work" / f"{s['key']}.npz") for s in sidecars)
            write_outputs(Path(tmp) / "s", units, **kw)
            times["serial_s"].append(time.perf_counter() - t0)
            shutil.rmtree(Path(tmp) / "p")
            shutil.rmtree(Path(tmp) / "s")
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, nargs="+", default=[50, 500])
    ap.add_argument("--length", type=int, default=50_000, help="bp per contig (2 contigs)")
    ap.add_argument("--coverage", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--chunk-size", type=int, default=10_000, help="variants per Zarr chunk")
    ap.add_argument("--synthetic", type=int, default=0, help="random records instead of runs")
    ap.add_argument(
        "--runs", type=Path, default=None,
        help="keep the runs here (default: temp); finished runs there are merged again",
    )  # fmt: skip
    ap.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = ap.parse_args()
    runs = args.runs or Path(tempfile.mkdtemp(prefix="merge-scale-"))
    rows = []
    for n in args.samples:
        run = runs / f"run-{n}"
        if args.synthetic:
            manifest = synthetic_run(run, n, args.synthetic)
        elif (run / "manifest.json").exists():  # a finished run kept with --runs: merged again
            manifest = json.loads((run / "manifest.json").read_text())
        else:
            manifest = call(cohort(n, args.length, args.coverage), run, args.workers)
        times = remerge(run, manifest, args.workers, args.repeat, args.chunk_size)
        rows.append({
            "samples": n,
            "variants": manifest["n_variants"],
            "run_merge_seconds": manifest["timing"]["merge_seconds"] or 0.0,
            "run_encode_seconds": manifest["timing"]["encode_seconds"] or 0.0,
            **{k: [round(x, 4) for x in v] for k, v in times.items()},
        })  # fmt: skip
    print("samples  variants  run merge_s  run encode_s  driver_s  encode_s  serial_s (medians)")
    for r in rows:
        med = {k: statistics.median(r[k]) for k in ("driver_s", "encode_s", "serial_s")}
        print(
            f"{r['samples']:>7}  {r['variants']:>8}  {r['run_merge_seconds']:>11.3f}  "
            f"{r['run_encode_seconds']:>12.3f}  {med['driver_s']:>8.3f}  {med['encode_s']:>8.3f}  "
            f"{med['serial_s']:>8.3f}"
        )
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        ratio = statistics.median(b["driver_s"]) / statistics.median(a["driver_s"])
        print(f"driver time {b['samples']} vs {a['samples']} samples: {ratio:.2f}x")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        doc = {"workers": args.workers, "chunk_size": args.chunk_size, "rows": rows}
        args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
