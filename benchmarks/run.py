"""`make bench`: varcall side by side with the tools users would otherwise pick.

One run, the same BAMs for everyone (the dataset of ``build_dataset.py``, built once and
cached): ``bcftools mpileup | bcftools call -m``, ``freebayes``, freebayes split by region
with GNU parallel (the freebayes-parallel recipe), and varcall: native single-process,
distributed with 1 and 2 workers, and its bcftools and freebayes engines (single-process and
distributed). For each: wall and CPU seconds, peak memory, time as a ratio to bcftools in
this run, SNP and INDEL precision / recall / F1 against the truth inside the confident BED
(``varcall concordance``), genotype concordance, and for every distributed run whether its
VCF records are identical to its single-process run's.

Writes ``benchmarks/results/latest.json`` and ``latest.md`` (and, between the markers
``<!-- bench:start -->`` / ``<!-- bench:end -->``, the README's table) and prints the table.

``--scale`` runs ``benchmarks/scale.py`` (`make bench-scale`: regions, samples and
workers sweeps, ``benchmarks/results/scale.{json,md,png}``).

Accuracy is measured on records with QUAL >= 20 and FILTER PASS or ``.``, the same filter
for every tool. Rows whose tool is missing (or whose varcall command does not exist yet) are
listed as skipped, with the reason.

This module is the entry point (options, the run of the bench dataset's rows, the result
files); the rows and running one are in ``rows.py``, the targets and the sections on other
datasets (cohort scaling, simulated cohort, per-stratum accuracy) in ``sections.py``, the
markdown and the README table in ``render.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import strata_accuracy  # noqa: E402
from build_dataset import CACHE, SPECS, build_dataset, ensure_peers  # noqa: E402
from render import markdown, update_readme  # noqa: E402
from rows import (  # noqa: E402
    QUAL_FILTER,
    ROOT,
    VARCALL,
    Row,
    Varcall,
    accuracy,
    extra_native_rows,
    identity,
    peer_rows,
    run_row,
    skip_reason,
    varcall_rows,
)
from sections import (  # noqa: E402
    ACCURACY_DATASETS,
    accuracy_section,
    cohort_scaling,
    merge_accuracy,
    scaling_targets,
    simulated_cohort,
    targets,
)

logger = logging.getLogger("benchmarks.run")

RESULTS = HERE / "results"


# ----------------------------------------------------------------------------- machine
def machine_info() -> dict:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(mem_gb, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "tools": {
            "bcftools": _first_line(["bcftools", "--version"]),
            "freebayes": _first_line(["freebayes", "--version"]),
            "parallel": _first_line(["parallel", "--version"]),
            "varcall": _first_line([str(VARCALL), "--version"]),
            "varcall_commit": _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        },
    }


def _first_line(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    lines = (r.stdout or r.stderr).strip().splitlines()
    return lines[0].strip() if lines else "?"


# ----------------------------------------------------------------------------- main
def run_benchmark(args: argparse.Namespace) -> dict:
    missing = ensure_peers() if not args.no_install else {}
    if missing:
        logger.warning("still missing: %s (their rows are skipped)", ", ".join(missing))
    spec = SPECS[args.dataset or "bench"]
    ds = build_dataset(spec, CACHE, threads=os.cpu_count())
    dsinfo = json.loads((ds / "dataset.json").read_text())
    work = CACHE / "runs" / ds.name
    work.mkdir(parents=True, exist_ok=True)
    vc = Varcall()

    rows = peer_rows(ds, work, 2, args.window)
    rows += varcall_rows(
        vc, ds, work, args.region_size, [1, 2], ["native", "bcftools", "freebayes"]
    )
    rows += extra_native_rows(rows, work, dsinfo, args.region_size)
    if args.only:
        rows = [r for r in rows if any(re.search(p, r.name) for p in args.only)]

    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    by_name = measure_rows(rows, vc, args, ds)

    base = by_name.get("bcftools")
    for r in by_name.values():
        if r["status"] == "ok" and base and base["status"] == "ok":
            r["ratio_to_bcftools"] = round(r["wall_s"] / base["wall_s"], 3)
            r["cpu_ratio_to_bcftools"] = round(r["cpu_s"] / max(base["cpu_s"], 1e-9), 3)
    result = {
        "version": 1,
        "kind": "bench",
        "started": started,
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {
            "region_size": args.region_size,
            "freebayes_parallel_window": args.window,
            "accuracy_filter": f"{QUAL_FILTER}, FILTER PASS or .",
            "timeout_s": args.timeout,
        },
        "dataset": {
            "name": spec.name,
            "path": str(ds),
            "length_bp": spec.total_length,
            "contigs": dsinfo["contigs"],
            "samples": dsinfo["samples"],
            "coverage": spec.coverage,
            "sites": dsinfo["sites"],
            "confident_bp": dsinfo["confident_bp"],
            "build_seconds": dsinfo["build_seconds"],
            "source": dsinfo["source"],
            "checksums": dsinfo.get("checksums"),
        },
        "rows": list(by_name.values()),
    }
    result["targets"] = targets(by_name)
    result["small_scaling"] = scaling_targets(by_name, "2.0 Mb, 3 samples")
    if not args.only:
        result["cohort"] = cohort_scaling(vc, args, by_name)
        result["simulated"] = simulated_cohort(vc, args)
        result["accuracy_section"] = accuracy_section(vc, args, ACCURACY_DATASETS)
    return result


def measure_rows(
    rows: list[Row], vc: Varcall, args: argparse.Namespace, ds: Path
) -> dict[str, dict]:
    """Each row run in turn (or skipped, with the reason), by name: its measurements,
    accuracy and identity to the run named by ``identity_to``."""
    by_name: dict[str, dict] = {}
    for row in rows:
        reason = skip_reason(row, vc)
        base = {
            "name": row.name,
            "tool": row.tool,
            "mode": row.mode,
            "workers": row.workers,
            "engine": row.engine,
            "note": row.note,
            "region_size": (
                int(row.cmd[row.cmd.index("--region-size") + 1])
                if "--region-size" in row.cmd
                else None
            ),
        }
        if reason:
            logger.warning("skipping %s: %s", row.name, reason)
            res = {**base, "status": "skipped", "reason": reason}
        else:
            res = {
                **base,
                "command": shlex.join(row.cmd) if len(row.cmd) > 1 else row.cmd[0],
                **run_row(row, args.timeout, ds),
            }
            if res["status"] == "ok" and row.accuracy and not args.no_accuracy:
                res["accuracy"] = accuracy(vc, row, ds)
                if res["accuracy"].get("status") != "ok":
                    logger.warning("%s accuracy: %s", row.name, res["accuracy"].get("reason"))
            if res["status"] == "ok" and row.identity_to:
                ref = by_name.get(row.identity_to)
                if ref and ref["status"] == "ok":
                    res["identity"] = {"to": row.identity_to, **identity(row.vcf, Path(ref["vcf"]))}
            res["vcf"] = str(row.vcf)
        by_name[row.name] = res
        logger.info(
            "%s: %s",
            row.name,
            {
                k: res.get(k)
                for k in ("status", "wall_s", "cpu_s", "peak_tree_rss_mb", "reason")
                if k in res
            },
        )
    return by_name


def accuracy_only(args: argparse.Namespace) -> int:
    """``--accuracy-only``: the accuracy section for the chosen datasets, merged into the
    last full results when there are some."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )
    if not args.no_install:
        ensure_peers()
    section = accuracy_section(Varcall(), args, args.accuracy_only)
    args.results.mkdir(parents=True, exist_ok=True)
    merged = merge_accuracy(args.results, section)
    if merged is None:
        md = "\n".join(strata_accuracy.section_markdown(section))
        (args.results / "accuracy.json").write_text(json.dumps(section, indent=2) + "\n")
        (args.results / "accuracy.md").write_text(md)
    else:
        md = markdown(merged)
        (args.results / "latest.json").write_text(json.dumps(merged, indent=2) + "\n")
        (args.results / "latest.md").write_text(md)
        print("README.md table updated" if update_readme(md) else "README.md has no markers")
    print(md)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The options of ``run.py`` (``--scale``: the rest go to ``scale.py``)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--scale", action="store_true", help="Run benchmarks/scale.py (make bench-scale) instead."
    )
    p.add_argument(
        "--region-size",
        type=int,
        default=100_000,
        help="varcall --region-size for distributed runs (bp).",
    )
    p.add_argument(
        "--dataset",
        choices=sorted(SPECS),
        default=None,
        help="Dataset to use (default: bench).",
    )
    p.add_argument("--window", type=int, default=100_000, help="freebayes-parallel window (bp).")
    p.add_argument("--timeout", type=float, default=900, help="Seconds before one run is killed.")
    p.add_argument(
        "--only", action="append", help="Run only rows whose name matches this regex (repeatable)."
    )
    p.add_argument(
        "--no-install", action="store_true", help="Do not apt-get install missing peers."
    )
    p.add_argument("--no-accuracy", action="store_true", help="Skip the concordance step.")
    p.add_argument(
        "--cohort-repeats",
        type=int,
        default=3,
        help="Rounds of the cohort's scaling runs (the median wall time is reported).",
    )
    p.add_argument(
        "--speed-rounds",
        type=int,
        default=3,
        help="Rounds of bcftools and varcall single-process in the accuracy and simulated "
        "cohort sections (the median wall time is reported).",
    )
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument(
        "--render",
        action="store_true",
        help="Only rewrite latest.md and the README table from latest.json (no runs).",
    )
    p.add_argument(
        "--accuracy-only",
        action="append",
        choices=sorted(SPECS),
        metavar="DATASET",
        help="Run only the per-stratum accuracy section on this dataset (repeatable; "
        f"`make bench` runs it on {', '.join(ACCURACY_DATASETS)}) and merge it into "
        "latest.json/md (accuracy.json/md when there is no latest.json).",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args, rest = p.parse_known_args(argv)
    if args.scale:
        import scale

        return scale.main(rest)
    if rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.accuracy_only:
        return accuracy_only(args)
    if args.render:
        md = markdown(json.loads((args.results / "latest.json").read_text()))
        (args.results / "latest.md").write_text(md)
        print(md)
        print("README.md table updated" if update_readme(md) else "README.md has no markers")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    # the checkout's varcall, whatever the state of the editable install
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )
    t0 = time.perf_counter()
    result = run_benchmark(args)
    result["total_seconds"] = round(time.perf_counter() - t0, 1)
    args.results.mkdir(parents=True, exist_ok=True)
    # a partial run (--only) never replaces the full results
    stem = "latest" if not args.only else "partial"
    md = markdown(result)
    (args.results / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.results / f"{stem}.md").write_text(md)
    print(md)
    if not args.only and update_readme(md):
        print("README.md table updated")
    print(
        f"wrote {args.results / (stem + '.json')} and {stem}.md in {result['total_seconds']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
