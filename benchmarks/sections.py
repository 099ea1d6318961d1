"""The targets and the sections of `make bench` (``benchmarks/run.py``) beyond its run table.

The targets a result checks: identity, the client's memory (:func:`targets`) and the scaling
ratios (:func:`scaling_targets`). The sections, each run on its own dataset: the per-stratum
accuracy section (:func:`accuracy_section`, merged into earlier results by
:func:`merge_accuracy`), the simulated 30x cohort (:func:`simulated_cohort`) and the cohort
scaling runs (:func:`cohort_scaling`, their rounds summarised by :func:`summarise_rounds`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import strata_accuracy
from build_dataset import CACHE, SPECS, build_dataset
from rows import (
    VARCALL,
    Row,
    Varcall,
    accuracy,
    identity,
    peer_rows,
    run_rounds,
    run_row,
    skip_reason,
    varcall_rows,
)

logger = logging.getLogger("benchmarks.run")


def identity_target(rows: list[dict], what: str) -> list[dict]:
    """``what``: identical / checked, for the rows that were checked for identity."""
    ident = [r for r in rows if r.get("identity") is not None]
    if not ident:
        return []
    return [
        {
            "target": what,
            "value": f"{sum(r['identity']['identical'] for r in ident)}/{len(ident)}",
            "pass": all(r["identity"]["identical"] for r in ident),
        }
    ]


def client_rss_target(small: dict | None, big: dict | None, what: str) -> list[dict]:
    """The driver's peak RSS of run ``big`` over run ``small`` (a smaller genome or
    cohort) must stay about flat (x1.25 at most); nothing unless both runs are ok."""
    if not small or not big or not small["status"] == big["status"] == "ok":
        return []
    ratio = big["root_peak_rss_mb"] / max(small["root_peak_rss_mb"], 1e-9)
    return [
        {
            "target": f"client (driver) peak RSS flat as the genome grows ({what})",
            "value": f"{small['root_peak_rss_mb']:.0f} MB -> {big['root_peak_rss_mb']:.0f} MB "
            f"(x{ratio:.2f})",
            "pass": ratio <= 1.25,
        }
    ]


def targets(rows: dict[str, dict]) -> list[dict]:
    """The targets this dataset's runs can check (identity, client memory). The scaling
    targets are checked on the cohort (:func:`cohort_scaling`)."""
    return [
        *identity_target(
            list(rows.values()), "every distributed run identical to its single-process run"
        ),
        *client_rss_target(
            rows.get("varcall-native-w2-one-contig"),
            rows.get("varcall-native-w2"),
            "whole / one contig",
        ),
    ]


def scaling_targets(rows: dict[str, dict], what: str) -> list[dict]:
    """2 workers <= 0.6 x and 1 worker <= +10% of the native single-process wall time."""
    out = []

    def wall(name: str) -> float | None:
        r = rows.get(name)
        return r["wall_s"] if r and r["status"] == "ok" else None

    single, w1, w2 = (
        wall("varcall-native-single"),
        wall("varcall-native-w1"),
        wall("varcall-native-w2"),
    )
    if single and w2:
        out.append(
            {
                "target": f"{what}: 2 workers: wall <= 0.6 x single-process",
                "value": round(w2 / single, 3),
                "pass": w2 / single <= 0.6,
            }
        )
    if single and w1:
        out.append(
            {
                "target": f"{what}: 1 worker: overhead vs single-process <= 10%",
                "value": round(w1 / single - 1, 3),
                "pass": w1 / single - 1 <= 0.10,
            }
        )
    return out


#: Datasets of the per-stratum accuracy section of `make bench` (build_dataset.SPECS).
ACCURACY_DATASETS = ("hard", "lowcov")


def speed_rounds(row: Row, args: argparse.Namespace) -> int:
    """Rounds of ``row`` in the sections that compare single-process wall time with
    bcftools' (accuracy, simulated cohort): ``args.speed_rounds`` for bcftools and
    varcall single-process runs (the median is reported), one for the others."""
    timed = row.name == "bcftools" or row.mode == "single-process"
    return args.speed_rounds if timed else 1


def accuracy_section(vc: Varcall, args: argparse.Namespace, names: list[str] | tuple) -> dict:
    """bcftools, freebayes (QUAL >= 0 or >= 20, the better per type) and varcall native
    (single-process) on each dataset of ``names`` (built once, cached): SNP/INDEL F1 over
    the confident BED and per stratum, genotype concordance (``strata_accuracy.py``)."""
    out = []
    for name in names:
        spec = SPECS[name]
        ds = build_dataset(spec, CACHE, threads=os.cpu_count())
        info = json.loads((ds / "dataset.json").read_text())
        work = CACHE / "runs" / ds.name
        work.mkdir(parents=True, exist_ok=True)
        rows = peer_rows(ds, work, 2, args.window)[:2]
        rows += varcall_rows(vc, ds, work, None, [], ["native"])
        done = []
        for row in rows:
            quals = (0.0, 20.0) if row.tool == "freebayes" else (20.0,)
            res = {"name": row.name, "tool": row.tool, "mode": row.mode, "quals": list(quals)}
            reason = skip_reason(row, vc)
            if reason:
                done.append({**res, "status": "skipped", "reason": reason})
                continue
            rounds = speed_rounds(row, args)
            res.update(run_rounds(row, args.timeout, ds, rounds), vcf=str(row.vcf))
            if res["status"] == "ok" and vc.concordance_help is not None:
                res["accuracy"] = strata_accuracy.measure(VARCALL, ds, row.vcf, quals)
            logger.info("%s on %s: %s", row.name, name, res["status"])
            done.append(res)
        deep = spec.hard.deep_contigs if spec.hard else ()
        note = ", ".join(f"{c} at {spec.hard.deep_coverage:g}x" for c in deep) if deep else ""
        keys = (
            "contigs",
            "samples",
            "sites",
            "confident_bp",
            "strata_bp",
            "stutter",
            "build_seconds",
        )
        dataset = {"name": name, "path": str(ds), "length_bp": spec.total_length,
                   "coverage": spec.coverage, "note": note, "deep_contigs": list(deep),
                   **{k: info.get(k) for k in keys}}  # fmt: skip
        out.append({"dataset": dataset, "rows": done})
    return {"datasets": out}


def merge_accuracy(results: Path, section: dict) -> dict | None:
    """``section``'s datasets put into ``results/latest.json`` (replacing the same names);
    the updated result, or None when there is no latest.json."""
    latest = results / "latest.json"
    if not latest.is_file():
        return None
    prev = json.loads(latest.read_text())
    new = {e["dataset"]["name"]: e for e in section["datasets"]}
    old = (prev.get("accuracy_section") or {}).get("datasets", [])
    kept = [e for e in old if e["dataset"]["name"] not in new]
    prev["accuracy_section"] = {"datasets": kept + list(new.values())}
    return prev


#: The native engine's accuracy targets on the project's simulated 30x cohort (issue: native engine).
SIM_TARGETS = {"SNP": 0.995, "INDEL": 0.97}


#: Single-process wall time of the native engine relative to bcftools' (issue: native engine).
SPEED_TARGET = 0.30


def speed_target(rows: list[dict], name: str, what: str) -> list[dict]:
    """The target "``name`` wall <= SPEED_TARGET x bcftools" on ``rows`` (median walls);
    none when either run has no wall time."""
    walls = {r["name"]: r.get("wall_s") for r in rows if r.get("status") == "ok"}
    if not walls.get(name) or not walls.get("bcftools"):
        return []
    ratio = walls[name] / walls["bcftools"]
    return [
        {
            "target": f"native single-process wall <= {SPEED_TARGET} x bcftools, {what}",
            "value": round(ratio, 3),
            "pass": ratio <= SPEED_TARGET,
        }
    ]


def simulated_cohort(vc: Varcall, args: argparse.Namespace) -> dict:
    """varcall native (single-process) and bcftools side by side on the simulator's default
    30x cohort (3 samples, 2 x 200 kb, seed 1; built once under the cache), with accuracy
    inside its confident BED and the native engine's F1 targets."""
    ds = CACHE / "sim-30x-seed1"
    if not (ds / "simulation.json").is_file():
        logger.info("simulating the 30x cohort into %s", ds)
        subprocess.run(
            [str(VARCALL), "simulate", "--out", str(ds), "--seed", "1", "--coverage", "30",
             "--overwrite"],
            check=True,
        )  # fmt: skip
    work = CACHE / "runs" / ds.name
    work.mkdir(parents=True, exist_ok=True)
    rows = peer_rows(ds, work, 2, args.window)[:1]
    rows += varcall_rows(vc, ds, work, args.region_size, [], ["native"])
    out: list[dict] = []
    for row in rows:
        reason = skip_reason(row, vc)
        if reason:
            out.append({"name": row.name, "status": "skipped", "reason": reason})
            continue
        res = {
            "name": row.name,
            "tool": row.tool,
            "mode": row.mode,
            **run_rounds(row, args.timeout, ds, speed_rounds(row, args)),
        }
        if res["status"] == "ok" and not args.no_accuracy:
            res["accuracy"] = accuracy(vc, row, ds)
        out.append(res)
    targets = []
    native = next((r for r in out if r["name"] == "varcall-native-single"), None)
    acc = (native or {}).get("accuracy") or {}
    for kind, goal in SIM_TARGETS.items():
        f1 = (acc.get(kind) or {}).get("F1")
        if f1 is not None:
            targets.append(
                {
                    "target": f"native, simulated 30x cohort: {kind} F1 >= {goal}",
                    "value": round(f1, 4),
                    "pass": f1 >= goal,
                }
            )
    targets += speed_target(out, "varcall-native-single", "simulated 30x cohort")
    sim = json.loads((ds / "simulation.json").read_text())
    return {"path": str(ds), "config": sim.get("config"), "rows": out, "targets": targets}


def summarise_rounds(row: Row, done: list[dict]) -> dict:
    """One table row from the rounds of ``row``: the median round by wall time (an odd
    count: the middle one) with every round's wall time, identity over all rounds, and
    the number of regions of a distributed run; the first failure when any round failed."""
    base = {"name": row.name, "tool": row.tool, "mode": row.mode, "workers": row.workers,
            "command": shlex.join(row.cmd), "note": row.note}  # fmt: skip
    bad = [r for r in done if r["status"] != "ok"]
    if bad or not done:
        return {**base, **(bad[0] if bad else {"status": "skipped", "reason": "no rounds"})}
    ok = sorted(done, key=lambda r: r["wall_s"])
    res = {**ok[len(ok) // 2], **base, "walls_s": [r["wall_s"] for r in done]}
    res["vcf"] = str(row.vcf)
    idents = [r["identity"] for r in done if "identity" in r]
    if idents:
        res["identity"] = {
            "to": row.identity_to,
            "identical": all(i["identical"] for i in idents),
            "differing": max(i["differing"] for i in idents),
            "rounds": len(idents),
        }
    bed = row.vcf.parent / "regions.bed"
    if row.mode == "distributed" and bed.is_file():
        res["regions"] = sum(1 for line in bed.read_text().splitlines() if line.strip())
    return res


def cohort_scaling(vc: Varcall, args: argparse.Namespace, bench_rows: dict[str, dict]) -> dict:
    """The scaling targets on the cohort dataset (``SPECS["scale"]``: 5.2 Mb, 32 samples at
    30x; built once under the cache, also used by ``--scale``): native single-process, 1
    worker and 2 workers with varcall's default region plan, ``args.cohort_repeats``
    interleaved rounds, the median wall time of each; every distributed run checked for
    identity with the same round's single-process run. Also the client's
    peak RSS with 2 workers here vs on the 2 Mb bench dataset (two genome sizes)."""
    spec = SPECS["scale"]
    ds = build_dataset(spec, CACHE, threads=os.cpu_count())
    dsinfo = json.loads((ds / "dataset.json").read_text())
    work = CACHE / "runs" / ds.name
    work.mkdir(parents=True, exist_ok=True)
    rows = varcall_rows(vc, ds, work, None, [1, 2], ["native"])
    runs: dict[str, list[dict]] = {row.name: [] for row in rows}
    single_vcf = work / "single-process.round.vcf.gz"  # this round's single-process output
    for rep in range(args.cohort_repeats):  # interleaved: drift affects every row alike
        for row in rows:
            reason = skip_reason(row, vc)
            if reason:
                runs[row.name].append({"status": "skipped", "reason": reason})
                continue
            res = run_row(row, args.timeout, ds)
            if res["status"] == "ok" and row.identity_to:
                ref = runs[row.identity_to][-1] if runs[row.identity_to] else None
                if ref and ref["status"] == "ok":  # the reference's output of this round
                    res["identity"] = {
                        "to": row.identity_to,
                        **identity(row.vcf, single_vcf),
                    }
            if row.mode == "single-process" and res["status"] == "ok":
                shutil.copyfile(row.vcf, single_vcf)
            runs[row.name].append(res)
            logger.info("cohort %s round %d: %s", row.name, rep + 1, res.get("wall_s"))
    by_name = {row.name: summarise_rounds(row, runs[row.name]) for row in rows}
    out = scaling_targets(by_name, f"{spec.total_length / 1e6:.1f} Mb, {spec.n_samples} samples")
    out += identity_target(
        list(by_name.values()), "cohort: distributed runs identical to the single-process run"
    )
    out += client_rss_target(
        bench_rows.get("varcall-native-w2"),
        by_name.get("varcall-native-w2"),
        f"2 workers, 2.0 Mb x 3 samples -> {spec.total_length / 1e6:.1f} Mb x "
        f"{spec.n_samples} samples",
    )
    return {
        "dataset": {
            "name": spec.name,
            "length_bp": spec.total_length,
            "contigs": dsinfo["contigs"],
            "samples": dsinfo["samples"],
            "coverage": spec.coverage,
            "build_seconds": dsinfo["build_seconds"],
        },
        "rows": list(by_name.values()),
        "targets": out,
    }
