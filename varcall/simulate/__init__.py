"""Simulated cohorts with known truth (reference, variants, reads).

:mod:`~varcall.simulate.config` (what to simulate), :mod:`~varcall.simulate.reference`,
:mod:`~varcall.simulate.variants`, :mod:`~varcall.simulate.haplotypes`,
:mod:`~varcall.simulate.reads`, :mod:`~varcall.simulate.sam`, and
:mod:`~varcall.simulate.cohort` (``simulate_cohort``: the output folder)."""
