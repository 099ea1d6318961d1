"""The context-manager protocol shared by the writers that build an output under temporary
names and rename it into place only when complete (:class:`~varcall.io.vcf_write.VcfWriter`,
:class:`~varcall.io.vcz.VczWriter`)."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import TypeVar

__all__ = ["StagedWriter"]

logger = logging.getLogger(__name__)

_W = TypeVar("_W", bound="StagedWriter")


class StagedWriter:
    """Base of a writer staged under temporary names: :meth:`commit` renames the finished
    output into place, :meth:`abort` removes the temporaries (the destination is left
    untouched). Used as a context manager it commits on a clean exit and aborts when the
    ``with`` block raises. Subclasses set ``_closed`` (False until committed or aborted)."""

    _closed: bool

    def commit(self) -> None:
        """Finish the output and rename it into place."""
        raise NotImplementedError

    def abort(self) -> None:
        """Remove the temporaries; the destination is left untouched."""
        raise NotImplementedError

    def close(self) -> None:
        """Finish and rename into place."""
        if not self._closed:
            self.commit()

    def __enter__(self: _W) -> _W:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
