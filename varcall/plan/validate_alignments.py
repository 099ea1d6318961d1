"""Alignment file checks: format (BAM/CRAM, not truncated), header (coordinate-sorted,
contigs and M5 against the reference, read groups with samples), index (present, not
older than the file and, for a BAM, pointing at its reads; built on request), and sample
names unique across files."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pysam

from varcall.core.errors import InputError
from varcall.core.files import find_index
from varcall.plan import checks
from varcall.plan.index_check import index_mismatch
from varcall.plan.validate_reference import ReferenceMD5

__all__ = ["BGZF_EOF", "check_alignment_file", "unique_sample_names"]

logger = logging.getLogger(__name__)

#: The 28-byte empty BGZF block that ends every complete BAM / bgzip file (SAM spec 4.1.2).
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
_CRAM_MAGIC = b"CRAM"
_MD5_RE = re.compile(r"^[0-9a-fA-F]{32}$")


def _build_index(path: Path, longest_contig: int) -> None:
    if not checks.folder_writable(path.parent):
        raise InputError(
            f"{path}: cannot build the index, {path.parent} is not writable; "
            f"index it where you can write ('samtools index {path}')"
        )
    args = [str(path)]
    if path.suffix != ".cram" and longest_contig >= 2**29:
        args = ["-c", str(path)]  # BAI cannot address positions past 2^29 - 1
    logger.info("building index of %s", path)
    try:
        pysam.index(*args)
    except pysam.SamtoolsError as e:
        logger.debug("samtools index %s failed: %s", path, e)
        raise InputError(
            f"{path}: samtools index failed, the file is not coordinate-sorted or is damaged; "
            f"sort it with 'samtools sort -o sorted.bam {path}' and index that"
        ) from e


def _check_index(path: Path, build_index: bool, longest_contig: int) -> Path:
    index = find_index(path)
    ext = ".crai" if path.suffix == ".cram" else ".bai"
    if index is None:
        if not build_index:
            raise InputError(
                f"{path}: no index ({path.name}{ext}) found; run 'samtools index {path}' "
                f"or pass --index to build it"
            )
        _build_index(path, longest_contig)
        index = find_index(path)
        if index is None:  # pragma: no cover - samtools index wrote nothing
            raise InputError(f"{path}: indexing produced no index; run 'samtools index {path}'")
    elif index.stat().st_mtime < path.stat().st_mtime:
        if not build_index:
            raise InputError(
                f"{path}: index {index.name} is older than the file; re-run "
                f"'samtools index {path}' or pass --index to rebuild it"
            )
        index = _rebuild_index(path, index, longest_contig)
    return index


def _rebuild_index(path: Path, index: Path, longest_contig: int) -> Path:
    """Replace ``path``'s unusable ``index`` (stale or another file's) by a new one."""
    index.unlink()
    _build_index(path, longest_contig)
    new = find_index(path)
    assert new is not None
    return new


def check_alignment_file(
    path: str | Path,
    contigs: Sequence[tuple[str, int]],
    reference: str | Path,
    *,
    build_index: bool = False,
    reference_md5: ReferenceMD5 | None = None,
) -> list[str]:
    """Check one BAM/CRAM against the reference contigs; return its sample names (@RG SM
    in header order, unique; the file name without extension when there is no @RG).
    Reads only the header, the last bytes and the index (its presence and age; for a BAM
    also a block where it points, for a few references); ``build_index`` reads the whole
    file to build a missing, stale or foreign index."""
    path = Path(path)
    reference = Path(reference)
    checks.check_readable(path, "alignment file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty; give a coordinate-sorted BAM or CRAM file")
    kind = _file_kind(path)
    header = _read_header(path, kind, reference)
    # sort order: SO:unsorted/queryname is refused; a missing or "unknown" SO is taken on
    # trust of the index (samtools index refuses reads out of order)
    so = header.get("HD", {}).get("SO")
    if so in ("unsorted", "queryname"):
        raise InputError(
            f"{path}: not coordinate-sorted (@HD SO:{so}); run "
            f"'samtools sort -o {path.stem}.sorted.{kind.lower()} {path}' and index it"
        )
    sq = _check_contigs(path, kind, header, contigs, reference, reference_md5)
    names = _sample_names(path, header)
    # index: last, so an unsorted or foreign file is reported as such first
    longest = max(int(line.get("LN", 0)) for line in sq)
    index = _check_index(path, build_index, longest)
    if kind == "BAM":
        _check_index_matches(path, index, [int(line.get("LN", 0)) for line in sq], build_index)
    return names


def _check_index_matches(path: Path, index: Path, lengths: list[int], build_index: bool) -> None:
    """InputError when ``index`` is not the index of BAM ``path`` (another file's, copied
    beside it: :func:`varcall.plan.index_check.index_mismatch`); with ``build_index`` it is
    rebuilt instead."""
    problem = index_mismatch(path, index, lengths)
    if problem is None:
        return
    if not build_index:
        raise InputError(
            f"{path}: index {index.name} does not belong to this file (it {problem}); "
            f"re-run 'samtools index {path}' or pass --index to rebuild it"
        )
    _rebuild_index(path, index, max(lengths))


def _file_kind(path: Path) -> str:
    """The file's kind, ``BAM`` or ``CRAM``, from its first bytes; a BAM must be BGZF and
    end with the BGZF EOF block."""
    head = checks.head_bytes(path, 4)
    if head[:4] == _CRAM_MAGIC:
        kind = "CRAM"
    elif head[:2] == checks.GZIP_MAGIC:
        kind = "BAM"
        if not checks.is_bgzf(path):
            raise InputError(
                f"{path}: gzip-compressed but not BGZF, so not a BAM; give a BAM or CRAM file "
                f"('samtools view -b -o out.bam {path}')"
            )
        if checks.tail_bytes(path, len(BGZF_EOF)) != BGZF_EOF:
            raise InputError(
                f"{path}: BGZF end-of-file block missing, the file is truncated; copy or "
                f"re-create it completely (check with 'samtools quickcheck {path}')"
            )
    else:
        raise InputError(
            f"{path}: not a BAM or CRAM file (SAM text or another format); convert it with "
            f"'samtools sort -o {path.stem}.sorted.bam {path}' and index the result"
        )
    return kind


def _read_header(path: Path, kind: str, reference: Path) -> dict[str, Any]:
    """The file's header as pysam's dict; InputError when it cannot be read."""
    try:
        if kind == "CRAM":
            af = pysam.AlignmentFile(
                str(path), "rc", reference_filename=str(reference), check_sq=False
            )
        else:
            af = pysam.AlignmentFile(str(path), "rb", check_sq=False)
        with af:
            if kind == "CRAM" and not af.is_cram:  # pragma: no cover - defensive
                raise InputError(f"{path}: not a CRAM file; give a BAM or CRAM file")
            header = af.header.to_dict()
    except InputError:
        raise
    except (OSError, ValueError) as e:
        if "truncated" in str(e).lower():
            raise InputError(
                f"{path}: {kind} end-of-file marker missing, the file is truncated; copy or "
                f"re-create it completely (check with 'samtools quickcheck {path}')"
            ) from e
        raise InputError(
            f"{path}: cannot read the {kind} header ({checks.first_line(str(e))}); check the "
            f"file with 'samtools quickcheck {path}'"
        ) from e
    return header


def _check_contigs(
    path: Path,
    kind: str,
    header: dict[str, Any],
    contigs: Sequence[tuple[str, int]],
    reference: Path,
    reference_md5: ReferenceMD5 | None,
) -> list[dict[str, Any]]:
    """Every @SQ name and length is in the reference, and its M5 (when present and
    ``reference_md5`` is given) matches; returns the @SQ lines."""
    ref = dict(contigs)
    sq = header.get("SQ", [])
    if not sq:
        raise InputError(
            f"{path}: header has no @SQ lines (unaligned reads?); align the reads to the "
            f"reference ({reference}) first"
        )
    for line in sq:
        name, length = line.get("SN"), line.get("LN")
        if name not in ref:
            raise InputError(
                f"{path}: contig {name} (@SQ) is not in the reference {reference.name}; give "
                f"the reference the reads were aligned to (-f)"
            )
        if int(length) != ref[name]:
            raise InputError(
                f"{path}: contig {name} has length {length} in @SQ but {ref[name]} in the "
                f"reference {reference.name}; give the reference the reads were aligned to (-f)"
            )
        m5 = line.get("M5")
        if m5 and reference_md5 is not None:
            if not _MD5_RE.match(str(m5)):
                raise InputError(
                    f"{path}: @SQ {name} has a malformed M5 ({m5}); fix the header with "
                    f"'samtools reheader'"
                )
            if reference_md5(name, ref[name]) != str(m5).lower():
                what = "CRAM was encoded against" if kind == "CRAM" else "reads were aligned to"
                raise InputError(
                    f"{path}: contig {name} M5 {m5} differs from the MD5 of {name} in "
                    f"{reference.name} (the {what} another sequence); give the reference "
                    f"the file was made with (-f)"
                )
    return sq


def _sample_names(path: Path, header: dict[str, Any]) -> list[str]:
    """@RG SM in header order, unique; the file name without extension when there is no
    @RG. InputError when a read group has no SM."""
    names: list[str] = []
    for rg in header.get("RG", []):
        sm = rg.get("SM")
        if not sm:
            raise InputError(
                f"{path}: read group {rg.get('ID')} has no SM (sample); add one with "
                f"'samtools addreplacerg' or fix the header with 'samtools reheader'"
            )
        if sm not in names:
            names.append(sm)
    if not names:
        names = [path.name.split(".")[0]]
        logger.info("%s has no @RG; sample named %s after the file", path, names[0])
    return names


def unique_sample_names(
    per_file: Sequence[tuple[str | Path, Sequence[str]]], *, rename: bool = False
) -> list[str]:
    """Concatenate each file's samples in input order, requiring unique names across files.

    With ``rename``, a name already taken gets the first free suffix ``.2``, ``.3``, ...
    (deterministic: depends only on the input order). The result is in the order of
    ``per_file`` then each file's header order, so column ``i`` of the output is the
    ``i``-th (file, sample) pair.
    """
    taken: dict[str, str] = {}
    out: list[str] = []
    all_names = {s for _, names in per_file for s in names}
    for path, names in per_file:
        for sm in names:
            if sm not in taken:
                taken[sm] = str(path)
                out.append(sm)
                continue
            if not rename:
                where = taken[sm]
                if where == str(path):
                    raise InputError(f"{path}: file given twice; give each BAM/CRAM once")
                raise InputError(
                    f"{path}: sample {sm} is also in {where}; give each sample once, rename it "
                    f"(samtools addreplacerg -r 'SM:NEW') or pass --rename-duplicate-samples"
                )
            k = 2
            while f"{sm}.{k}" in taken or f"{sm}.{k}" in all_names:
                k += 1
            new = f"{sm}.{k}"
            logger.warning(
                "%s: sample %s renamed to %s (--rename-duplicate-samples)", path, sm, new
            )
            taken[new] = str(path)
            out.append(new)
    return out
