"""The VCF Zarr array spec (varcall.io.vcz_spec): declared once, and the README's table of
the store lists exactly its arrays (names and dims, in order)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from varcall.io.vcz_spec import ALLELE_DIMS, VCZ_ARRAYS, array_dtype

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_arrays() -> list[tuple[str, tuple[str, ...]]]:
    """(name, dims) of each row of the README's VCF Zarr array table."""
    text = README.read_text()
    start = text.index("| array | dims | dtype | content |")
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        names = re.findall(r"`([^`]+)`", cells[0])
        dims = tuple(d.strip() for d in cells[1].split(",") if d.strip())
        rows.extend((name, dims) for name in names)
    return rows


def test_readme_table_lists_the_spec_arrays() -> None:
    assert _readme_arrays() == [(spec.name, spec.dims) for spec in VCZ_ARRAYS]


def test_spec_is_consistent() -> None:
    names = [spec.name for spec in VCZ_ARRAYS]
    assert len(set(names)) == len(names)
    for spec in VCZ_ARRAYS:
        if spec.written == "append":
            assert spec.dims[0] == "variants" and spec.rows is not None
            assert spec.description
        else:
            assert "variants" not in spec.dims and spec.values is not None
        assert spec.shuffle in ("byte", "bit", "none")
        assert all(d not in ALLELE_DIMS for d in spec.dims[:-1])


def test_contig_dtype_fits_the_contigs() -> None:
    spec = VCZ_ARRAYS[0]
    assert spec.name == "variant_contig"
    assert array_dtype(spec, 2) == np.int8
    assert array_dtype(spec, 127) == np.int8
    assert array_dtype(spec, 128) == np.int16
    assert array_dtype(spec, 40_000) == np.int32
