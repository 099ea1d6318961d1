"""Reference checks: the FASTA and its ``.fai`` (built when missing or stale), and the MD5
of its contigs (compared with @SQ M5 of the alignment files), cached between runs."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
from pathlib import Path

import pysam

from varcall.core.errors import InputError
from varcall.core.files import read_fai, write_text_atomic
from varcall.plan import checks

__all__ = ["check_reference", "md5_cache_dir", "ReferenceMD5"]

logger = logging.getLogger(__name__)

_MD5_CHUNK = 8 * 1024 * 1024


def check_reference(reference: str | Path) -> tuple[tuple[str, int], ...]:
    """Check the reference FASTA and its index; build the .fai when missing or older than
    the FASTA and the folder is writable. Returns (name, length in bp) per contig, in
    reference order."""
    reference = Path(reference)
    checks.check_readable(reference, "reference")
    head = checks.head_bytes(reference, 4096)
    if not head:
        raise InputError(f"{reference}: reference is empty; give a FASTA file (-f)")
    if head[:2] == checks.GZIP_MAGIC:
        if not checks.is_bgzf(reference):
            raise InputError(
                f"{reference}: reference is gzip-compressed, which cannot be indexed; "
                f"recompress it with 'gunzip -c {reference} | bgzip > ref.fa.gz' or decompress it"
            )
        with gzip.open(reference, "rb") as fh:
            head = fh.read(4096)
    first = head.lstrip()[:1]
    if first != b">":
        raise InputError(
            f"{reference}: not a FASTA file (does not start with '>'); give the reference "
            f"FASTA the reads were aligned to (-f)"
        )
    fai = Path(f"{reference}.fai")
    gzi = Path(f"{reference}.gzi")
    mtime = reference.stat().st_mtime
    stale = fai.is_file() and fai.stat().st_mtime < mtime
    no_gzi = checks.is_bgzf(reference) and not gzi.is_file()
    if not fai.is_file() or stale or no_gzi:
        why = "is older than the FASTA" if stale else "is missing"
        index = fai
        if no_gzi and fai.is_file() and not stale:
            index = gzi
        if not checks.folder_writable(reference.parent):
            raise InputError(
                f"{reference}: reference index {index.name} {why} and {reference.parent} is not "
                f"writable; run 'samtools faidx {reference}' where you can write, or copy the "
                f"reference to a writable folder"
            )
        logger.info("building reference index %s (%s)", index, why)
        try:
            pysam.faidx(str(reference))
        except pysam.SamtoolsError as e:
            raise InputError(
                f"{reference}: cannot index the reference ({checks.first_line(str(e))}); "
                f"check that it is a valid FASTA with unique names and equal line lengths per sequence"
            ) from e
    return read_fai(reference)


def md5_cache_dir() -> Path:
    """Where reference contig MD5s are kept between runs: ``$VARCALL_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/varcall``, else ``~/.cache/varcall``."""
    if os.environ.get("VARCALL_CACHE_DIR"):
        return Path(os.environ["VARCALL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "varcall"


class ReferenceMD5:
    """MD5 of reference contigs (upper-case, as in SAM @SQ M5), computed on demand.

    Computed values are kept in a small JSON file under :func:`md5_cache_dir`, valid for one
    version of the reference (absolute path, size, modification time), so a human genome's
    contigs are hashed once (about 30 s), not at every run. A cache that cannot be read or
    written is ignored."""

    def __init__(self, reference: Path) -> None:
        self.reference = reference
        self._fasta: pysam.FastaFile | None = None
        st = reference.stat()
        self._key = {"path": str(reference.absolute()), "size": st.st_size,
                     "mtime_ns": st.st_mtime_ns}  # fmt: skip
        name = hashlib.sha256(self._key["path"].encode()).hexdigest()[:24]
        self._file = md5_cache_dir() / f"reference-md5-{name}.json"
        self._cache: dict[str, str] = self._load()
        self._dirty = False

    def _load(self) -> dict[str, str]:
        try:
            doc = json.loads(self._file.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(doc, dict) or doc.get("reference") != self._key:
            return {}
        md5 = doc.get("md5")
        return dict(md5) if isinstance(md5, dict) else {}

    def __call__(self, contig: str, length: int) -> str:
        if contig not in self._cache:
            if self._fasta is None:
                self._fasta = pysam.FastaFile(str(self.reference))
            h = hashlib.md5()
            for start in range(0, length, _MD5_CHUNK):
                seq = self._fasta.fetch(contig, start, min(length, start + _MD5_CHUNK))
                h.update(seq.upper().encode("ascii"))
            self._cache[contig] = h.hexdigest()
            self._dirty = True
        return self._cache[contig]

    def close(self) -> None:
        if self._fasta is not None:
            self._fasta.close()
            self._fasta = None
        if self._dirty:
            self._dirty = False
            try:
                self._file.parent.mkdir(parents=True, exist_ok=True)
                write_text_atomic(
                    self._file, json.dumps({"reference": self._key, "md5": self._cache})
                )
            except OSError as e:
                logger.debug("cannot write the MD5 cache %s: %s", self._file, e)
