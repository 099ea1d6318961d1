"""Input validation before any task is submitted: headers and indexes, never reads.

Every failure raises :class:`varcall.errors.InputError` with one line naming the file,
what is wrong and the fix; the CLI exits with code 2 and nothing is created at the
destination.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from varcall.engines import CallInputs
from varcall.errors import InputError
from varcall.inputs import resolve_inputs

__all__ = ["validate_call"]


def validate_call(
    reference: Path,
    bams: Sequence[Path],
    out: Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    build_index: bool = False,
    rename_duplicate_samples: bool = False,
) -> CallInputs:
    """Check everything a `varcall call` reads and writes; return the resolved inputs.

    The output folder may exist only with ``overwrite`` (replaced at the end) or ``resume``
    (its checkpoints are reused).
    """
    if Path(out).exists() and not (overwrite or resume):
        raise InputError(
            f"{out}: output folder exists; pass --overwrite to replace it or --resume to continue it"
        )
    for p in [reference, *bams]:
        if not Path(p).is_file():
            raise InputError(f"{p}: file not found; check the path")
    return resolve_inputs(reference, bams)
