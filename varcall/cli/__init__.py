"""The ``varcall`` command line (click): parses options, calls the library, reports."""

from varcall.cli.main import entry, main

__all__ = ["entry", "main"]
