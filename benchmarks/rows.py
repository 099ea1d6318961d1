"""The runs of `make bench` (``benchmarks/run.py``): what each row runs and how one is run.

:class:`Row` (one measured run) and :class:`Varcall` (what this checkout's varcall offers);
the rows of the peers (:func:`peer_rows`), of varcall (:func:`varcall_rows`) and of the
memory targets (:func:`extra_native_rows`), and why a row is skipped (:func:`skip_reason`).
Then running one row under ``measure.py`` (:func:`run_row`), whether two VCFs hold the same
records (:func:`identity`) and a VCF's accuracy against the truth through ``varcall
concordance`` (:func:`accuracy`).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import logging
import re
import shlex
import shutil
import subprocess
from pathlib import Path

logger = logging.getLogger("benchmarks.run")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
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


def run_rounds(row: Row, timeout: float, cwd: Path, rounds: int) -> dict:
    """:func:`run_row` ``rounds`` times in a row: the median round by wall time (an odd
    count: the middle one) with every round's wall time (``walls_s``); the first failed
    round's result when one fails. The output of the last round stays (a varcall run
    rewrites its output directory; all rounds call the same records)."""
    done = []
    for _ in range(max(1, rounds)):
        res = run_row(row, timeout, cwd)
        if res["status"] != "ok":
            return res
        done.append(res)
    ok = sorted(done, key=lambda r: r["wall_s"])
    return {**ok[len(ok) // 2], "walls_s": [r["wall_s"] for r in done]}


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
