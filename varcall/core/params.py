"""What a run reads (CallInputs) and how it calls (CallParams)."""

from __future__ import annotations

import dataclasses

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

    ploidy: default ploidy (1 or 2); ploidy_by_contig overrides it per contig.
    engine_args: extra command-line words passed to an external engine.
    """

    engine: str = "native"
    min_mapq: int = 20
    min_baseq: int = 13
    include_supplementary: bool = False
    ploidy: int = 2
    ploidy_by_contig: tuple[tuple[str, int], ...] = ()
    min_qual: float = 20.0
    engine_args: str = ""

    def ploidy_of(self, contig: str) -> int:
        return dict(self.ploidy_by_contig).get(contig, self.ploidy)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)
