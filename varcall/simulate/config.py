"""What a simulated cohort is made of: :class:`SimulationConfig`, the sample and contig
names, and the keyed random generators every simulation stage draws from."""

from __future__ import annotations

import dataclasses

import numpy as np

from varcall.core.errors import InputError

__all__ = ["SimulationConfig", "sample_names", "contig_names", "keyed_rng"]


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Lengths in bp, coverage in mean read depth per sample.

    n_samples: samples S01..SNN.
    n_contigs, contig_length: contigs chr1..chrK, each ``contig_length`` bp.
    coverage: mean depth of each sample (all haplotypes together), duplicates excluded.
    read_length, insert_mean, insert_sd: paired-end layout (fragment length ~ normal,
        at least one read length).
    n_haploid_contigs: the last K contigs are haploid (one haplotype per sample).
    boundary_positions: 0-based positions on the first contig where variants are planted
        at fixed offsets; even-indexed positions b get SNVs at b-1 and b plus a cluster
        around them, odd-indexed ones a deletion spanning b plus a cluster around it.
    snv_rate, indel_rate: population density of random SNVs / indels per bp.
    confident_min_depth: confident.bed keeps positions where every sample has at least
        this many non-duplicate reads (see :meth:`min_depth` for shallow coverage).
    seed: everything derives from it.
    """

    n_samples: int = 3
    n_contigs: int = 2
    contig_length: int = 200_000
    coverage: float = 30.0
    read_length: int = 150
    insert_mean: int = 400
    insert_sd: int = 50
    n_haploid_contigs: int = 0
    boundary_positions: tuple[int, ...] = ()
    snv_rate: float = 1.0e-3
    indel_rate: float = 1.5e-4
    confident_min_depth: int = 5
    seed: int = 1

    def ploidy(self, contig_index: int) -> int:
        """Ploidy of contig ``contig_index`` (0-based): 1 for the last ``n_haploid_contigs``."""
        return 1 if contig_index >= self.n_contigs - self.n_haploid_contigs else 2

    def min_depth(self) -> int:
        """Depth every sample needs at a position for confident.bed: ``confident_min_depth``,
        lowered to a quarter of the coverage (at least 1) for shallow cohorts."""
        return max(1, min(self.confident_min_depth, int(self.coverage / 4)))

    def validate(self) -> None:
        """Raise :class:`InputError` for a configuration that cannot be simulated."""
        if self.n_samples < 1 or self.n_samples > 999:
            raise InputError(f"--samples {self.n_samples}: must be 1..999; give another count")
        if self.n_contigs < 1:
            raise InputError(f"--contigs {self.n_contigs}: must be at least 1; give another count")
        if self.read_length < 30:
            raise InputError(f"--read-length {self.read_length}: must be >= 30; give a longer one")
        if self.contig_length < max(1000, 8 * self.read_length):
            raise InputError(
                f"--length {self.contig_length}: contigs must be at least "
                f"{max(1000, 8 * self.read_length)} bp for read length {self.read_length}; "
                "give a longer --length"
            )
        if self.insert_mean < self.read_length:
            raise InputError(
                f"--insert-mean {self.insert_mean}: shorter than the read length "
                f"{self.read_length}; give an insert mean >= the read length"
            )
        if self.insert_sd < 0 or self.coverage <= 0:
            raise InputError("--insert-sd must be >= 0 and --coverage > 0; fix the option")
        if not 0 <= self.n_haploid_contigs <= self.n_contigs:
            raise InputError(
                f"--haploid-contigs {self.n_haploid_contigs}: more than the "
                f"{self.n_contigs} contigs; give at most --contigs"
            )
        margin = self.insert_mean + 4 * self.read_length
        for b in self.boundary_positions:
            if not margin <= b <= self.contig_length - margin:
                raise InputError(
                    f"--boundary {b}: must lie in [{margin}, {self.contig_length - margin}] on "
                    f"the first contig (length {self.contig_length}); move the position"
                )
        bs = sorted(self.boundary_positions)
        for a, b in zip(bs, bs[1:]):
            if b - a < 100:
                raise InputError(
                    f"--boundary {a} and {b}: closer than 100 bp; space boundary positions apart"
                )


def sample_names(n: int) -> list[str]:
    """Sample ids S01, S02, ... (zero-padded to at least two digits)."""
    width = max(2, len(str(n)))
    return [f"S{i + 1:0{width}d}" for i in range(n)]


def contig_names(n: int) -> list[str]:
    """Contig names chr1..chrN."""
    return [f"chr{i + 1}" for i in range(n)]


def keyed_rng(config: SimulationConfig, *key: int) -> np.random.Generator:
    """A generator keyed by (seed, stage, ...): independent of the order of the work.

    Stages: 1 reference (contig), 2 variants (contig), 3 quality bank (sample),
    4 reads (sample, contig, haplotype)."""
    return np.random.default_rng([config.seed & 0xFFFFFFFF, *key])
