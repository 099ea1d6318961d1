"""Progress of a run on stderr (a rich progress bar)."""

from __future__ import annotations

import logging

__all__ = ["ProgressReporter"]

logger = logging.getLogger(__name__)


class ProgressReporter:
    """A rich progress bar on stderr: regions done / total, variants found, ETA.
    Disabled (no output) when ``enabled`` is False."""

    def __init__(self, total: int, *, enabled: bool = True, description: str = "regions"):
        self.enabled = enabled
        self.variants = 0
        self._progress = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.console = Console(stderr=True)
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[variants]:,} variants"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._task = self._progress.add_task(description, total=total, variants=0)

    def print(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(message, highlight=False, markup=False)

    def __enter__(self) -> ProgressReporter:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, n_variants: int, n: int = 1) -> None:
        self.variants += n_variants
        if self._progress is not None:
            self._progress.update(self._task, advance=n, variants=self.variants)
