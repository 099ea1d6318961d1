"""A bgzipped VCF written in pieces: each piece by its own process, joined by a byte copy.

BGZF (SAM spec section 4.1) is a series of independent gzip members; a file is valid
when it ends with the 28-byte empty EOF block. So pieces of a VCF can be compressed apart
(:class:`PieceWriter`: BGZF blocks without the EOF block, e.g. by the encode tasks of a
parallel merge, one piece per range of records) and joined by copying their bytes, in
order, after a header piece and before one EOF block (:class:`VcfAssembler`). The joined
file decompresses to the text the pieces were given, in order. Its TBI index is built by
htslib from the records' places the piece writers noted (:mod:`varcall.io.vcf_index`:
the same bytes as ``tabix -p vcf``, without reading the file back); a CSI index (a contig
of 2^29 bp or more), or pieces without their entries, by tabix over the joined file.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from varcall.core.callset import CallSet
from varcall.core.files import temporary_name
from varcall.io.staged import StagedWriter
from varcall.io.vcf_header import header_contigs
from varcall.io.vcf_index import IndexEntries, piece_entries, write_tbi
from varcall.io.vcf_write import format_bytes

__all__ = ["BGZF_EOF", "PieceWriter", "VcfAssembler"]

logger = logging.getLogger(__name__)

#: The empty BGZF block that ends every BGZF file (SAM spec section 4.1.2).
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
#: Contigs longer than this need a CSI index (TBI cannot address them).
_TBI_MAX_LENGTH = 2**29 - 1


def _bgzf_mode(compress_level: int | None) -> str:
    if compress_level is not None and not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level must be 0..9, not {compress_level}")
    return "wb" if compress_level is None else f"wb{compress_level}"


class PieceWriter:
    """Write BGZF blocks of VCF text to ``path`` (no EOF block: a piece of a larger file).

    compress_level: BGZF deflate level 0-9 (None: htslib's default). format_fields: as
    :func:`varcall.io.vcf_write.format_bytes`. :meth:`close` removes the EOF block htslib
    writes; an empty piece is an empty file."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        compress_level: int | None = None,
        format_fields: Sequence[str] | None = None,
    ) -> None:
        import pysam

        self.path = Path(path)
        self.format_fields = None if format_fields is None else tuple(format_fields)
        self._fh = pysam.BGZFile(str(self.path), _bgzf_mode(compress_level))
        self.n_records = 0
        self._text = 0  # inflated bytes written
        self._runs: list[tuple[str, int]] = []
        self._beg: list[np.ndarray] = []
        self._end: list[np.ndarray] = []
        self._line_ends: list[np.ndarray] = []

    def write_text(self, data: bytes) -> None:
        """Append raw text (e.g. the header); no records (:meth:`index_entries`)."""
        self._fh.write(data)
        self._text += len(data)

    def write(self, callset: CallSet) -> None:
        """Append the VCF data lines of ``callset``."""
        if callset.n_variants:
            data = format_bytes(callset, self.format_fields)
            self._fh.write(data)
            newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
            if newlines.size != callset.n_variants:
                raise ValueError(f"{callset.n_variants} records formatted as {newlines.size} lines")
            self._line_ends.append(self._text + newlines + 1)
            self._text += len(data)
            self.n_records += callset.n_variants
            if self._runs and self._runs[-1][0] == callset.contig:
                self._runs[-1] = (callset.contig, self._runs[-1][1] + callset.n_variants)
            else:
                self._runs.append((callset.contig, callset.n_variants))
            self._beg.append(callset.position.astype(np.int64))
            self._end.append(callset.position + np.char.str_len(callset.alleles[:, 0]))

    def index_entries(self) -> IndexEntries:
        """The tabix entries of the records written, after :meth:`close`."""
        if not self._runs:
            return IndexEntries.empty()
        return piece_entries(
            self.path, self._runs, np.concatenate(self._beg), np.concatenate(self._end),
            np.concatenate(self._line_ends),
        )  # fmt: skip

    def close(self) -> None:
        """Flush the last block and cut the EOF block off the file."""
        self._fh.close()
        size = self.path.stat().st_size
        with open(self.path, "r+b") as fh:
            fh.seek(size - len(BGZF_EOF))
            if size < len(BGZF_EOF) or fh.read() != BGZF_EOF:
                raise OSError(f"{self.path}: BGZF piece does not end in an EOF block")
            fh.truncate(size - len(BGZF_EOF))
            fh.flush()
            os.fsync(fh.fileno())

    def abort(self) -> None:
        """Close and remove the piece."""
        try:
            self._fh.close()
        except Exception:  # noqa: BLE001 - best effort while already failing
            pass
        self.path.unlink(missing_ok=True)


class VcfAssembler(StagedWriter):
    """A bgzipped, indexed VCF (``.vcf.gz`` / ``.vcf.bgz`` + ``.tbi``, or ``.csi`` when a
    contig is longer than 2^29-1 bp) joined from pieces.

    :attr:`pieces` is a temporary folder beside ``path`` where other processes write the
    pieces (:meth:`piece_path`, :class:`PieceWriter`); :meth:`finish` joins the header and
    the pieces (a byte copy) into a temporary file and indexes it, :meth:`commit` renames
    file and index into place, :meth:`abort` removes every temporary (the destination is
    left untouched)."""

    def __init__(
        self, path: str | os.PathLike, header: str, *, compress_level: int | None = None
    ) -> None:
        self.path = Path(path)
        if not self.path.name.endswith((".vcf.gz", ".vcf.bgz")):
            raise ValueError(f"{self.path}: a VCF joined from pieces is .vcf.gz or .vcf.bgz")
        self.header = header
        self.compress_level = compress_level
        _bgzf_mode(compress_level)
        lengths = [n for _, n in header_contigs(header) if n is not None]
        self.csi = any(n > _TBI_MAX_LENGTH for n in lengths)
        ext = ".csi" if self.csi else ".tbi"
        self.index_path = self.path.with_name(self.path.name + ext)
        self._tmp = temporary_name(self.path)
        self._tmp_index = self._tmp.with_name(self._tmp.name + ext)
        # a ".NAME.tmp-PID-*" name: a killed run's pieces go with its other temporaries
        self.pieces = self._tmp.with_name(self._tmp.name + ".pieces")
        self.pieces.mkdir()
        self._finished = False
        self._closed = False

    def piece_path(self, i: int) -> Path:
        """Where piece ``i`` (0-based, joined in order) is written."""
        return self.pieces / f"{i:06d}.bgzf"

    def finish(self, n_pieces: int, entries: Sequence[IndexEntries] | None = None) -> None:
        """Join the header and pieces ``0 .. n_pieces-1`` into the temporary file and build
        its index (nothing renamed yet): from ``entries`` (each piece's
        :meth:`PieceWriter.index_entries`, in order) when given and the index is TBI,
        else by tabix over the joined file."""
        import pysam

        if self._finished:
            return
        head = PieceWriter(self.pieces / "header.bgzf", compress_level=self.compress_level)
        head.write_text(self.header.encode())
        head.close()
        starts = []
        with open(self._tmp, "wb") as out:
            for piece in [head.path, *(self.piece_path(i) for i in range(n_pieces))]:
                starts.append(out.tell())
                with open(piece, "rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 22)
            data_end = out.tell()
            out.write(BGZF_EOF)
            out.flush()
            os.fsync(out.fileno())
        if entries is not None and not self.csi:
            if len(entries) != n_pieces:
                raise ValueError(f"{len(entries)} pieces' index entries for {n_pieces} pieces")
            write_tbi(self._tmp_index, starts[1] if n_pieces else data_end,
                      list(zip(starts[1:], entries)), data_end)  # fmt: skip
        else:
            pysam.tabix_index(
                str(self._tmp), preset="vcf", force=True, csi=self.csi, index=str(self._tmp_index)
            )
        shutil.rmtree(self.pieces, ignore_errors=True)
        self._finished = True

    def commit(self) -> None:
        """Rename the finished file and index into place (index first)."""
        if not self._finished:
            raise ValueError("VcfAssembler.commit before finish")
        os.replace(self._tmp_index, self.index_path)
        os.replace(self._tmp, self.path)
        for ext in (".tbi", ".csi"):  # an index of an earlier run would no longer match
            other = self.path.with_name(self.path.name + ext)
            if other != self.index_path and other.exists():
                other.unlink()
        self._closed = True
        logger.info("wrote %s", self.path)

    def abort(self) -> None:
        """Remove the pieces and the temporaries; the destination is left untouched."""
        shutil.rmtree(self.pieces, ignore_errors=True)
        for p in (self._tmp, self._tmp_index):
            p.unlink(missing_ok=True)
        self._closed = True
