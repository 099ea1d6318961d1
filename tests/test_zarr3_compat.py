"""Our VCF Zarr store read by the zarr-3 tools: vcztools (>= 0.1.1) and bio2zarr (>= 0.1.8).

They need zarr >= 3.1, which cannot live beside sgkit 0.10 (zarr < 3), so they run from a
separate virtual environment, built once and cached (``VARCALL_ZARR3_VENV``, default
``~/.cache/varcall-zarr3-venv``). Building it needs PyPI access; without it the tests skip.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from _callsets import (
    CONTIGS,
    FILTER_IDS,
    SAMPLES,
    hand_callset,
    random_callset,
    same_records,
)

from varcall.core.callset import concat_callsets
from varcall.core.errors import InputError
from varcall.io.vcf_read import read_vcf
from varcall.io.vcz_read import read_vcz
from varcall.run.merge import write_outputs

pytestmark = pytest.mark.slow

VENV = Path(
    os.environ.get("VARCALL_ZARR3_VENV", Path.home() / ".cache" / "varcall-zarr3-venv")
).expanduser()
REQUIREMENTS = ["vcztools>=0.1.1", "bio2zarr[vcf]>=0.1.8", "zarr>=3.1"]

# Run inside the zarr-3 environment: a digest of every array of the store.
DIGEST_SCRIPT = r"""
import hashlib, json, sys
import numpy as np
import zarr
root = zarr.open_group(sys.argv[1], mode="r", zarr_format=2)
out = {"zarr": zarr.__version__, "attrs": dict(root.attrs), "arrays": {}}
for name, arr in root.arrays():
    data = arr[:]
    if data.dtype.kind in "OTU":
        raw = "\x1f".join(str(x) for x in data.ravel().tolist()).encode()
    else:
        raw = np.ascontiguousarray(data).tobytes()
    dims = arr.metadata.dimension_names if arr.metadata.zarr_format == 3 else arr.attrs.get("_ARRAY_DIMENSIONS")
    out["arrays"][name] = [list(data.shape), hashlib.sha256(raw).hexdigest(), list(dims)]
print(json.dumps(out))
"""


def _digest_here(path: Path) -> dict[str, list]:
    root = zarr.open_group(str(path), mode="r")
    out = {}
    for name, arr in root.arrays():
        data = arr[:]
        if data.dtype.kind in "OU":
            raw = "\x1f".join(str(x) for x in data.ravel().tolist()).encode()
        else:
            raw = np.ascontiguousarray(data).tobytes()
        out[name] = [
            list(data.shape),
            hashlib.sha256(raw).hexdigest(),
            arr.attrs["_ARRAY_DIMENSIONS"],
        ]
    return out


def _ready(venv: Path) -> bool:
    py = venv / "bin" / "python"
    if not py.exists():
        return False
    probe = subprocess.run(
        [
            str(py),
            "-c",
            "import zarr, vcztools, bio2zarr, cyvcf2; from packaging.version import Version as V; "
            "assert V(zarr.__version__) >= V('3.1') and V(vcztools.__version__) >= V('0.1.1')",
        ],
        capture_output=True,
        text=True,
    )
    return probe.returncode == 0


@pytest.fixture(scope="module")
def zarr3_venv() -> Path:
    if not _ready(VENV):
        VENV.parent.mkdir(parents=True, exist_ok=True)
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(VENV)],
            [str(VENV / "bin" / "pip"), "install", "-q", *REQUIREMENTS, "packaging"],
        ]
        for cmd in steps:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                pytest.skip(f"cannot build the zarr-3 venv at {VENV}: {tail[0]}")
        if not _ready(VENV):
            pytest.skip(f"the zarr-3 venv at {VENV} lacks {', '.join(REQUIREMENTS)}")
    return VENV


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    rng = np.random.default_rng(5)
    parts = [
        concat_callsets([hand_callset(), random_callset(rng, "chr1", 40, start=5000)]),
        random_callset(rng, "chr2", 25),
        random_callset(rng, "chrM", 15, length=1000, haploid=True),
    ]
    out = tmp_path_factory.mktemp("zarr3")
    result = write_outputs(
        out,
        parts,
        contigs=CONTIGS,
        samples=SAMPLES,
        filter_ids=FILTER_IDS,
        max_alleles=4,
        header_kwargs={"command_line": "varcall call zarr3-test"},
        chunk_size=9,
    )
    return result, parts


def _run(venv: Path, *args: str) -> str:
    proc = subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_vcztools_view_equals_our_vcf(zarr3_venv, merged, tmp_path):
    result, parts = merged
    out = tmp_path / "vcztools.vcf"
    _run(zarr3_venv, "vcztools", "view", "--no-version", "-o", str(out), str(result.vcz_path))
    theirs = list(read_vcf(out))
    ours = list(read_vcf(result.vcf_path))
    assert [c.contig for c in theirs] == [c.contig for c in ours] == ["chr1", "chr2", "chrM"]
    for a, b, part in zip(theirs, ours, parts):
        assert same_records(a, b)
        assert same_records(a, part)
    header = [line for line in out.read_text().splitlines() if line.startswith("##")]
    assert "##contig=<ID=chr1,length=10000>" in header
    assert "##varcallCommand=varcall call zarr3-test" in header


def test_vcztools_region_query(zarr3_venv, merged, tmp_path):
    result, parts = merged
    out = tmp_path / "region.vcf"
    _run(
        zarr3_venv, "vcztools", "view", "-r", "chr1:1000-6000", "-o", str(out), str(result.vcz_path)
    )
    (theirs,) = list(read_vcf(out))
    cs = parts[0]
    # bcftools -r semantics: records overlapping the region
    end = cs.position + np.char.str_len(cs.alleles[:, 0])
    assert same_records(theirs, cs.take((end > 999) & (cs.position < 6000)))


def test_zarr3_reads_every_array(zarr3_venv, merged):
    result, _ = merged
    out = json.loads(_run(zarr3_venv, "python", "-c", DIGEST_SCRIPT, str(result.vcz_path)))
    assert out["attrs"]["vcf_zarr_version"] == "0.4"
    assert out["arrays"] == _digest_here(result.vcz_path)


def test_bio2zarr_inspect(zarr3_venv, merged):
    result, _ = merged
    text = _run(zarr3_venv, "vcf2zarr", "inspect", str(result.vcz_path))
    for name in ("call_genotype", "call_PL", "variant_allele", "region_index"):
        assert f"/{name}" in text


def test_bio2zarr_store_reads_back(zarr3_venv, merged, tmp_path):
    """A store bio2zarr builds from our VCF reads (read_vcz) as the same records."""
    result, parts = merged
    store = tmp_path / "b2z.vcz"
    _run(zarr3_venv, "vcf2zarr", "convert", "--zarr-format", "2", str(result.vcf_path), str(store))
    back = list(read_vcz(store))
    assert [c.contig for c in back] == ["chr1", "chr2", "chrM"]
    for a, part in zip(back, parts):
        assert same_records(a, part)


def test_zarr3_format_store_is_a_clear_error(zarr3_venv, merged, tmp_path):
    result, _ = merged
    store = tmp_path / "v3.vcz"
    _run(zarr3_venv, "vcf2zarr", "convert", "--zarr-format", "3", str(result.vcf_path), str(store))
    with pytest.raises(InputError, match="Zarr format 3"):
        list(read_vcz(store))
