"""Per-sample ploidy: sexes, pseudo-autosomal regions (PARs) and ploidy definitions, as
bcftools call's ``--ploidy`` / ``--ploidy-file`` / ``--samples-file`` give them.

A run's ploidy definition is a list of rules ``(contig, start, end, sex, ploidy)``
(0-based half-open inside; 1-based inclusive in a ploidy file, as bcftools) from, in
this order (a later rule wins where rules overlap):

1. a built-in definition named by assembly (``--ploidy GRCh37`` / ``GRCh38``), for both
   contig name styles (``X``/``Y``/``MT`` and ``chrX``/``chrY``/``chrM``): in males X and
   Y haploid outside the PARs and diploid inside them, in females Y absent (ploidy 0),
   MT haploid in both;
2. a PAR BED (``--par-bed``): the same for the X/chrX and Y/chrY contigs of the
   reference with the PARs of the BED;
3. a ploidy file (``--ploidy-file``): ``CHROM FROM TO SEX PLOIDY`` lines; ``*`` in FROM
   and TO: the whole contig; ``* * *``: the sex's default.

The ploidy of sample ``s`` at 0-based position ``p`` of contig ``c`` is, first match:
``--ploidy-contig c=N`` (every sample); the last rule of ``s``'s sex covering ``p``; the
sex's ``* * *`` default; ``--ploidy`` (2 for an assembly name). It depends only on
(sample, contig, position), never on regions or windows. Sexes come from the samples
file (``SAMPLE SEX`` lines); the sex codes are M, F and any other the ploidy file names
(a sex without rules gets the defaults). A definition needs a samples file that names every
cohort sample, and a samples file needs a definition.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from varcall.core.errors import InputError
from varcall.core.params import CallInputs, CallParams
from varcall.core.regions import read_bed_regions

__all__ = [
    "PRESETS",
    "MAX_PLOIDY",
    "ContigPloidy",
    "contig_ploidy",
    "preset_rules",
    "par_rules",
    "read_ploidy_file",
    "read_samples_file",
    "resolve_ploidy",
    "sex_intervals",
]

logger = logging.getLogger(__name__)

#: Highest ploidy a call holds (CallSet genotypes have 2 slots).
MAX_PLOIDY = 2

#: Pseudo-autosomal regions, 1-based inclusive, as the Genome Reference Consortium gives
#: them (https://www.ncbi.nlm.nih.gov/grc/human, "Pseudoautosomal regions" of GRCh37 and
#: GRCh38; also Ensembl's assembly exceptions), with the X and Y lengths of each assembly
#: (checked against the reference, so that a wrong assembly name is caught).
_ASSEMBLIES: dict[str, dict[str, tuple[int, tuple[tuple[int, int], ...]]]] = {
    "GRCh37": {
        "X": (155_270_560, ((60_001, 2_699_520), (154_931_044, 155_260_560))),
        "Y": (59_373_566, ((10_001, 2_649_520), (59_034_050, 59_363_566))),
    },
    "GRCh38": {
        "X": (156_040_895, ((10_001, 2_781_479), (155_701_383, 156_030_895))),
        "Y": (57_227_415, ((10_001, 2_781_479), (56_887_903, 57_217_415))),
    },
}
#: The assembly names ``--ploidy`` takes.
PRESETS: tuple[str, ...] = tuple(_ASSEMBLIES)
#: Contig names of each chromosome, in both naming styles.
_NAMES = {"X": ("X", "chrX"), "Y": ("Y", "chrY"), "MT": ("MT", "chrM")}

Rule = tuple[str, int, int, str, int]


def _sex_chromosome_rules(
    lengths: dict[str, int], pars: dict[str, Sequence[tuple[int, int]]]
) -> list[Rule]:
    """Rules for the X/Y contigs of ``lengths``: males haploid on X and Y outside the PARs
    (``pars``: 0-based half-open per contig name) and diploid inside, females without Y."""
    rules: list[Rule] = []
    for name in _NAMES["X"] + _NAMES["Y"]:
        if name not in lengths:
            continue
        rules.append((name, 0, lengths[name], "M", 1))
        rules += [(name, s, e, "M", 2) for s, e in pars.get(name, ())]
        if name in _NAMES["Y"]:
            rules.append((name, 0, lengths[name], "F", 0))
    return rules


def preset_rules(name: str, contigs: Sequence[tuple[str, int]]) -> list[Rule]:
    """The rules of the built-in definition ``name`` on the reference ``contigs``.
    InputError when the reference's X or Y length is not the assembly's."""
    lengths = dict(contigs)
    pars: dict[str, list[tuple[int, int]]] = {}
    for chrom, (length, regions) in _ASSEMBLIES[name].items():
        for contig in _NAMES[chrom]:
            if contig in lengths and lengths[contig] != length:
                raise InputError(
                    f"--ploidy {name}: the reference's {contig} has {lengths[contig]:,} bp, "
                    f"{name}'s {length:,}; give the reference's assembly, or its PARs with "
                    "--par-bed / --ploidy-file"
                )
            pars[contig] = [(s - 1, e) for s, e in regions]
    rules = _sex_chromosome_rules(lengths, pars)
    for contig in _NAMES["MT"]:
        if contig in lengths:
            rules += [(contig, 0, lengths[contig], sex, 1) for sex in ("M", "F")]
    return rules


def par_rules(path: str, contigs: Sequence[tuple[str, int]]) -> list[Rule]:
    """The rules of a PAR BED (0-based half-open intervals on X/chrX and Y/chrY)."""
    if not Path(path).is_file():
        raise InputError(f"{path}: PAR BED not found; check the path given to --par-bed")
    pars: dict[str, list[tuple[int, int]]] = {}
    sex_contigs = _NAMES["X"] + _NAMES["Y"]
    for r in read_bed_regions(path, contigs):
        if r.contig not in sex_contigs:
            raise InputError(
                f"{path}: PAR on {r.contig}; PARs lie on X/chrX and Y/chrY, fix the BED"
            )
        pars.setdefault(r.contig, []).append((r.start, r.end))
    return _sex_chromosome_rules(dict(contigs), pars)


def _coordinate(text: str, where: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"{where}: {text!r} is not a position; give an integer or *") from None
    if value < 1:
        raise InputError(f"{where}: position {value} < 1; ploidy files are 1-based")
    return value


def _ploidy_line(fields: list[str], where: str, lengths: dict[str, int]) -> Rule | None:
    """One ploidy-file line as a rule; None for a contig the reference lacks."""
    if len(fields) != 5:
        raise InputError(f"{where}: expected 5 columns CHROM FROM TO SEX PLOIDY; fix the line")
    chrom, first, last, sex, ploidy_text = fields
    if not ploidy_text.isdigit() or int(ploidy_text) > MAX_PLOIDY:
        raise InputError(
            f"{where}: ploidy {ploidy_text!r}; give 0, 1 or 2 (varcall calls up to diploid)"
        )
    if chrom == "*":
        if (first, last) != ("*", "*"):
            raise InputError(f"{where}: CHROM * needs FROM and TO *; fix the line")
        return ("*", 0, 0, sex, int(ploidy_text))
    if chrom not in lengths:
        return None
    length = lengths[chrom]
    start = 0 if first == "*" else _coordinate(first, where) - 1
    end = length if last == "*" else min(length, _coordinate(last, where))
    if end <= start:
        raise InputError(f"{where}: FROM {first} after TO {last} (or past {chrom}'s end)")
    return (chrom, start, end, sex, int(ploidy_text))


def read_ploidy_file(path: str, contigs: Sequence[tuple[str, int]]) -> list[Rule]:
    """The rules of a bcftools-style ploidy file (``CHROM FROM TO SEX PLOIDY``, 1-based
    inclusive, whitespace-separated, ``#`` comments); lines for contigs the reference lacks
    are skipped. InputError naming the file and line for anything malformed."""
    lengths = dict(contigs)
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(
            f"{path}: cannot read the ploidy file ({e}); give CHROM FROM TO SEX PLOIDY lines"
        ) from None
    rules: list[Rule] = []
    skipped: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        rule = _ploidy_line(line.split(), f"{path}:{lineno}", lengths)
        if rule is None:
            skipped.add(line.split()[0])
        else:
            rules.append(rule)
    if not rules:
        raise InputError(f"{path}: no ploidy line for a contig of the reference; fix the names")
    if skipped:
        logger.info("%s: contigs not in the reference skipped: %s", path, ", ".join(sorted(skipped)))
    return rules


def read_samples_file(
    path: str, samples: Sequence[str], sexes: Sequence[str]
) -> tuple[tuple[str, str], ...]:
    """(sample, sex) of every cohort sample from a ``SAMPLE SEX`` file (whitespace-
    separated, ``#`` comments). InputError naming the file for an unknown sex code, a
    sample given twice or not in the cohort, and cohort samples it does not name."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the samples file ({e}); give SAMPLE SEX lines") from None
    cohort = set(samples)
    sex_of: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split()
        where = f"{path}:{lineno}"
        if len(fields) != 2:
            raise InputError(f"{where}: expected 2 columns SAMPLE SEX; fix the line")
        name, sex = fields
        if sex not in sexes:
            raise InputError(
                f"{where}: sex {sex!r} of {name} is not one the ploidy definition names; "
                f"use {', '.join(sexes[:-1])} or {sexes[-1]}"
            )
        if name not in cohort:
            raise InputError(
                f"{where}: sample {name} is not in the cohort (@RG SM of the BAMs); fix the name"
            )
        if name in sex_of:
            raise InputError(f"{where}: sample {name} given twice; keep one line")
        sex_of[name] = sex
    missing = [s for s in samples if s not in sex_of]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputError(f"{path}: no sex for cohort sample(s) {shown}; add a line per sample")
    return tuple((s, sex_of[s]) for s in samples)


def resolve_ploidy(params: CallParams, inputs: CallInputs) -> CallParams:
    """``params`` with ``sex_ploidy`` and ``sample_sex`` read from the ploidy definition
    (``ploidy`` as an assembly name, ``par_bed``, ``ploidy_file``) and ``samples_file``.
    InputError (one line naming the file) for bad files or options."""
    if isinstance(params.ploidy, str) and params.ploidy not in PRESETS:
        raise InputError(f"--ploidy {params.ploidy}: give 1, 2 or one of {', '.join(PRESETS)}")
    if isinstance(params.ploidy, str) and params.par_bed:
        raise InputError(
            f"--par-bed {params.par_bed}: --ploidy {params.ploidy} has its own PARs; give one"
        )
    has_definition = isinstance(params.ploidy, str) or params.par_bed or params.ploidy_file
    if not (has_definition or params.samples_file):
        return params  # nothing to read (rules given directly are kept)
    rules: list[Rule] = []
    if isinstance(params.ploidy, str):
        rules += preset_rules(params.ploidy, inputs.contigs)
    if params.par_bed:
        rules += par_rules(params.par_bed, inputs.contigs)
    if params.ploidy_file:
        rules += read_ploidy_file(params.ploidy_file, inputs.contigs)
    if has_definition and not params.samples_file:
        raise InputError(
            "a ploidy definition (--ploidy GRCh37/GRCh38, --par-bed or --ploidy-file) needs "
            "the samples' sexes; add --samples-file with SAMPLE SEX lines"
        )
    if params.samples_file and not has_definition:
        raise InputError(
            f"--samples-file {params.samples_file}: sexes without a ploidy definition change "
            "nothing; add --ploidy GRCh38 (or GRCh37), --par-bed or --ploidy-file"
        )
    sample_sex: tuple[tuple[str, str], ...] = ()
    if params.samples_file:
        sexes = tuple(dict.fromkeys(["M", "F", *(r[3] for r in rules)]))
        sample_sex = read_samples_file(params.samples_file, inputs.samples, sexes)
    absolute = {  # tasks and the manifest get absolute paths
        name: str(Path(value).resolve())
        for name in ("ploidy_file", "par_bed", "samples_file")
        if (value := getattr(params, name))
    }
    return dataclasses.replace(params, sex_ploidy=tuple(rules), sample_sex=sample_sex, **absolute)


@dataclasses.dataclass(frozen=True)
class ContigPloidy:
    """Per-sample ploidy along one contig: piecewise constant, ``values[i]`` (S,) on
    ``[breaks[i], breaks[i + 1])`` (0-based); ``breaks[0] == 0``, ``breaks[-1]`` the
    contig length."""

    breaks: np.ndarray
    values: np.ndarray

    def at(self, positions: np.ndarray) -> np.ndarray:
        """(N, S) int8 ploidy of every sample at 0-based ``positions`` (N,)."""
        i = np.searchsorted(self.breaks, np.asarray(positions, np.int64), side="right") - 1
        i = np.clip(i, 0, len(self.values) - 1)
        return self.values[i]

    @property
    def uniform(self) -> int | None:
        """The ploidy when every sample has the same one along the whole contig."""
        v = np.unique(self.values)
        return int(v[0]) if v.size == 1 else None

    def intervals(self, sample: int) -> list[tuple[int, int, int]]:
        """(start, end, ploidy) of sample column ``sample``, neighbours merged."""
        out: list[tuple[int, int, int]] = []
        for i in range(len(self.values)):
            s, e, p = int(self.breaks[i]), int(self.breaks[i + 1]), int(self.values[i, sample])
            if out and out[-1][2] == p and out[-1][1] == s:
                out[-1] = (out[-1][0], e, p)
            elif e > s:
                out.append((s, e, p))
        return out


def _sex_profile(
    params: CallParams, sex: str | None, contig: str, length: int, breaks: np.ndarray
) -> np.ndarray:
    """Ploidy of one sex on each segment ``[breaks[i], breaks[i+1])`` of ``contig``."""
    override = dict(params.ploidy_by_contig).get(contig)
    if override is not None:
        return np.full(len(breaks) - 1, override, np.int8)
    base = params.default_ploidy
    for c, _, _, s, p in params.sex_ploidy:
        if c == "*" and s == sex:
            base = p
    out = np.full(len(breaks) - 1, base, np.int8)
    for c, start, end, s, p in params.sex_ploidy:
        if c == contig and s == sex:
            out[(breaks[:-1] >= start) & (breaks[1:] <= end)] = p
    return out


@functools.lru_cache(maxsize=256)
def contig_ploidy(params: CallParams, samples: tuple[str, ...], contig: str, length: int) -> ContigPloidy:
    """The per-sample ploidy along ``contig`` (module docstring: which rule wins).
    ValueError for ``params`` whose files were not read (:func:`resolve_ploidy`)."""
    given = isinstance(params.ploidy, str) or params.par_bed or params.ploidy_file
    if (given or params.samples_file) and not params.sample_sex:
        raise ValueError("ploidy files not read: pass params through resolve_ploidy first")
    cuts = {0, length}
    for c, start, end, _, _ in params.sex_ploidy:
        if c == contig:
            cuts.update((min(start, length), min(end, length)))
    breaks = np.array(sorted(cuts), np.int64)
    sex_of = dict(params.sample_sex)
    profiles: dict[str | None, np.ndarray] = {}
    columns = []
    for s in samples:
        sex = sex_of.get(s)
        if sex not in profiles:
            profiles[sex] = _sex_profile(params, sex, contig, length, breaks)
        columns.append(profiles[sex])
    values = np.stack(columns, axis=1) if columns else np.zeros((len(breaks) - 1, 0), np.int8)
    return ContigPloidy(breaks, values)


def sex_intervals(params: CallParams, inputs: CallInputs) -> dict[str, list[tuple[str, int, int, int]]]:
    """Per sex of the cohort (``params.sample_sex``), in order of first sample: the
    (contig, start, end, ploidy) stretches, 0-based half-open in reference order, where
    that sex's ploidy differs from ``params.default_ploidy`` (for external engines'
    ploidy files and CNV maps). Empty without sexes."""
    first: dict[str, int] = {}
    for i, (_, sex) in enumerate(params.sample_sex):
        first.setdefault(sex, i)
    out: dict[str, list[tuple[str, int, int, int]]] = {sex: [] for sex in first}
    samples = tuple(s for s, _ in params.sample_sex)
    for contig, length in inputs.contigs:
        cp = contig_ploidy(params, samples, contig, length)
        for sex, column in first.items():
            out[sex] += [
                (contig, s, e, p) for s, e, p in cp.intervals(column) if p != params.default_ploidy
            ]
    return out
