"""Faults while running: a killed worker, a transient and a permanent task failure, SIGINT /
SIGTERM to the client, a damaged BAM; `--resume` afterwards. Every finished run is compared
for identity with an undisturbed run.

Failures are injected by :class:`FaultyEngine`, a test-only engine object handed to
:func:`varcall.run.pipeline.run_call` (or patched into a child process's pipeline): it wraps a
real engine, adds a delay and raises where told. Nothing in varcall can select it. The
wrapped engine is bcftools (fast to start; the fault handling does not depend on the
engine), so the tests skip when bcftools is absent.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pysam
import pytest
import zarr

from varcall.core.errors import RegionError, VarcallError
from varcall.core.params import CallInputs, CallParams
from varcall.core.regions import Region
from varcall.engines import get_engine
from varcall.run.checkpoints import engine_version, read_checkpoint
from varcall.run.pipeline import run_call

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
INNER = "bcftools"
REGION_SIZE = 5000

pytestmark = pytest.mark.skipif(shutil.which("bcftools") is None, reason="bcftools not installed")


# ----------------------------------------------------------------------------- the engine
@dataclasses.dataclass(frozen=True)
class FaultyEngine:
    """A real engine (``inner``) with injected trouble, for tests only.

    delay: seconds to sleep before each region (so a run can be disturbed mid-way).
    transient: region strings (``chr1:1-4724``) whose first attempt raises OSError; the
        attempt leaves a marker file in ``marker_dir`` (shared by all workers).
    permanent: region strings that always raise OSError ("*": every region).
    hang: region strings whose first attempt writes the worker's PID to
        ``marker_dir/hang-<contig>_<start>_<end>.pid`` and sleeps (to be killed there).
    Its ``version`` is the inner engine's, so checkpoints are those of the real engine and
    a later ``--resume`` with the real engine reuses them.
    """

    inner: str = INNER
    delay: float = 0.0
    transient: tuple[str, ...] = ()
    permanent: tuple[str, ...] = ()
    hang: tuple[str, ...] = ()
    marker_dir: str = ""

    @property
    def name(self) -> str:
        return self.inner

    def version(self) -> str:
        return engine_version(get_engine(self.inner))

    def check(self) -> None:
        get_engine(self.inner).check()

    def check_params(self, inputs, params) -> None:
        get_engine(self.inner).check_params(inputs, params)

    def call_region(self, inputs: CallInputs, region: Region, params: CallParams):
        time.sleep(self.delay)
        if str(region) in self.permanent or "*" in self.permanent:
            raise OSError(f"injected permanent failure in {region}")
        name = f"{region.contig}_{region.start}_{region.end}"
        if str(region) in self.transient:
            marker = Path(self.marker_dir) / name
            if not marker.exists():
                marker.write_text("failed once")
                raise OSError(f"injected transient failure in {region}")
        if str(region) in self.hang:
            marker = Path(self.marker_dir) / f"hang-{name}.pid"
            if not marker.exists():
                tmp = marker.with_suffix(".tmp")
                tmp.write_text(str(os.getpid()))
                tmp.rename(marker)
                time.sleep(300)  # killed here by the test
        return get_engine(self.inner).call_region(inputs, region, params)

    def call_whole(self, inputs: CallInputs, params: CallParams):
        return get_engine(self.inner).call_whole(inputs, params)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory) -> Path:
    from varcall.simulate.cohort import simulate_cohort
    from varcall.simulate.config import SimulationConfig

    d = tmp_path_factory.mktemp("faults") / "tiny_cohort"
    config = SimulationConfig(n_samples=2, n_contigs=2, contig_length=20_000, coverage=10, seed=3)
    simulate_cohort(d, config)
    return d


def bams_of(tiny_cohort: Path) -> list[Path]:
    return [tiny_cohort / line for line in (tiny_cohort / "bams.txt").read_text().split()]


@pytest.fixture(scope="module")
def baseline(tiny_cohort, process_client, tmp_path_factory) -> Path:
    """An undisturbed run with the real engine."""
    out = tmp_path_factory.mktemp("baseline") / "out"
    run_call(
        tiny_cohort / "reference.fa",
        bams_of(tiny_cohort),
        out,
        params=CallParams(engine=INNER),
        client=process_client,
        region_size=REGION_SIZE,
    )
    return out


def call(tiny_cohort: Path, out: Path, client, engine: FaultyEngine, **kw):
    return run_call(
        tiny_cohort / "reference.fa",
        bams_of(tiny_cohort),
        out,
        params=CallParams(engine=INNER),
        client=client,
        engine=engine,
        region_size=REGION_SIZE,
        **kw,
    )


# ----------------------------------------------------------------------------- comparison
def output_signature(out: Path) -> dict:
    """Everything a run produced that must not depend on how it ran: the VCF (without the
    command line and date header lines), every Zarr array, and each region's digest."""
    with gzip.open(out / "calls.vcf.gz", "rt") as fh:
        vcf = [
            ln for ln in fh if not ln.startswith(("##varcallCommand", "##fileDate", "##varcall_"))
        ]
    root = zarr.open_group(str(out / "calls.vcz"), mode="r")
    arrays = {name: root[name][...] for name in sorted(root.array_keys())}
    manifest = json.loads((out / "manifest.json").read_text())
    digests = [(u["region"], u["digest"], u["n_variants"]) for u in manifest["units"]]
    return {"vcf": vcf, "arrays": arrays, "digests": digests}


def assert_same_output(a: Path, b: Path) -> None:
    sa, sb = output_signature(a), output_signature(b)
    assert sa["digests"] == sb["digests"]
    assert sa["vcf"] == sb["vcf"]
    assert sa["arrays"].keys() == sb["arrays"].keys()
    for name, x in sa["arrays"].items():
        y = sb["arrays"][name]
        assert x.dtype == y.dtype and x.shape == y.shape, name
        if x.dtype.kind == "f":
            assert np.array_equal(x, y, equal_nan=True), name
        else:
            assert np.array_equal(x, y), name


def region_key(text: str) -> tuple[str, int, int]:
    """``chr1:1-4724`` -> ("chr1", 0, 4724) (0-based half-open)."""
    contig, _, span = text.rpartition(":")
    a, _, b = span.partition("-")
    return contig, int(a) - 1, int(b)


def audit_lines(out: Path) -> list[dict]:
    return [json.loads(ln) for ln in (out / "audit.jsonl").read_text().splitlines()]


def valid_checkpoints(work: Path) -> list[str]:
    keys = [p.stem for p in work.glob("*.json")]
    return sorted(k for k in keys if read_checkpoint(work, k) is not None)


def test_baseline_manifest_and_audit(baseline, tiny_cohort):
    m = json.loads((baseline / "manifest.json").read_text())
    assert m["n_units"] >= 6
    assert m["n_variants"] > 10
    for u in m["units"]:
        assert u["attempts"] == 1 and len(u["digest"]) == 64
        assert u["worker"].split("@")[1].startswith("tcp://127.0.0.1:")
        assert u["seconds"] >= 0
    # provenance: files, header and index checksums, reference checksum, versions
    sums = m["inputs"]["checksums"]
    assert len(sums["reference"]["fai"]["md5"]) == 32
    assert [a["path"] for a in sums["alignments"]] == [
        str(b.resolve()) for b in bams_of(tiny_cohort)
    ]
    for a in sums["alignments"]:
        assert len(a["header_sha256"]) == 64 and len(a["index"]["sha256"]) == 64
    for name in ("varcall", "pysam", "htslib", "dask", "distributed", "numpy", "zarr"):
        assert m["versions"][name]
    # audit: one line per attempt, naming worker, files, region, times and outcome
    audit = audit_lines(baseline)
    assert sorted(a["region"] for a in audit) == sorted(u["region"] for u in m["units"])
    for a in audit:
        assert a["outcome"] == "ok" and a["end"] >= a["start"]
        assert a["bams"] == [str(b.resolve()) for b in bams_of(tiny_cohort)]


def test_local_cluster_listens_on_loopback_only():
    from varcall.run.clusters import ClusterSpec, open_client

    with open_client(ClusterSpec(workers=1, processes=False)) as c:
        assert c.scheduler.address.startswith("tcp://127.0.0.1:")
        assert not c.dashboard_link  # no dashboard without --dashboard
        info = c.scheduler_info()
        assert all(w.startswith("tcp://127.0.0.1:") for w in info["workers"])


def test_tls_options_build_a_security_object(tmp_path):
    from distributed.security import Security

    from varcall.core.errors import InputError
    from varcall.run.clusters import ClusterSpec, _security

    files = {}
    for name in ("ca", "cert", "key"):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text("placeholder")
    spec = ClusterSpec(
        kind="scheduler",
        scheduler_address="tls://10.0.0.1:8786",
        tls_ca=str(files["ca"]),
        tls_cert=str(files["cert"]),
        tls_key=str(files["key"]),
    )
    sec = _security(spec)
    assert isinstance(sec, Security) and sec.require_encryption
    assert sec.tls_ca_file == str(files["ca"]) and sec.tls_client_key == str(files["key"])
    assert "tls_key" not in spec.describe()
    with pytest.raises(InputError, match="nope.pem: TLS file not found; check --tls-key"):
        dataclasses.replace(spec, tls_key=str(tmp_path / "nope.pem"))
    assert _security(ClusterSpec()) is None


# ----------------------------------------------------------------------------- worker killed
def test_worker_killed_mid_run_gives_identical_output(
    tiny_cohort, process_client, baseline, tmp_path
):
    """SIGKILL one worker process while it runs a region: the scheduler reruns the lost
    region elsewhere, the nanny restarts the worker, and the output equals the baseline."""
    units = json.loads((baseline / "manifest.json").read_text())["units"]
    target = units[len(units) // 2]["region"]
    markers = tmp_path / "markers"
    markers.mkdir()
    pid_file = markers / ("hang-" + "_".join(map(str, region_key(target))) + ".pid")
    out = tmp_path / "out"
    killed: dict = {}

    def killer() -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            if pid_file.exists():
                pid = int(pid_file.read_text())
                addrs = [a for a, p in process_client.run(os.getpid).items() if p == pid]
                os.kill(pid, signal.SIGKILL)  # a worker process of our LocalCluster
                killed.update(pid=pid, addr=addrs[0] if addrs else "")
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    engine = FaultyEngine(delay=0.2, hang=(target,), marker_dir=str(markers))
    result = call(tiny_cohort, out, process_client, engine)
    thread.join(timeout=5)
    assert "pid" in killed, "no worker was killed while busy"
    assert_same_output(out, baseline)
    lost = [a for a in audit_lines(out) if a["outcome"] == "lost"]
    assert [a["region"] for a in lost] == [target]
    assert killed["addr"] and lost[0]["worker"].endswith(killed["addr"])
    by_region = {u.region: u for u in result.manifest.units}
    assert by_region[target].attempts == 2


# ----------------------------------------------------------------------------- task failures
def test_transient_failure_is_retried(tiny_cohort, process_client, baseline, tmp_path):
    units = json.loads((baseline / "manifest.json").read_text())["units"]
    flaky = units[1]["region"]
    markers = tmp_path / "markers"
    markers.mkdir()
    out = tmp_path / "out"
    result = call(
        tiny_cohort,
        out,
        process_client,
        FaultyEngine(transient=(flaky,), marker_dir=str(markers)),
        retries=2,
    )
    assert_same_output(out, baseline)
    by_region = {u.region: u for u in result.manifest.units}
    assert by_region[flaky].attempts == 2
    assert all(u.attempts == 1 for r, u in by_region.items() if r != flaky)
    errors = [a for a in audit_lines(out) if a["outcome"] == "error"]
    assert [a["region"] for a in errors] == [flaky]
    assert "injected transient failure" in errors[0]["error"]


def test_permanent_failure_names_region_keeps_checkpoints_then_resume(
    tiny_cohort, process_client, baseline, tmp_path
):
    units = json.loads((baseline / "manifest.json").read_text())["units"]
    bad = units[2]["region"]
    out = tmp_path / "out"
    with pytest.raises(RegionError) as err:
        call(tiny_cohort, out, process_client, FaultyEngine(permanent=(bad,)), retries=1)
    msg = str(err.value)
    assert f"region {bad}" in msg and "injected permanent failure" in msg
    assert "--resume" in msg and "\n" not in msg
    assert len(valid_checkpoints(out / "work")) == len(units) - 1
    assert not (out / "calls.vcf.gz").exists() and not (out / "manifest.json").exists()
    assert not (out / "calls.vcz").exists()

    # --resume runs only the failed region
    result = call(tiny_cohort, out, process_client, FaultyEngine(), resume=True)
    assert_same_output(out, baseline)
    assert [u.region for u in result.manifest.units if not u.resumed] == [bad]


def test_crash_during_merge_leaves_nothing_that_looks_complete(
    tiny_cohort, process_client, baseline, tmp_path, monkeypatch
):
    """--overwrite over a finished run, then an encode task of the merge fails on a worker
    while others write their chunks and pieces: one-line error, no manifest (the mark of a
    finished run), none of the previous run's outputs (removed when calling started: they
    came from other inputs), no half-written file at a final path, no temporaries left."""
    import varcall.run.merge as merge_module

    out = tmp_path / "out"
    shutil.copytree(baseline, out)
    real = merge_module.plan_encode

    def lose_a_checkpoint(paths, *args, **kwargs):
        paths = list(paths)
        paths[len(paths) // 2] += ".gone"  # its task fails when it gets there
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(merge_module, "plan_encode", lose_a_checkpoint)
    with pytest.raises(VarcallError, match="checkpoint cannot be read") as e:
        call(tiny_cohort, out, process_client, FaultyEngine(), overwrite=True, chunk_size=2)
    assert "\n" not in str(e.value)
    assert not (out / "manifest.json").exists()
    assert not (out / "calls.vcf.gz").exists() and not (out / "calls.vcz").exists()
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    # the checkpoints are kept: --resume finishes without calling again
    monkeypatch.undo()
    result = call(tiny_cohort, out, process_client, FaultyEngine(permanent=("*",)), resume=True)
    assert all(u.resumed for u in result.manifest.units)
    assert_same_output(out, baseline)


# ----------------------------------------------------------------------------- damaged input
def corrupt_middle_block(src: Path, dest: Path) -> None:
    """Copy a BAM and its index, damaging the deflate data of the middle BGZF block (the
    header, the EOF block and the index stay intact: only reading that block fails)."""
    data = bytearray(src.read_bytes())
    blocks, off = [], 0
    while off < len(data):
        size = struct.unpack_from("<H", data, off + 16)[0] + 1
        blocks.append((off, size))
        off += size
    start, size = blocks[len(blocks) // 2]
    for k in range(start + 30, start + min(size - 8, 90)):
        data[k] ^= 0xFF
    dest.write_bytes(bytes(data))
    shutil.copy(f"{src}.bai", f"{dest}.bai")


def test_corrupt_block_names_file_and_region(tiny_cohort, process_client, tmp_path):
    bams = bams_of(tiny_cohort)
    bad = tmp_path / bams[0].name
    corrupt_middle_block(bams[0], bad)
    out = tmp_path / "out"
    with pytest.raises(RegionError) as err:
        run_call(
            tiny_cohort / "reference.fa",
            [bad, *bams[1:]],
            out,
            params=CallParams(engine=INNER),
            client=process_client,
            region_size=REGION_SIZE,
            retries=0,
        )
    msg = str(err.value)
    assert str(bad) in msg, msg
    assert "region chr" in msg and "damaged" in msg, msg
    assert "\n" not in msg
    assert valid_checkpoints(out / "work"), "finished regions were not kept"
    assert not (out / "calls.vcf.gz").exists()


def test_corrupt_block_single_process_whole_genome(tiny_cohort, tmp_path):
    """--single-process (the engine's own whole-genome run): a one-line error naming the
    damaged file and the contig's region, exit code 2 (bad input), no outputs."""
    bams = bams_of(tiny_cohort)
    bad = tmp_path / bams[0].name
    corrupt_middle_block(bams[0], bad)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "varcall.cli.main", "call", "--single-process", "--no-progress",
           "-f", str(tiny_cohort / "reference.fa"), "-o", str(out), str(bad), str(bams[1])]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), cwd=REPO,
                       timeout=300)  # fmt: skip
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("varcall: error: ")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    assert errors[0].startswith("varcall: error: region chr") and str(bad) in errors[0]
    assert not (out / "calls.vcf.gz").exists() and not (out / "manifest.json").exists()


def test_failed_overwrite_run_leaves_no_outputs_of_the_earlier_run(tiny_cohort, tmp_path):
    """--overwrite over a finished run whose new inputs fail: the earlier run's calls,
    store, regions and audit are gone (not read later as this run's); other files stay."""
    bams = bams_of(tiny_cohort)
    out = tmp_path / "out"
    base = [sys.executable, "-m", "varcall.cli.main", "call", "--single-process",
            "--no-progress", "-f", str(tiny_cohort / "reference.fa"), "-o", str(out)]  # fmt: skip
    run = dict(capture_output=True, text=True, env=child_env(), cwd=REPO, timeout=300)
    r = subprocess.run([*base, *map(str, bams)], **run)
    assert r.returncode == 0, r.stderr
    outputs = ["calls.vcf.gz", "calls.vcf.gz.tbi", "calls.vcz", "regions.bed", "audit.jsonl",
               "manifest.json"]  # fmt: skip
    assert all((out / name).exists() for name in outputs)
    (out / "notes.txt").write_text("mine\n")
    bad = tmp_path / bams[0].name
    corrupt_middle_block(bams[0], bad)
    r = subprocess.run([*base, "--overwrite", str(bad), str(bams[1])], **run)
    assert r.returncode == 2, r.stderr
    assert [name for name in outputs if (out / name).exists()] == []
    assert (out / "notes.txt").read_text() == "mine\n"


def test_read_past_reference_end_is_diagnosed(tiny_cohort, tmp_path):
    from varcall.plan.diagnose import diagnose_region
    from varcall.plan.validate import validate_call

    bam = tmp_path / "past.bam"
    contigs = [("chr1", 20_000), ("chr2", 20_000)]
    header = {
        "HD": {"VN": "1.6", "SO": "coordinate"},
        "SQ": [{"SN": n, "LN": ln} for n, ln in contigs],
        "RG": [{"ID": "a", "SM": "P1"}],
    }
    with pysam.AlignmentFile(str(bam), "wb", header=header) as f:
        for i, pos in enumerate([100, 19_950]):
            a = pysam.AlignedSegment(f.header)
            a.query_name, a.reference_id, a.reference_start = f"readname{i}", 0, pos
            a.mapping_quality, a.cigarstring = 60, "100M"
            a.query_sequence = "A" * 100
            a.query_qualities = pysam.qualitystring_to_array("I" * 100)
            f.write(a)
    pysam.index(str(bam))
    inputs = validate_call(tiny_cohort / "reference.fa", [bam], tmp_path / "out")
    assert diagnose_region(inputs, Region("chr1", 0, 10_000)) is None
    msg = diagnose_region(inputs, Region("chr1", 15_000, 20_000))
    assert msg is not None and msg.startswith(f"{bam}: the read at chr1:19951")
    assert "readname" not in msg  # reads by position, never by name
    assert "past the end of chr1 (20000 bp)" in msg

    # the native engine refuses such reads; the run stops naming the region and the file
    out = tmp_path / "out"
    with pytest.raises(RegionError) as err:
        run_call(
            tiny_cohort / "reference.fa", [bam], out, mode="single",
            regions=[Region("chr1", 0, 10_000), Region("chr1", 10_000, 20_000)],
        )  # fmt: skip
    msg = str(err.value)
    assert msg.startswith("region chr1:10001-20000: ") and f"{bam}: the read at" in msg, msg
    assert "past the end of chr1" in msg and "--resume" in msg
    assert len(valid_checkpoints(out / "work")) == 1  # the first region is kept

    # --single-process (the engine's whole-genome run): bad input, exit 2, the file named
    cmd = [sys.executable, "-m", "varcall.cli.main", "call", "--single-process", "--no-progress",
           "-f", str(tiny_cohort / "reference.fa"), "-o", str(tmp_path / "whole"), str(bam)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), cwd=REPO,
                       timeout=300)  # fmt: skip
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("varcall: error: ")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    assert errors[0].startswith("varcall: error: region chr1:") and "readname" not in r.stderr
    assert f"{bam}: the read at chr1:19951" in errors[0]


def test_corrupt_block_native_engine_single_mode(tiny_cohort, tmp_path):
    bams = bams_of(tiny_cohort)
    bad = tmp_path / bams[0].name
    corrupt_middle_block(bams[0], bad)
    out = tmp_path / "out"
    with pytest.raises(RegionError) as err:
        run_call(
            tiny_cohort / "reference.fa", [bad, *bams[1:]], out, mode="single",
            region_strings=["chr1", "chr2"],
        )  # fmt: skip
    msg = str(err.value)
    # the native reader decompresses ahead of the reads: the damage may be found in a
    # block after the region's reads; either way the file and the region are named
    assert msg.startswith("region chr") and f"{bad}: " in msg, msg
    assert "damaged" in msg and "\n" not in msg


# ----------------------------------------------------------------------------- signals
def run_cli(args: list, **kw) -> subprocess.CompletedProcess:
    """`varcall call ARGS` in a child process (its own LocalCluster of 2 thread workers:
    quick to start; the engine runs bcftools in subprocesses anyway)."""
    cmd = [
        sys.executable,
        "-m",
        "varcall.cli.main",
        "call",
        "--workers",
        "2",
        "--worker-type",
        "thread",
        "--no-progress",
        "--engine",
        INNER,
        "--region-size",
        str(REGION_SIZE),
        *map(str, args),
    ]
    return subprocess.run(
        cmd, capture_output=True, text=True, env=child_env(), timeout=300, cwd=REPO, **kw
    )


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS), env.get("PYTHONPATH", "")])
    return env


SLOW_CLI = textwrap.dedent(
    """
    import signal
    import sys
    # Ctrl-C as in a terminal: a test run started as a shell's background job (`make test &`,
    # a CI script) starts every child with SIGINT ignored, and Python then leaves it ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import varcall.run.prepare
    from test_faults import FaultyEngine
    varcall.run.prepare.get_engine = lambda name: FaultyEngine(inner=name, delay=1.0)
    from varcall.cli.main import main
    main(sys.argv[1:], prog_name="varcall")
    """
)


@pytest.mark.parametrize(
    "signum, code",
    [(signal.SIGINT, 130), pytest.param(signal.SIGTERM, 143, marks=pytest.mark.slow)],
)
def test_signal_stops_cleanly_then_resume_is_identical(
    tiny_cohort, baseline, tmp_path, signum, code
):
    import psutil

    out = tmp_path / "out"
    args = [
        "call",
        "--workers",
        "2",
        "--no-progress",
        "--engine",
        INNER,
        "--region-size",
        str(REGION_SIZE),
        "-f",
        str(tiny_cohort / "reference.fa"),
        "-o",
        str(out),
        *map(str, bams_of(tiny_cohort)),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=REPO,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if (out / "work").is_dir() and len(list((out / "work").glob("*.json"))) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"run ended before the signal: {proc.communicate()}"
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, stderr
    what = "interrupted" if signum == signal.SIGINT else "terminated"
    assert f"varcall: {what}; finished regions are kept (use --resume)" in stderr
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"worker processes left running: {alive}"
    kept = valid_checkpoints(out / "work")
    assert len(kept) >= 2
    assert not (out / "calls.vcf.gz").exists() and not (out / "manifest.json").exists()

    # without --resume the folder is refused; with it only the unfinished regions run
    result = run_cli(["-f", tiny_cohort / "reference.fa", "-o", out, *bams_of(tiny_cohort)])
    assert result.returncode == 2 and "output folder exists" in result.stderr
    result = run_cli(
        ["-vv", "-f", tiny_cohort / "reference.fa", "-o", out, "--resume", *bams_of(tiny_cohort)]
    )
    assert result.returncode == 0, result.stderr
    assert_same_output(out, baseline)
    m = json.loads((out / "manifest.json").read_text())
    resumed_log = [ln for ln in result.stderr.splitlines() if "resume:" in ln]
    assert sum(u["resumed"] for u in m["units"]) == len(kept), (
        resumed_log,
        sorted(k[:8] for k in kept),
        [(u["region"], u["key"][:8]) for u in m["units"]],
    )
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name], "temporary files left"
    # the audit names the attempt behind every region of the output, from either run
    ok = {a["region"]: a["run_id"] for a in audit_lines(out) if a["outcome"] == "ok"}
    for u in m["units"]:
        assert (ok[u["region"]] == m["run_id"]) is not u["resumed"], u
    # debug logs name files and regions, never read sequences or qualities
    assert "DEBUG" in result.stderr
    with pysam.AlignmentFile(str(bams_of(tiny_cohort)[0])) as f:
        for i, read in enumerate(f):
            if i == 200:
                break
            assert read.query_sequence[:40] not in result.stderr
            assert read.qual[:40] not in result.stderr
