"""The ``bcftools`` engine: ``bcftools mpileup -a AD,DP | bcftools call -m -v`` through
pysam's bundled bcftools (no external binary needed).

Scale-out: each region runs mpileup with ``-r`` on the region padded by :attr:`pad` bp on
both sides, and keeps the records whose 0-based POS lies in the region. mpileup computes
BAQ and indel likelihoods from the reads *overlapping* a position, and its per-position
depth cap looks back only over reads still overlapping, so a pad of a few read lengths
gives every owned position exactly the reads and context of the whole-genome run (the
default, 1000 bp, leaves a wide margin for 2x150-250 bp reads; see tests/test_engines.py
for the measurement).

Options:

- ``params.min_mapq`` / ``params.min_baseq`` -> mpileup ``-q`` / ``-Q``.
- ``params.include_supplementary`` False -> mpileup ``--ff UNMAP,SECONDARY,QCFAIL,DUP,
  SUPPLEMENTARY`` (bcftools' default filter plus supplementary alignments).
- ploidy -> ``call --ploidy-file`` (contig-wide entries for ``params.ploidy_by_contig``,
  default ``params.ploidy``); with sexes (``params.sample_sex``) the resolved per-sex
  stretches (:func:`varcall.plan.ploidy.sex_intervals`: PARs, sex chromosomes,
  ``--ploidy-contig``) as non-overlapping lines, and ``call --samples-file`` with each
  sample's sex, so bcftools calls with exactly the native engine's ploidy.
- ``params.engine_args`` (shell-split): words go to ``mpileup``; a bare word ``call:``
  switches the following words to ``call``; a single word ``call:X`` sends ``X`` to call.
  Example: ``--engine-args "-d 500 -B call: -P 0.01"``. ``call: -c`` (consensus caller)
  replaces ``-m``. Options varcall sets itself (regions, output, reference, ploidy) are
  rejected with an error.
- ``params.min_qual`` is not applied: the engine reports bcftools' own records.

Each bcftools command runs in a child Python process (``python -c`` calling
``pysam.bcftools``), because pysam's dispatcher redirects the process-wide stdout/stderr
file descriptors and is therefore unsafe under threaded Dask workers.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from varcall.core.callset import CallSet
from varcall.core.errors import InputError
from varcall.core.files import write_text_atomic
from varcall.core.params import CallInputs, CallParams
from varcall.core.regions import Region
from varcall.engines.external import (
    contig_callset,
    padded_window,
    ploidy_exceptions,
    read_tool_vcf,
    reject_options,
    run_tool,
    split_args,
)
from varcall.plan.ploidy import sex_intervals

__all__ = ["BcftoolsEngine", "split_bcftools_args", "DEFAULT_PAD"]

logger = logging.getLogger(__name__)

#: Padding (bp) added on both sides of a region before running mpileup.
DEFAULT_PAD = 1000

# Runs bcftools sub-commands of pysam's bundled bcftools in turn; argv[1] is a JSON list
# of [command, args...] lists. Stops at the first failure, its stderr prefixed by the
# sub-command's name.
_DISPATCH = """\
import json
import sys
import pysam.bcftools
from pysam.utils import SamtoolsError
for cmd, *args in json.loads(sys.argv[1]):
    tool = getattr(pysam.bcftools, cmd)
    try:
        tool(*args, catch_stdout=False)
        # pysam captured the stderr (htslib warnings/errors); pass it on
        sys.stderr.write(tool.stderr or "")
    except SamtoolsError as e:
        text = str(e.value).split("stderr=", 1)[-1]
        for line in text.splitlines():
            if line.strip():
                sys.stderr.write(f"bcftools {cmd}: {line.strip()}\\n")
        sys.exit(1)
"""

_MPILEUP_FORBIDDEN = {
    "-r": "regions come from the region plan",
    "--regions": "regions come from the region plan",
    "-R": "regions come from the region plan",
    "--regions-file": "regions come from the region plan",
    "-o": "output goes to varcall's work folder",
    "--output": "output goes to varcall's work folder",
    "-O": "output type is fixed",
    "--output-type": "output type is fixed",
    "-f": "use -f/--reference of varcall call",
    "--fasta-ref": "use -f/--reference of varcall call",
    "-b": "give BAMs to varcall call",
    "--bam-list": "give BAMs to varcall call",
    "-g": "gVCF blocks cross region boundaries",
    "--gvcf": "gVCF blocks cross region boundaries",
    "-q": "use --min-mapq of varcall call",
    "--min-MQ": "use --min-mapq of varcall call",
    "-Q": "use --min-baseq of varcall call",
    "--min-BQ": "use --min-baseq of varcall call",
}
_CALL_FORBIDDEN = {
    "-o": "output goes to varcall's work folder",
    "--output": "output goes to varcall's work folder",
    "-O": "output type is fixed",
    "--output-type": "output type is fixed",
    "--ploidy": "use --ploidy / --ploidy-contig of varcall call",
    "--ploidy-file": "use --ploidy-file of varcall call",
    "-S": "use --samples-file of varcall call",
    "--samples-file": "use --samples-file of varcall call",
    "-s": "varcall calls every sample of the BAMs",
    "--samples": "varcall calls every sample of the BAMs",
    "-r": "regions come from the region plan",
    "--regions": "regions come from the region plan",
    "-R": "regions come from the region plan",
    "--regions-file": "regions come from the region plan",
    "-g": "gVCF blocks cross region boundaries",
    "--gvcf": "gVCF blocks cross region boundaries",
}


def split_bcftools_args(engine_args: str) -> tuple[list[str], list[str]]:
    """Split ``--engine-args`` into (mpileup words, call words).

    Words go to mpileup until a bare ``call:`` word; after it they go to call. A word
    ``call:X`` sends ``X`` alone to call. Options varcall controls raise InputError.
    """
    mpileup: list[str] = []
    call: list[str] = []
    target = mpileup
    for word in split_args(engine_args):
        if word == "call:":
            target = call
        elif word.startswith("call:"):
            call.append(word[len("call:") :])
        else:
            target.append(word)
    reject_options(mpileup, _MPILEUP_FORBIDDEN, "bcftools mpileup")
    reject_options(call, _CALL_FORBIDDEN, "bcftools call")
    return mpileup, call


def _bcftools(commands: Sequence[Sequence[str]], *, where: str) -> None:
    """Run bcftools sub-commands (each ``[name, args...]``) in order in one child process."""
    payload = json.dumps([list(c) for c in commands])
    run_tool([sys.executable, "-c", _DISPATCH, payload], tool="bcftools", where=where)


class BcftoolsEngine:
    """bcftools mpileup + call -m, region by region with padding, owned by POS.

    pad: bp added on both sides of each region (default :data:`DEFAULT_PAD`).
    """

    name = "bcftools"
    #: Why a distributed run may differ from the single-process one: none known (measured
    #: identical on the test cohorts with pads down to 150 bp).
    known_differences = ""

    def __init__(self, pad: int = DEFAULT_PAD) -> None:
        if pad < 0:
            raise ValueError("pad must be >= 0")
        self.pad = pad

    # ------------------------------------------------------------------ interface
    def version(self) -> str:
        """bcftools and pysam versions plus the padding (part of checkpoint keys)."""
        import pysam.version

        return (
            f"bcftools {pysam.version.__bcftools_version__} "
            f"(pysam {pysam.version.__version__}; pad {self.pad})"
        )

    def check(self) -> None:
        """pysam's bundled bcftools is importable (it always is where varcall is installed)."""
        try:
            import pysam.bcftools  # noqa: F401
        except ImportError as e:  # pragma: no cover - pysam is a pinned dependency
            raise InputError(
                f"pysam.bcftools: cannot import ({e}); reinstall varcall's dependencies "
                "(pip install pysam)"
            ) from None

    def check_params(self, inputs: CallInputs, params: CallParams) -> None:
        """``--engine-args`` words must parse and must not override what varcall sets."""
        split_bcftools_args(params.engine_args)

    def call_region(self, inputs: CallInputs, region: Region, params: CallParams) -> CallSet:
        """Records with 0-based POS in ``[region.start, region.end)``, from mpileup run on
        the region padded by :attr:`pad` bp."""
        window = padded_window(inputs, region, self.pad)
        with tempfile.TemporaryDirectory(prefix="varcall-bcftools-") as tmp:
            vcf = self._run(inputs, params, Path(tmp), window=window, where=str(region))
            return contig_callset(read_tool_vcf(vcf, inputs.samples), region, inputs.samples)

    def call_whole(self, inputs: CallInputs, params: CallParams) -> Iterator[CallSet]:
        """bcftools run once over every contig (no ``-r``); one CallSet per contig with
        calls, in reference order."""
        with tempfile.TemporaryDirectory(prefix="varcall-bcftools-") as tmp:
            vcf = self._run(inputs, params, Path(tmp), window=None, where="the whole genome")
            yield from read_tool_vcf(vcf, inputs.samples)

    # ------------------------------------------------------------------ helpers
    def command_lines(
        self, inputs: CallInputs, params: CallParams, tmp: Path, window: Region | None
    ) -> tuple[list[str], list[str]]:
        """(mpileup args, call args) writing ``tmp/pileup.bcf`` then ``tmp/calls.vcf``;
        helper files (ploidy, read groups) are written into ``tmp``."""
        mp_extra, call_extra = split_bcftools_args(params.engine_args)
        mpileup = ["mpileup", "-a", "AD,DP", "-f", inputs.reference]
        mpileup += ["-q", str(params.min_mapq), "-Q", str(params.min_baseq)]
        if not params.include_supplementary:
            mpileup += ["--ff", "UNMAP,SECONDARY,QCFAIL,DUP,SUPPLEMENTARY"]
        read_groups = _read_groups_file(inputs, tmp)
        if read_groups is not None:
            mpileup += ["-G", str(read_groups)]
        if window is not None:
            mpileup += ["-r", _region_arg(window)]
        mpileup += ["-Ou", "-o", str(tmp / "pileup.bcf"), *mp_extra, *inputs.bams]

        consensus = any(w in ("-c", "--consensus-caller") for w in call_extra)
        call = ["call", "-v", "-a", "GQ"]
        if not consensus:
            call.append("-m")
        call += ["--ploidy-file", str(_ploidy_file(inputs, params, tmp))]
        if params.sample_sex:
            call += ["--samples-file", str(_samples_file(params, tmp))]
        call += [*call_extra, "-Ov", "-o", str(tmp / "calls.vcf"), str(tmp / "pileup.bcf")]
        return mpileup, call

    def _run(
        self,
        inputs: CallInputs,
        params: CallParams,
        tmp: Path,
        *,
        window: Region | None,
        where: str,
    ) -> Path:
        mpileup, call = self.command_lines(inputs, params, tmp, window)
        logger.debug("bcftools on %s (window %s)", where, window)
        _bcftools([mpileup, call], where=where)
        return tmp / "calls.vcf"


def _region_arg(window: Region) -> str:
    """bcftools ``-r`` text (1-based inclusive); names with ':' are braced as htslib wants."""
    name = f"{{{window.contig}}}" if ":" in window.contig else window.contig
    return f"{name}:{window.start + 1}-{window.end}"


def _ploidy_file(inputs: CallInputs, params: CallParams, tmp: Path) -> Path:
    """bcftools ``--ploidy-file``: CHROM FROM TO SEX PLOIDY (1-based inclusive). Without
    sexes: one contig-wide line per exception and a default line, for both sexes bcftools
    knows; with sexes: each sex's stretches that differ from the default, then its
    default line."""
    lines = []
    exceptions = ploidy_exceptions(inputs, params)  # also checks --ploidy-contig names
    if params.sample_sex:
        by_sex = sex_intervals(params, inputs)
        for sex, stretches in by_sex.items():
            lines += [f"{c}\t{s + 1}\t{e}\t{sex}\t{p}" for c, s, e, p in stretches]
        sexes: tuple[str, ...] = tuple(by_sex)
    else:
        for contig, length, ploidy in exceptions:
            for sex in ("F", "M"):
                lines.append(f"{contig}\t1\t{length}\t{sex}\t{ploidy}")
        sexes = ("F", "M")
    for sex in sexes:
        lines.append(f"*\t*\t*\t{sex}\t{params.default_ploidy}")
    path = tmp / "ploidy.txt"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def _samples_file(params: CallParams, tmp: Path) -> Path:
    """bcftools call ``--samples-file``: SAMPLE SEX per cohort sample."""
    path = tmp / "samples.txt"
    write_text_atomic(path, "".join(f"{s}\t{sex}\n" for s, sex in params.sample_sex))
    return path


def _read_groups_file(inputs: CallInputs, tmp: Path) -> Path | None:
    """When a BAM has no @RG with SM, bcftools would name its sample after the file path
    while varcall names it after the file name; a ``-G`` file makes them agree. None when
    every BAM carries SM tags (bcftools' own naming then matches)."""
    import pysam

    from varcall.plan.inputs import bam_samples

    lines = []
    need = False
    for bam in inputs.bams:
        with pysam.AlignmentFile(bam, "r", check_sq=False) as f:
            rgs = f.header.to_dict().get("RG", [])
        with_sm = [rg for rg in rgs if rg.get("SM")]
        if with_sm:
            lines += [f"{rg['ID']}\t{bam}\t{rg['SM']}" for rg in with_sm]
        else:
            need = True
            lines.append(f"*\t{bam}\t{bam_samples(bam)[0]}")
    if not need:
        return None
    path = tmp / "read_groups.txt"
    path.write_text("\n".join(lines) + "\n")
    return path
