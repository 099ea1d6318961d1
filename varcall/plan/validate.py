"""Input validation before any task is submitted: headers and indexes, never reads.

Every failure raises :class:`varcall.core.errors.InputError` with one line
``<file>: <what is wrong>; <the fix>``; the CLI prints ``varcall: error: ...`` and exits
with code 2. Validation never creates anything at the output path. The only files it may
write are indexes the user asked for (``--index`` for BAM/CRAM) and a missing reference
``.fai`` (built beside the reference when that folder is writable).

Checks, in order:

- output: the folder does not exist unless ``overwrite`` or ``resume``; its nearest existing
  parent (and the work folder's) is writable and has room for the estimated output;
- reference: exists, readable, an uncompressed or bgzip-compressed FASTA, indexed (.fai
  newer than the FASTA), the .fai well formed;
- each BAM/CRAM: exists, readable, not empty, BAM or CRAM (not SAM text), BGZF EOF block
  present (not truncated), coordinate-sorted, every @SQ name and length in the reference,
  @SQ M5 (when present) equal to the MD5 of that reference contig, every read group has a
  sample, an index not older than the file (``build_index`` builds missing/stale ones);
- samples: unique across files (``rename_duplicate_samples`` renames S -> S.2, S.3, ...);
- regions: strings (``chr``, ``chr:start-end``, 1-based inclusive) and BED files (0-based
  half-open) name known contigs and lie within them (parsed by :mod:`varcall.plan.regions`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import struct
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pysam

from varcall.core.errors import InputError
from varcall.core.params import CallInputs
from varcall.core.regions import Region, parse_region_string, read_bed_regions

__all__ = [
    "BGZF_EOF",
    "validate_call",
    "check_reference",
    "check_alignment_file",
    "check_output",
    "unique_sample_names",
    "validate_regions",
    "estimate_output_bytes",
    "find_index",
    "diagnose_region",
    "check_cluster",
    "SUBMIT_COMMANDS",
    "md5_cache_dir",
]

logger = logging.getLogger(__name__)

#: The 28-byte empty BGZF block that ends every complete BAM / bgzip file (SAM spec 4.1.2).
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
_GZIP_MAGIC = b"\x1f\x8b"
_CRAM_MAGIC = b"CRAM"
#: Output size estimate: this fraction of the alignment files' size, plus a floor.
OUTPUT_FRACTION = 0.01
OUTPUT_FLOOR_BYTES = 16 * 1024 * 1024
_MD5_CHUNK = 8 * 1024 * 1024
_MD5_RE = re.compile(r"^[0-9a-fA-F]{32}$")


# ----------------------------------------------------------------------------- files
def _check_readable(path: Path, what: str) -> None:
    """``path`` is an existing, readable, regular file."""
    if not path.exists():
        raise InputError(f"{path}: {what} not found; check the path")
    if path.is_dir():
        raise InputError(f"{path}: {what} is a folder, not a file; give the file's path")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: {what} is not readable; fix its permissions (chmod a+r)")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as e:
        raise InputError(f"{path}: {what} cannot be read ({e.strerror}); check the file") from e


def _head(path: Path, n: int) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def _tail(path: Path, n: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - n))
        return fh.read(n)


def _is_bgzf(path: Path) -> bool:
    """True when the file starts with a BGZF block header (gzip + the 'BC' extra field)."""
    head = _head(path, 18)
    return (
        len(head) >= 18
        and head[:2] == _GZIP_MAGIC
        and head[3] & 4 != 0  # FEXTRA
        and head[12:14] == b"BC"
    )


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists():
        p = p.parent
    return p


def _folder_writable(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


# ----------------------------------------------------------------------------- reference
def _read_fai(reference: Path, fai: Path) -> tuple[tuple[str, int], ...]:
    contigs: list[tuple[str, int]] = []
    seen: set[str] = set()
    for lineno, line in enumerate(fai.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 5 or not all(f.strip().isdigit() for f in fields[1:5]):
            raise InputError(
                f"{fai}: line {lineno} is not a faidx line (name, length, offset, linebases, "
                f"linewidth); delete it and run 'samtools faidx {reference}'"
            )
        name, length = fields[0], int(fields[1])
        if name in seen:
            raise InputError(
                f"{reference}: contig {name} appears twice; give each sequence a unique name"
            )
        seen.add(name)
        contigs.append((name, length))
    if not contigs:
        raise InputError(
            f"{fai}: reference index lists no contigs; delete it and run 'samtools faidx {reference}'"
        )
    return tuple(contigs)


def check_reference(reference: str | Path) -> tuple[tuple[str, int], ...]:
    """Check the reference FASTA and its index; build the .fai when missing or older than
    the FASTA and the folder is writable. Returns (name, length in bp) per contig, in
    reference order."""
    reference = Path(reference)
    _check_readable(reference, "reference")
    head = _head(reference, 4096)
    if not head:
        raise InputError(f"{reference}: reference is empty; give a FASTA file (-f)")
    if head[:2] == _GZIP_MAGIC:
        if not _is_bgzf(reference):
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
    no_gzi = _is_bgzf(reference) and not gzi.is_file()
    if not fai.is_file() or stale or no_gzi:
        why = "is older than the FASTA" if stale else "is missing"
        index = fai
        if no_gzi and fai.is_file() and not stale:
            index = gzi
        if not _folder_writable(reference.parent):
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
                f"{reference}: cannot index the reference ({_first_line(str(e))}); check that "
                f"it is a valid FASTA with unique names and equal line lengths per sequence"
            ) from e
    return _read_fai(reference, fai)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line[:200]
    return "unknown error"


def md5_cache_dir() -> Path:
    """Where reference contig MD5s are kept between runs: ``$VARCALL_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/varcall``, else ``~/.cache/varcall``."""
    if os.environ.get("VARCALL_CACHE_DIR"):
        return Path(os.environ["VARCALL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "varcall"


class _ReferenceMD5:
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
                tmp = self._file.with_name(f".{self._file.name}.tmp-{os.getpid()}")
                tmp.write_text(json.dumps({"reference": self._key, "md5": self._cache}))
                os.replace(tmp, self._file)
            except OSError as e:
                logger.debug("cannot write the MD5 cache %s: %s", self._file, e)


# ----------------------------------------------------------------------------- alignments
def find_index(path: str | Path) -> Path | None:
    """The index htslib would use for a BAM/CRAM (``X.bam.bai``, ``X.bai``, ``X.bam.csi``,
    ``X.csi``; ``X.cram.crai``, ``X.crai``), or None."""
    path = Path(path)
    if path.suffix == ".cram":
        exts = [".crai"]
    else:
        exts = [".bai", ".csi"]
    for ext in exts:
        for cand in (Path(f"{path}{ext}"), path.with_suffix(ext)):
            if cand.is_file():
                return cand
    return None


def _build_index(path: Path, longest_contig: int) -> None:
    if not _folder_writable(path.parent):
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
        index.unlink()
        _build_index(path, longest_contig)
        index = find_index(path)
        assert index is not None
    return index


def check_alignment_file(
    path: str | Path,
    contigs: Sequence[tuple[str, int]],
    reference: str | Path,
    *,
    build_index: bool = False,
    reference_md5: _ReferenceMD5 | None = None,
) -> list[str]:
    """Check one BAM/CRAM against the reference contigs; return its sample names (@RG SM
    in header order, unique; the file name without extension when there is no @RG).
    Reads only the header, the last bytes and the index's presence and age (``build_index``
    reads the whole file to build a missing or stale index)."""
    path = Path(path)
    reference = Path(reference)
    _check_readable(path, "alignment file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty; give a coordinate-sorted BAM or CRAM file")
    head = _head(path, 4)
    if head[:4] == _CRAM_MAGIC:
        kind = "CRAM"
    elif head[:2] == _GZIP_MAGIC:
        kind = "BAM"
        if not _is_bgzf(path):
            raise InputError(
                f"{path}: gzip-compressed but not BGZF, so not a BAM; give a BAM or CRAM file "
                f"('samtools view -b -o out.bam {path}')"
            )
        if _tail(path, len(BGZF_EOF)) != BGZF_EOF:
            raise InputError(
                f"{path}: BGZF end-of-file block missing, the file is truncated; copy or "
                f"re-create it completely (check with 'samtools quickcheck {path}')"
            )
    else:
        raise InputError(
            f"{path}: not a BAM or CRAM file (SAM text or another format); convert it with "
            f"'samtools sort -o {path.stem}.bam {path}' and index the result"
        )

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
            f"{path}: cannot read the {kind} header ({_first_line(str(e))}); check the file "
            f"with 'samtools quickcheck {path}'"
        ) from e

    # sort order: SO:unsorted/queryname is refused; a missing or "unknown" SO is taken on
    # trust of the index (samtools index refuses reads out of order)
    so = header.get("HD", {}).get("SO")
    if so in ("unsorted", "queryname"):
        raise InputError(
            f"{path}: not coordinate-sorted (@HD SO:{so}); run "
            f"'samtools sort -o {path.stem}.sorted.{kind.lower()} {path}' and index it"
        )

    # contigs against the reference
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

    # samples
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

    # index: last, so an unsorted or foreign file is reported as such first
    longest = max(int(line.get("LN", 0)) for line in sq)
    _check_index(path, build_index, longest)
    return names


# ----------------------------------------------------------------------------- samples
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


# ----------------------------------------------------------------------------- regions
_REGION_END_RE = re.compile(r"^(?P<contig>.+):[0-9,_]+-(?P<end>[0-9,_]+)$")


def validate_regions(
    region_strings: Iterable[str],
    regions_bed: str | Path | None,
    contigs: Sequence[tuple[str, int]],
) -> list[Region]:
    """All user regions (strings, then BED intervals), checked against the contigs.

    Parsing is :func:`varcall.plan.regions.parse_region_string` / :func:`read_bed_regions`; in
    addition an explicit end past the contig end is refused here rather than clipped, since
    it usually means coordinates of another reference build.
    """
    lengths = dict(contigs)
    out: list[Region] = []
    for text in region_strings:
        region = parse_region_string(text, contigs)
        m = _REGION_END_RE.match(text.strip())
        if m is not None and m["contig"] == region.contig and text.strip() not in lengths:
            end = int(m["end"].replace(",", "").replace("_", ""))
            if end > lengths[region.contig]:
                raise InputError(
                    f"region {text.strip()!r}: end {end} is past the end of {region.contig} "
                    f"({lengths[region.contig]} bp); use coordinates of this reference"
                )
        out.append(region)
    if regions_bed is not None:
        _check_readable(Path(regions_bed), "BED file")
        out.extend(read_bed_regions(regions_bed, contigs))
    return out


# ----------------------------------------------------------------------------- output
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
        base = _nearest_existing(folder)
        if not base.is_dir():
            raise InputError(
                f"{folder}: {base} is a file, so the folder cannot be created; choose another path"
            )
        if not _folder_writable(base):
            raise InputError(f"{folder}: {base} is not writable; choose a folder you can write to")
        free = shutil.disk_usage(base).free
        if free < needed_bytes:
            raise InputError(
                f"{folder}: only {free / 2**20:.0f} MiB free on {base}, the run needs about "
                f"{needed_bytes / 2**20:.0f} MiB; free some space or write elsewhere"
            )


# ----------------------------------------------------------------------------- cluster
#: The command each batch system submits jobs with (dask-jobqueue calls it).
SUBMIT_COMMANDS = {"slurm": "sbatch", "pbs": "qsub", "sge": "qsub", "lsf": "bsub"}


def check_cluster(spec: Any, *, probe_seconds: float = 10.0) -> None:
    """Refuse a cluster that cannot work before anything is created: a remote scheduler
    that does not accept TCP connections (probed for at most ``probe_seconds``), or a batch
    system whose submit command is not on PATH (unless ``spec.fallback_local``).
    ``spec`` is a :class:`varcall.run.scatter.ClusterSpec`; a LocalCluster needs nothing."""
    kind = getattr(spec, "kind", "local")
    if kind == "scheduler":
        address = str(spec.scheduler_address)
        parts = urlsplit(address if "://" in address else f"tcp://{address}")
        if parts.scheme not in ("tcp", "tls"):
            return  # other comms (ucx, inproc, ws): left to Dask
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise InputError(
                f"--scheduler {address}: not an address with a port; give tcp://HOST:PORT "
                f"(Dask's default port is 8786)"
            )
        timeout = min(probe_seconds, float(getattr(spec, "connect_timeout", probe_seconds)))
        try:
            with socket.create_connection((parts.hostname, port), timeout=timeout):
                pass
        except OSError as e:
            raise InputError(
                f"{address}: cannot reach the Dask scheduler ({e.strerror or e}); check the "
                f"address and that the scheduler is running"
            ) from e
    elif kind in SUBMIT_COMMANDS:
        cmd = SUBMIT_COMMANDS[kind]
        if shutil.which(cmd) is None:
            if getattr(spec, "fallback_local", False):
                logger.warning("%s not found on PATH; --fallback-local will apply", cmd)
                return
            raise InputError(
                f"--cluster {kind}: {cmd} not found on PATH; run varcall on a {kind} submit "
                f"host, or use --scheduler or the local cluster"
            )


# ----------------------------------------------------------------------------- entry
def validate_call(
    reference: Path,
    bams: Sequence[Path],
    out: Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    build_index: bool = False,
    rename_duplicate_samples: bool = False,
    region_strings: Sequence[str] = (),
    regions_bed: Path | None = None,
    work_dir: Path | None = None,
    check_md5: bool = True,
    engine_name: str = "native",
) -> CallInputs:
    """Check everything a `varcall call` reads and writes; return the resolved inputs.

    The output folder may exist only with ``overwrite`` (replaced at the end) or ``resume``
    (its checkpoints are reused). ``region_strings`` (1-based inclusive) and ``regions_bed``
    (0-based half-open) are checked against the reference contigs. ``work_dir`` defaults to
    ``out/work``. ``samples`` of the result are the files' samples in input order; with
    ``rename_duplicate_samples`` repeated names are renamed (see :func:`unique_sample_names`),
    and :func:`varcall.plan.inputs.sample_columns` maps each file's SM to its output column;
    only the native engine (``engine_name``) can run with renamed samples.
    Nothing is created at ``out``.
    """
    if not bams:
        raise InputError("no BAM/CRAM files given; pass them as arguments or with --bam-list")
    out = Path(out)
    reference = Path(reference)
    # cheap checks first: the output, then each file's existence
    check_output(out, overwrite=overwrite, resume=resume, work_dir=work_dir)
    _check_readable(reference, "reference")
    for b in bams:
        _check_readable(Path(b), "alignment file")
    contigs = check_reference(reference)
    validate_regions(region_strings, regions_bed, contigs)
    md5 = _ReferenceMD5(reference) if check_md5 else None
    per_file: list[tuple[Path, list[str]]] = []
    seen: dict[Path, Path] = {}
    try:
        for b in bams:
            b = Path(b)
            real = b.resolve()
            if real in seen:
                also = "" if str(seen[real]) == str(b) else f" (also as {seen[real]})"
                raise InputError(f"{b}: file given twice{also}; give each BAM/CRAM once")
            seen[real] = b
            per_file.append(
                (
                    b,
                    check_alignment_file(
                        b, contigs, reference, build_index=build_index, reference_md5=md5
                    ),
                )
            )
    finally:
        if md5 is not None:
            md5.close()
    samples = unique_sample_names(per_file, rename=rename_duplicate_samples)
    n_names = sum(len(names) for _, names in per_file)
    if len({s for _, names in per_file for s in names}) < n_names and engine_name != "native":
        raise InputError(
            f"--engine {engine_name}: cannot rename duplicate sample names (the tool reads "
            f"SM from the files); rename them in the files with 'samtools addreplacerg' or "
            f"use --engine native"
        )
    check_output(
        out,
        overwrite=overwrite,
        resume=resume,
        work_dir=work_dir,
        needed_bytes=estimate_output_bytes(bams),
    )
    logger.info(
        "validated %d alignment file(s), %d sample(s), %d contig(s)",
        len(bams),
        len(samples),
        len(contigs),
    )
    return CallInputs(
        reference=str(reference.resolve()),
        bams=tuple(str(Path(b).resolve()) for b in bams),
        samples=tuple(samples),
        contigs=contigs,
    )


# ----------------------------------------------------------------------------- at run time
def diagnose_region(inputs: CallInputs, region: Region, *, pad: int = 0) -> str | None:
    """Find which input makes ``region`` fail: read every alignment file over the region
    (0-based half-open, widened by ``pad`` bp) and return ``"<file>: <what is wrong>; <fix>"``
    for the first file that cannot be read (a damaged block, a truncated file) or that
    holds a read extending past the end of the contig; None when every file reads cleanly.

    Used only after a task failed (it reads the region once more), so the error names the
    file as well as the region.
    """
    length = dict(inputs.contigs).get(region.contig)
    if length is None:
        return f"{inputs.reference}: contig {region.contig} is not in the reference; check -f"
    start, end = max(0, region.start - pad), min(length, region.end + pad)
    for bam in inputs.bams:
        path = Path(bam)
        kw = {"reference_filename": inputs.reference} if path.suffix == ".cram" else {}
        problem = _scan_reads(path, kw, region, start, end, length)
        if problem is not None:
            return problem
    return None


#: Compressed bytes checked past a region's last read when looking for a damaged block
#: (readers decompress ahead of the reads they return; varcall.io.bam reads 1 MiB at a time).
SCAN_SLACK_BYTES = 2 << 20


def _scan_reads(
    path: Path, kw: dict, region: Region, start: int, end: int, length: int
) -> str | None:
    try:
        f = pysam.AlignmentFile(str(path), "r", **kw)
    except (OSError, ValueError) as e:
        return f"{path}: cannot open ({type(e).__name__}: {e}); check the file"
    first = last = None
    try:
        for read in f.fetch(region.contig, start, end):
            if f.is_bam:
                last = f.tell() >> 16  # compressed offset of the current block
                first = last if first is None else first
            read_end = read.reference_end
            if read_end is not None and read_end > length:
                return (
                    f"{path}: read {read.query_name} at {region.contig}:"
                    f"{read.reference_start + 1} extends to {read_end}, past the end of "
                    f"{region.contig} ({length} bp); the file does not belong to this "
                    f"reference or is damaged, re-align or fix it"
                )
    except (OSError, ValueError) as e:
        return (
            f"{path}: cannot read {region} ({type(e).__name__}: {e}), the file is damaged "
            f"or truncated; check it with 'samtools view -c {path}' and re-create it"
        )
    finally:
        try:
            f.close()
        except OSError:  # htslib reports the damage again when closing
            pass
    if first is not None and last is not None:
        bad = _scan_bgzf(path, first, last + SCAN_SLACK_BYTES)
        if bad is not None:
            return (
                f"{path}: damaged BGZF block at byte offset {bad} (read for {region}), the file is "
                f"damaged; check it with 'samtools view -c {path}' and re-create it"
            )
    return None


def _scan_bgzf(path: Path, begin: int, end: int) -> int | None:
    """Byte offset of the first BGZF block in ``[begin, end)`` (compressed offsets; the
    scan starts at the block at ``begin``) that does not inflate to its recorded size and
    CRC-32, or None."""
    with open(path, "rb") as fh:
        fh.seek(begin)
        off = begin
        while off < end:
            head = fh.read(18)
            if not head:
                return None
            if len(head) < 18 or head[:4] != b"\x1f\x8b\x08\x04" or head[12:14] != b"BC":
                return off
            bsize = struct.unpack_from("<H", head, 16)[0] + 1
            body = fh.read(bsize - 18)
            if len(body) != bsize - 18:
                return off
            crc, isize = struct.unpack("<II", body[-8:])
            try:
                raw = zlib.decompress(body[:-8], -15)
            except zlib.error:
                return off
            if len(raw) != isize or zlib.crc32(raw) != crc:
                return off
            off += bsize
    return None
