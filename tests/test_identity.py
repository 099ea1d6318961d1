"""The headline promise: a distributed run gives exactly the single-process result, for any
region layout, any number of workers, process or thread workers.

On the ``small_cohort`` fixture (3 samples, 2 contigs x 40 kb, variants planted on, just
before and across 10,000 / 20,000 / 30,000 on chr1) with the native engine, every run is
compared with ``--single-process``: the VCF records and header (``##fileDate`` and
``##varcallCommand`` aside) and every array of the VCF Zarr store (with its attributes,
the same header lines aside), and the per-contig digests of the manifest.

The matrix: 1, 2, 7 and 50 regions x 1 and 2 workers x process and thread workers (one
LocalCluster of each kind, shared by the module); boundaries exactly on, one before and
one after the planted variants; random layouts (hypothesis); the CLI paths (own cluster,
``--scheduler``, a BED layout); resume and overwrite; the default cohort (``slow``).
"""

from __future__ import annotations

import difflib
import gzip
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from _sexcohort import LENGTHS as SEX_LENGTHS
from _sexcohort import PAR_END, build_sex_cohort
from _sexcohort import SAMPLES as SEX_SAMPLES
from click.testing import CliRunner
from conftest import SMALL_COHORT_CONFIG
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scale_data import StallingEngine

from varcall.cli.main import main
from varcall.core.errors import InputError
from varcall.core.params import CallParams
from varcall.core.regions import Region, read_bed_regions
from varcall.engines import get_engine
from varcall.engines.native.stutter import TABLE_LEN
from varcall.run.clusters import ClusterSpec, open_client
from varcall.run.pipeline import run_call

VOLATILE = ("##fileDate", "##varcallCommand")
CONTIG_LENGTH = SMALL_COHORT_CONFIG.contig_length


def bams_of(cohort: Path) -> list[Path]:
    return [cohort / line for line in (cohort / "bams.txt").read_text().split()]


def _stable_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if not ln.startswith(VOLATILE)]


def vcf_lines(out: Path) -> list[str]:
    with gzip.open(out / "calls.vcf.gz", "rt") as fh:
        return _stable_lines(fh.read())


def zarr_content(out: Path) -> dict:
    """Every array (values, dtype, shape, chunks, attributes) and the root attributes."""
    root = zarr.open_group(str(out / "calls.vcz"), mode="r")
    doc = {}
    for name, arr in root.arrays():
        doc[name] = (arr[...], str(arr.dtype), arr.shape, arr.chunks, dict(arr.attrs))
    attrs = {}
    for k, v in root.attrs.asdict().items():
        if isinstance(v, str):
            v = _stable_lines(v)
        elif isinstance(v, list):
            v = [
                x for x in v if not (isinstance(x, list) and x and f"##{x[0]}".startswith(VOLATILE))
            ]
            v = [x for x in v if not (isinstance(x, str) and x.startswith(VOLATILE))]
        attrs[k] = v
    doc["__attrs__"] = attrs
    return doc


def assert_same_output(a: Path, b: Path) -> None:
    va, vb = vcf_lines(a), vcf_lines(b)
    if va != vb:
        diff = list(difflib.unified_diff(va, vb, str(a), str(b), lineterm="", n=0))
        raise AssertionError(f"VCF differs between {a} and {b}:\n" + "\n".join(diff[:20]))
    za, zb = zarr_content(a), zarr_content(b)
    assert za.keys() == zb.keys()
    assert za.pop("__attrs__") == zb.pop("__attrs__")
    for name in za:
        xa, xb = za[name], zb[name]
        assert xa[1:] == xb[1:], name
        if xa[0].dtype.kind == "f":
            assert np.array_equal(xa[0], xb[0], equal_nan=True), name
        else:
            assert np.array_equal(xa[0], xb[0]), name
    ma = json.loads((a / "manifest.json").read_text())
    mb = json.loads((b / "manifest.json").read_text())
    assert ma["contig_digests"] == mb["contig_digests"]
    assert ma["n_variants"] == mb["n_variants"]
    # the native engine's stutter table is estimated once per run, whatever the plan
    assert ma["params"]["stutter_table"] == mb["params"]["stutter_table"]


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def single(small_cohort, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "out"
    run_call(small_cohort / "reference.fa", bams_of(small_cohort), out, mode="single")
    return out


@pytest.fixture(scope="module")
def proc2():
    with open_client(ClusterSpec(workers=2, processes=True)) as client:
        yield client


@pytest.fixture(scope="module")
def thread2():
    with open_client(ClusterSpec(workers=2, processes=False)) as client:
        yield client


@pytest.fixture(scope="module")
def proc1():
    with open_client(ClusterSpec(workers=1, processes=True)) as client:
        yield client


@pytest.fixture(scope="module")
def thread1():
    with open_client(ClusterSpec(workers=1, processes=False)) as client:
        yield client


def planted_layout(shift: int = 0) -> list[Region]:
    """Region boundaries exactly on the planted positions (``shift`` 0), or one base after
    them (``shift`` 1: the planted variant is the last base of the region before)."""
    cuts = [p + shift for p in SMALL_COHORT_CONFIG.boundary_positions]
    edges = [0, *cuts, CONTIG_LENGTH]
    chr1 = [Region("chr1", a, b) for a, b in zip(edges, edges[1:])]
    return [*chr1, Region("chr2", 0, 20_000), Region("chr2", 20_000, CONTIG_LENGTH)]


def _distributed(cohort, out, client, **kw):
    return run_call(cohort / "reference.fa", bams_of(cohort), out, client=client, **kw)


# ----------------------------------------------------------------------------- the matrix
def test_single_process_calls_the_planted_variants(single, small_cohort):
    lines = [ln for ln in vcf_lines(single) if not ln.startswith("#")]
    assert len(lines) > 50
    positions = {(ln.split("\t")[0], int(ln.split("\t")[1])) for ln in lines}
    # variants are planted on the boundaries (VCF POS = 0-based + 1)
    near = [
        p
        for p in SMALL_COHORT_CONFIG.boundary_positions
        if any(("chr1", q) in positions for q in range(p - 2, p + 4))
    ]
    assert near == list(SMALL_COHORT_CONFIG.boundary_positions)
    manifest = json.loads((single / "manifest.json").read_text())
    assert manifest["mode"] == "single" and manifest["n_units"] == 2


@pytest.mark.parametrize("count", [1, 2, 7, 50])
@pytest.mark.parametrize("workers", ["proc2", "thread2", "proc1", "thread1"])
def test_region_counts_and_workers(small_cohort, single, request, tmp_path, workers, count):
    """1, 2, 7 and 50 regions x 1 and 2 workers x process and thread workers."""
    out = tmp_path / "out"
    client = request.getfixturevalue(workers)
    assert len(client.scheduler_info()["workers"]) == int(workers[-1])
    result = _distributed(small_cohort, out, client, region_count=count)
    assert result.n_units == max(count, 2)
    assert len(
        read_bed_regions(out / "regions.bed", [("chr1", CONTIG_LENGTH), ("chr2", CONTIG_LENGTH)])
    ) == max(count, 2)
    assert_same_output(single, out)


@pytest.mark.parametrize("shift", [0, 1, -1])
def test_boundaries_on_planted_variants(small_cohort, single, proc2, tmp_path, shift):
    out = tmp_path / "out"
    _distributed(small_cohort, out, proc2, regions=planted_layout(shift))
    assert_same_output(single, out)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cuts=st.lists(
        st.tuples(st.sampled_from(["chr1", "chr2"]), st.integers(1, CONTIG_LENGTH - 1)),
        max_size=12,
        unique=True,
    )
)
def test_random_layouts(small_cohort, single, thread2, cuts):
    """Any layout: region boundaries anywhere (drawn by hypothesis), thread workers."""
    layout = []
    for name in ("chr1", "chr2"):
        edges = [0, *sorted(p for c, p in cuts if c == name), CONTIG_LENGTH]
        layout += [Region(name, a, b) for a, b in zip(edges, edges[1:])]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        _distributed(small_cohort, out, thread2, regions=layout)
        assert_same_output(single, out)


@pytest.fixture(scope="module")
def sex_single(tmp_path_factory) -> tuple[Path, Path]:
    """(cohort with sex chromosomes, its single-process run with sexes and PARs)."""
    cohort = build_sex_cohort(tmp_path_factory.mktemp("sex") / "cohort")
    out = cohort.parent / "single"
    run_call(cohort / "reference.fa", _sex_bams(cohort), out, mode="single",
             params=_sex_params(cohort))  # fmt: skip
    return cohort, out


def _sex_bams(cohort: Path) -> list[Path]:
    return [cohort / f"{s}.bam" for s in SEX_SAMPLES]


def _sex_params(cohort: Path) -> CallParams:
    return CallParams(par_bed=str(cohort / "par.bed"), samples_file=str(cohort / "sexes.txt"))


@pytest.mark.parametrize("shift", [0, 1, -1])
def test_sexes_and_pars_split_at_the_par_boundary(sex_single, proc2, tmp_path, shift):
    """Mixed-ploidy records (males haploid on chrX outside the PAR, diploid inside;
    females without chrY): a distributed run with region boundaries on, just before and
    after the PAR boundary equals the single-process run."""
    cohort, single_out = sex_single
    layout = [Region("chr1", 0, SEX_LENGTHS["chr1"])]
    for contig in ("chrX", "chrY"):
        edges = [0, PAR_END + shift, 6_000 + shift, SEX_LENGTHS[contig]]
        layout += [Region(contig, a, b) for a, b in zip(edges, edges[1:])]
    out = tmp_path / "out"
    run_call(cohort / "reference.fa", _sex_bams(cohort), out, client=proc2, regions=layout,
             params=_sex_params(cohort))  # fmt: skip
    assert_same_output(single_out, out)
    assert any("\t1:" in ln for ln in vcf_lines(out)), "haploid calls in the output"


def test_thread_workers_planted(small_cohort, single, thread2, tmp_path):
    out = tmp_path / "out"
    _distributed(small_cohort, out, thread2, regions=planted_layout(0))
    assert_same_output(single, out)


def test_one_process_worker_cli(small_cohort, single, tmp_path):
    """One worker process, through the CLI (its own LocalCluster), 7 regions."""
    out = tmp_path / "out"
    res = CliRunner().invoke(
        main,
        [
            "call",
            "-f",
            str(small_cohort / "reference.fa"),
            "--bam-list",
            str(small_cohort / "bams.txt"),
            "-o",
            str(out),
            "--workers",
            "1",
            "--worker-type",
            "process",
            "--region-count",
            "7",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "7 regions" in res.output
    assert_same_output(single, out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cluster"]["workers"] == 1 and manifest["cluster"]["processes"]
    assert manifest["cluster"]["dashboard"] == ""  # no dashboard without --dashboard
    assert len({u["worker"] for u in manifest["units"]}) == 1


def test_one_thread_worker_cli_planted(small_cohort, single, tmp_path):
    """One thread worker (``--worker-type auto`` with one worker), through the CLI,
    boundaries on the planted variants via a BED."""
    bed = tmp_path / "layout.bed"
    bed.write_text("".join(f"{r.contig}\t{r.start}\t{r.end}\n" for r in planted_layout(0)))
    out = tmp_path / "out"
    res = CliRunner().invoke(
        main,
        [
            "call",
            "-f",
            str(small_cohort / "reference.fa"),
            *map(str, bams_of(small_cohort)),
            "-o",
            str(out),
            "--workers",
            "1",
            "--regions",
            str(bed),
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert read_bed_regions(
        out / "regions.bed", [("chr1", CONTIG_LENGTH), ("chr2", CONTIG_LENGTH)]
    ) == planted_layout(0)
    assert_same_output(single, out)
    cluster = json.loads((out / "manifest.json").read_text())["cluster"]
    assert cluster["workers"] == 1 and cluster["processes"] is False


def test_existing_scheduler_cli(small_cohort, single, thread2, tmp_path):
    """--scheduler ADDRESS: the run uses that scheduler's workers (and leaves them running)."""
    out = tmp_path / "out"
    address = thread2.scheduler.address
    res = CliRunner().invoke(
        main,
        [
            "call",
            "-f",
            str(small_cohort / "reference.fa"),
            "--bam-list",
            str(small_cohort / "bams.txt"),
            "-o",
            str(out),
            "--scheduler",
            address,
            "--region-count",
            "5",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert_same_output(single, out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cluster"]["kind"] == "scheduler"
    assert manifest["cluster"]["scheduler_address"] == address
    assert {u["worker"].split("@")[1] for u in manifest["units"]} <= set(
        thread2.scheduler_info()["workers"]
    )
    assert thread2.status == "running"


# ----------------------------------------------------------------------------- run behaviour
def test_default_plan_gives_every_worker_work(small_cohort, single, proc2, tmp_path):
    out = tmp_path / "out"
    result = _distributed(small_cohort, out, proc2)
    assert result.n_units == 3 * 2  # 3 regions per worker slot, 80 kb << 5 Mb
    assert result.manifest.planning.regions_planned == 6
    assert_same_output(single, out)


def test_manifest_and_audit(small_cohort, proc2, tmp_path):
    out = tmp_path / "out"
    _distributed(small_cohort, out, proc2, region_count=3, command_line="varcall call test")
    m = json.loads((out / "manifest.json").read_text())
    assert m["mode"] == "distributed" and m["engine"]["name"] == "native"
    recorded = dict(m["params"])
    assert len(recorded.pop("stutter_table")) == TABLE_LEN  # estimated once, before the regions
    assert recorded == {
        k: v for k, v in json.loads(json.dumps(CallParams().as_dict())).items()
        if k != "stutter_table"
    }  # fmt: skip
    assert [a["path"] for a in m["inputs"]["alignments"]] == [
        str(p.resolve()) for p in bams_of(small_cohort)
    ]
    assert all(a["size"] > 0 and a["index"] for a in m["inputs"]["alignments"])
    assert {"numpy", "dask", "distributed", "pysam", "zarr"} <= set(m["versions"])
    assert len(m["units"]) == 3
    for u in m["units"]:
        assert u["attempts"] == 1 and not u["resumed"] and len(u["digest"]) == 64
        assert u["seconds"] >= 0 and "127.0.0.1" in u["worker"]
    assert sum(u["n_variants"] for u in m["units"]) == m["n_variants"]
    assert m["timing"]["wall_seconds"] > 0 and m["throughput"]["bp_per_second"] > 0
    # the merge: its serial part in the client, its encode tasks on the workers
    assert m["timing"]["merge_seconds"] >= 0 and m["timing"]["encode_seconds"] > 0
    assert m["manifest_version"] == 2
    audit = [json.loads(x) for x in (out / "audit.jsonl").read_text().splitlines()]
    assert len(audit) == 3 and {a["outcome"] for a in audit} == {"ok"}
    paths = [x["path"] for x in m["inputs"]["alignments"]]
    assert all(a["bams"] == paths and a["start"] <= a["end"] for a in audit)
    with gzip.open(out / "calls.vcf.gz", "rt") as fh:
        assert "##varcallCommand=varcall call test" in fh.read()
    # only this run's checkpoints are in work/
    names = {p.name.split(".")[0] for p in (out / "work").iterdir()}
    assert names == {u["key"] for u in m["units"]}


def test_resume_reuses_checkpoints_and_overwrite(small_cohort, single, proc2, tmp_path):
    out = tmp_path / "out"
    _distributed(small_cohort, out, proc2, region_count=5)
    first = {p.name: p.stat().st_mtime_ns for p in (out / "work").glob("*.npz")}
    # an existing output folder needs --resume or --overwrite
    with pytest.raises(InputError, match="--overwrite"):
        _distributed(small_cohort, out, proc2, region_count=5)
    # drop two checkpoints: resume recomputes just those
    lost = sorted(first)[:2]
    for name in lost:
        (out / "work" / name).unlink()
    _distributed(small_cohort, out, proc2, region_count=5, resume=True)
    m = json.loads((out / "manifest.json").read_text())
    assert sum(u["resumed"] for u in m["units"]) == 3
    again = {p.name: p.stat().st_mtime_ns for p in (out / "work").glob("*.npz")}
    assert again.keys() == first.keys()
    assert sorted(n for n in first if again[n] != first[n]) == lost
    assert_same_output(single, out)
    # --overwrite with another layout: recomputed, old checkpoints pruned
    _distributed(small_cohort, out, proc2, region_count=2, overwrite=True)
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["units"]) == 2 and not any(u["resumed"] for u in m["units"])
    assert len(list((out / "work").glob("*.npz"))) == 2
    assert_same_output(single, out)


def test_straggler_copy_changes_nothing(small_cohort, single, thread2, tmp_path):
    """A region made to straggle gets a second copy on the other worker, whose result
    wins: the outputs are the single-process ones, the audit lists both attempts, and a
    --resume reuses every checkpoint (the first attempt, let go after the run, found the
    copy's checkpoint and wrote nothing)."""
    markers, out, slow = tmp_path / "markers", tmp_path / "out", "chr1:10001-20000"
    markers.mkdir()
    engine = StallingEngine(str(markers), [slow], inner=get_engine("native"), seconds=120.0)
    kw = {"regions": planted_layout(), "engine": engine, "pack": False}
    try:
        result = _distributed(
            small_cohort, out, thread2, straggler_factor=2.0, straggler_min_seconds=1.0, **kw
        )
    finally:
        engine.release()
    assert_same_output(single, out)
    m = result.manifest
    assert m.planning.speculation == {"enabled": True, "factor": 2.0, "min_seconds": 1.0}
    unit = {u.region: u for u in m.units}[slow]
    assert unit.speculated and unit.attempts == 2
    audit = [json.loads(x) for x in (out / "audit.jsonl").read_text().splitlines()]
    tried = [(a.get("copy", 0), a["outcome"]) for a in audit if a["region"] == slow]
    assert tried == [(0, "cancelled"), (1, "won")]
    events = out / "work" / f"{unit.key}.audit.jsonl"
    for _ in range(400):
        if json.loads(events.read_text().splitlines()[-1])["event"] == "cancelled":
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the released first attempt did not end")
    again = _distributed(small_cohort, out, thread2, resume=True, **kw)
    assert all(u.resumed for u in again.manifest.units)
    assert_same_output(single, out)


def test_single_process_resume(small_cohort, single, tmp_path):
    out = tmp_path / "out"
    run_call(small_cohort / "reference.fa", bams_of(small_cohort), out, mode="single")
    run_call(small_cohort / "reference.fa", bams_of(small_cohort), out, mode="single", resume=True)
    m = json.loads((out / "manifest.json").read_text())
    assert all(u["resumed"] for u in m["units"])
    assert_same_output(single, out)


def test_restricted_run(small_cohort, single, thread2, tmp_path):
    """-r restricts both modes to the same records: those of the full run inside it."""
    out_d, out_s = tmp_path / "d", tmp_path / "s"
    restrict = ["chr1:9001-21000"]
    _distributed(small_cohort, out_d, thread2, region_count=4, region_strings=restrict)
    run_call(
        small_cohort / "reference.fa",
        bams_of(small_cohort),
        out_s,
        mode="single",
        region_strings=restrict,
    )
    assert_same_output(out_s, out_d)
    full = [ln for ln in vcf_lines(single) if not ln.startswith("#")]
    inside = [
        ln for ln in full if ln.startswith("chr1\t") and 9001 <= int(ln.split("\t")[1]) <= 21000
    ]
    assert [ln for ln in vcf_lines(out_d) if not ln.startswith("#")] == inside
    assert read_bed_regions(out_d / "regions.bed", [("chr1", CONTIG_LENGTH)])[0].start == 9000


def test_bad_input_creates_nothing(small_cohort, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(
        main,
        [
            "call",
            "-f",
            str(small_cohort / "reference.fa"),
            str(tmp_path / "none.bam"),
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 2 and "none.bam" in res.output
    assert not out.exists()
    res = CliRunner().invoke(
        main,
        [
            "call",
            "-f",
            str(small_cohort / "reference.fa"),
            *map(str, bams_of(small_cohort)),
            "-o",
            str(out),
            "-r",
            "chrQ:1-5",
        ],
    )
    assert res.exit_code == 2 and "chrQ" in res.output
    assert not out.exists()
    res = CliRunner().invoke(
        main,
        [
            "call",
            "-f",
            str(small_cohort / "reference.fa"),
            *map(str, bams_of(small_cohort)),
            "-o",
            str(out),
            "--single-process",
            "--scheduler",
            "tcp://127.0.0.1:1",
        ],
    )
    assert res.exit_code == 2 and "--single-process" in res.output
    assert not out.exists()
    res = CliRunner().invoke(
        main,
        [
            "call",
            "-f",
            str(small_cohort / "reference.fa"),
            *map(str, bams_of(small_cohort)),
            "-o",
            str(out),
            "--scheduler",
            "tls://127.0.0.1:1",
        ],
    )
    assert res.exit_code == 2 and "tls://127.0.0.1:1" in res.output, res.output
    assert not out.exists()
    # planning fails after the background cluster started: it is shut down, nothing created
    res = CliRunner().invoke(
        main,
        [
            "call",
            "-f",
            str(small_cohort / "reference.fa"),
            *map(str, bams_of(small_cohort)),
            "-o",
            str(out),
            "--region-size",
            "10",
            "--region-count",
            "2",
            "--workers",
            "1",
        ],
    )
    assert res.exit_code == 2 and "use one of them" in res.output, res.output
    assert not out.exists()
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_default_cohort_identity(cohort, proc2, tmp_path):
    """The same check on the larger default cohort (2 x 200 kb, 30x), 13 and 40 regions."""
    single_out = tmp_path / "single"
    run_call(cohort / "reference.fa", bams_of(cohort), single_out, mode="single")
    for count in (13, 40):
        out = tmp_path / f"d{count}"
        _distributed(cohort, out, proc2, region_count=count)
        assert_same_output(single_out, out)
