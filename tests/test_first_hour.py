"""A newcomer's first hour (issue 17): Ctrl-C and SIGTERM in a terminal, a damaged BAM, a
full disk, an existing Dask cluster started in another folder, TLS without its files, batch
jobs without --cores/--memory. Every case ends in one line on stderr, the documented exit
code and no traceback from any process.

The runs are ``varcall call`` child processes (what a user sees is their stderr). Lines
``varcall source differs from the client's`` are ignored: they appear only while the source
tree is edited during a run.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from varcall.core.errors import InputError
from varcall.run.clusters import ClusterSpec, default_batch_memory, with_batch_defaults

REPO = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).parent / "varcall"
VARCALL = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "varcall.cli.main"]


# ----------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """2 samples, 2 contigs x 20 kb, 10x: quick to call."""
    from varcall.simulate.cohort import simulate_cohort
    from varcall.simulate.config import SimulationConfig

    d = tmp_path_factory.mktemp("first_hour") / "tiny"
    simulate_cohort(d, SimulationConfig(n_samples=2, n_contigs=2, contig_length=20_000,
                                        coverage=10, seed=3))  # fmt: skip
    return d


def bams_of(cohort: Path) -> list[Path]:
    return [cohort / line for line in (cohort / "bams.txt").read_text().split()]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def stderr_lines(text: str) -> list[str]:
    """The stderr lines a user sees (see the module docstring for the one kind left out)."""
    return [ln for ln in text.splitlines() if ln.strip() and "source differs" not in ln]


def vcf_records(out: Path) -> list[str]:
    with gzip.open(out / "calls.vcf.gz", "rt") as fh:
        return [ln for ln in fh if not ln.startswith("##")]


def single_run(cohort: Path, out: Path) -> Path:
    cmd = [*VARCALL, "call", "--single-process", "--no-progress", "-f",
           str(cohort / "reference.fa"), "--bam-list", str(cohort / "bams.txt"), "-o", str(out)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def tiny_single(tiny, tmp_path_factory) -> Path:
    return single_run(tiny, tmp_path_factory.mktemp("single") / "out")


def wait_for_checkpoint(out: Path, proc: subprocess.Popen | None = None, limit: float = 240):
    t0 = time.time()
    while not list((out / "work").glob("*.json")):
        assert time.time() - t0 < limit, "no region finished in time"
        assert proc is None or proc.poll() is None, "the run ended before a region finished"
        time.sleep(0.2)


# ----------------------------------------------------------------------------- signals
def test_ctrl_c_in_a_terminal(cohort, tmp_path):
    """Ctrl-C in tmux during `varcall call --workers 2` (process workers): exit 130 and one
    line on stderr; the workers and the fork server get the SIGINT too, and say nothing."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux not installed")
    out, err, rc = tmp_path / "out", tmp_path / "err.txt", tmp_path / "rc.txt"
    args = " ".join([*VARCALL, "call", "-f", str(cohort / "reference.fa"), "--bam-list",
                     str(cohort / "bams.txt"), "-o", str(out), "--workers", "2",
                     "--worker-type", "process", "--region-count", "40", "--no-progress"])  # fmt: skip
    session = f"varcall-test-{os.getpid()}"
    script = f"cd {REPO} && {args} 2> {err}; echo $? > {rc}; sleep 30"
    env = {k: v for k, v in child_env().items() if k != "TMUX"}
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "200", "-y", "50", script],
                   check=True, env=env)  # fmt: skip
    try:
        wait_for_checkpoint(out)
        subprocess.run(["tmux", "send-keys", "-t", session, "C-c"], check=True)
        t0 = time.time()
        while not (rc.is_file() and rc.read_text().strip()):
            assert time.time() - t0 < 120, "the run did not stop after Ctrl-C"
            time.sleep(0.2)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    assert rc.read_text().strip() == "130", err.read_text()
    lines = stderr_lines(err.read_text())
    assert lines == ["varcall: interrupted; finished regions are kept (use --resume)"], lines


@pytest.mark.slow
def test_sigterm_to_the_process_group(cohort, tmp_path):
    """SIGTERM to the whole process group (as a batch system or `kill -- -PGID` sends it):
    exit 143, one line."""
    out = tmp_path / "out"
    cmd = [*VARCALL, "call", "-f", str(cohort / "reference.fa"), "--bam-list",
           str(cohort / "bams.txt"), "-o", str(out), "--workers", "2", "--worker-type",
           "process", "--region-count", "40", "--no-progress"]  # fmt: skip
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=child_env(), cwd=REPO,
                         start_new_session=True)  # fmt: skip
    try:
        wait_for_checkpoint(out, p)
        os.killpg(p.pid, signal.SIGTERM)
        err = p.communicate(timeout=120)[1]
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 143, err
    assert stderr_lines(err) == ["varcall: terminated; finished regions are kept (use --resume)"]


# ----------------------------------------------------------------------------- damaged input
def zero_middle(src: Path, dest: Path, n: int = 4096) -> None:
    """Copy a BAM and its index with ``n`` bytes of zeros written over its middle."""
    data = bytearray(src.read_bytes())
    mid = len(data) // 2
    data[mid : mid + n] = bytes(n)
    dest.write_bytes(bytes(data))
    shutil.copy(f"{src}.bai", f"{dest}.bai")


@pytest.mark.parametrize("mode", ["single", "distributed"])
def test_damaged_bam_is_named_exit_2(tiny, tmp_path, mode):
    bams = bams_of(tiny)
    bad = tmp_path / bams[0].name
    zero_middle(bams[0], bad)
    out = tmp_path / "out"
    how = ["--single-process"] if mode == "single" else ["--workers", "2", "--worker-type",
                                                          "process", "--region-size", "5000"]  # fmt: skip
    cmd = [*VARCALL, "call", *how, "--no-progress", "--retries", "0",
           "-f", str(tiny / "reference.fa"), "-o", str(out), str(bad), str(bams[1])]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), timeout=300)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "Compute Failed" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("varcall: error: ")]
    assert len(errors) == 1 and str(bad) in errors[0] and "region chr" in errors[0], r.stderr
    assert "--resume" in errors[0]
    # at most one line per failed region besides it; no other input file on the terminal
    assert str(bams[1]) not in r.stderr, r.stderr
    assert len(stderr_lines(r.stderr)) <= 1 + r.stderr.count(" failed: "), r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["work"]


# ----------------------------------------------------------------------------- full disk
ENOSPC_CLI = textwrap.dedent(
    """
    import errno, sys, threading
    import varcall.run.region_task as tasks
    real, lock, n = tasks.write_checkpoint, threading.Lock(), [0]
    def full_disk(*args, **kwargs):
        with lock:
            n[0] += 1
            if n[0] > 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)
    tasks.write_checkpoint = full_disk
    from varcall.cli.main import main
    main(sys.argv[1:], prog_name="varcall")
    """
)


def test_full_disk_mid_run_then_resume(tiny, tiny_single, tmp_path):
    """Writes fail with ENOSPC after two regions: exit 1, one line, no traceback; --resume
    (space freed) gives the single-process records."""
    out = tmp_path / "out"
    args = ["call", "-f", str(tiny / "reference.fa"), "--bam-list", str(tiny / "bams.txt"),
            "-o", str(out), "--workers", "2", "--worker-type", "thread", "--region-size",
            "5000", "--no-progress"]  # fmt: skip
    r = subprocess.run([sys.executable, "-c", ENOSPC_CLI, *args], capture_output=True,
                       text=True, env=child_env(), timeout=300)  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "Compute Failed" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("varcall: error: ")]
    assert len(errors) == 1 and "No space left on device" in errors[0], r.stderr
    assert "--resume" in errors[0] and not (out / "manifest.json").exists()
    assert str(tiny / "S01.bam") not in r.stderr  # no task arguments on the terminal
    r = subprocess.run([*VARCALL, *args, "--resume"], capture_output=True, text=True,
                       env=child_env(), timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert vcf_records(out) == vcf_records(tiny_single)
    resumed = [u["resumed"] for u in json.loads((out / "manifest.json").read_text())["units"]]
    assert sum(resumed) == 2


# ----------------------------------------------------------------------------- existing cluster
@pytest.fixture
def dask_cluster(tmp_path):
    """`dask scheduler` + `dask worker` on 127.0.0.1, started in a folder of their own."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sched_file = elsewhere / "scheduler.json"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", "from distributed.cli.dask_scheduler import main; main()",
             "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(sched_file)],
            cwd=elsewhere, env=child_env(), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )
    ]  # fmt: skip
    try:
        t0 = time.time()
        while not sched_file.is_file():
            assert time.time() - t0 < 60, "the scheduler did not start"
            time.sleep(0.2)
        time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        procs.append(subprocess.Popen(
            [sys.executable, "-c", "from distributed.cli.dask_worker import main; main()",
             address, "--nworkers", "1", "--nthreads", "2", "--no-dashboard",
             "--host", "127.0.0.1"],
            cwd=elsewhere, env=child_env(), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        ))  # fmt: skip
        yield address
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def test_existing_scheduler_with_relative_paths(tiny, tiny_single, tmp_path, dask_cluster):
    """Relative -f/--bam-list/-o against a scheduler whose worker runs in another folder:
    the paths are made absolute before tasks leave; the run equals single-process."""
    here = tmp_path / "here"
    here.mkdir()
    rel = os.path.relpath(tiny, here)
    cmd = [*VARCALL, "call", "-f", f"{rel}/reference.fa", "--bam-list", f"{rel}/bams.txt",
           "-o", "run", "--scheduler", dask_cluster, "--region-size", "10000", "--no-progress"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), cwd=here,
                       timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert vcf_records(here / "run") == vcf_records(tiny_single)


def test_tls_scheduler_without_files_exit_2(tiny, tmp_path):
    out = tmp_path / "out"
    cmd = [*VARCALL, "call", "-f", str(tiny / "reference.fa"), "--bam-list",
           str(tiny / "bams.txt"), "-o", str(out), "--scheduler", "tls://127.0.0.1:8786"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), timeout=120)
    assert r.returncode == 2, r.stderr
    lines = stderr_lines(r.stderr)
    assert len(lines) == 1 and "needs --tls-ca and --tls-cert" in lines[0], lines
    assert not out.exists()
    # files that are no certificates: one line too
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    spec = ClusterSpec(kind="scheduler", scheduler_address="tls://127.0.0.1:8786",
                       tls_ca=str(bad), tls_cert=str(bad))  # fmt: skip
    with pytest.raises(InputError, match="TLS files cannot be loaded"):
        spec.check()


def test_probe_names_the_host_and_path_a_worker_cannot_read(tmp_path):
    from varcall.run.execute import _worker_sees, probe_workers

    work = tmp_path / "work"
    work.mkdir()
    ref = tmp_path / "ref.fa"
    ref.write_text(">c\nACGT\n")

    class Client:  # runs the probe here, as a worker on this host would
        def __init__(self, extra: tuple[str, ...] = (), marker: str | None = None) -> None:
            self.extra, self.marker = extra, marker

        def run(self, func, paths, marker, token):
            # marker: another machine, where OUT/work is not this folder
            return {"tcp://w1": func([*paths, *self.extra], self.marker or marker, token)}

    probe_workers(Client(), [str(ref)], work)
    assert list(work.iterdir()) == []  # the marker is removed
    missing = str(tmp_path / "missing.bam")
    with pytest.raises(InputError, match=f"cannot read {missing}; use a shared filesystem"):
        probe_workers(Client(extra=(missing,)), [str(ref)], work)
    with pytest.raises(InputError, match=f"cannot read {tmp_path / 'nowhere'}; use a shared"):
        probe_workers(Client(marker=str(tmp_path / "nowhere" / "m")), [str(ref)], work)
    assert _worker_sees([str(ref)], str(work / "none"), "t") is not None


# ----------------------------------------------------------------------------- batch defaults
def test_batch_jobs_default_to_one_core_and_cohort_memory(tiny, tmp_path, monkeypatch):
    from varcall.core.params import CallParams
    from varcall.run.prepare import PlanOptions, RunFlags, prepare

    assert default_batch_memory(3) == "2176MB"  # 2048 + 3 x 32, rounded up to 64 MB
    assert default_batch_memory(32, cores=2) == "5120MB"
    spec = with_batch_defaults(ClusterSpec(kind="slurm", queue="q"), 3)
    assert (spec.cores, spec.memory, spec.defaults_applied) == (1, "2176MB", ("cores", "memory"))
    assert spec.describe()["defaults_applied"] == ["cores", "memory"]
    given = ClusterSpec(kind="pbs", cores=4, memory="16GB")
    assert with_batch_defaults(given, 3) == given
    assert with_batch_defaults(ClusterSpec(kind="lsf", cores=2), 0).memory == "3072MB"
    # a run without --cores/--memory gets them from its cohort (nothing submitted here)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    prep = prepare(tiny / "reference.fa", bams_of(tiny), tmp_path / "out", params=CallParams(),
                   mode="distributed", plan=PlanOptions(), flags=RunFlags(),
                   cluster=ClusterSpec(kind="slurm"))  # fmt: skip
    assert prep.spec.cores == 1 and prep.spec.memory == default_batch_memory(2)
    assert not (tmp_path / "out").exists()
