"""PCR stutter in tandem repeats: the indel error model of the native engine.

A read from a haplotype whose repeat tract (period ``p`` = unit length in bp, 1 for a
homopolymer, up to :data:`MAX_PERIOD`; length ``L`` bp) shows the tract ``k`` units longer
(``k > 0``, expansion) or shorter (``k < 0``, contraction) with probability

    s(p, L, k) = s1(p, L, dir) * r(dir)^(|k| - 1),   dir = up (k > 0) or down (k < 0)
    s1(p, L, dir) = min(S1_MAX, logistic(a(p, dir) + b(p, dir) (L - L_CENTER)))

for ``L >= 2p`` (two copies) and ``L >= MIN_STUTTER_TRACT`` (6 bp; 0 otherwise). The coefficients are the *stutter table*, a
flat tuple of :data:`TABLE_LEN` floats (``CallParams.stutter_table``): for each period
1..6 and direction (down, up) the pair ``(a, b)``, then ``r(down)``, ``r(up)``, then the
pair ``(c, d)`` of the *repeat variant prior*

    pi(L) = min(0.99, max(THETA, logistic(c + d (L - L_CENTER))))

the prior probability that a repeat tract of ``L`` bp carries a non-reference allele in
the cohort (the QUAL prior of an indel site whose alleles are whole units of a tract, see
:mod:`varcall.engines.native.model`; every other site has ``THETA``). It is fitted from
the run's own reads at repeat loci (:mod:`varcall.engines.native.calibrate`) around the
built-in prior :data:`PRIOR_TABLE`, whose ``(c, d)`` give ``THETA`` at every length. A
table of the 26 numbers of earlier versions (no ``(c, d)``) reads as that prior.

:func:`site_stutter` turns the table into, per indel site, the probabilities that a read
from allele ``a`` shows allele ``b`` (both whole units of the site's repeat), used by
:mod:`varcall.engines.native.observations`.
"""

from __future__ import annotations

import math

import numpy as np

from varcall.engines.native.repeats import site_tract

__all__ = [
    "MAX_PERIOD",
    "TABLE_LEN",
    "THETA",
    "full_table",
    "L_CENTER",
    "S1_MAX",
    "MAX_STEP",
    "MAX_TOTAL",
    "PRIOR_TABLE",
    "StutterModel",
    "allele_units",
    "site_stutter",
]

#: Longest repeat unit (bp) modelled.
MAX_PERIOD = 6
#: Entries of a stutter table: (a, b) per period and direction, then r(down), r(up),
#: then (c, d) of the repeat variant prior.
TABLE_LEN = MAX_PERIOD * 4 + 4
#: Where the step ratios and the repeat variant prior start in a table.
RATIO_AT = MAX_PERIOD * 4
VARIANT_PRIOR_AT = RATIO_AT + 2
#: Prior probability that a candidate site is variant (the QUAL prior; at repeat indel
#: sites at least this).
THETA = 1e-3
#: Largest repeat variant prior (a prior of 1 would make QUAL infinite whatever the reads).
MAX_VARIANT_PRIOR = 0.99
#: Tract length (bp) at which ``a`` is the logit of the one-unit stutter rate.
L_CENTER = 15.0
#: Shortest tract (bp) that stutters: below it (where the table, fitted on tracts of
#: 10 bp and more, would be extrapolated) the generic indel cap alone applies.
MIN_STUTTER_TRACT = 6
#: Largest one-unit stutter rate per direction.
S1_MAX = 0.25
#: Largest total stutter probability of a tract (the steps are scaled down to it).
MAX_TOTAL = 0.5
#: Largest step (units) whose probability counts towards a tract's total stutter.
MAX_STEP = 3


def _prior() -> tuple[float, ...]:
    """The prior table: PCR-amplified Illumina libraries. Homopolymer contractions
    ~1 % at 10 bp, ~4 % at 20 bp, ~17 % at 30 bp (logit slope 0.15 per bp), expansions
    about 0.3 x contractions; longer units stutter less per bp of tract (dinucleotides
    0.5 x, 3-6 bp units 0.3 x at equal length); a two-unit step is 0.15 x a one-unit one."""
    out: list[float] = []
    for p in range(1, MAX_PERIOD + 1):
        shift = 0.0 if p == 1 else (0.7 if p == 2 else 1.2)
        a_down = -3.85 - shift
        out += [a_down, 0.15, a_down - 1.2, 0.15]
    return tuple(out + [0.15, 0.15, math.log(THETA / (1 - THETA)), 0.0])


#: The fallback table (see :func:`_prior`).
PRIOR_TABLE = _prior()


def full_table(table: tuple[float, ...]) -> tuple[float, ...]:
    """``table`` with :data:`TABLE_LEN` entries: a table of earlier versions (no repeat
    variant prior) gets the prior's ``(c, d)``; ValueError for any other length."""
    if len(table) == VARIANT_PRIOR_AT:
        return tuple(table) + PRIOR_TABLE[VARIANT_PRIOR_AT:]
    if len(table) != TABLE_LEN:
        raise ValueError(f"a stutter table has {TABLE_LEN} entries, not {len(table)}")
    return tuple(table)


class StutterModel:
    """Stutter probabilities from a table (module docstring)."""

    def __init__(self, table: tuple[float, ...]) -> None:
        table = full_table(table)
        self.coef = np.asarray(table[:RATIO_AT], np.float64).reshape(MAX_PERIOD, 2, 2)
        self.ratio = (float(table[RATIO_AT]), float(table[RATIO_AT + 1]))
        self.prior = (float(table[VARIANT_PRIOR_AT]), float(table[VARIANT_PRIOR_AT + 1]))

    def one_unit(self, period: int, length: float, up: bool) -> float:
        """s1: probability of a one-unit contraction (``up`` False) or expansion of a
        ``length`` bp tract of unit length ``period``."""
        if period < 1 or period > MAX_PERIOD or length < max(2 * period, MIN_STUTTER_TRACT):
            return 0.0
        a, b = self.coef[period - 1, int(up)]
        x = a + b * (length - L_CENTER)
        return min(S1_MAX, 1.0 / (1.0 + math.exp(-x)))

    def step(self, period: int, length: float, k: int) -> float:
        """s(p, L, k): probability that a read shows the tract ``k`` units off (k != 0)."""
        if k == 0:
            return 0.0
        up = k > 0
        if not up and length + k * period < 0:
            return 0.0
        return self.one_unit(period, length, up) * self.ratio[int(up)] ** (abs(k) - 1)

    def variant_prior(self, length: float) -> float:
        """pi(L): prior probability that a tract of ``length`` bp is variant (module
        docstring); ``THETA`` outside repeats (``length`` 0)."""
        if length <= 0:
            return THETA
        c, d = self.prior
        x = min(50.0, max(-50.0, c + d * (length - L_CENTER)))
        return min(MAX_VARIANT_PRIOR, max(THETA, 1.0 / (1.0 + math.exp(-x))))

    def total(self, period: int, length: float) -> float:
        """Probability that a read shows the tract 1..MAX_STEP units off either way."""
        return sum(self.step(period, length, k) for k in range(-MAX_STEP, MAX_STEP + 1) if k != 0)


def allele_units(alleles: list[tuple[str, str]], unit: str, length: int) -> list[int | None]:
    """Per allele descriptor (REF first, anchored at POS; the tract starts at POS + 1 with
    ``unit``, ``length`` bp): the units it adds (> 0) or removes (< 0), or None when it is
    not a whole number of units of the tract (SNVs, other indels)."""
    out: list[int | None] = []
    p = len(unit)
    for kind, seq in alleles:
        n = len(seq)
        if kind == "R":
            out.append(0)
        elif kind in "ID" and p and n % p == 0 and seq == unit * (n // p):
            out.append(n // p if kind == "I" else (-(n // p) if n <= length else None))
        else:
            out.append(None)
    return out


def site_stutter(
    model: StutterModel,
    alleles: list[tuple[str, str]],
    ref: np.ndarray,
    ref_text: str,
    ref_lo: int,
    pos: int,
    width: int,
) -> tuple[np.ndarray, np.ndarray, float]:
    """(keep (A,), trans (A, A)) of the indel site at 0-based ``pos``: for a read from
    allele ``a``, ``trans[a, b]`` is the probability that it shows allele ``b`` (a stutter
    product of ``a``) and ``keep[a] = 1 - sum_b trans[a, b]`` that it shows ``a`` itself
    or a stutter product that is not an allele of the site (such a read fits ``a`` or its
    nearest allele best; a read that cannot tell the alleles apart then has the same
    likelihood under every allele). Sites with fewer than two alleles
    that are whole units of a repeat tract (every site outside repeats) get keep 1 and no
    transitions. ``width`` = A (MAX_ALLELES). Third: the site's QUAL prior, pi(L) of its
    reference tract where it has two such alleles, else THETA."""
    keep = np.ones(width)
    trans = np.zeros((width, width))
    period, length = site_tract(ref, ref_lo, pos)
    if period == 0:
        return keep, trans, THETA
    start = pos + 1 - ref_lo
    units = allele_units(alleles, ref_text[start : start + period], length)
    if sum(u is not None for u in units) < 2:
        return keep, trans, THETA
    for a, ua in enumerate(units):
        if ua is None:
            continue
        la = length + ua * period
        total = model.total(period, la)
        scale = min(1.0, MAX_TOTAL / total) if total > 0 else 1.0
        for b, ub in enumerate(units):
            if b != a and ub is not None and 0 < abs(ub - ua) <= MAX_STEP:
                trans[a, b] = model.step(period, la, ub - ua) * scale
        keep[a] = 1.0 - trans[a].sum()
    return keep, trans, model.variant_prior(length)
