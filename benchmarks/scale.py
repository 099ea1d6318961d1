"""`make bench-scale`: how varcall's cost grows with regions, samples and workers.

Three sweeps of ``varcall call`` (native engine, default region plan unless said), each run
measured by ``benchmarks/measure.py`` (wall, CPU of the whole process tree, peak RSS) and
read back from its ``manifest.json`` (calling and merge seconds, ``encode_seconds`` when the
run records it, the tasks' summed seconds, the busiest worker's peak RSS):

- regions: 10 -> 10,000 planned regions (``--region-count``) over one cohort (10 samples,
  2 x 500 kb at 2x), all cores;
- samples: 10 -> 500 samples over 200 kb at 2x, all cores;
- workers: 1 -> all cores, and single-process, on the 50-sample cohort.

Cohorts are ``varcall simulate`` cohorts (low coverage, small genome), built once and
cached under ``benchmarks/cache/``. ``--quick`` stops the regions sweep at 1,000 and the
samples sweep at 100.

Task overhead is the worker time not spent inside region calls:
``call_seconds x worker slots - task_seconds_sum`` (planning, cluster start, scheduling,
idle slots), per planned region. The projection to 30x whole genomes takes the CPU
seconds per Mb and sample of ``make bench``'s 30x single-process run
(``results/latest.json``) or, without one, the samples sweep scaled by coverage, and
assumes cost linear in genome length, samples and depth (:func:`projection`).

Writes ``benchmarks/results/scale.{json,md,png}`` and the README's tables between
``<!-- scale:start -->`` and ``<!-- scale:end -->``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
CACHE = HERE / "cache"
VARCALL = Path(sys.executable).parent / "varcall"
MEASURE = HERE / "measure.py"
README = ROOT / "README.md"
MARKERS = ("<!-- scale:start -->", "<!-- scale:end -->")

logger = logging.getLogger("benchmarks.scale")

#: The sweeps: full and --quick.
REGIONS = (10, 100, 1_000, 10_000)
REGIONS_QUICK = (10, 100, 1_000)
SAMPLES = (10, 50, 100, 500)
SAMPLES_QUICK = (10, 50, 100)
#: The cohorts: (samples, contigs, contig length bp, coverage).
REGIONS_COHORT = (10, 2, 500_000, 2.0)
SAMPLES_LENGTH, SAMPLES_COVERAGE = 200_000, 2.0
WORKERS_SAMPLES = 50
#: A 30x human genome for the projection, Mb (GRCh38 primary assembly, about 3.1 Gb).
GENOME_MB = 3_100.0
PROJECTED_SAMPLES = (1, 100, 1_000)

#: Published figures for one 30x genome, next to the projection. DeepVariant's own metrics
#: page (r1.4, HG003 30x WGS, all chromosomes, one 64-vCPU machine without GPU): about
#: 323 min wall; wall x vCPUs bounds the CPU it used.
DEEPVARIANT = {
    "tool": "DeepVariant 1.4 (make_examples + call_variants + postprocess_variants)",
    "wall_minutes": 323.0,
    "vcpus": 64,
    "source": "https://github.com/google/deepvariant/blob/r1.4/docs/metrics.md",
}
#: GATK: Heldenbrand et al. 2019, BMC Bioinformatics 20:557 (doi:10.1186/s12859-019-3169-7):
#: the whole best-practices pipeline (alignment included) on a 20x human genome takes "a
#: few hours" when split across 4 c5.18xlarge instances (72 vCPUs each); GATK4 runs
#: HaplotypeCaller largely single-threaded, several samples per node. No core-hour figure
#: for HaplotypeCaller + joint genotyping alone is derived from it here.
GATK = {
    "tool": "GATK 3.8 / 4 best practices (alignment to HaplotypeCaller), 20x WGS",
    "note": "a few hours wall on 4 x 72 vCPUs when split across nodes",
    "source": "Heldenbrand et al. 2019, BMC Bioinformatics 20:557, doi:10.1186/s12859-019-3169-7",
}


# ----------------------------------------------------------------------------- cohorts
def cohort(n_samples: int, n_contigs: int, length: int, coverage: float, cache: Path) -> Path:
    """A ``varcall simulate`` cohort (seed 1), built once under ``cache``."""
    from varcall.simulate.cohort import simulate_cohort
    from varcall.simulate.config import SimulationConfig

    name = f"scale-sim-{n_samples}s-{n_contigs}x{length}-{coverage:g}x"
    out = cache / name
    if (out / "bams.txt").is_file():
        return out
    tmp = cache / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    config = SimulationConfig(
        n_samples=n_samples, n_contigs=n_contigs, contig_length=length, coverage=coverage, seed=1
    )
    t0 = time.perf_counter()
    simulate_cohort(tmp, config)
    tmp.rename(out)
    logger.info("built %s in %.0f s", name, time.perf_counter() - t0)
    return out


# ----------------------------------------------------------------------------- one run
def run_point(ds: Path, out: Path, workers: int | None, extra: list[str], timeout: float) -> dict:
    """``varcall call`` on cohort ``ds`` into ``out`` under measure.py (``workers`` None:
    --single-process); the measurements and the manifest's timing and memory."""
    cmd = [str(VARCALL), "call", "-f", str(ds / "reference.fa"), "--bam-list",
           str(ds / "bams.txt"), "-o", str(out), "--overwrite", "--no-progress", *extra]  # fmt: skip
    cmd += ["--single-process"] if workers is None else ["--workers", str(workers)]
    out.parent.mkdir(parents=True, exist_ok=True)
    meas = out.parent / f"{out.name}.measure.json"
    subprocess.run(
        [sys.executable, str(MEASURE), "--json", str(meas), "--timeout", str(timeout), "--", *cmd],
        check=False,
    )
    m = json.loads(meas.read_text())
    point = {
        k: m.get(k) for k in ("rc", "wall_s", "cpu_s", "peak_tree_rss_mb", "max_process_rss_mb")
    }
    manifest = out / "manifest.json"
    if m.get("rc") != 0 or not manifest.is_file():
        return {**point, "status": "failed"}
    doc = json.loads(manifest.read_text())
    timing, memory = doc.get("timing", {}), doc.get("memory", {})
    return {
        **point,
        "status": "ok",
        "n_units": doc.get("n_units"),
        "n_variants": doc.get("n_variants"),
        **{
            k: timing.get(k)
            for k in ("call_seconds", "merge_seconds", "encode_seconds", "task_seconds_sum")
        },  # fmt: skip
        "worker_peak_rss_mb": memory.get("worker_peak_rss_mb"),
        "client_peak_rss_mb": memory.get("client_peak_rss_mb"),
    }


def task_overhead(point: dict, slots: int) -> dict:
    """``overhead_s`` (worker-slot seconds of the calling stage not spent in region calls:
    ``call_seconds x slots - task_seconds_sum``, at least 0) and ``overhead_ms_per_region``;
    None where the run did not record them."""
    call, tasks, units = (point.get(k) for k in ("call_seconds", "task_seconds_sum", "n_units"))
    if call is None or tasks is None or not units:
        return {"overhead_s": None, "overhead_ms_per_region": None}
    over = max(0.0, call * slots - tasks)
    return {"overhead_s": round(over, 3), "overhead_ms_per_region": round(1000 * over / units, 2)}


# ----------------------------------------------------------------------------- sweeps
def sweeps(args: argparse.Namespace, runs: Path) -> list[dict]:
    """Every run of the three sweeps, as rows (sweep, x, the run's measurements); the runs'
    folders go under ``runs``."""
    cores = os.cpu_count() or 1
    rows: list[dict] = []

    def add(sweep: str, x: int | str, ds: Path, workers: int | None, extra: list[str], **kw):
        logger.info("%s %s ...", sweep, x)
        point = run_point(ds, runs / f"{sweep}-{x}", workers, extra, args.timeout)
        slots = 1 if workers is None else workers
        row = {"sweep": sweep, "x": x, "workers": workers, **kw, **point}
        rows.append({**row, **task_overhead(point, slots)})
        logger.info("%s %s: %s", sweep, x, {k: row.get(k) for k in ("status", "wall_s", "n_units")})

    n, k, length, cov = REGIONS_COHORT
    ds = cohort(n, k, length, cov, args.cache)
    for count in REGIONS_QUICK if args.quick else REGIONS:
        add("regions", count, ds, cores, ["--region-count", str(count)], samples=n,
            length_bp=k * length, coverage=cov)  # fmt: skip
    for n in SAMPLES_QUICK if args.quick else SAMPLES:
        ds = cohort(n, 1, SAMPLES_LENGTH, SAMPLES_COVERAGE, args.cache)
        add("samples", n, ds, cores, [], samples=n, length_bp=SAMPLES_LENGTH,
            coverage=SAMPLES_COVERAGE)  # fmt: skip
    ds = cohort(WORKERS_SAMPLES, 1, SAMPLES_LENGTH, SAMPLES_COVERAGE, args.cache)
    for w in [None, *range(1, cores + 1)]:
        add("workers", "single" if w is None else w, ds, w, [], samples=WORKERS_SAMPLES,
            length_bp=SAMPLES_LENGTH, coverage=SAMPLES_COVERAGE)  # fmt: skip
    return rows


# ----------------------------------------------------------------------------- projection
def per_mb_sample(cpu_s: float, length_bp: int, n_samples: int) -> float:
    """CPU seconds per Mb of genome and per sample."""
    return cpu_s / (length_bp / 1e6 * n_samples)


def rate_from_bench(latest: Path) -> dict | None:
    """The 30x rate (CPU s per Mb-sample) of ``make bench``'s native single-process run in
    ``latest`` (``results/latest.json``), or None."""
    if not latest.is_file():
        return None
    doc = json.loads(latest.read_text())
    row = next((r for r in doc.get("rows", []) if r.get("name") == "varcall-native-single"), None)
    ds = doc.get("dataset", {})
    if not row or row.get("status") != "ok" or not ds.get("length_bp"):
        return None
    n = len(ds.get("samples", []))
    return {
        "cpu_s_per_mb_sample": round(per_mb_sample(row["cpu_s"], ds["length_bp"], n), 4),
        "coverage": ds.get("coverage"),
        "how": f"make bench, native single-process: {row['cpu_s']:.1f} CPU s over "
        f"{ds['length_bp'] / 1e6:.1f} Mb x {n} samples at {ds.get('coverage'):g}x (ART reads, bwa)",
    }


def rate_from_sweep(rows: list[dict], coverage: float = 30.0) -> dict | None:
    """The rate of the largest samples-sweep run, scaled linearly to ``coverage``."""
    ok = [r for r in rows if r["sweep"] == "samples" and r["status"] == "ok"]
    if not ok:
        return None
    r = max(ok, key=lambda r: r["x"])
    rate = per_mb_sample(r["cpu_s"], r["length_bp"], r["samples"]) * coverage / r["coverage"]
    return {
        "cpu_s_per_mb_sample": round(rate, 4),
        "coverage": coverage,
        "how": f"samples sweep, {r['samples']} samples at {r['coverage']:g}x, scaled x"
        f"{coverage / r['coverage']:g} to {coverage:g}x",
    }


def projection(rates: list[float], samples: tuple[int, ...] = PROJECTED_SAMPLES) -> list[dict]:
    """Core-hours to call 30x whole genomes (``GENOME_MB``) of each cohort size, at each of
    ``rates`` (CPU s per Mb-sample), next to DeepVariant's published per-genome figure (wall
    x vCPUs, times the samples; joint genotyping not included)."""
    dv = DEEPVARIANT["wall_minutes"] / 60 * DEEPVARIANT["vcpus"]
    return [
        {
            "samples": n,
            "varcall_core_hours": [round(r * GENOME_MB * n / 3600, 2) for r in rates],
            "deepvariant_vcpu_hours": round(dv * n, 1),
        }
        for n in samples
    ]


def sample_linearity(rows: list[dict]) -> list[dict]:
    """CPU s per Mb-sample along the samples sweep (flat: cost linear in samples)."""
    return [
        {
            "samples": r["samples"],
            "cpu_s_per_mb_sample": round(
                per_mb_sample(r["cpu_s"], r["length_bp"], r["samples"]), 3
            ),
        }  # fmt: skip
        for r in rows
        if r["sweep"] == "samples" and r["status"] == "ok"
    ]


# ----------------------------------------------------------------------------- tables
def _f(x: float | None, fmt: str = "{:.1f}") -> str:
    return "–" if x is None else fmt.format(x)


_SWEEP_TITLES = {
    "regions": "planned regions (10 samples, 2 x 500 kb, 2x, all cores)",
    "samples": "samples (200 kb, 2x, all cores)",
    "workers": f"workers ({WORKERS_SAMPLES} samples, 200 kb, 2x)",
}


def sweep_table(rows: list[dict], sweep: str) -> list[str]:
    """The markdown table of one sweep."""
    lines = [
        f"| {sweep} | tasks' regions | wall s | CPU s | call s | merge s | encode s | "
        "overhead ms / region | peak RSS per worker MB | driver peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["sweep"] != sweep:
            continue
        if r["status"] != "ok":
            lines.append(f"| {r['x']} | failed (rc {r.get('rc')}) |" + " |" * 8)
            continue
        lines.append(
            f"| {r['x']} | {r['n_units']} | {_f(r['wall_s'])} | {_f(r['cpu_s'])} | "
            f"{_f(r['call_seconds'])} | {_f(r['merge_seconds'], '{:.2f}')} | "
            f"{_f(r.get('encode_seconds'), '{:.2f}')} | "
            f"{_f(r['overhead_ms_per_region'], '{:.1f}')} | "
            f"{_f(r['worker_peak_rss_mb'], '{:.0f}')} | {_f(r['client_peak_rss_mb'], '{:.0f}')} |"
        )
    return lines


def projection_table(result: dict) -> list[str]:
    """The projection to 30x whole genomes, with its basis and the published figures."""
    rates = result.get("rates") or []
    if not rates:
        return ["No projection: no measured rate."]
    lines = [f"Rate {chr(65 + i)}: {r['cpu_s_per_mb_sample']:.3f} CPU s per Mb and sample at "
             f"30x ({r['how']})." for i, r in enumerate(rates)]  # fmt: skip
    lines += [
        f"Projected to {GENOME_MB:,.0f} Mb per genome, linear in length, samples and depth: "
        "an extrapolation over 3 orders of magnitude, from simulated reads without the "
        "repeats, mapping artefacts and deep pileups of real genomes, and from whole-run CPU "
        "(process start and imports included, which inflates small runs); the driver's merge "
        "is not included.",
        "",
        "| samples (30x WGS) | "
        + " | ".join(f"varcall core-hours, rate {chr(65 + i)}" for i in range(len(rates)))
        + " | DeepVariant vCPU-hours (published, x samples) |",
        "|---:|" + "---:|" * (len(rates) + 1),
    ]
    for p in result["projection"]:
        hours = " | ".join(f"{h:,.1f}" for h in p["varcall_core_hours"])
        lines.append(f"| {p['samples']:,} | {hours} | {p['deepvariant_vcpu_hours']:,.0f} |")
    lines += [
        "",
        f"- DeepVariant: {DEEPVARIANT['wall_minutes']:.0f} min wall on {DEEPVARIANT['vcpus']} vCPUs "
        f"per 30x genome ({DEEPVARIANT['source']}); wall x vCPUs bounds its CPU use.",
        f"- GATK: {GATK['note']} ({GATK['tool']}; {GATK['source']}); joint genotyping comes on top.",
        "- Per-sample CPU along the samples sweep (flat = linear in samples): "
        + ", ".join(f"{x['samples']}: {x['cpu_s_per_mb_sample']}" for x in result["linearity"])
        + " CPU s per Mb-sample at 2x.",
    ]
    return lines


def markdown(result: dict) -> str:
    """The tables of a result (``scale.md`` and the README's section)."""
    m = result["machine"]
    lines = [
        f"Measured {result['finished']} on {m['cores']} cores ({m['cpu_model']}), "
        f"load average {m['load_average_at_start']} at the start"
        + (", --quick" if result.get("quick") else "")
        + f"; {result['total_seconds']:.0f} s in all. One run per point: on a busy machine "
        "the wall times are noisy.",
        "",
    ]
    for sweep in ("regions", "samples", "workers"):
        lines += [f"**{_SWEEP_TITLES[sweep]}**", "", *sweep_table(result["rows"], sweep), ""]
    lines += ["**Projection to 30x whole genomes**", "", *projection_table(result), ""]
    return "\n".join(lines)


def update_readme(md: str, readme: Path = README) -> bool:
    """Replace the text between the scale markers of ``readme``; False without markers."""
    text = readme.read_text()
    start, end = MARKERS
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(
        f"{head}{start}\n{md.rstrip()}\n\n![scale](benchmarks/results/scale.png)\n{end}{tail}"
    )
    return True


def plot(result: dict, png: Path) -> None:
    """Wall time, task overhead and peak RSS per worker against each sweep's variable."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = [("wall_s", "wall s"), ("overhead_ms_per_region", "overhead ms / region"),
                ("worker_peak_rss_mb", "peak RSS / worker MB")]  # fmt: skip
    fig, axes = plt.subplots(3, 3, figsize=(11, 8), dpi=110)
    for col, sweep in enumerate(("regions", "samples", "workers")):
        pts = [r for r in result["rows"] if r["sweep"] == sweep and r["status"] == "ok"
               and isinstance(r["x"], int)]  # fmt: skip
        for row, (key, label) in enumerate(measures):
            ax = axes[row][col]
            xs = [p["x"] for p in pts if p.get(key) is not None]
            ys = [p[key] for p in pts if p.get(key) is not None]
            ax.plot(xs, ys, "o-")
            if sweep != "workers":
                ax.set_xscale("log")
            else:
                ax.set_xticks(xs)
            ax.set_ylabel(label)
            if row == 2:
                ax.set_xlabel(sweep)
            if row == 0:
                ax.set_title(_SWEEP_TITLES[sweep], fontsize=8)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()  # fmt: skip
    return {"cores": os.cpu_count(), "cpu_model": cpu, "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip


def summarise(rows: list[dict], started: str, seconds: float, quick: bool, latest: Path) -> dict:
    """The result document: rows, rates, projection, linearity, machine."""
    rates = [r for r in (rate_from_bench(latest), rate_from_sweep(rows)) if r is not None]
    return {
        "version": 1,
        "started": started,
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "total_seconds": round(seconds, 1),
        "quick": quick,
        "machine": machine(),
        "rows": rows,
        "rates": rates,
        "projection": projection([r["cpu_s_per_mb_sample"] for r in rates]) if rates else [],
        "linearity": sample_linearity(rows),
        "published": {"deepvariant": DEEPVARIANT, "gatk": GATK},
    }


def write_results(result: dict, results: Path) -> str:
    """``scale.json`` and ``scale.md`` (and ``scale.png``) under ``results``; the markdown."""
    results.mkdir(parents=True, exist_ok=True)
    md = markdown(result)
    (results / "scale.json").write_text(json.dumps(result, indent=2) + "\n")
    (results / "scale.md").write_text(md + "\n![scale](scale.png)\n")
    if result["rows"]:
        plot(result, results / "scale.png")
    return md


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="Regions up to 1,000, samples up to 100.")
    p.add_argument("--timeout", type=float, default=1800, help="Seconds before one run is killed.")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--cache", type=Path, default=CACHE)
    p.add_argument(
        "--latest", type=Path, default=RESULTS / "latest.json",
        help="make bench's results, for the 30x rate of the projection.",
    )  # fmt: skip
    p.add_argument("--no-readme", action="store_true", help="Leave README.md as it is.")
    p.add_argument(
        "--render", action="store_true",
        help="No runs: rewrite scale.md, scale.png and the README tables from scale.json.",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.render:
        old = json.loads((args.results / "scale.json").read_text())
        result = {**old, **summarise(old["rows"], old["started"], old["total_seconds"],
                                     old["quick"], args.latest)}  # fmt: skip
        result["finished"], result["machine"] = old["finished"], old["machine"]
        return _report(result, args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )
    sys.path.insert(0, str(ROOT))
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="varcall-scale-") as runs:
        rows = sweeps(args, Path(runs))
    result = summarise(rows, started, time.perf_counter() - t0, args.quick, args.latest)
    return _report(result, args)


def _report(result: dict, args: argparse.Namespace) -> int:
    md = write_results(result, args.results)
    print(md)
    if not args.no_readme and update_readme(md):
        print("README.md scale tables updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
