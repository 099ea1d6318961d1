"""Output checks: the output folder may exist only when asked to replace or resume it, and
the output and work folders can be created and have room for the expected output."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from varcall.core.errors import InputError
from varcall.plan.checks import folder_writable, nearest_existing

__all__ = ["OUTPUT_FRACTION", "OUTPUT_FLOOR_BYTES", "estimate_output_bytes", "check_output"]

#: Output size estimate: this fraction of the alignment files' size, plus a floor.
OUTPUT_FRACTION = 0.01
OUTPUT_FLOOR_BYTES = 16 * 1024 * 1024


def estimate_output_bytes(bams: Sequence[str | Path]) -> int:
    """Expected size in bytes of a run's output: 1% of the alignment files plus a floor."""
    total = sum(Path(b).stat().st_size for b in bams)
    return int(total * OUTPUT_FRACTION) + OUTPUT_FLOOR_BYTES


def check_output(
    out: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    work_dir: str | Path | None = None,
    needed_bytes: int = 0,
) -> None:
    """The output folder may exist only with ``overwrite`` or ``resume``; the output and
    work folders can be created (nearest existing parent writable) and have
    ``needed_bytes`` free. Creates nothing."""
    out = Path(out)
    if overwrite and resume:
        raise InputError(
            f"{out}: --overwrite and --resume both given; pass --resume to continue a run "
            f"or --overwrite to start again"
        )
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise InputError(
                f"{out}: output path exists and is not a folder; give a new folder path (-o)"
            )
        if not (overwrite or resume):
            raise InputError(
                f"{out}: output folder exists; pass --overwrite to replace it or --resume "
                f"to continue it"
            )
    folders = [out] if work_dir is None else [out, Path(work_dir)]
    for folder in folders:
        base = nearest_existing(folder)
        if not base.is_dir():
            raise InputError(
                f"{folder}: {base} is a file, so the folder cannot be created; choose another path"
            )
        if not folder_writable(base):
            raise InputError(f"{folder}: {base} is not writable; choose a folder you can write to")
        free = shutil.disk_usage(base).free
        if free < needed_bytes:
            raise InputError(
                f"{folder}: only {free / 2**20:.0f} MiB free on {base}, the run needs about "
                f"{needed_bytes / 2**20:.0f} MiB; free some space or write elsewhere"
            )
