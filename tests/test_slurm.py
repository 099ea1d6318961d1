"""varcall on a real SLURM cluster (the one-node test cluster of ``tests/slurm/start.sh``).

Marked ``slurm`` (not run by a plain ``pytest``): ``bash tests/slurm/start.sh && pytest -m slurm``.
Every test skips, with the reason, where ``sinfo`` is missing or SLURM does not answer.

- ``varcall call --cluster slurm`` runs its regions in SLURM worker jobs and writes what the
  local run writes (VCF records and VCF Zarr arrays);
- a worker job cancelled with ``scancel`` mid-run is replaced and the run completes, identical;
- ``--cluster-timeout`` stops with a one-line message when no worker starts, or continues
  locally with ``--fallback-local`` (said in the log and the manifest);
- the workflows/ Makefile runs end to end on SLURM, resumes instead of starting over, and
  the sbatch template runs it as a driver job that submits its own worker jobs.

The workers listen on the loopback interface (``interface: lo``): this is a one-node cluster.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "workflows"
VOLATILE_HEADER = re.compile(r"^##(fileDate|varcallCommand|.*[Cc]ommand=)")
#: the console script beside this interpreter (the Makefile and the sbatch job call it)
VARCALL = Path(sys.executable).with_name("varcall")


# ----------------------------------------------------------------------------- helpers
def _sinfo_state() -> str | None:
    """The state of the first node per sinfo, or None when SLURM does not answer."""
    if shutil.which("sinfo") is None:
        return None
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return None
    lines = r.stdout.split()
    return lines[0] if r.returncode == 0 and lines else None


@pytest.fixture(scope="module")
def slurm() -> str:
    """Skip unless a SLURM cluster answers with a usable node."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        pytest.skip("SLURM is not installed here (no sinfo/sbatch); run: bash tests/slurm/start.sh")
    state = _sinfo_state()
    if state is None:
        pytest.skip("SLURM does not answer (sinfo failed); run: bash tests/slurm/start.sh")
    if not state.startswith(("idle", "mix", "alloc")):
        pytest.skip(f"the SLURM node is {state!r}, not usable; run: bash tests/slurm/start.sh")
    return state


def _env() -> dict[str, str]:
    """The checkout's varcall for the driver and (exported by sbatch) its worker jobs."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def varcall(*args: str | Path, cwd: Path | None = None, timeout: float = 400):
    return subprocess.run(
        [sys.executable, "-m", "varcall.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=cwd,
        timeout=timeout,
    )


def cluster_yaml(path: Path, logs: Path, jobs: int = 2, extra: tuple[str, ...] = ()) -> Path:
    lines = [
        "cluster: slurm",
        "cores: 1",
        "memory: 1GB",
        'walltime: "00:20:00"',
        f"jobs: {jobs}",
        "interface: lo",
        f"log_directory: {logs}",
    ]
    if extra:
        lines.append("job_extra_directives:")
        lines += [f'  - "{e}"' for e in extra]
    path.write_text("\n".join(lines) + "\n")
    return path


def vcf_body(path: Path) -> tuple[list[str], list[str]]:
    header, records = [], []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if line.startswith("#"):
                if not VOLATILE_HEADER.match(line):
                    header.append(line)
            else:
                records.append(line)
    return header, records


def assert_same_outputs(a: Path, b: Path) -> None:
    """Same VCF records and header (date/command lines aside), equal VCF Zarr arrays."""
    ha, ra = vcf_body(a / "calls.vcf.gz")
    hb, rb = vcf_body(b / "calls.vcf.gz")
    assert ra, "no records: the test data should hold variants"
    assert ra == rb
    assert ha == hb
    import zarr

    za, zb = (
        zarr.open_group(str(a / "calls.vcz"), mode="r"),
        zarr.open_group(str(b / "calls.vcz"), mode="r"),
    )
    names = sorted(za.array_keys())
    assert names == sorted(zb.array_keys())
    for name in names:
        x, y = za[name][...], zb[name][...]
        assert x.dtype == y.dtype and x.shape == y.shape, name
        if x.dtype.kind == "f":
            assert np.array_equal(x, y, equal_nan=True), name
        else:
            assert np.array_equal(x, y), name


def squeue_ids(logs: Path, state: str | None = None) -> list[str]:
    """Ids of the queued jobs whose logs go to ``logs`` (this test's worker jobs only:
    other SLURM users of the machine are left alone)."""
    cmd = ["squeue", "-h", "-O", "JobID:30,StdErr:1000"]
    if state:
        cmd += ["-t", state]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
    out = []
    for line in r.stdout.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[1].strip().startswith(str(logs)):
            out.append(parts[0])
    return out


@pytest.fixture(scope="module")
def local_run(slurm: str, small_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The single-process run every SLURM run must equal."""
    out = tmp_path_factory.mktemp("slurm-local") / "single"
    r = varcall(
        "call",
        "-f",
        small_cohort / "reference.fa",
        "--bam-list",
        small_cohort / "bams.txt",
        "-o",
        out,
        "--single-process",
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture
def logs(slurm: str, tmp_path: Path):
    """The folder of this test's worker job logs; its jobs are cancelled at the end."""
    path = tmp_path / "logs"
    yield path
    ids = squeue_ids(path)
    if ids:
        subprocess.run(["scancel", *ids], timeout=15)
    _kill_orphaned_workers()


def _kill_orphaned_workers() -> None:
    """Kill dask worker processes of ended jobs. With proctrack/linuxproc (no cgroups on the
    test host) a cancelled job's nanny can be re-parented to init and outlive its job; such
    an orphan (parent pid 1) belongs to no job any more."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == 1 and "distributed.cli.dask_worker" in cmdline and "SLURMCluster" in cmdline:
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except OSError:
                pass


def call_args(cohort: Path, out: Path, config: Path, *extra: str) -> list:
    return [
        "call",
        "-f",
        cohort / "reference.fa",
        "--bam-list",
        cohort / "bams.txt",
        "-o",
        out,
        "--cluster",
        "slurm",
        "--cluster-config",
        config,
        "--no-progress",
        *extra,
    ]


# ----------------------------------------------------------------------------- tests
def test_call_on_slurm_equals_local(small_cohort, local_run, logs, tmp_path):
    config = cluster_yaml(tmp_path / "cluster.yaml", logs, jobs=2)
    out = tmp_path / "slurm"
    r = varcall(
        *call_args(small_cohort, out, config, "--region-count", "7", "--cluster-timeout", "120")
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_outputs(out, local_run)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cluster"]["kind"] == "slurm"
    assert "fell_back_to_local" not in manifest["cluster"]
    workers = {u["worker"] for u in manifest["units"]}
    # every region ran in a dask-jobqueue worker job, not in this process
    assert workers and all(w.startswith("SLURMCluster-") for w in workers), workers
    # and the jobs really went through SLURM: their logs are there
    assert list(logs.glob("dask-worker-*.err"))


def _workers_done(work: Path) -> set[str]:
    """Names of the workers that finished at least one region (from checkpoint sidecars)."""
    names = set()
    for side in work.glob("*.json") if work.is_dir() else ():
        try:
            names.add(str(json.loads(side.read_text()).get("worker", "")).split("@")[0])
        except (OSError, ValueError):
            continue  # being written
    names.discard("")
    return names


def test_cancelled_worker_job_is_replaced(small_cohort, local_run, logs, tmp_path):
    config = cluster_yaml(tmp_path / "cluster.yaml", logs, jobs=2)
    out = tmp_path / "slurm"
    args = [sys.executable, "-m", "varcall.cli.main"]
    # many small regions, so that the run outlasts the keeper's grace period after the cancel
    args += [str(a) for a in call_args(small_cohort, out, config, "--region-size", "100", "--no-pack", "-v")]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    cancelled = None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            running = squeue_ids(logs, state="R")
            # cancel only once both worker jobs have finished a region: both are connected,
            # so the cancel is seen as a lost worker whatever the timing of job start-up
            if len(running) >= 2 and len(_workers_done(out / "work")) >= 2:
                cancelled = running[0]
                subprocess.run(["scancel", cancelled], check=True, timeout=15)
                break
            time.sleep(0.2)
        stdout, stderr = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert cancelled is not None, "the run ended before a worker job could be cancelled"
    assert proc.returncode == 0, stderr[-3000:]
    assert_same_outputs(out, local_run)
    manifest = json.loads((out / "manifest.json").read_text())
    replaced = manifest["cluster"]["replaced_jobs"]
    assert [r["job_id"] for r in replaced] == [cancelled]
    assert f"worker job {cancelled}" in stderr and "submitting a replacement" in stderr
    # a new worker job was submitted in its place
    assert int(replaced[0]["replacement_job_id"]) > int(cancelled)
    assert f"replaces job {cancelled}" in stderr


def test_cluster_timeout_stops_with_a_clear_message(small_cohort, logs, tmp_path):
    # jobs held back for an hour: no worker can start within the timeout
    config = cluster_yaml(tmp_path / "cluster.yaml", logs, jobs=1, extra=("--begin=now+3600",))
    out = tmp_path / "slurm"
    t0 = time.monotonic()
    r = varcall(*call_args(small_cohort, out, config, "--cluster-timeout", "8"))
    assert r.returncode == 1, r.stderr[-3000:]
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("varcall: error:")]
    assert len(errors) == 1, r.stderr[-3000:]
    msg = errors[0]
    assert "no worker started within --cluster-timeout 8 s" in msg
    assert "PENDING" in msg and "--fallback-local" in msg
    assert time.monotonic() - t0 < 120
    assert not (out / "manifest.json").exists()
    assert squeue_ids(logs) == [], "the pending worker job must be cancelled on the way out"


def test_cluster_timeout_falls_back_to_local(small_cohort, local_run, logs, tmp_path):
    config = cluster_yaml(tmp_path / "cluster.yaml", logs, jobs=1, extra=("--begin=now+3600",))
    out = tmp_path / "slurm"
    r = varcall(
        *call_args(
            small_cohort,
            out,
            config,
            "--cluster-timeout",
            "8",
            "--fallback-local",
            "--workers",
            "2",
        )
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "continuing on a local cluster" in r.stderr
    assert_same_outputs(out, local_run)
    cluster = json.loads((out / "manifest.json").read_text())["cluster"]
    assert "no worker started within" in cluster["fell_back_to_local"]["reason"]
    assert all(
        not u["worker"].startswith("SLURMCluster-")
        for u in json.loads((out / "manifest.json").read_text())["units"]
    )


def test_fallback_local_needs_a_timeout(small_cohort, logs, tmp_path):
    config = cluster_yaml(tmp_path / "cluster.yaml", logs)
    r = varcall(*call_args(small_cohort, tmp_path / "out", config, "--fallback-local"))
    assert r.returncode == 2
    assert "--fallback-local needs --cluster-timeout" in r.stderr


def _make(cohort: Path, out: Path, config: Path, *extra: str, target: str = "all"):
    return subprocess.run(
        [
            "make",
            "-f",
            str(WORKFLOW / "Makefile"),
            target,
            f"REFERENCE={cohort / 'reference.fa'}",
            f"BAM_LIST={cohort / 'bams.txt'}",
            f"TRUTH={cohort / 'truth.vcf.gz'}",
            f"CONFIDENT_BED={cohort / 'confident.bed'}",
            f"OUT={out}",
            "REGION_SIZE=10000",
            f"CLUSTER_CONFIG={config}",
            "CLUSTER_TIMEOUT=180",
            f"VARCALL={VARCALL}",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )


def test_workflow_makefile_on_slurm_and_resume(small_cohort, logs, tmp_path):
    config = cluster_yaml(tmp_path / "cluster.yaml", logs, jobs=2)
    out = tmp_path / "results"
    r = _make(small_cohort, out, config)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    for name in (
        "regions.bed",
        "distributed/manifest.json",
        "single/manifest.json",
        "concordance/metrics.json",
        "report.html",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "concordance" / "metrics.json").read_text())
    assert metrics["identity"]["identical"] is True
    assert metrics["truth"]["A"]["SNP"]["TP"] > 0
    manifest = json.loads((out / "distributed" / "manifest.json").read_text())
    assert manifest["cluster"]["kind"] == "slurm"
    assert all(u["worker"].startswith("SLURMCluster-") for u in manifest["units"])
    # planned regions of the workflow = regions of the distributed call
    bed = [ln.split("\t")[:3] for ln in (out / "regions.bed").read_text().splitlines() if ln]
    assert [[u["contig"], str(u["start"]), str(u["end"])] for u in manifest["units"]] == bed

    # nothing to redo
    r = _make(small_cohort, out, config, "-q")
    assert r.returncode == 0, "make -q: the workflow should be up to date"

    # a distributed call that died after some regions: the re-run resumes them
    (out / "distributed" / "manifest.json").unlink()
    (out / "report.html").unlink()
    r = _make(small_cohort, out, config)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "--resume" in r.stdout
    assert "single-process" not in r.stdout, "the single-process call must not run again"
    manifest = json.loads((out / "distributed" / "manifest.json").read_text())
    assert all(u["resumed"] for u in manifest["units"])
    assert (out / "report.html").is_file()


def test_sbatch_template_runs_the_driver_as_a_job(small_cohort, logs, tmp_path):
    wf = tmp_path / "wf"
    shutil.copytree(WORKFLOW, wf)
    config = cluster_yaml(wf / "cluster.yaml", logs, jobs=1)
    settings = " ".join(
        [
            f"REFERENCE={small_cohort / 'reference.fa'}",
            f"BAM_LIST={small_cohort / 'bams.txt'}",
            f"OUT={tmp_path / 'results'}",
            "REGION_SIZE=20000",
            f"CLUSTER_CONFIG={config}",
            "CLUSTER_TIMEOUT=180",
            f"VARCALL={VARCALL}",
        ]
    )
    env = _env() | {"TARGET": "distributed", "MAKE_ARGS": settings}
    r = subprocess.run(
        ["sbatch", "--wait", "--mem=1G", "--time=00:15:00", "--export=ALL", "varcall.sbatch"],
        cwd=wf,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    driver_logs = list(wf.glob("varcall-driver-*.log"))
    log = driver_logs[0].read_text() if driver_logs else ""
    assert r.returncode == 0, r.stderr + log[-3000:]
    driver_id = re.search(r"Submitted batch job (\d+)", r.stdout).group(1)
    assert f"varcall driver job {driver_id}" in log
    manifest = json.loads((tmp_path / "results" / "distributed" / "manifest.json").read_text())
    assert manifest["cluster"]["kind"] == "slurm"
    worker_logs = list(logs.glob("dask-worker-*.err"))
    assert worker_logs, "the driver job should have submitted worker jobs"
    assert all(int(p.stem.split("-")[-1]) > int(driver_id) for p in worker_logs)
