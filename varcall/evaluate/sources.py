"""What an evaluation input is: a run folder, a VCF Zarr store or a VCF file."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from varcall.core.errors import InputError, VarcallError
from varcall.core.manifest import Manifest, read_manifest

__all__ = [
    "ResolvedInput",
    "resolve_input",
    "as_vcf",
]


@dataclasses.dataclass(frozen=True)
class ResolvedInput:
    """An input made concrete: the variant file to read and, for run folders, the manifest.

    path: what the user gave. vcf: a VCF/VCF.gz/BCF file, or None when only a VCF Zarr store
    is there. vcz: the VCF Zarr store, when there is one. manifest: the run's manifest for
    varcall run folders (or files inside one), else None.
    """

    path: Path
    vcf: Path | None
    vcz: Path | None
    manifest: Manifest | None


def _is_vcz(path: Path) -> bool:
    return path.is_dir() and any(
        (path / name).exists() for name in (".zgroup", ".zattrs", "zarr.json")
    )


def resolve_input(path: str | os.PathLike) -> ResolvedInput:
    """Work out what ``path`` is: a run folder, a VCF Zarr store, or a VCF/VCF.gz/BCF file."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: not found; give a VCF, VCF.gz, BCF, VCF Zarr store or run folder")
    if p.is_dir() and not _is_vcz(p):
        manifest = read_manifest(p)
        vcf = p / "calls.vcf.gz"
        vcz = p / "calls.vcz"
        if not vcf.is_file() and not _is_vcz(vcz):
            raise InputError(
                f"{p}: folder holds neither calls.vcf.gz nor calls.vcz; "
                "give a varcall run folder or a variant file"
            )
        return ResolvedInput(
            p, vcf if vcf.is_file() else None, vcz if _is_vcz(vcz) else None, manifest
        )
    if _is_vcz(p):
        manifest = read_manifest(p.parent) if p.name == "calls.vcz" else None
        return ResolvedInput(p, None, p, manifest)
    name = p.name.lower()
    if not name.endswith((".vcf", ".vcf.gz", ".vcf.bgz", ".bcf")):
        raise InputError(
            f"{p}: unknown variant file type; give a .vcf, .vcf.gz, .bcf or a VCF Zarr store"
        )
    manifest = read_manifest(p.parent) if name.startswith("calls.") else None
    vcz = p.parent / "calls.vcz" if manifest is not None else None
    return ResolvedInput(p, p, vcz if vcz is not None and _is_vcz(vcz) else None, manifest)


def as_vcf(resolved: ResolvedInput, workdir: Path, label: str) -> Path:
    """A VCF/BCF file for ``resolved``; VCF Zarr stores are exported to ``workdir``."""
    if resolved.vcf is not None:
        return resolved.vcf
    assert resolved.vcz is not None
    try:
        from varcall.io.vcz_read import vcz_to_vcf
    except ImportError as e:  # the dataset module is part of the package; this is a broken install
        raise VarcallError(
            f"{resolved.vcz}: reading VCF Zarr needs varcall.io.vcz ({e}); reinstall varcall"
        ) from e
    out = workdir / f"{label}.from_vcz.vcf.gz"
    vcz_to_vcf(resolved.vcz, out)
    return out
