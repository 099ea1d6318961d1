"""Output minimisation for patient data: --format-fields, --sites-only,
--pseudonymise-key / --pseudonym-map and --redact-paths (varcall.core.privacy)."""

from __future__ import annotations

import gzip
import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from varcall.cli.main import main
from varcall.core.errors import InputError
from varcall.core.privacy import (
    OutputOptions,
    Privacy,
    parse_format_fields,
    pseudonym,
    read_key,
    resolve_privacy,
)
from varcall.io.vcf_write import format_bytes
from varcall.simulate.cohort import simulate_cohort
from varcall.simulate.config import SimulationConfig

CONFIG = SimulationConfig(n_samples=2, n_contigs=2, contig_length=20_000, coverage=10.0, seed=3)
SAMPLES = ("S01", "S02")


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate_cohort(tmp_path_factory.mktemp("tiny") / "cohort", CONFIG)


def _key(path: Path, secret: str) -> Path:
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("keys")
    return _key(d / "k1", "first secret"), _key(d / "k2", "second secret")


def _call(tiny: Path, out: Path, *args: Any) -> Any:
    return invoke("call", "-f", tiny / "reference.fa", "--bam-list", tiny / "bams.txt", "-o", out,
                  *args)  # fmt: skip


MINIMISED = ("--format-fields", "GT", "--redact-paths")


@pytest.fixture(scope="module")
def minimised(tiny: Path, keys: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    """A single-process and a distributed (2 thread workers) minimised run, same key."""
    d = tmp_path_factory.mktemp("runs")
    single = d / "single"
    r = _call(tiny, single, "--single-process", *MINIMISED, "--pseudonymise-key", keys[0],
              "--pseudonym-map", d / "map.json")  # fmt: skip
    assert r.exit_code == 0, r.output
    dist = d / "dist"
    r = _call(tiny, dist, "--workers", "2", "--worker-type", "thread", "--region-count", "5",
              *MINIMISED, "--pseudonymise-key", keys[0])  # fmt: skip
    assert r.exit_code == 0, r.output
    return single, dist, d / "map.json"


def _vcf_lines(out: Path) -> list[str]:
    with gzip.open(out / "calls.vcf.gz", "rt") as fh:
        return fh.read().splitlines()


def _records(out: Path) -> list[str]:
    skip = ("##fileDate", "##varcallCommand")
    return [line for line in _vcf_lines(out) if not line.startswith(skip)]


# ----------------------------------------------------------------------------- units
def test_pseudonym_stable_and_keyed() -> None:
    a = pseudonym(b"k1", "S01")
    assert a == pseudonym(b"k1", "S01")
    assert a.startswith("P-") and len(a) == 10
    assert a != pseudonym(b"k2", "S01")
    assert a != pseudonym(b"k1", "S02")


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=20), st.binary(min_size=1, max_size=16))
def test_pseudonym_never_contains_the_name(name: str, key: bytes) -> None:
    p = pseudonym(key, name)
    assert p == pseudonym(key, name)
    assert len(p) == 10 and all(c in "0123456789abcdef" for c in p[2:])


def test_parse_format_fields() -> None:
    assert parse_format_fields("GQ,GT") == ("GT", "GQ")
    assert parse_format_fields("GT,GQ,DP,AD,PL") == ("GT", "GQ", "DP", "AD", "PL")
    with pytest.raises(InputError, match="unknown"):
        parse_format_fields("GT,XX")
    with pytest.raises(InputError, match="GT is required"):
        parse_format_fields("GQ")


def test_key_must_not_be_group_readable(tmp_path: Path) -> None:
    k = _key(tmp_path / "k", "s")
    assert read_key(k) == b"s"
    k.chmod(0o640)
    with pytest.raises(InputError, match="chmod 600"):
        read_key(k)


def test_redaction_of_texts() -> None:
    p = Privacy(OutputOptions(redact_paths=True), {"S01": "P-1"}, ("myhost",))
    assert p.path("/home/alice/data/S01.bam") == "P-1.bam"
    assert p.text("read /home/alice/x.fa on myhost") == "read x.fa on redacted"
    assert "node17" not in p.text("tcp://node17:8786")
    assert p.text("single-process@myhost:12").startswith("single-process@host-")
    cmd = p.command_line("varcall call -f /a/ref.fa -o /b/out --pseudonymise-key /k/key")
    assert cmd == "varcall call -f ref.fa -o out --pseudonymise-key redacted"


def test_default_options_change_nothing() -> None:
    p = resolve_privacy(None, SAMPLES, "out")
    assert p.samples(SAMPLES) == SAMPLES
    assert p.command_line("varcall call -f /a/ref.fa") == "varcall call -f /a/ref.fa"
    assert p.path("/a/ref.fa") == "/a/ref.fa"


def test_format_bytes_fields(tiny: Path) -> None:
    from varcall.core.params import CallParams
    from varcall.core.regions import Region
    from varcall.engines import get_engine
    from varcall.plan.inputs import resolve_inputs

    inputs = resolve_inputs(tiny / "reference.fa", sorted(tiny.glob("*.bam")))
    cs = get_engine("native").call_region(inputs, Region("chr1", 0, 20_000), CallParams())
    full = format_bytes(cs).decode().splitlines()
    assert format_bytes(cs, ("GT", "GQ", "DP", "AD", "PL")).decode().splitlines() == full
    gt = format_bytes(cs, ("GT",)).decode().splitlines()
    gq = format_bytes(cs, ("GT", "GQ")).decode().splitlines()
    sites = format_bytes(cs, ()).decode().splitlines()
    for f, g, q, s in zip(full, gt, gq, sites):
        cols = f.split("\t")
        assert g.split("\t") == cols[:8] + ["GT"] + [c.split(":")[0] for c in cols[9:]]
        assert q.split("\t") == cols[:8] + ["GT:GQ"] + [":".join(c.split(":")[:2]) for c in cols[9:]]
        assert s.split("\t") == cols[:8]  # AC/AN stay in INFO


# ----------------------------------------------------------------------------- runs
def _all_bytes(out: Path) -> list[tuple[Path, bytes]]:
    """Every file under ``out`` as the bytes it holds once decompressed: gzip/BGZF files
    inflated, a Zarr store's chunks as their arrays' values (a short word such as a 2-letter
    host name turns up in compressed bytes by chance), its metadata as written."""
    found = []
    stores = {p.parent for p in out.rglob(".zgroup")}
    for p in sorted(out.rglob("*")):
        if not p.is_file():
            continue
        if any(store in p.parents for store in stores):
            if p.name.startswith("."):
                found.append((p, p.read_bytes()))
            continue
        data = p.read_bytes()
        found.append((p, gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data))
    for store in stores:
        root = zarr.open_group(str(store), mode="r")
        for name, arr in root.arrays():
            values = arr[...]
            if values.dtype == object:  # strings: their text (tobytes would be pointers)
                found.append((store / name, "\t".join(map(str, values.ravel().tolist())).encode()))
            else:
                found.append((store / name, values.tobytes()))
    return found


def test_minimised_run_has_gt_only_and_no_names_or_paths(minimised, tiny: Path) -> None:
    single, _, mapping = minimised
    lines = _vcf_lines(single)
    assert not any(line.startswith("##FORMAT") and "ID=GT" not in line for line in lines)
    header = lines[[i for i, x in enumerate(lines) if x.startswith("#CHROM")][0]].split("\t")
    data = [x for x in lines if not x.startswith("#")]
    assert data and all(x.split("\t")[8] == "GT" for x in data)
    assert all(h.startswith("P-") for h in header[9:])
    root = zarr.open_group(str(single / "calls.vcz"), mode="r")
    assert list(root["sample_id"][:]) == header[9:]
    assert not {"call_GQ", "call_DP", "call_AD", "call_PL"} & set(root.array_keys())
    forbidden = [*SAMPLES, str(tiny.parent.parent), str(Path.home()), socket.gethostname()]
    forbidden = [f for f in forbidden if len(f) > 1]
    for path, content in _all_bytes(single):
        for word in forbidden:
            for enc in ("utf-8", "utf-32-le"):  # npz holds numpy unicode (UTF-32)
                assert word.encode(enc) not in content, (path, word)
    assert stat.S_IMODE(mapping.stat().st_mode) == 0o600
    assert sorted(json.loads(mapping.read_text()).values()) == list(SAMPLES)
    doc = json.loads((single / "manifest.json").read_text())
    assert doc["output_options"] == {
        "format_fields": ["GT"], "sites_only": False, "pseudonymised": True, "redact_paths": True
    }  # fmt: skip


def test_distributed_equals_single_minimised(minimised) -> None:
    single, dist, _ = minimised
    assert _records(single) == _records(dist)
    a = zarr.open_group(str(single / "calls.vcz"), mode="r")
    b = zarr.open_group(str(dist / "calls.vcz"), mode="r")
    assert sorted(a.array_keys()) == sorted(b.array_keys())
    for name in a.array_keys():
        np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=name)


def test_same_key_same_pseudonyms_other_key_different(minimised, tiny, keys, tmp_path) -> None:
    single = minimised[0]
    again = tmp_path / "again"
    assert _call(tiny, again, "--single-process", "--pseudonymise-key", keys[0]).exit_code == 0
    other = tmp_path / "other"
    assert _call(tiny, other, "--single-process", "--pseudonymise-key", keys[1]).exit_code == 0

    def names(out: Path) -> list[str]:
        return [x for x in _vcf_lines(out) if x.startswith("#CHROM")][0].split("\t")[9:]

    assert names(again) == names(single)
    assert not set(names(other)) & set(names(single))


def test_group_readable_key_exit_2_nothing_written(tiny: Path, tmp_path: Path) -> None:
    k = _key(tmp_path / "k", "s")
    k.chmod(0o644)
    out = tmp_path / "out"
    r = _call(tiny, out, "--single-process", "--pseudonymise-key", k)
    assert r.exit_code == 2
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "chmod 600" in lines[0] and "Traceback" not in r.output
    assert not out.exists()


def test_pseudonym_map_inside_out_refused(tiny: Path, keys, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = _call(tiny, out, "--single-process", "--pseudonymise-key", keys[0],
              "--pseudonym-map", out / "map.json")  # fmt: skip
    assert r.exit_code == 2 and "outside OUT" in r.output
    assert not out.exists()


def test_sites_only(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "sites"
    assert _call(tiny, out, "--single-process", "--sites-only").exit_code == 0
    lines = _vcf_lines(out)
    assert [x for x in lines if x.startswith("#CHROM")][0].split("\t")[-1] == "INFO"
    data = [x for x in lines if not x.startswith("#")]
    assert data and all(len(x.split("\t")) == 8 and "AN=" in x for x in data)
    root = zarr.open_group(str(out / "calls.vcz"), mode="r")
    assert not [n for n in root.array_keys() if n.startswith("call_")]
    assert root["sample_id"].shape == (0,) and "variant_AC" in root


def test_concordance_and_report_on_minimised(minimised, tiny, keys, tmp_path) -> None:
    single, dist, _ = minimised
    conc = tmp_path / "conc"
    r = invoke("concordance", "-f", tiny / "reference.fa", "--truth", tiny / "truth.vcf.gz",
               "--pseudonymise-key", keys[0], single, dist, "-o", conc)  # fmt: skip
    assert r.exit_code == 0, r.output
    m = json.loads((conc / "metrics.json").read_text())
    assert m["identity"]["identical"]
    assert m["truth"]["A"]["SNP"]["TP"] > 0
    assert m["inputs"]["A"]["missing_format_fields"] == ["GQ", "DP", "AD", "PL"]
    html = tmp_path / "report.html"
    r = invoke("report", single, dist, "--concordance", conc, "-o", html)
    assert r.exit_code == 0, r.output
    assert "missing GQ, DP, AD, PL" in html.read_text()


def test_default_run_unchanged_header(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "default"
    assert _call(tiny, out, "--single-process").exit_code == 0
    lines = _vcf_lines(out)
    assert [x for x in lines if x.startswith("#CHROM")][0].split("\t")[9:] == list(SAMPLES)
    assert sum(x.startswith("##FORMAT") for x in lines) == 5
    assert any(x.startswith("##reference=file:///") for x in lines)
    assert os.sep in json.loads((out / "manifest.json").read_text())["inputs"]["reference"]["path"]
