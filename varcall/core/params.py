"""What a run reads (CallInputs) and how it calls (CallParams)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

__all__ = [
    "CallInputs",
    "CallParams",
]


@dataclasses.dataclass(frozen=True)
class CallInputs:
    """What a run reads. Paths are absolute strings (they travel to remote workers).

    reference: FASTA path (indexed, .fai beside it).
    bams: alignment files (BAM/CRAM), one or more samples each (by @RG SM).
    samples: output sample order (sorted unique SM values, or as given).
    contigs: (name, length) of every reference contig, in reference order.
    """

    reference: str
    bams: tuple[str, ...]
    samples: tuple[str, ...]
    contigs: tuple[tuple[str, int], ...]

    def contig_length(self, name: str) -> int:
        for c, n in self.contigs:
            if c == name:
                return n
        raise KeyError(name)


@dataclasses.dataclass(frozen=True)
class CallParams:
    """Calling parameters; every field takes part in the checkpoint hash.

    ploidy: default ploidy (1 or 2), or a built-in ploidy definition by assembly name
        (``GRCh37``, ``GRCh38``: PARs, sex chromosomes and MT; default ploidy 2);
        ploidy_by_contig overrides it per contig, for every sample.
    ploidy_file / par_bed / samples_file: the ploidy definition (bcftools' --ploidy-file
        format), a BED of pseudo-autosomal regions, and the samples' sexes, as given
        (paths); :func:`varcall.plan.ploidy.resolve_ploidy` reads them into
    sex_ploidy: resolved (contig, start, end, sex, ploidy) rules, 0-based half-open,
        later rules win; contig ``*`` (start = end = 0) is a sex's default ploidy; and
    sample_sex: resolved (sample, sex) of every cohort sample. Engines use only these two
        (:mod:`varcall.plan.ploidy`: ploidy per sample and position).
    engine_args: extra command-line words passed to an external engine.
    min_qd ... min_readpos_ranksum: the thresholds of the native engine's annotation
    FILTERs (LowQD, StrandBias, AlleleBalance, MappingQuality, ReadPosBias; definitions in
    :mod:`varcall.core.filters`); ``inf`` / ``-inf`` turns a test off.
    memory_budget: MiB of memory a task's process may use (native engine: its windows of
        reads are sized from the indexes to fit; the calls never depend on it).
    indel_errors: native engine: "estimate" the stutter table from the run's reads, or
    use the built-in "prior" (varcall.engines.native.stutter).
    stutter_table: native engine: the stutter table itself (empty: from indel_errors);
    a run fills it before calling and records it in manifest.json.
    """

    engine: str = "native"
    min_mapq: int = 20
    min_baseq: int = 13
    include_supplementary: bool = False
    ploidy: int | str = 2
    ploidy_by_contig: tuple[tuple[str, int], ...] = ()
    min_qual: float = 20.0
    engine_args: str = ""
    indel_errors: str = "estimate"
    stutter_table: tuple[float, ...] = ()
    ploidy_file: str | None = None
    par_bed: str | None = None
    samples_file: str | None = None
    sex_ploidy: tuple[tuple[str, int, int, str, int], ...] = ()
    sample_sex: tuple[tuple[str, str], ...] = ()
    min_qd: float = 2.0
    max_fs: float = 60.0
    max_sor: float = 5.0
    max_fs_indel: float = 200.0
    max_sor_indel: float = 10.0
    min_allele_balance: float = 0.2
    max_abq: float = 40.0
    max_mq0f: float = 0.9
    min_rms_mapq: float = 25.0
    max_alt_mapq_drop: float = 30.0
    min_mq_ranksum: float = -12.5
    min_readpos_ranksum: float = -8.0
    memory_budget: int = 1024

    #: Fields read from the files of other fields when a run is prepared (no option).
    RESOLVED: ClassVar[tuple[str, ...]] = ("sex_ploidy", "sample_sex")

    @property
    def default_ploidy(self) -> int:
        """The ploidy of contigs without another rule: ``ploidy``, or 2 for a built-in
        definition named by assembly."""
        return self.ploidy if isinstance(self.ploidy, int) else 2

    def ploidy_of(self, contig: str) -> int:
        """The contig-wide ploidy (``ploidy_by_contig``, else :attr:`default_ploidy`);
        per-sample rules (``sex_ploidy``) come on top, see :mod:`varcall.plan.ploidy`."""
        return dict(self.ploidy_by_contig).get(contig, self.default_ploidy)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)
