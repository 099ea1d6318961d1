"""Region tasks, checkpoints, resume, retries and failures (Dask and sequential), with a
deterministic fake engine (tests/scale_data.py) so that only the machinery is tested."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from scale_data import FakeEngine, _fake_calls, write_bam, write_reference

from varcall.core import allocator
from varcall.core.callset import load_callset
from varcall.core.errors import InputError, RegionError
from varcall.core.params import CallParams
from varcall.core.regions import Region
from varcall.plan.inputs import resolve_inputs
from varcall.run.checkpoints import (
    checkpoint_key,
    engine_version,
    inputs_identity,
    read_checkpoint,
)
from varcall.run.clusters import ClusterSpec, open_client
from varcall.run.tasks import run_region_task, run_sequential, scatter_regions


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    import numpy as np

    root = tmp_path_factory.mktemp("scatter")
    rng = np.random.default_rng(3)
    contigs = {
        "c1": "".join(rng.choice(list("ACGT"), 30_000)),
        "c2": "".join(rng.choice(list("ACGT"), 8_000)),
    }
    ref = write_reference(root / "ref.fa", contigs)
    bam = write_bam(root / "S1.bam", contigs, "S1", {"c1": [10, 500], "c2": [7]})
    inputs = resolve_inputs(ref, [bam])
    regions = [
        Region("c1", 0, 10_000),
        Region("c1", 10_000, 20_000),
        Region("c1", 20_000, 30_000),
        Region("c2", 0, 8_000),
    ]
    return {"inputs": inputs, "regions": regions, "root": root}


@pytest.fixture(scope="module")
def thread_client():
    with open_client(ClusterSpec(workers=2, processes=False)) as client:
        yield client


@pytest.fixture
def fake_sbatch(tmp_path, monkeypatch):
    """A stand-in ``sbatch`` on PATH, for tests about the job script's text (they never
    submit a job): they run on machines without SLURM."""
    import os

    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text("#!/bin/sh\necho 'fake sbatch: no job submitted' >&2\nexit 1\n")
    sbatch.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return sbatch


def _keys(data, params, engine):
    ident = inputs_identity(data["inputs"])
    return [
        checkpoint_key(r, ident, params, params.engine, engine_version(engine))
        for r in data["regions"]
    ]


def test_checkpoint_key_depends_on_everything(data, tmp_path):
    inputs, params = data["inputs"], CallParams()
    ident = inputs_identity(inputs)
    r = Region("c1", 0, 100)
    base = checkpoint_key(r, ident, params, "native", "1")
    assert base == checkpoint_key(r, ident, params, "native", "1")
    others = {
        checkpoint_key(Region("c1", 0, 101), ident, params, "native", "1"),
        checkpoint_key(r, ident, dataclasses.replace(params, min_mapq=21), "native", "1"),
        checkpoint_key(r, ident, params, "bcftools", "1"),
        checkpoint_key(r, ident, params, "native", "2"),
        checkpoint_key(r, {**ident, "samples": ["X"]}, params, "native", "1"),
        checkpoint_key(None, ident, params, "native", "1", kind="whole", contig="c1"),
    }
    assert base not in others and len(others) == 6


def test_region_task_writes_checkpoint(data, tmp_path):
    inputs, params, engine = data["inputs"], CallParams(), FakeEngine()
    region = data["regions"][1]
    side = run_region_task(region, inputs, params, str(tmp_path), "k" * 64, "run1", engine)
    expect = _fake_calls(inputs, "c1", 10_000, 20_000)
    assert side["n_variants"] == expect.n_variants > 0
    assert side["digest"] == expect.digest()
    assert side["region"] == ["c1", 10_000, 20_000]
    assert load_callset(tmp_path / f"{'k' * 64}.npz").equals(expect)
    assert read_checkpoint(tmp_path, "k" * 64)["digest"] == side["digest"]
    events = [
        json.loads(x) for x in (tmp_path / f"{'k' * 64}.audit.jsonl").read_text().splitlines()
    ]
    assert [e["event"] for e in events] == ["start", "done"]
    assert events[0]["bams"] == list(inputs.bams) and events[0]["region"] == "c1:10001-20000"
    # a damaged checkpoint is not valid
    npz = tmp_path / f"{'k' * 64}.npz"
    npz.write_bytes(npz.read_bytes()[:-10] + b"0123456789")
    assert read_checkpoint(tmp_path, "k" * 64) is None
    assert read_checkpoint(tmp_path, "x" * 64) is None


def test_region_task_rejects_calls_outside_region(data, tmp_path):
    class Leaky(FakeEngine):
        def call_region(self, inputs, region, params):
            return _fake_calls(inputs, region.contig, 0, region.end + 5000)

    with pytest.raises(RegionError, match="outside the region"):
        run_region_task(
            data["regions"][1], data["inputs"], CallParams(), str(tmp_path), "a" * 64, "r", Leaky()
        )


def test_region_task_refuses_other_version(data, tmp_path):
    from varcall import __version__
    from varcall.run.checkpoints import code_digest

    args = (data["regions"][0], data["inputs"], CallParams(), str(tmp_path), "c" * 64, "r")
    side = run_region_task(*args, FakeEngine(), (__version__, code_digest()))
    assert side["n_variants"] > 0 and side["code"] == code_digest()
    with pytest.raises(RegionError, match=r"runs varcall .* the client 0\.0\.1; install"):
        run_region_task(*args, FakeEngine(), ("0.0.1", code_digest()))
    # same version, other source: recorded, not refused
    side = run_region_task(*args, FakeEngine(), (__version__, "0" * 64))
    assert side["code"] == code_digest()


def test_region_task_wraps_unexpected_errors(data, tmp_path):
    class Broken(FakeEngine):
        def call_region(self, inputs, region, params):
            raise ZeroDivisionError("boom")

    with pytest.raises(RegionError, match=r"region c1:10001-20000: ZeroDivisionError: boom"):
        run_region_task(
            data["regions"][1], data["inputs"], CallParams(), str(tmp_path), "b" * 64, "r", Broken()
        )
    assert not (tmp_path / f"{'b' * 64}.json").exists()


def test_scatter_returns_sidecars_in_order_and_resumes(data, tmp_path, thread_client):
    params = CallParams()
    calls = tmp_path / "calls"
    calls.mkdir()
    engine = FakeEngine(calls_dir=str(calls))
    keys = _keys(data, params, engine)
    work = tmp_path / "work"
    work.mkdir()
    sides = scatter_regions(
        data["regions"],
        keys,
        data["inputs"],
        params,
        work,
        client=thread_client,
        run_id="r1",
        engine=engine,
    )
    assert [s["key"] for s in sides] == keys
    assert [s["region"][:2] for s in sides] == [[r.contig, r.start] for r in data["regions"]]
    for s, r in zip(sides, data["regions"]):
        assert s["digest"] == _fake_calls(data["inputs"], r.contig, r.start, r.end).digest()
        assert not s["resumed"]
    assert len(list(calls.iterdir())) == 4
    # resume: nothing is called again
    again = scatter_regions(
        data["regions"],
        keys,
        data["inputs"],
        params,
        work,
        client=thread_client,
        run_id="r2",
        engine=engine,
        resume=True,
    )
    assert len(list(calls.iterdir())) == 4
    assert [s["digest"] for s in again] == [s["digest"] for s in sides]
    assert all(s["resumed"] for s in again)
    # one checkpoint lost: only that region runs again
    (work / f"{keys[2]}.npz").unlink()
    scatter_regions(
        data["regions"],
        keys,
        data["inputs"],
        params,
        work,
        client=thread_client,
        run_id="r3",
        engine=engine,
        resume=True,
    )
    names = sorted(p.name.split(".")[0] for p in calls.iterdir())
    assert names.count("c1_20000_30000") == 2 and len(names) == 5


def test_scatter_retries_transient_failures(data, tmp_path, thread_client):
    params = CallParams()
    flaky = tmp_path / "flaky"
    flaky.mkdir()
    engine = FakeEngine(flaky_dir=str(flaky))
    keys = _keys(data, params, engine)
    sides = scatter_regions(
        data["regions"],
        keys,
        data["inputs"],
        params,
        tmp_path,
        client=thread_client,
        run_id="r1",
        engine=engine,
        retries=2,
    )
    assert len(sides) == 4
    for k in keys:
        events = [json.loads(x) for x in (tmp_path / f"{k}.audit.jsonl").read_text().splitlines()]
        assert [e["event"] for e in events] == ["start", "error", "start", "done"]
        assert "simulated transient failure" in events[1]["error"]


def test_scatter_names_failed_region_and_keeps_others(data, tmp_path, thread_client):
    params = CallParams()
    engine = FakeEngine(fail_regions=["c1:10001-20000"])
    keys = _keys(data, params, engine)
    with pytest.raises(RegionError) as err:
        scatter_regions(
            data["regions"],
            keys,
            data["inputs"],
            params,
            tmp_path,
            client=thread_client,
            run_id="r1",
            engine=engine,
            retries=1,
        )
    msg = str(err.value)
    assert "c1:10001-20000" in msg and "--resume" in msg and "\n" not in msg
    for i, k in enumerate(keys):
        assert (read_checkpoint(tmp_path, k) is None) == (i == 1)


def test_failure_line_names_the_failing_region_once(tmp_path):
    from varcall.run.tasks import _failure_error

    # a pack's task (first region c1:1-100) failed in its region c1:201-300
    failed = [(Region("c1", 0, 100), "region c1:201-300: /x.bam: damaged"),
              (Region("c1", 400, 500), "boom")]  # fmt: skip
    msg = str(_failure_error(failed, tmp_path))
    assert msg.startswith("region c1:201-300: /x.bam: damaged (and 1 more regions);"), msg
    msg = str(_failure_error([(Region("c1", 0, 100), "boom")], tmp_path))
    assert msg.startswith("region c1:1-100: boom;"), msg


def test_truncated_bam_does_not_break_the_compression_estimate(data, tmp_path):
    from varcall.plan.regions import _bgzf_ratio

    bam = data["inputs"].bams[0]
    whole = _bgzf_ratio(Path(bam))
    cut = tmp_path / "cut.bam"
    raw = Path(bam).read_bytes()
    cut.write_bytes(raw[: len(raw) // 2])  # ends inside a block
    assert 0 < _bgzf_ratio(cut) <= 1 and 0 < whole <= 1


def test_scatter_without_retries_fails_transient(data, tmp_path, thread_client):
    params = CallParams()
    flaky = tmp_path / "flaky"
    flaky.mkdir()
    engine = FakeEngine(flaky_dir=str(flaky))
    keys = _keys(data, params, engine)
    with pytest.raises(RegionError, match=r"\(and 3 more regions\)"):
        scatter_regions(
            data["regions"],
            keys,
            data["inputs"],
            params,
            tmp_path,
            client=thread_client,
            run_id="r1",
            engine=engine,
            retries=0,
        )


def test_sequential_matches_dask(data, tmp_path, thread_client):
    params = CallParams()
    engine = FakeEngine()
    keys = _keys(data, params, engine)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    seq = run_sequential(
        data["regions"], keys, data["inputs"], params, tmp_path / "a", run_id="r", engine=engine
    )
    dsk = scatter_regions(
        data["regions"],
        keys,
        data["inputs"],
        params,
        tmp_path / "b",
        client=thread_client,
        run_id="r",
        engine=engine,
    )
    assert [s["digest"] for s in seq] == [s["digest"] for s in dsk]
    engine = FakeEngine(fail_regions=["c1:20001-30000"])
    with pytest.raises(RegionError, match="c1:20001-30000"):
        run_sequential(
            data["regions"],
            keys,
            data["inputs"],
            params,
            tmp_path / "a",
            run_id="r",
            engine=engine,
            resume=False,
        )


def test_process_workers(data, tmp_path):
    params = CallParams()
    engine = FakeEngine()
    keys = _keys(data, params, engine)
    with open_client(ClusterSpec(workers=2, processes=True)) as client:
        assert client.dashboard_link == ""  # no dashboard without --dashboard
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        sides = scatter_regions(
            data["regions"],
            keys,
            data["inputs"],
            params,
            tmp_path,
            client=client,
            run_id="r",
            engine=engine,
        )
    workers = {s["worker"] for s in sides}
    assert all("127.0.0.1" in w for w in workers)
    for s, r in zip(sides, data["regions"]):
        assert s["digest"] == _fake_calls(data["inputs"], r.contig, r.start, r.end).digest()


_WORKER_STATE = """
import json, os, sys
from varcall.run.clusters import ClusterSpec, ClusterStarter

def state():
    native = sys.modules.get("varcall.engines.native.engine")
    return {
        "trim": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
        "mmap": os.environ.get("MALLOC_MMAP_MAX_"),
        "omp": os.environ.get("OMP_NUM_THREADS"),
        "hugepage": os.environ.get("NUMPY_MADVISE_HUGEPAGE"),
        "warm": bool(native is not None and native._warmed),
        "forked": os.getppid() != PARENT,
    }

PARENT = os.getpid()
starter = ClusterStarter(ClusterSpec(workers=2, processes=True), warm=("varcall.engines.native",))
with starter.attach() as client:
    starter._thread.join(timeout=120)  # its warm-up of the workers, if still needed
    print(json.dumps(list(client.run(state).values())))
"""


def test_process_workers_environment_and_warm_up():
    """Local worker processes come from a fork server (not this process) that has run the
    engine's warm-up (numba kernels loaded), and get Dask's worker environment except
    its MALLOC_TRIM_THRESHOLD_ of 64 KiB (it made every region ~30% slower): varcall's
    allocator settings instead (varcall.core.allocator: freed large arrays kept). In a
    fresh interpreter: the fork server is one per process and keeps the environment it
    started with."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASK_", "MALLOC_"))}
    env.pop(allocator.HUGEPAGE_VARIABLE, None)
    out = subprocess.run(
        [sys.executable, "-c", _WORKER_STATE], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    states = json.loads(out.stdout.strip().splitlines()[-1])
    expect = {
        "trim": allocator.ENVIRON["MALLOC_TRIM_THRESHOLD_"],
        "mmap": "0",
        "omp": "1",
        "hugepage": "0",
        "warm": True,
        "forked": True,
    }
    assert states == [expect] * 2, states


def test_worker_environ_keeps_a_user_setting(monkeypatch, fake_sbatch):
    import os

    import dask

    from varcall.run.clusters import _jobqueue_kwargs
    from varcall.run.forkserver import _worker_environ

    for key in [k for k in os.environ if k.startswith("MALLOC_")]:  # a fork server's
        monkeypatch.delenv(key)
    monkeypatch.delenv("DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON", raising=False)
    env = _worker_environ()
    # not Dask's 64 KiB trim threshold: varcall's allocator settings
    assert env["MALLOC_TRIM_THRESHOLD_"] == allocator.ENVIRON["MALLOC_TRIM_THRESHOLD_"]
    assert env["MALLOC_MMAP_MAX_"] == "0" and env.get("OMP_NUM_THREADS") == "1"
    spec = ClusterSpec(kind="slurm", cores=1, memory="1GB")
    (line,) = _jobqueue_kwargs(spec)["job_script_prologue"]
    assert "MALLOC_TRIM_THRESHOLD_': None" in line
    # the user's own Dask setting wins, locally and in batch jobs
    user = "{'MALLOC_TRIM_THRESHOLD_': 1000}"
    monkeypatch.setenv("DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON", user)
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 1000}):
        assert _worker_environ()["MALLOC_TRIM_THRESHOLD_"] == "1000"
    assert "job_script_prologue" not in _jobqueue_kwargs(spec)


def test_batch_job_prologue_unsets_the_trim_threshold(tmp_path, monkeypatch, fake_sbatch):
    """The prologue's variable, read by Dask in the job, drops the variable from what the
    nanny sets and keeps Dask's other defaults."""
    import os
    import subprocess
    import sys

    from varcall.run.clusters import _jobqueue_kwargs

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)  # a nanny of another test
    monkeypatch.delenv("DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON", raising=False)
    (line,) = _jobqueue_kwargs(ClusterSpec(kind="slurm", cores=1, memory="1GB"))[
        "job_script_prologue"
    ]
    code = (
        "from distributed.nanny import _get_env_variables as g; "
        "print(sorted(g('distributed.nanny.pre-spawn-environ')))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASK_", "MALLOC_"))}
    out = subprocess.run(
        ["bash", "-c", f'{line}; "{sys.executable}" -c "{code}"'],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "MALLOC_TRIM_THRESHOLD_" not in out and "OMP_NUM_THREADS" in out, out


def test_cluster_starter(data, tmp_path):
    import threading

    from varcall.run.clusters import ClusterStarter

    params, engine = CallParams(), FakeEngine()
    keys = _keys(data, params, engine)
    starter = ClusterStarter(
        ClusterSpec(workers=1, processes=False), warm=("varcall.core.callset",), client_warm=("json",)
    )
    record = {}
    with starter.attach(record=record) as client:
        sides = scatter_regions(
            data["regions"][:2],
            keys[:2],
            data["inputs"],
            params,
            tmp_path,
            client=client,
            run_id="r",
            engine=engine,
        )
    assert [s["key"] for s in sides] == keys[:2]
    assert client.status == "closed"
    starter.close()  # idempotent
    # never attached (the run failed before): close() shuts the cluster down
    starter = ClusterStarter(ClusterSpec(workers=1, processes=False))
    starter.close()
    assert starter._client.status == "closed"
    assert not [t for t in threading.enumerate() if t.name == "varcall-cluster"]
    # a start that fails is raised by attach()
    starter = ClusterStarter(
        ClusterSpec(kind="scheduler", scheduler_address="tcp://127.0.0.1:9", connect_timeout=1)
    )
    with pytest.raises(InputError, match="cannot reach the Dask scheduler"):
        with starter.attach():
            pass
    starter.close()


# ----------------------------------------------------------------------------- cluster spec
def test_cluster_config_file(tmp_path):
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(
        "cluster: slurm\nqueue: short\naccount: lab\ncores: 4\nmemory: 8GB\n"
        "walltime: '01:00:00'\njob-extra-directives: ['--qos=low']\njobs: 3\n"
    )
    spec = ClusterSpec.from_config(cfg, queue="long", job_extra_directives=("--exclusive",))
    assert spec.kind == "slurm" and spec.queue == "long" and spec.cores == 4
    assert spec.job_extra_directives == ("--qos=low", "--exclusive")
    assert spec.jobs == 3 and spec.account == "lab"
    cfg.write_text("bogus: 1\n")
    with pytest.raises(InputError, match="unknown key 'bogus'"):
        ClusterSpec.from_config(cfg)
    cfg.write_text("- a\n- b\n")
    with pytest.raises(InputError, match="expected a mapping"):
        ClusterSpec.from_config(cfg)
    with pytest.raises(InputError, match="cluster config not found"):
        ClusterSpec.from_config(tmp_path / "none.yaml")
    with pytest.raises(InputError, match="not supported"):
        ClusterSpec(kind="kubernetes")
    with pytest.raises(InputError, match="needs an address"):
        ClusterSpec(kind="scheduler")


def test_jobqueue_defaults_cores_and_memory(fake_sbatch):
    """Without --cores/--memory a batch job asks for 1 core and 2 GB plus a per-sample
    allowance (see tests/test_first_hour.py for the run)."""
    from varcall.run.clusters import _jobqueue_kwargs

    kwargs = _jobqueue_kwargs(ClusterSpec(kind="slurm", queue="q"))
    assert kwargs["cores"] == 1 and kwargs["memory"] == "2048MB"


def test_slurm_job_script(tmp_path, monkeypatch, fake_sbatch):
    from varcall.run.clusters import _jobqueue_kwargs

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)  # a nanny of another test

    spec = ClusterSpec(
        kind="slurm",
        queue="short",
        account="lab",
        cores=4,
        memory="8GB",
        walltime="01:00:00",
        job_extra_directives=("--qos=low",),
    )
    import dask_jobqueue

    kwargs = _jobqueue_kwargs(spec)
    with dask_jobqueue.SLURMCluster(**kwargs) as cluster:
        script = cluster.job_script()
    for line in ("#SBATCH -p short", "#SBATCH -A lab", "#SBATCH --qos=low", "#SBATCH -t 01:00:00"):
        assert line in script, script
    # the worker's nanny leaves MALLOC_TRIM_THRESHOLD_ unset (set before the worker starts)
    prologue = (
        "export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON=\"{'MALLOC_TRIM_THRESHOLD_': None}\""
    )
    assert prologue in script and script.index(prologue) < script.index("distributed.cli")
    lsf = _jobqueue_kwargs(dataclasses.replace(spec, kind="lsf"))
    assert lsf["project"] == "lab" and "account" not in lsf


def test_unreachable_scheduler():
    with pytest.raises(InputError, match="cannot reach the Dask scheduler"):
        with open_client(
            ClusterSpec(kind="scheduler", scheduler_address="tcp://127.0.0.1:9", connect_timeout=2)
        ):
            pass


def test_scheduler_address(data, tmp_path, thread_client):
    params = CallParams()
    engine = FakeEngine()
    keys = _keys(data, params, engine)
    spec = ClusterSpec(kind="scheduler", scheduler_address=thread_client.scheduler.address)
    with open_client(spec) as client:
        sides = scatter_regions(
            data["regions"][:1],
            keys[:1],
            data["inputs"],
            params,
            tmp_path,
            client=client,
            run_id="r",
            engine=engine,
        )
    assert sides[0]["n_variants"] > 0
    assert Path(tmp_path, f"{keys[0]}.npz").is_file()


def test_cluster_config_worker_settings_are_not_overridden_by_cli_defaults(tmp_path):
    """threads_per_worker / processes from a YAML config survive when the CLI options
    are left at their defaults (None / auto)."""
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text("threads_per_worker: 3\nprocesses: false\nworkers: 2\n")
    spec = ClusterSpec.from_config(cfg, threads_per_worker=None, processes=None)
    assert spec.threads_per_worker == 3
    assert spec.use_processes is False
    assert ClusterSpec(workers=2).use_processes is True
    assert ClusterSpec(workers=1).use_processes is False
    assert ClusterSpec.from_config(cfg, processes=True).use_processes is True
