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
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gzip
import hashlib
import json
import logging
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import strata_accuracy  # noqa: E402
from build_dataset import CACHE, SPECS, build_dataset, ensure_peers  # noqa: E402

logger = logging.getLogger("benchmarks.run")

RESULTS = HERE / "results"
VARCALL = ROOT / ".venv" / "bin" / "varcall"
PYTHON = ROOT / ".venv" / "bin" / "python"
QUAL_FILTER = "QUAL>=20"
#: Header lines that legitimately differ between two runs of the same calls.
VOLATILE_HEADER = re.compile(
    r"^##(fileDate|.*[Cc]ommand|.*[Dd]ate|varcall_?(run|time|started|version_info))"
)


# ----------------------------------------------------------------------------- rows
@dataclasses.dataclass
class Row:
    """One measured run."""

    name: str
    tool: str  # what a user would call it: bcftools, freebayes, varcall-native, ...
    mode: str  # "direct", "single-process", "distributed", "gnu-parallel"
    cmd: list[str]
    vcf: Path
    workers: int | None = None
    identity_to: str | None = None  # name of the row this one must be identical to
    needs: tuple[str, ...] = ()  # binaries
    varcall_options: tuple[str, ...] = ()  # `varcall call` options this row uses
    engine: str | None = None
    note: str = ""
    accuracy: bool = True  # measure accuracy against the truth (False: partial genome)


def _varcall_help(command: str) -> str | None:
    """Help text of `varcall COMMAND`, or None when the command does not exist."""
    if not VARCALL.exists():
        return None
    r = subprocess.run([str(VARCALL), command, "--help"], capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None


class Varcall:
    """What this checkout's varcall offers (commands and `call` options)."""

    def __init__(self) -> None:
        self.call_help = _varcall_help("call")
        self.concordance_help = _varcall_help("concordance")
        self.engines: set[str] = set()
        if self.call_help:
            from_help = re.search(r"--engine\s*\[([^\]]+)\]", self.call_help)
            self.engines = set(from_help.group(1).split("|")) if from_help else {"native"}
            if "--engine" not in self.call_help:
                self.engines = {"native"}

    def has(self, option: str) -> bool:
        return (
            bool(self.call_help)
            and re.search(rf"{re.escape(option)}\b", self.call_help) is not None
        )

    def call_cmd(self, ds: Path, out: Path, extra: list[str]) -> list[str]:
        cmd = [
            str(VARCALL),
            "call",
            "-f",
            str(ds / "reference.fa"),
            "--bam-list",
            str(ds / "bams.txt"),
        ]
        cmd += ["-o", str(out)]
        for opt in ("--overwrite", "--no-progress"):
            if self.has(opt):
                cmd.append(opt)
        return cmd + extra


def peer_rows(ds: Path, work: Path, jobs: int, window: int) -> list[Row]:
    ref, bams = ds / "reference.fa", ds / "bams.txt"
    q = shlex.quote
    rows = []
    out = work / "bcftools" / "calls.vcf.gz"
    rows.append(
        Row(
            "bcftools",
            "bcftools",
            "direct",
            [
                f"bcftools mpileup -a AD,DP -f {q(str(ref))} -b {q(str(bams))} -Ou 2>/dev/null"
                f" | bcftools call -m -v -Oz -o {q(str(out))} && tabix -f -p vcf {q(str(out))}"
            ],
            out,
            needs=("bcftools", "tabix"),
            note="mpileup -a AD,DP | call -m -v",
        )
    )
    out = work / "freebayes" / "calls.vcf.gz"
    rows.append(
        Row(
            "freebayes",
            "freebayes",
            "direct",
            [
                f"freebayes -f {q(str(ref))} -L {q(str(bams))} | bgzip -c > {q(str(out))}"
                f" && tabix -f -p vcf {q(str(out))}"
            ],
            out,
            needs=("freebayes", "bgzip", "tabix"),
        )
    )
    # freebayes-parallel: fixed windows, `parallel -k`, first header, sort, drop duplicates
    regions = work / "freebayes-parallel" / "regions.txt"
    out = work / "freebayes-parallel" / "calls.vcf.gz"
    rows.append(
        Row(
            f"freebayes-parallel-j{jobs}",
            "freebayes (GNU parallel)",
            "gnu-parallel",
            [
                f"parallel -k -j {jobs} freebayes -f {q(str(ref))} -L {q(str(bams))} --region {{}}"
                f" :::: {q(str(regions))}"
                " | awk 'BEGIN{b=0} /^#/{if(!b)print; next} {b=1; print}'"
                f" | bcftools sort -Ou 2>/dev/null | bcftools norm -d exact -Oz -o {q(str(out))}"
                f" 2>/dev/null && tabix -f -p vcf {q(str(out))}"
            ],
            out,
            workers=jobs,
            needs=("parallel", "freebayes", "bcftools", "tabix"),
            note=f"{window // 1000} kb windows, bcftools norm -d exact in place of vcfuniq",
        )
    )
    regions.parent.mkdir(parents=True, exist_ok=True)
    with open(regions, "w") as fh:
        for line in (ds / "reference.fa.fai").read_text().splitlines():
            name, length = line.split("\t")[:2]
            for s in range(0, int(length), window):
                fh.write(f"{name}:{s}-{min(int(length), s + window)}\n")
    return rows


def varcall_rows(
    vc: Varcall,
    ds: Path,
    work: Path,
    region_size: int | None,
    workers: list[int],
    engines: list[str],
) -> list[Row]:
    """Single-process and distributed varcall runs; ``region_size`` None: varcall's
    default region plan."""
    rows = []
    plan = ["--region-size", str(region_size)] if region_size else []
    for engine in engines:
        eng = ["--engine", engine] if engine != "native" else []
        needs = {"native": (), "bcftools": (), "freebayes": ("freebayes",)}[engine]
        single = f"varcall-{engine}-single"
        out = work / single
        rows.append(
            Row(
                single,
                f"varcall-{engine}",
                "single-process",
                vc.call_cmd(ds, out, ["--single-process", *eng]),
                out / "calls.vcf.gz",
                needs=needs,
                varcall_options=("--single-process", *eng[:1]),
                engine=engine,
            )
        )
        for w in workers if engine == "native" else workers[-1:]:
            name = f"varcall-{engine}-w{w}"
            out = work / name
            threads = ["--threads-per-worker", "1"] if vc.has("--threads-per-worker") else []
            rows.append(
                Row(
                    name,
                    f"varcall-{engine}",
                    "distributed",
                    vc.call_cmd(ds, out, ["--workers", str(w), *threads, *plan, *eng]),
                    out / "calls.vcf.gz",
                    workers=w,
                    identity_to=single,
                    needs=needs,
                    varcall_options=("--workers", *plan[:1], *eng[:1]),
                    engine=engine,
                    note=(
                        f"{region_size // 1000} kb regions"
                        if region_size
                        else "default region plan"
                    ),
                )
            )
    return rows


def extra_native_rows(rows: list[Row], work: Path, dsinfo: dict, region_size: int) -> list[Row]:
    """Runs for the memory targets: the 2-worker run on the last contig only (the client's
    memory must not grow with the genome) and the 1-worker run with larger regions (a
    worker's memory grows with the region, not the genome)."""
    out_rows = []
    by_name = {r.name: r for r in rows}

    def variant(row: Row, name: str, note: str, extra: list[str], size: int | None = None) -> Row:
        out = work / name
        cmd = [*row.cmd, *extra]
        cmd[cmd.index(str(work / row.name))] = str(out)
        if size is not None:
            cmd[cmd.index("--region-size") + 1] = str(size)
        return dataclasses.replace(row, name=name, cmd=cmd, vcf=out / "calls.vcf.gz", note=note)

    w2 = by_name.get("varcall-native-w2")
    if w2 is not None:
        contig = dsinfo["contigs"][-1][0]
        row = variant(
            w2,
            f"{w2.name}-one-contig",
            f"only {contig}: for the client-memory target",
            ["-r", contig],
        )
        out_rows.append(dataclasses.replace(row, identity_to=None, accuracy=False))
    w1 = by_name.get("varcall-native-w1")
    if w1 is not None:
        # a worker process (not a thread of the driver), so that its memory is its own
        longest = max(n for _, n in dsinfo["contigs"])
        for size in (region_size, 4 * region_size, longest):
            note = f"{size // 1000} kb regions, 1 worker process: worker memory vs region size"
            name = f"{w1.name}-process-r{size // 1000}kb"
            row = variant(w1, name, note, ["--worker-type", "process"], size)
            opts = (*row.varcall_options, "--worker-type")
            out_rows.append(dataclasses.replace(row, varcall_options=opts))
    return out_rows


def skip_reason(row: Row, vc: Varcall) -> str | None:
    for b in row.needs:
        if shutil.which(b) is None:
            return f"`{b}` is not installed (apt-get install {b})"
    if row.tool.startswith("varcall"):
        if vc.call_help is None:
            return "`varcall call` is not available in this checkout yet"
        for opt in row.varcall_options:
            if not vc.has(opt):
                return f"`varcall call {opt}` is not available in this checkout yet"
        if row.engine and row.engine not in vc.engines:
            return f"varcall engine {row.engine!r} is not available yet"
    return None


# ----------------------------------------------------------------------------- measuring
def run_row(row: Row, timeout: float, cwd: Path) -> dict:
    mdir = row.vcf.parent.parent / f"{row.name}.measure"
    shutil.rmtree(mdir, ignore_errors=True)
    row.vcf.parent.mkdir(parents=True, exist_ok=True)
    mdir.mkdir(parents=True)
    if row.tool.startswith("varcall"):
        shutil.rmtree(row.vcf.parent, ignore_errors=True)
    cmd = [str(PYTHON), str(HERE / "measure.py"), "--json", str(mdir / "measure.json")]
    cmd += ["--timeout", str(timeout), "--cwd", str(cwd), "--", *row.cmd]
    logger.info("running %s", row.name)
    subprocess.run(cmd, check=False)
    res = json.loads((mdir / "measure.json").read_text())
    if res["rc"] != 0 or not row.vcf.is_file():
        err = (mdir / "stderr.txt").read_text(errors="replace").strip().splitlines()
        res["status"] = "failed"
        res["reason"] = (
            "timed out" if res["timed_out"] else (err[-1] if err else f"exit {res['rc']}")
        )
        logger.warning("%s failed: %s", row.name, res["reason"])
    else:
        res["status"] = "ok"
    res["stderr"] = str(mdir / "stderr.txt")
    return res


def vcf_records(path: Path) -> tuple[list[str], list[str]]:
    """(header lines without the volatile ones, record lines) of a VCF(.gz)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    header, records = [], []
    with opener(path, "rt") as fh:
        for line in fh:
            if line.startswith("#"):
                if not VOLATILE_HEADER.match(line):
                    header.append(line)
            else:
                records.append(line)
    return header, records


def identity(a: Path, b: Path) -> dict:
    """Whether two VCFs hold the same records (and header, date/command lines aside)."""
    ha, ra = vcf_records(a)
    hb, rb = vcf_records(b)
    sa, sb = set(ra), set(rb)
    return {
        "identical": ha == hb and ra == rb,
        "header_identical": ha == hb,
        "records_a": len(ra),
        "records_b": len(rb),
        "differing": len(sa ^ sb),
        "sha256_records_a": hashlib.sha256("".join(ra).encode()).hexdigest()[:16],
        "sha256_records_b": hashlib.sha256("".join(rb).encode()).hexdigest()[:16],
    }


def filtered_vcf(vcf: Path) -> Path:
    """``vcf`` restricted to QUAL >= 20 and FILTER PASS/. (the same for every tool)."""
    out = vcf.with_name(vcf.name.replace(".vcf.gz", "") + ".q20.vcf.gz")
    subprocess.run(
        ["bcftools", "view", "-i", QUAL_FILTER, "-f", "PASS,.", "-Oz", "-o", str(out), str(vcf)],
        check=True,
        capture_output=True,
    )
    subprocess.run(["tabix", "-f", "-p", "vcf", str(out)], check=True, capture_output=True)
    return out


def accuracy(vc: Varcall, row: Row, ds: Path) -> dict:
    """SNP/INDEL accuracy vs truth through `varcall concordance` (metrics.json contract)."""
    if vc.concordance_help is None:
        return {"status": "skipped", "reason": "`varcall concordance` is not available yet"}
    vcf = filtered_vcf(row.vcf)
    out = row.vcf.parent.with_name(row.vcf.parent.name + ".concordance")
    shutil.rmtree(out, ignore_errors=True)
    truth = ds / "truth.vcf.gz"
    cmd = [
        str(VARCALL),
        "concordance",
        "--reference",
        str(ds / "reference.fa"),
        str(vcf),
        str(truth),
    ]
    cmd += ["--truth", str(truth), "--bed", str(ds / "confident.bed"), "--no-qc", "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    metrics = out / "metrics.json"
    if r.returncode != 0 or not metrics.is_file():
        msg = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        return {"status": "failed", "reason": f"varcall concordance: {msg}"}
    m = json.loads(metrics.read_text())
    t = m.get("truth", {}).get("A", {})
    res: dict = {"status": "ok", "metrics": str(metrics)}
    for kind in ("SNP", "INDEL"):
        if kind in t:
            res[kind] = {k: t[kind].get(k) for k in ("TP", "FP", "FN", "precision", "recall", "F1")}
    res["genotype_concordance"] = _genotype_concordance(t)
    return res


def _genotype_concordance(t: dict) -> float | None:
    """Of the (sample, variant) calls whose alleles match the truth (``TP_allele``), the
    fraction whose genotype matches too (``TP``), SNPs and indels together."""
    num = sum(t.get(k, {}).get("TP", 0) for k in ("SNP", "INDEL"))
    den = sum(t.get(k, {}).get("TP_allele", 0) for k in ("SNP", "INDEL"))
    return num / den if den else None


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


# ----------------------------------------------------------------------------- report
def _f(x: float | None, fmt: str = "{:.1f}") -> str:
    return "–" if x is None else fmt.format(x)


def _acc(a: dict, kind: str) -> str:
    d = a.get(kind)
    if not d or d.get("F1") is None:
        return "–"
    return f"{d['precision']:.3f} / {d['recall']:.3f} / {d['F1']:.3f}"


def table(rows: list[dict]) -> str:
    head = (
        "| run | mode | wall s | × bcftools | CPU s | peak RSS MB | SNP P / R / F1 | "
        "INDEL P / R / F1 | GT conc. | identical to single-process |\n"
        "|---|---|---:|---:|---:|---:|---|---|---:|---|\n"
    )
    lines = []
    for r in rows:
        if r["status"] != "ok":
            lines.append(
                f"| {r['name']} | {r['mode']} | {r['status']}: {r.get('reason', '')} |" + " |" * 7
            )
            continue
        acc = r.get("accuracy", {})
        ident_s = identity_text(r)
        lines.append(
            f"| {r['name']} | {r['mode']} | {_f(r['wall_s'])} | {_f(r.get('ratio_to_bcftools'), '{:.2f}')} | "
            f"{_f(r['cpu_s'])} | {_f(r['peak_tree_rss_mb'], '{:.0f}')} | {_acc(acc, 'SNP')} | "
            f"{_acc(acc, 'INDEL')} | {_f(acc.get('genotype_concordance'), '{:.4f}')} | {ident_s} |"
        )
    return head + "\n".join(lines) + "\n"


def identity_text(row: dict) -> str:
    """The identity column of a table row: –, yes, or NO with the count of differences."""
    ident = row.get("identity")
    if ident is None:
        return "–"
    return "yes" if ident["identical"] else f"NO ({ident['differing']} records differ)"


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


def memory_table(rows: list[dict]) -> str:
    """Worker and driver peak RSS of the 1-worker native runs, by region size."""
    out = []
    for r in rows:
        if r["status"] == "ok" and r["name"].startswith("varcall-native-w1-process-"):
            size = r.get("region_size")
            if size:
                out.append((size, r["child_peak_rss_mb"], r["root_peak_rss_mb"], r["name"]))
    if not out:
        return ""
    lines = [
        "| region size | worker peak RSS MB | driver peak RSS MB | run |",
        "|---:|---:|---:|---|",
    ]
    for size, child, root, name in sorted(out):
        lines.append(f"| {size / 1000:g} kb | {child:.0f} | {root:.0f} | {name} |")
    return "\n".join(lines)


def busy_warning(machine: dict) -> list[str]:
    """A warning line when other work loaded the machine at the start of the run."""
    load, cores = machine["load_average_at_start"][0], machine["cores"] or 1
    if load <= 0.5 * cores:
        return []
    return [
        f"**Warning:** the machine was busy with other work (load average {load:.1f} on "
        f"{cores} cores at the start): wall times are inflated and their ratios unreliable; "
        "CPU seconds, memory, accuracy and identity are not affected. Re-run on an idle "
        "machine for timings.",
        "",
    ]


def markdown(result: dict) -> str:
    m, d = result["machine"], result["dataset"]
    lines = [
        f"# varcall benchmark ({result['kind']})",
        "",
        f"Run {result['started']} on **{m['cores']} cores, {m['cpu_model']}, {m['memory_gb']} GB RAM** "
        f"({m['os']}; load average at start {', '.join(map(str, m['load_average_at_start']))}).",
        "",
        f"Dataset `{d['name']}`: {d['length_bp'] / 1e6:.2f} Mb of *K. pneumoniae* HS11286 in "
        f"{len(d['contigs'])} contigs, {len(d['samples'])} diploid samples, 2x150 ART reads at "
        f"{d['coverage']:g}x, truth {d['sites']['SNP']} SNPs + {d['sites']['INDEL']} indels, "
        f"confident BED {d['confident_bp'] / 1e6:.2f} Mb (build {d['build_seconds']:.0f} s, cached).",
        "",
        *busy_warning(m),
        table(result["rows"]),
        f"Accuracy: records with {QUAL_FILTER} and FILTER PASS/. vs the truth inside the confident BED "
        "(`varcall concordance`). Peak RSS: all processes of the run together (sampled every 0.2 s); "
        "× bcftools: wall time over the bcftools run's. Identity: VCF records and header "
        "(date/command lines aside) equal to the same engine's single-process run.",
        "",
    ]
    mem = memory_table(result["rows"])
    if mem:
        lines += [mem, ""]
    if result.get("targets"):
        lines += ["| target | value | met |", "|---|---|---|"]
        lines += [
            f"| {t['target']} | {t['value']} | {'yes' if t['pass'] else 'NO'} |"
            for t in result["targets"]
        ]
        lines.append("")
    if result.get("cohort"):
        lines += cohort_markdown(result["cohort"], result.get("small_scaling", []))
    if result.get("simulated"):
        lines += simulated_markdown(result["simulated"])
    if result.get("accuracy_section"):
        lines += strata_accuracy.section_markdown(result["accuracy_section"])
    notes = [f"- {r['name']}: {r['note']}" for r in result["rows"] if r.get("note")]
    notes += [
        f"- {r['name']}: accuracy not measured ({r['accuracy'].get('reason')})"
        for r in result["rows"]
        if r.get("accuracy", {}).get("status", "ok") != "ok"
    ]
    if notes:
        lines += ["Notes:", *notes, ""]
    return "\n".join(lines)


def update_readme(md: str) -> bool:
    """Replace the text between the bench markers of README.md; False when absent."""
    readme = ROOT / "README.md"
    if not readme.is_file():
        return False
    text = readme.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start not in text or end not in text:
        return False
    body = md.split("\n", 2)[2] if md.startswith("# ") else md
    new = (
        text[: text.index(start) + len(start)]
        + "\n"
        + body.strip()
        + "\n"
        + text[text.index(end) :]
    )
    readme.write_text(new)
    return True


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
    rows += varcall_rows(vc, ds, work, args.region_size, [1, 2], ["native", "bcftools", "freebayes"])
    rows += extra_native_rows(rows, work, dsinfo, args.region_size)
    if args.only:
        rows = [r for r in rows if any(re.search(p, r.name) for p in args.only)]

    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
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


#: Datasets of the per-stratum accuracy section of `make bench` (build_dataset.SPECS).
ACCURACY_DATASETS = ("hard", "lowcov")


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
            res.update(run_row(row, args.timeout, ds), vcf=str(row.vcf))
            if res["status"] == "ok" and vc.concordance_help is not None:
                res["accuracy"] = strata_accuracy.measure(VARCALL, ds, row.vcf, quals)
            logger.info("%s on %s: %s", row.name, name, res["status"])
            done.append(res)
        deep = spec.hard.deep_contigs if spec.hard else ()
        note = ", ".join(f"{c} at {spec.hard.deep_coverage:g}x" for c in deep) if deep else ""
        keys = ("contigs", "samples", "sites", "confident_bp", "strata_bp", "stutter", "build_seconds")
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
            **run_row(row, args.timeout, ds),
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
    sim = json.loads((ds / "simulation.json").read_text())
    return {"path": str(ds), "config": sim.get("config"), "rows": out, "targets": targets}


def simulated_markdown(sim: dict) -> list[str]:
    cfg = sim.get("config") or {}
    lines = [
        "### Simulated 30x cohort (`varcall simulate`, seed 1)",
        "",
        f"{cfg.get('n_samples', '?')} samples, {cfg.get('n_contigs', '?')} contigs x "
        f"{(cfg.get('contig_length') or 0) / 1000:g} kb, {cfg.get('coverage', '?')}x; accuracy "
        "inside its confident BED.",
        "",
        "| run | wall s | CPU s | SNP P / R / F1 | INDEL P / R / F1 |",
        "|---|---:|---:|---|---|",
    ]
    for r in sim["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {r['name']} | {r['status']}: {r.get('reason', '')} | | | |")
            continue
        a = r.get("accuracy") or {}
        lines.append(
            f"| {r['name']} | {_f(r.get('wall_s'))} | {_f(r.get('cpu_s'))} | "
            f"{_acc(a, 'SNP')} | {_acc(a, 'INDEL')} |"
        )
    lines.append("")
    if sim["targets"]:
        lines += ["| target | value | met |", "|---|---|---|"]
        lines += [
            f"| {t['target']} | {t['value']} | {'yes' if t['pass'] else 'NO'} |"
            for t in sim["targets"]
        ]
        lines.append("")
    return lines


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


def cohort_markdown(cohort: dict, small: list[dict]) -> list[str]:
    d = cohort["dataset"]
    lines = [
        f"### Scaling: {d['length_bp'] / 1e6:.1f} Mb, {len(d['samples'])}-sample cohort",
        "",
        f"The same *K. pneumoniae* / ART / bwa pipeline: {len(d['contigs'])} contigs, "
        f"{len(d['samples'])} diploid samples at {d['coverage']:g}x (build "
        f"{d['build_seconds']:.0f} s, cached). The scaling targets are measured here, where "
        "calling dominates the run; on the 2 Mb dataset above the native engine needs only "
        "a few seconds and a distributed run's fixed cost (cluster start ~1.3 s, merge) "
        "decides the ratios (shown below for reference). Each run uses varcall's default "
        "region plan and ran in several interleaved rounds; the table gives the median "
        "round's wall time, CPU and memory.",
        "",
        "| run | mode | regions | wall s (median) | wall s, every round | CPU s | peak RSS MB | "
        "driver peak RSS MB | identical to single-process |",
        "|---|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in cohort["rows"]:
        if r["status"] != "ok":
            lines.append(
                f"| {r['name']} | {r['mode']} | {r['status']}: {r.get('reason', '')} |" + " |" * 6
            )
            continue
        ident_s = identity_text(r)
        walls = " / ".join(_f(w) for w in r.get("walls_s", [r["wall_s"]]))
        lines.append(
            f"| {r['name']} | {r['mode']} | {r.get('regions', '–')} | {_f(r['wall_s'])} | "
            f"{walls} | {_f(r['cpu_s'])} | {_f(r['peak_tree_rss_mb'], '{:.0f}')} | "
            f"{_f(r['root_peak_rss_mb'], '{:.0f}')} | {ident_s} |"
        )
    lines.append("")
    lines += ["| target | value | met |", "|---|---|---|"]
    lines += [
        f"| {t['target']} | {t['value']} | {'yes' if t['pass'] else 'NO'} |"
        for t in cohort["targets"]
    ]
    lines += [f"| for reference, not a target: {t['target']} | {t['value']} | – |" for t in small]
    lines.append("")
    return lines


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


def main(argv: list[str] | None = None) -> int:
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
