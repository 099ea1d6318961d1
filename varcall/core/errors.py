"""Errors the CLI turns into one-line messages (exit code 2 for bad input)."""

from __future__ import annotations

__all__ = ["VarcallError", "InputError", "RegionError", "DamagedInputError"]


class VarcallError(Exception):
    """Base class: a failure with a message fit for the user (one line, names file and fix)."""

    exit_code = 1


class InputError(VarcallError, ValueError):
    """A problem with what the user gave us: a file, an option, a region. Exit code 2."""

    exit_code = 2


class RegionError(VarcallError):
    """A region failed while running (names the region and the file)."""

    exit_code = 1


class DamagedInputError(RegionError):
    """A region failed because an input file is damaged (names the file and the region):
    bad input, exit code 2, although finished regions are kept for ``--resume``."""

    exit_code = 2
