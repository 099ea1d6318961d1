"""The command line passes its arguments through (the bio2zarr pattern): the library
functions are replaced by recorders where the CLI looks them up, so nothing is called for
real; each test checks what a command handed to the library, its output and exit code."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import varcall.evaluate.concordance
import varcall.plan.validate
import varcall.plan.validate_reference
import varcall.report.html
import varcall.run.pipeline
import varcall.simulate.cohort
from varcall import __version__
from varcall.cli.call import CLUSTER_OPTIONS, PARAM_OPTIONS
from varcall.cli.commands import SIMULATION_OPTIONS
from varcall.cli.main import main
from varcall.core.errors import InputError, RegionError
from varcall.core.params import CallParams
from varcall.core.privacy import OutputOptions
from varcall.core.regions import Region
from varcall.run.clusters import ClusterSpec
from varcall.simulate.config import SimulationConfig


class Recorder:
    """A stand-in library function: records its calls, returns ``result`` or raises
    ``error``."""

    def __init__(self, result: Any = None, error: BaseException | None = None) -> None:
        self.calls: list[tuple[tuple, dict]] = []
        self.result = result
        self.error = error

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        if self.error is not None:
            raise self.error
        return self.result

    @property
    def args(self) -> tuple:
        assert len(self.calls) == 1, self.calls
        return self.calls[0][0]

    @property
    def kwargs(self) -> dict:
        assert len(self.calls) == 1, self.calls
        return self.calls[0][1]


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


# ----------------------------------------------------------------------------- call
RUN_RESULT = types.SimpleNamespace(mode="distributed", n_variants=1234, n_units=5, wall_seconds=2.5)


@pytest.fixture
def run_call(monkeypatch) -> Recorder:
    rec = Recorder(result=RUN_RESULT)
    monkeypatch.setattr(varcall.run.pipeline, "run_call", rec)
    monkeypatch.setattr("sys.argv", ["varcall", "call", "-f", "ref.fa"])
    return rec


def call(tmp_path: Path, *args: Any) -> Any:
    return invoke("call", "-f", tmp_path / "ref.fa", "-o", tmp_path / "out", *args)


def test_call_defaults(run_call, tmp_path):
    r = call(tmp_path, "a.bam", "b.bam")
    assert r.exit_code == 0, r.output
    assert "wrote 1,234 variants from 5 regions to" in r.output and "in 2.5 s" in r.output
    assert run_call.args == (tmp_path / "ref.fa", [Path("a.bam"), Path("b.bam")], tmp_path / "out")
    kw = run_call.kwargs
    assert kw.pop("params") == CallParams()
    assert kw.pop("cluster") == ClusterSpec()
    assert kw.pop("output") == OutputOptions()
    assert kw == {
        "mode": "distributed",
        "command_line": "varcall call -f ref.fa",
        "region_size": None,
        "region_count": None,
        "region_strings": (),
        "regions_bed": None,
        "pack": True,
        "retries": 2,
        "speculate": True,
        "straggler_factor": 5.0,
        "straggler_min_seconds": 60.0,
        "resume": False,
        "overwrite": False,
        "build_index": False,
        "rename_duplicate_samples": False,
        "chunk_size": 10_000,
        "progress": True,
    }


def test_call_defaults_are_the_library_defaults():
    """Every CallParams field has an option, whose default is the field's."""
    assert [s.field for s in PARAM_OPTIONS.specs] != []
    assert {s.field for s in PARAM_OPTIONS.specs} == {
        f.name for f in dataclasses.fields(CallParams)
    } - set(CallParams.RESOLVED)
    params = {p.name: p for p in main.commands["call"].params}
    for f in dataclasses.fields(CallParams):
        if f.name not in ("ploidy_by_contig", "stutter_table", *CallParams.RESOLVED):
            assert params[f.name].default == f.default, f.name
    assert {s.field for s in SIMULATION_OPTIONS.specs} <= {
        f.name for f in dataclasses.fields(SimulationConfig)
    }
    assert {s.field for s in CLUSTER_OPTIONS.specs} <= {
        f.name for f in dataclasses.fields(ClusterSpec)
    }


def test_call_parameters_and_run_options(run_call, tmp_path):
    bed = tmp_path / "x.bed"
    r = call(
        tmp_path, "a.bam",
        "--engine", "bcftools", "--engine-args", "-d 500 call: -P 0.01",
        "--min-mapq", 5, "--min-baseq", 0, "--include-supplementary", "--ploidy", 1,
        "--ploidy-contig", "chrY=2", "--ploidy-contig", "chr=M=1", "--min-qual", 3.5,
        "--region-size", 1000, "--region-count", 4, "-r", "chr1", "--region", "chr2:1-100",
        "--regions", bed, "--retries", 0, "--resume", "--overwrite", "--index",
        "--rename-duplicate-samples", "--chunk-size", 7, "--no-progress", "--no-pack",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    kw = run_call.kwargs
    assert kw["params"] == CallParams(
        engine="bcftools",
        min_mapq=5,
        min_baseq=0,
        include_supplementary=True,
        ploidy=1,
        ploidy_by_contig=(("chrY", 2), ("chr=M", 1)),
        min_qual=3.5,
        engine_args="-d 500 call: -P 0.01",
    )
    assert kw["region_size"] == 1000 and kw["region_count"] == 4
    assert kw["region_strings"] == ("chr1", "chr2:1-100") and kw["regions_bed"] == bed
    assert kw["retries"] == 0 and kw["chunk_size"] == 7 and kw["progress"] is False
    assert kw["resume"] and kw["overwrite"] and kw["build_index"]
    assert kw["rename_duplicate_samples"] and kw["pack"] is False


def test_call_straggler_options(run_call, tmp_path):
    r = call(tmp_path, "a.bam", "--no-speculate", "--straggler-factor", 2.5,
             "--straggler-min-seconds", 0.5)  # fmt: skip
    assert r.exit_code == 0, r.output
    kw = run_call.kwargs
    assert kw["speculate"] is False and kw["straggler_factor"] == 2.5
    assert kw["straggler_min_seconds"] == 0.5
    r = call(tmp_path, "a.bam", "--straggler-factor", 0.5)
    assert r.exit_code == 2 and "--straggler-factor" in r.output


def test_call_single_process(run_call, tmp_path):
    run_call.result = types.SimpleNamespace(
        mode="single", n_variants=3, n_units=2, wall_seconds=0.25
    )
    r = call(tmp_path, "a.bam", "--single-process")
    assert r.exit_code == 0, r.output
    assert run_call.kwargs["mode"] == "single"
    assert "wrote 3 variants from 2 units" in r.output


@pytest.mark.parametrize(
    "worker_type, processes", [("auto", None), ("process", True), ("thread", False)]
)
def test_call_local_cluster(run_call, tmp_path, worker_type, processes):
    r = call(
        tmp_path, "a.bam", "--workers", 3, "--threads-per-worker", 2, "--worker-type", worker_type
    )
    assert r.exit_code == 0, r.output
    assert run_call.kwargs["cluster"] == ClusterSpec(
        workers=3, threads_per_worker=2, processes=processes
    )


def test_call_batch_cluster(run_call, tmp_path):
    r = call(
        tmp_path, "a.bam", "--cluster", "slurm", "--queue", "q", "--account", "acc",
        "--cores", 4, "--memory", "8GB", "--walltime", "01:00:00", "--jobs", 2,
        "--adapt-max", 5, "--job-extra-directives", "--qos=long",
        "--job-extra-directives", "--exclusive", "--cluster-timeout", 30, "--fallback-local",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert run_call.kwargs["cluster"] == ClusterSpec(
        kind="slurm",
        queue="q",
        account="acc",
        cores=4,
        memory="8GB",
        walltime="01:00:00",
        jobs=2,
        adapt_max=5,
        job_extra_directives=("--qos=long", "--exclusive"),
        cluster_timeout=30.0,
        fallback_local=True,
    )


def test_call_cluster_config_with_overrides(run_call, tmp_path):
    config = tmp_path / "cluster.yaml"
    config.write_text(
        "cluster: pbs\nqueue: long\ncores: 8\nmemory: 32GB\njob-extra-directives: [-l a]\n"
    )
    r = call(
        tmp_path, "a.bam", "--cluster-config", config, "--queue", "short",
        "--job-extra-directives", "-l b",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert run_call.kwargs["cluster"] == ClusterSpec(
        kind="pbs", queue="short", cores=8, memory="32GB", job_extra_directives=("-l a", "-l b")
    )


def test_call_scheduler_with_tls(run_call, tmp_path):
    files = []
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
        files.append(str(tmp_path / name))
    r = call(
        tmp_path, "a.bam", "--scheduler", "tls://h:8786",
        "--tls-ca", files[0], "--tls-cert", files[1], "--tls-key", files[2],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert run_call.kwargs["cluster"] == ClusterSpec(
        kind="scheduler",
        scheduler_address="tls://h:8786",
        tls_ca=files[0],
        tls_cert=files[1],
        tls_key=files[2],
    )


def test_call_bam_list(run_call, tmp_path):
    (tmp_path / "sub").mkdir()
    listing = tmp_path / "sub" / "bams.txt"
    listing.write_text("# a comment\nrel.bam\n\n  /abs/x.cram  \n")
    r = call(tmp_path, "first.bam", "-b", listing)
    assert r.exit_code == 0, r.output
    assert run_call.args[1] == [
        Path("first.bam"),
        tmp_path / "sub" / "rel.bam",
        Path("/abs/x.cram"),
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "varcall: error: no BAM/CRAM files given"),
        (["a.bam", "-b", "missing.txt"], "missing.txt: BAM list not found"),
        (["a.bam", "--scheduler", "tcp://h:1", "--cluster", "slurm"], "both given"),
        (["a.bam", "--single-process", "--scheduler", "tcp://h:1"], "runs without Dask"),
        (["a.bam", "--ploidy-contig", "chrY"], "--ploidy-contig 'chrY': expected CONTIG=1"),
        (["a.bam", "--ploidy-contig", "chrY=3"], "expected CONTIG=1 or CONTIG=2"),
        (["a.bam", "--fallback-local"], "--fallback-local needs --cluster-timeout"),
        (["a.bam", "--tls-ca", "nowhere.pem"], "nowhere.pem: TLS file not found"),
        (["a.bam", "--ploidy", 3], "Invalid value for '--ploidy'"),
        (["a.bam", "--engine", "gatk"], "Invalid value for '--engine'"),
        (["a.bam", "--min-mapq", -1], "Invalid value for '--min-mapq'"),
        (["a.bam", "--worker-type", "fiber"], "Invalid value for '--worker-type'"),
        (["a.bam", "--cluster", "k8s"], "Invalid value for '--cluster'"),
        (["a.bam", "--chunk-size", 0], "Invalid value for '--chunk-size'"),
    ],
)
def test_call_bad_values_exit_2(run_call, tmp_path, args, message):
    r = call(tmp_path, *args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert run_call.calls == []


@pytest.mark.parametrize(
    "error, code, message",
    [
        (InputError("bad input"), 2, "varcall: error: bad input"),
        (RegionError("region chr1:1-10: boom"), 1, "varcall: error: region chr1:1-10: boom"),
        (KeyboardInterrupt(), 130, "varcall: interrupted; finished regions are kept"),
    ],
)
def test_call_library_errors(run_call, tmp_path, error, code, message):
    run_call.error = error
    r = call(tmp_path, "a.bam")
    assert r.exit_code == code, r.output
    assert message in r.output and "Traceback" not in r.output


def test_call_terminated(run_call, tmp_path):
    from varcall.cli.errors import Terminated

    run_call.error = Terminated()
    r = call(tmp_path, "a.bam")
    assert r.exit_code == 143 and "varcall: terminated;" in r.output


def test_stop_signals_quiet_dask_and_stop_the_run():
    import logging
    import signal

    from varcall.cli.errors import handle_errors

    dask_logger = logging.getLogger("distributed")
    level = dask_logger.level
    seen = {}

    @handle_errors
    def body(signum):
        seen[signum] = signal.getsignal(signum)
        signal.raise_signal(signum)

    # as in a terminal (a background job starts with SIGINT ignored)
    sigint = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
            dask_logger.setLevel(logging.ERROR)
            before = signal.getsignal(signum)
            with pytest.raises(SystemExit) as stop:
                body(signum)
            assert stop.value.code == code
            # the scheduler's teardown complaints ("Couldn't gather keys") stay off stderr
            assert dask_logger.level == logging.CRITICAL
            assert signal.getsignal(signum) is before  # handler restored
            assert seen[signum] is not before
    finally:
        signal.signal(signal.SIGINT, sigint)
        dask_logger.setLevel(level)


def test_an_ignored_sigint_stays_ignored(monkeypatch):
    import signal

    from varcall.cli.errors import handle_errors

    seen = []

    @handle_errors
    def body():
        seen.append(signal.getsignal(signal.SIGINT))

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        body()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen == [signal.SIG_IGN]


# ----------------------------------------------------------------------------- simulate
@pytest.fixture
def simulate_cohort(monkeypatch) -> Recorder:
    rec = Recorder(result=Path("cohort"))
    monkeypatch.setattr(varcall.simulate.cohort, "simulate_cohort", rec)
    return rec


def test_simulate_defaults(simulate_cohort, tmp_path):
    r = invoke("simulate", "-o", tmp_path / "c")
    assert r.exit_code == 0, r.output
    assert r.output == "wrote cohort\n"
    assert simulate_cohort.args == (tmp_path / "c", SimulationConfig())
    assert simulate_cohort.kwargs == {"overwrite": False}


def test_simulate_options(simulate_cohort, tmp_path):
    r = invoke(
        "simulate", "-o", tmp_path / "c", "--samples", 5, "--contigs", 3, "--length", 5000,
        "--coverage", 12.5, "--read-length", 100, "--insert-mean", 300, "--insert-sd", 20,
        "--haploid-contigs", 1, "--boundary", 10, "--boundary", 2000, "--seed", 7, "--overwrite",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert simulate_cohort.args[1] == SimulationConfig(
        n_samples=5,
        n_contigs=3,
        contig_length=5000,
        coverage=12.5,
        read_length=100,
        insert_mean=300,
        insert_sd=20,
        n_haploid_contigs=1,
        boundary_positions=(10, 2000),
        seed=7,
    )
    assert simulate_cohort.kwargs == {"overwrite": True}


@pytest.mark.parametrize(
    "args", [["--length", 999], ["--samples", 0], ["--coverage", 0.05], ["--boundary", "x"]]
)
def test_simulate_bad_values_exit_2(simulate_cohort, tmp_path, args):
    r = invoke("simulate", "-o", tmp_path / "c", *args)
    assert r.exit_code == 2 and "Invalid value" in r.output
    assert simulate_cohort.calls == []


def test_simulate_needs_out(simulate_cohort):
    r = invoke("simulate")
    assert r.exit_code == 2 and "Missing option '-o' / '--out'" in r.output


# ----------------------------------------------------------------------------- regions
@pytest.fixture
def planning(monkeypatch, tmp_path) -> dict[str, Recorder]:
    import varcall.core.regions
    import varcall.plan.inputs
    import varcall.plan.regions

    inputs = types.SimpleNamespace(contigs=(("chr1", 1000), ("chr2", 500)))
    plan = [Region("chr1", 0, 600), Region("chr1", 600, 1000)]
    recs = {
        "check_reference": Recorder(),
        "resolve_inputs": Recorder(result=inputs),
        "validate_regions": Recorder(result=[Region("chr1", 0, 1000)]),
        "plan_regions": Recorder(result=plan),
        "write_bed": Recorder(),
    }
    monkeypatch.setattr(varcall.plan.validate_reference, "check_reference", recs["check_reference"])
    monkeypatch.setattr(varcall.plan.validate, "validate_regions", recs["validate_regions"])
    monkeypatch.setattr(varcall.plan.inputs, "resolve_inputs", recs["resolve_inputs"])
    monkeypatch.setattr(varcall.plan.regions, "plan_regions", recs["plan_regions"])
    monkeypatch.setattr(varcall.core.regions, "write_bed", recs["write_bed"])
    for name in ("a.bam", "b.bam"):
        (tmp_path / name).write_text("")
    return recs


def test_regions_passes_options(planning, tmp_path):
    out = tmp_path / "plan.bed"
    r = invoke(
        "regions", "-f", tmp_path / "ref.fa", "-o", out, tmp_path / "a.bam", tmp_path / "b.bam",
        "--region-count", 2, "-r", "chr1",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert f"wrote 2 regions (1,000 bp) to {out}" in r.output
    assert planning["check_reference"].args == (tmp_path / "ref.fa",)
    assert planning["resolve_inputs"].args == (
        tmp_path / "ref.fa",
        [tmp_path / "a.bam", tmp_path / "b.bam"],
    )
    assert planning["validate_regions"].args == (("chr1",), None, (("chr1", 1000), ("chr2", 500)))
    assert planning["plan_regions"].kwargs == {
        "region_size": None, "region_count": 2, "restrict": [Region("chr1", 0, 1000)]
    }  # fmt: skip
    assert planning["write_bed"].args == (planning["plan_regions"].result, out)


def test_regions_unrestricted_and_sized(planning, tmp_path):
    planning["validate_regions"].result = []
    r = invoke(
        "regions", "-f", tmp_path / "ref.fa", "-o", tmp_path / "p.bed", tmp_path / "a.bam",
        "--region-size", 300,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert planning["plan_regions"].kwargs == {
        "region_size": 300, "region_count": None, "restrict": None
    }  # fmt: skip


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.bam"], "missing.bam: file not found; check the path"),
        ([], "no BAM/CRAM files given"),
        (["a.bam", "--region-size", 0], "Invalid value for '--region-size'"),
    ],
)
def test_regions_bad_input_exit_2(planning, tmp_path, args, message):
    args = [tmp_path / a if str(a).endswith(".bam") else a for a in args]
    r = invoke("regions", "-f", tmp_path / "ref.fa", "-o", tmp_path / "p.bed", *args)
    assert r.exit_code == 2 and message in r.output, r.output
    assert planning["plan_regions"].calls == []


def test_regions_out_folder_must_exist(planning, tmp_path):
    out = tmp_path / "nowhere" / "p.bed"
    r = invoke("regions", "-f", tmp_path / "ref.fa", "-o", out, tmp_path / "a.bam")
    assert r.exit_code == 2 and "does not exist; create it first" in r.output


# ----------------------------------------------------------------------------- concordance
def metrics(identical: bool = True, truth: bool = False) -> dict:
    ident = {
        "identical": identical,
        "records_a": 1200,
        "records_b": 1201,
        "differing": 0 if identical else 3,
        "only_in_a": 0 if identical else 1,
        "only_in_b": 0 if identical else 2,
        "content_differs": 0,
        "digests": {"method": "region", "identical": identical, "compared": 8, "differing": []},
    }
    m: dict = {"identity": ident}
    if truth:
        rates = {"TP": 1000, "FP": 5, "FN": 7, "precision": 0.995, "recall": None, "F1": 0.99}
        m["truth"] = {"A": {"SNP": rates, "INDEL": rates}}
    return m


@pytest.fixture
def run_concordance(monkeypatch) -> Recorder:
    rec = Recorder(result=metrics())
    monkeypatch.setattr(varcall.evaluate.concordance, "run_concordance", rec)
    return rec


def test_concordance_defaults(run_concordance, tmp_path):
    r = invoke("concordance", "-f", "ref.fa", "A.vcz", "B.vcf.gz", "-o", tmp_path / "c")
    assert r.exit_code == 0, r.output
    assert run_concordance.args == (Path("A.vcz"), Path("B.vcf.gz"), Path("ref.fa"), tmp_path / "c")
    assert run_concordance.kwargs == {
        "truth": None, "bed": None, "include_filtered": False, "qc": True
    }  # fmt: skip
    assert r.output.splitlines() == [
        "identity: A and B are identical (1,200 records)",
        "digests: 8 regions compared, identical",
        f"wrote {tmp_path / 'c' / 'metrics.json'}",
    ]


def test_concordance_options(run_concordance, tmp_path):
    run_concordance.result = metrics(identical=False, truth=True)
    r = invoke(
        "concordance", "-f", "ref.fa", "A", "B", "-o", tmp_path / "c", "--truth", "t.vcf.gz",
        "--bed", "conf.bed", "--include-filtered", "--no-qc",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert run_concordance.kwargs == {
        "truth": Path("t.vcf.gz"), "bed": Path("conf.bed"), "include_filtered": True, "qc": False
    }  # fmt: skip
    lines = r.output.splitlines()
    assert lines[0] == (
        "identity: 3 records differ (1 only in A, 2 only in B, 0 with other content; "
        "1,200 vs 1,201 records)"
    )
    assert "truth A SNP: TP 1,000 FP 5 FN 7 precision 0.9950 recall n/a F1 0.9900" in lines


def test_concordance_require_identical(run_concordance, tmp_path):
    r = invoke("concordance", "-f", "ref.fa", "A", "B", "-o", tmp_path / "c", "--require-identical")
    assert r.exit_code == 0, r.output
    run_concordance.calls.clear()
    run_concordance.result = metrics(identical=False)
    r = invoke("concordance", "-f", "ref.fa", "A", "B", "-o", tmp_path / "c", "--require-identical")
    assert r.exit_code == 1
    assert "varcall: error: A and B are not identical (3 records differ)" in r.output
    assert run_concordance.calls  # the metrics were still written


def test_concordance_library_error(run_concordance, tmp_path):
    run_concordance.error = InputError("A: not a call set")
    r = invoke("concordance", "-f", "ref.fa", "A", "B", "-o", tmp_path / "c")
    assert r.exit_code == 2 and "varcall: error: A: not a call set" in r.output


# ----------------------------------------------------------------------------- report
@pytest.fixture
def write_report(monkeypatch, tmp_path) -> Recorder:
    rec = Recorder(result=tmp_path / "r.html")
    monkeypatch.setattr(varcall.report.html, "write_report", rec)
    return rec


def test_report_passes_runs_and_concordances(write_report, tmp_path):
    out = tmp_path / "r.html"
    r = invoke("report", "run1", "run2", "--concordance", "c1", "--concordance", "c2", "-o", out)
    assert r.exit_code == 0, r.output
    assert r.output == f"wrote {out}\n"
    assert write_report.args == ([Path("run1"), Path("run2")], out)
    assert write_report.kwargs == {"concordance_dir": [Path("c1"), Path("c2")]}


def test_report_without_concordance(write_report, tmp_path):
    r = invoke("report", "run1", "-o", tmp_path / "r.html")
    assert r.exit_code == 0, r.output
    assert write_report.kwargs == {"concordance_dir": []}


def test_report_needs_runs(write_report, tmp_path):
    r = invoke("report", "-o", tmp_path / "r.html")
    assert r.exit_code == 2 and "Missing argument 'RUNS...'" in r.output
    assert write_report.calls == []


# ----------------------------------------------------------------------------- group
def test_version_and_commands():
    r = invoke("--version")
    assert r.exit_code == 0 and r.output == f"varcall, version {__version__}\n"
    r = invoke("-h")
    assert r.exit_code == 0
    for name in ("call", "concordance", "regions", "report", "simulate"):
        assert f"  {name} " in r.output


@pytest.mark.parametrize(
    ("args", "status", "stream", "text"),
    [
        (["--version"], 0, "stdout", "varcall, version"),
        (["call", "-f", "/nonexistent.fa", "--bam-list", "/nonexistent.txt", "-o", "x"], 2,
         "stderr", "varcall: error: /nonexistent.txt"),
        (["--no-such-option"], 2, "stderr", "No such option"),
    ],
)  # fmt: skip
def test_console_entry_exit_status_and_output(tmp_path, args, status, stream, text):
    """The console script (varcall.cli.main:entry, which ends the process with os._exit
    after the command) keeps the exit status and flushes what it printed into a pipe."""
    import subprocess
    import sys

    code = "import sys; from varcall.cli.main import entry; sys.argv = ['varcall'] + sys.argv[1:]; entry()"
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == status
    assert text in getattr(done, stream)
    assert "Traceback" not in done.stderr


# ----------------------------------------------------------------------------- usage errors
@pytest.mark.parametrize(
    ("args", "phrase", "where"),
    [
        (["call", "-f", "x.fa", "-o", "{file}", "a.bam"], "Directory", "varcall call"),
        (["call", "--bogus"], "No such option: --bogus", "varcall call"),
        (["nosuch"], "No such command 'nosuch'", "varcall"),
        (["simulate", "-o", "{tmp}/c", "--samples", "zero"], "--samples", "varcall simulate"),
    ],
)
def test_usage_errors_end_in_one_line(tmp_path, args, phrase, where):
    import subprocess
    import sys

    afile = tmp_path / "afile"
    afile.write_text("")
    argv = [a.format(file=afile, tmp=tmp_path) for a in args]
    code = "import sys; from varcall.cli.main import entry; sys.argv[0] = 'varcall'; entry()"
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("varcall: error: "), r.stderr
    assert phrase in r.stderr and f"see '{where} --help'" in r.stderr
    assert r.stdout == ""
