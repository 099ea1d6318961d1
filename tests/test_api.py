"""The Python API (``varcall.call``, ``varcall.open_dataset``, ``varcall.concordance``):
the same runs, options and checks as the CLI, identical results however the work is spread,
and ``import varcall`` light enough for any notebook.

On ``small_cohort`` (3 samples, 2 contigs x 40 kb): a single-process run, a run on the
caller's own ``distributed.Client`` (thread workers) and one on varcall's own single-worker
LocalCluster give the same records; bad options fail before anything is written.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

import varcall
from varcall.api import CALL_OPTIONS, _region_args
from varcall.core.errors import InputError
from varcall.core.regions import Region

VOLATILE = ("##fileDate", "##varcallCommand")


def bams_of(cohort: Path) -> list[Path]:
    return [cohort / line for line in (cohort / "bams.txt").read_text().split()]


def vcf_lines(out: Path) -> list[str]:
    with gzip.open(out / "calls.vcf.gz", "rt") as fh:
        return [ln for ln in fh.read().splitlines() if not ln.startswith(VOLATILE)]


@pytest.fixture(scope="module")
def single(small_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("api") / "single"
    varcall.call(small_cohort / "reference.fa", bams_of(small_cohort), out, single_process=True)
    return out


def test_import_varcall_is_light() -> None:
    code = (
        "import sys, varcall; heavy = [m for m in ('dask', 'distributed', 'numba', 'sgkit',"
        " 'xarray', 'zarr', 'pysam') if m in sys.modules]; print(heavy);"
        " assert callable(varcall.call) and callable(varcall.open_dataset)"
        " and callable(varcall.concordance)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert {"call", "open_dataset", "concordance"} <= set(dir(varcall))
    with pytest.raises(AttributeError):
        varcall.no_such_name  # noqa: B018


def test_call_on_the_callers_client_equals_single_process(
    small_cohort: Path, single: Path, client, tmp_path: Path
) -> None:
    out = tmp_path / "dist"
    result = varcall.call(
        str(small_cohort / "reference.fa"),
        [str(b) for b in bams_of(small_cohort)],
        str(out),
        client=client,
        region_count=5,
    )
    assert result.out == out.resolve() or result.out == out
    assert result.mode == "distributed" and result.n_units >= 5
    assert vcf_lines(out) == vcf_lines(single)
    assert result.n_variants == sum(1 for ln in vcf_lines(single) if not ln.startswith("#"))
    assert client.status == "running"  # not closed by varcall

    ds = varcall.open_dataset(out)
    assert dict(ds.sizes)["variants"] == result.n_variants
    assert list(ds["sample_id"].values) == ["S01", "S02", "S03"]
    ds_store = varcall.open_dataset(out / "calls.vcz")
    assert ds_store.sizes == ds.sizes


def test_call_own_cluster_options_and_regions(small_cohort: Path, tmp_path: Path) -> None:
    """workers=1 (a thread worker of varcall's own LocalCluster), a region restriction and
    CLI options by their underscore names give the single-process result of the same."""
    ref, bams = small_cohort / "reference.fa", bams_of(small_cohort)
    opts = {"min_mapq": 30, "ploidy_contig": {"chr2": 1}, "regions": ["chr1:5001-25000", "chr2"]}
    one = varcall.call(ref, bams, tmp_path / "one", single_process=True, **opts)
    dist = varcall.call(ref, bams, tmp_path / "dist", workers=1, region_size=7000, **opts)
    assert dist.n_units > one.n_units
    assert vcf_lines(tmp_path / "dist") == vcf_lines(tmp_path / "one")
    assert dist.manifest.params["min_mapq"] == 30  # type: ignore[index]
    positions = varcall.open_dataset(tmp_path / "dist")["variant_position"].values
    assert len(positions) == dist.n_variants


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"min_mapqq": 30}, TypeError, "did you mean 'min_mapq'"),
        ({"min_mapq": "30"}, TypeError, "min_mapq='30': expected int"),
        ({"min_mapq": -1}, InputError, "--min-mapq -1: out of range"),
        ({"ploidy": 3}, InputError, "--ploidy 3: out of range"),
        ({"workers": 0}, InputError, "--workers 0: out of range"),
        ({"ploidy_contig": ["chrY=3"]}, InputError, "expected CONTIG=1 or CONTIG=2"),
        ({"worker_type": "gpu"}, InputError, "choose auto, process or thread"),
        ({"single_process": True, "workers": 2}, InputError, "--single-process runs without"),
        ({"scheduler": "tcp://h:1", "cluster": "slurm"}, InputError, "both given"),
        ({"engine": "gatk"}, InputError, "gatk"),
        ({"regions": ["nochr:1-10"]}, InputError, "nochr"),
        ({"regions": [1, 2]}, TypeError, "regions: expected region strings"),
    ],
)
def test_bad_options_fail_before_anything_is_written(
    small_cohort: Path, tmp_path: Path, options: dict, error: type, match: str
) -> None:
    out = tmp_path / "out"
    with pytest.raises(error, match=match):
        varcall.call(small_cohort / "reference.fa", bams_of(small_cohort), out, **options)
    assert not out.exists()


def test_client_with_workers_is_refused(small_cohort: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="client= given with workers"):
        varcall.call(
            small_cohort / "reference.fa", bams_of(small_cohort), tmp_path / "o",
            client=object(), workers=2,
        )  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_a_missing_bam_is_the_clis_one_line_error(small_cohort: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing.bam") as info:
        varcall.call(small_cohort / "reference.fa", small_cohort / "missing.bam", tmp_path / "o")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "o").exists()


def test_every_cli_call_option_is_a_keyword() -> None:
    from varcall.cli.call import call as call_command

    positional_or_named = {"reference", "bams", "out", "engine", "workers", "verbose"}
    regions = {"region_strings", "regions_bed"}  # the API's `regions=`
    cli_only = {"bam_list"}  # read the list yourself: Path(...).read_text().split()
    names = {p.name for p in call_command.params} - positional_or_named - regions - cli_only
    assert names - CALL_OPTIONS == set()


def test_region_args() -> None:
    assert _region_args(None) == {}
    assert _region_args("chr1:1-100") == {"region_strings": ("chr1:1-100",)}
    assert _region_args(["chr1", "chr2:5-9"]) == {"region_strings": ("chr1", "chr2:5-9")}
    assert _region_args("plan.bed") == {"regions_bed": Path("plan.bed")}
    assert _region_args(Path("plan.txt")) == {"regions_bed": Path("plan.txt")}
    r = Region("chr1", 0, 10)
    assert _region_args([r]) == {"regions": [r]}


def test_open_dataset_refuses_what_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        varcall.open_dataset(tmp_path / "nothing")
    (tmp_path / "unfinished" / "work").mkdir(parents=True)
    with pytest.raises(InputError, match="no calls.vcz"):
        varcall.open_dataset(tmp_path / "unfinished")


def test_concordance(small_cohort: Path, single: Path, tmp_path: Path) -> None:
    ref, truth = small_cohort / "reference.fa", small_cohort / "truth.vcf.gz"
    m = varcall.concordance(single, single, reference=ref, qc=False)
    assert m["identity"]["identical"] is True
    out = tmp_path / "conc"
    t = varcall.concordance(
        single, reference=ref, truth=truth, bed=small_cohort / "confident.bed", out=out, qc=False
    )
    assert "identity" not in t and t["inputs"]["B"] is None
    assert set(t["truth"]) == {"A"}
    assert t["truth"]["A"]["SNP"]["recall"] > 0.9
    assert (out / "metrics.json").is_file() and not (out / "discordant.tsv").exists()
    with pytest.raises(InputError, match="give b"):
        varcall.concordance(single, reference=ref)
