"""The ``freebayes`` engine: the ``freebayes`` binary (when on PATH), region by region.

Scale-out has two parts here.

1. **Padding and ownership.** freebayes builds haplotype windows over clumped alleles and
   skips the positions an emitted record covers, so each region runs on the region padded
   by :attr:`FreebayesEngine.pad` bp (default 2000) and keeps the records whose 0-based
   POS lies in the region; complex records starting in the padding belong to the
   neighbouring region.
2. **Warm-up for freebayes' prior cache.** freebayes memoises the Ewens allele-frequency
   prior (``AlleleFrequencyProbabilityCache`` in ``Ewens.h``) keyed by the allele-frequency
   partition only, although the value depends on ``theta = --theta x haplotype length``
   of the site. The prior a site gets is therefore the one computed at the *first* site of
   the process with the same partition, anywhere earlier in the run (other contigs
   included). A region run started elsewhere fills the cache from other sites and gets
   different priors (measured on the default test cohort, 3 samples x 2 x 200 kb at 30x,
   50 planned regions, padding only: 560 of 1107 records differ, 558 in QUAL by up to 21.7
   and one site with a different ALT allele, since the posterior picks the alleles).
   So every region run first processes warm-up stretches in genome order, exactly as
   the whole-genome run begins:
   the first :attr:`FreebayesEngine.warmup` bp (default 10 kb) of the first contig, and of
   the first contig of each further ploidy (new ploidy -> new partitions). Their records are
   dropped by ownership. This fills the cache as the whole-genome run does for every
   partition seen in those stretches.

**Residual difference (never hidden):** a partition first met *after* the warm-up — in
practice only at sites with 5+ alleles — gets its cached prior from a different site in a
region run, so such a record may differ in QUAL (never seen in GT, GQ, DP, AD or PL). On
the default test cohort (3 samples, 2 x 200 kb, 30x) 1 record of the whole-genome run
differs, with 7 and with 50 regions (VCF chr2:46426, five alleles, QUAL 1189.8 vs 1192.0).
:func:`varcall.engines.external.distributed_differences` lists such records for any run;
:attr:`FreebayesEngine.known_differences` states the cause.

Options:

- ``params.min_mapq`` / ``params.min_baseq`` -> ``-m`` / ``-q``.
- ``params.ploidy`` -> ``-p``; ``params.ploidy_by_contig`` -> ``--cnv-map`` (one
  contig-wide line per sample and contig whose ploidy differs); with sexes
  (``params.sample_sex``) the CNV map has each sample's stretches whose ploidy differs
  (:func:`varcall.plan.ploidy.sex_intervals`; BED coordinates), and the warm-up keys on
  the cohort's ploidies at the contig start.
- ``params.engine_args`` (shell-split) go to freebayes; options varcall sets itself
  (region, targets, reference, BAMs, output, ploidy, gVCF, -m/-q) are rejected.
- ``params.include_supplementary`` and ``params.min_qual`` have no freebayes equivalent
  and are not applied: the engine reports freebayes' own records.

freebayes names samples by ``@RG SM``; a BAM without one is rejected with the fix.
"""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

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
from varcall.plan.ploidy import contig_ploidy, sex_intervals

__all__ = ["FreebayesEngine", "DEFAULT_PAD", "NOT_FOUND_MESSAGE"]

logger = logging.getLogger(__name__)

#: Padding (bp) added on both sides of a region before running freebayes.
DEFAULT_PAD = 2000

#: bp at the start of each contig that every region run processes first (prior cache).
DEFAULT_WARMUP = 10_000

NOT_FOUND_MESSAGE = (
    "freebayes: not found on PATH; install Debian's 'freebayes' package "
    "(apt-get install freebayes) or conda 'bioconda::freebayes'"
)

_FORBIDDEN = {
    "-r": "regions come from the region plan",
    "--region": "regions come from the region plan",
    "-t": "regions come from the region plan",
    "--targets": "regions come from the region plan",
    "-f": "use -f/--reference of varcall call",
    "--fasta-reference": "use -f/--reference of varcall call",
    "-b": "give BAMs to varcall call",
    "--bam": "give BAMs to varcall call",
    "-L": "give BAMs to varcall call",
    "--bam-list": "give BAMs to varcall call",
    "-v": "output goes to varcall's work folder",
    "--vcf": "output goes to varcall's work folder",
    "-p": "use --ploidy / --ploidy-contig of varcall call",
    "--ploidy": "use --ploidy / --ploidy-contig of varcall call",
    "-A": "use --ploidy / --ploidy-contig of varcall call",
    "--cnv-map": "use --ploidy / --ploidy-contig of varcall call",
    "--gvcf": "gVCF blocks cross region boundaries",
    "-m": "use --min-mapq of varcall call",
    "--min-mapping-quality": "use --min-mapq of varcall call",
    "-q": "use --min-baseq of varcall call",
    "--min-base-quality": "use --min-baseq of varcall call",
}


class FreebayesEngine:
    """freebayes, region by region with padding, owned by POS.

    pad: bp added on both sides of each region (default :data:`DEFAULT_PAD`).
    warmup: bp at the start of the first contig (and of the first contig of each further
        ploidy) that each region run processes first, to fill freebayes' prior cache as
        the whole-genome run does (default :data:`DEFAULT_WARMUP`; 0 disables it).
    binary: the executable name or path (default ``freebayes``, looked up on PATH).
    """

    name = "freebayes"
    #: Why a distributed run may still differ from the single-process one (see module doc).
    known_differences = (
        "freebayes caches its Ewens prior per allele-frequency partition without the "
        "site's theta, so a record whose partition is first met after the warm-up "
        "(sites with 5+ alleles, in practice) can differ in QUAL between a region run "
        "and the whole-genome run"
    )

    def __init__(
        self, pad: int = DEFAULT_PAD, warmup: int = DEFAULT_WARMUP, binary: str = "freebayes"
    ) -> None:
        if pad < 0 or warmup < 0:
            raise ValueError("pad and warmup must be >= 0")
        self.pad = pad
        self.warmup = warmup
        self.binary = binary

    # ------------------------------------------------------------------ interface
    def version(self) -> str:
        """``freebayes --version`` plus padding and warm-up (part of checkpoint keys)."""
        self.check()
        return f"{_binary_version(self.binary)} (pad {self.pad}; warmup {self.warmup})"

    def check(self) -> None:
        """InputError naming the Debian/conda package when freebayes is not on PATH."""
        if shutil.which(self.binary) is None:
            if self.binary == "freebayes":
                raise InputError(NOT_FOUND_MESSAGE)
            raise InputError(f"{self.binary}: not found or not executable; fix the path")

    def check_params(self, inputs: CallInputs, params: CallParams) -> None:
        """``--engine-args`` must not override what varcall sets; every BAM needs @RG SM."""
        reject_options(split_args(params.engine_args), _FORBIDDEN, "freebayes")
        _require_read_groups(inputs)

    def call_region(self, inputs: CallInputs, region: Region, params: CallParams) -> CallSet:
        """Records with 0-based POS in ``[region.start, region.end)``, from freebayes run
        on the region padded by :attr:`pad` bp."""
        targets = self.targets(inputs, region, params)
        with tempfile.TemporaryDirectory(prefix="varcall-freebayes-") as tmp:
            vcf = self._run(inputs, params, Path(tmp), targets=targets, where=str(region))
            return contig_callset(read_tool_vcf(vcf, inputs.samples), region, inputs.samples)

    def call_whole(self, inputs: CallInputs, params: CallParams) -> Iterator[CallSet]:
        """freebayes run once over every contig (no ``--region``); one CallSet per contig
        with calls, in reference order."""
        with tempfile.TemporaryDirectory(prefix="varcall-freebayes-") as tmp:
            vcf = self._run(inputs, params, Path(tmp), targets=None, where="the whole genome")
            yield from read_tool_vcf(vcf, inputs.samples)

    # ------------------------------------------------------------------ helpers
    def command_line(
        self, inputs: CallInputs, params: CallParams, tmp: Path, targets: list[Region] | None
    ) -> list[str]:
        """The freebayes argv writing ``tmp/calls.vcf``. ``targets`` (0-based half-open,
        processed in order by one freebayes process) go to a ``--targets`` BED in ``tmp``;
        None runs over everything. A CNV map, when needed, is written into ``tmp``."""
        self.check()
        extra = split_args(params.engine_args)
        reject_options(extra, _FORBIDDEN, "freebayes")
        _require_read_groups(inputs)
        argv = [self.binary, "-f", inputs.reference]
        argv += ["-m", str(params.min_mapq), "-q", str(params.min_baseq)]
        argv += ["-p", str(params.default_ploidy)]
        cnv = _cnv_map(inputs, params, tmp)
        if cnv is not None:
            argv += ["--cnv-map", str(cnv)]
        if targets is not None:
            bed = tmp / "targets.bed"
            bed.write_text("".join(f"{r.contig}\t{r.start}\t{r.end}\n" for r in targets))
            argv += ["--targets", str(bed)]
        argv += extra
        for bam in inputs.bams:
            argv += ["-b", bam]
        argv += ["-v", str(tmp / "calls.vcf")]
        return argv

    def targets(
        self, inputs: CallInputs, region: Region, params: CallParams | None = None
    ) -> list[Region]:
        """What one region run processes, in order (0-based half-open): warm-up stretches
        (the first :attr:`warmup` bp of the first contig and of the first contig of each
        further ploidy, before the region's contig; see the module docstring: freebayes'
        prior cache), then the region padded by :attr:`pad`. A window starting within the
        warm-up of its own contig is extended to the contig start."""
        params = params or CallParams()
        window = padded_window(inputs, region, self.pad)
        out: list[Region] = []
        if self.warmup > 0:
            seen: set = set()
            for contig, length in inputs.contigs:
                if contig == region.contig:
                    break
                ploidy = _start_ploidy(params, inputs, contig, length)
                if ploidy not in seen:
                    seen.add(ploidy)
                    out.append(Region(contig, 0, min(length, self.warmup)))
            if window.start <= self.warmup:
                window = Region(window.contig, 0, window.end)
            elif (
                _start_ploidy(params, inputs, region.contig, inputs.contig_length(region.contig))
                not in seen
            ):
                out.append(Region(region.contig, 0, self.warmup))
        out.append(window)
        return out

    def _run(
        self,
        inputs: CallInputs,
        params: CallParams,
        tmp: Path,
        *,
        targets: list[Region] | None,
        where: str,
    ) -> Path:
        argv = self.command_line(inputs, params, tmp, targets)
        logger.debug("freebayes on %s (targets %s)", where, targets)
        run_tool(argv, tool="freebayes", where=where)
        return tmp / "calls.vcf"


@functools.lru_cache(maxsize=8)
def _binary_version(binary: str) -> str:
    """``freebayes --version`` output, e.g. ``freebayes v1.3.6``."""
    proc = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    words = (proc.stdout + proc.stderr).split()
    tags = [w for w in words if w.startswith("v") and w[1:2].isdigit()]
    return f"freebayes {tags[0] if tags else 'unknown version'}"


def _start_ploidy(params: CallParams, inputs: CallInputs, contig: str, length: int) -> tuple:
    """The cohort's ploidies at the start of ``contig`` (the warm-up's key)."""
    if not params.sample_sex:
        return (params.ploidy_of(contig),)
    cp = contig_ploidy(params, inputs.samples, contig, length)
    return tuple(cp.at(np.zeros(1, np.int64))[0].tolist())


def _cnv_map(inputs: CallInputs, params: CallParams, tmp: Path) -> Path | None:
    """freebayes ``--cnv-map`` (seq start end sample copy_number; BED coordinates) for
    the stretches whose ploidy differs from the default; None when there are none."""
    exceptions = ploidy_exceptions(inputs, params)  # also checks --ploidy-contig names
    if params.sample_sex:
        by_sex = sex_intervals(params, inputs)
        lines = [
            f"{contig}\t{start}\t{end}\t{sample}\t{ploidy}"
            for sample, sex in params.sample_sex
            for contig, start, end, ploidy in by_sex[sex]
        ]
    else:
        lines = [
            f"{contig}\t0\t{length}\t{sample}\t{ploidy}"
            for contig, length, ploidy in exceptions
            for sample in inputs.samples
        ]
    if not lines:
        return None
    path = tmp / "cnv_map.bed"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def _require_read_groups(inputs: CallInputs) -> None:
    """freebayes takes sample names from @RG SM only; reject BAMs without it."""
    import pysam

    for bam in inputs.bams:
        with pysam.AlignmentFile(bam, "r", check_sq=False) as f:
            rgs = f.header.to_dict().get("RG", [])
        if not any(rg.get("SM") for rg in rgs):
            raise InputError(
                f"{bam}: no @RG line with SM; freebayes names samples by read group, add one "
                "with 'samtools addreplacerg -r ID:S1 -r SM:S1 -o out.bam in.bam'"
            )
