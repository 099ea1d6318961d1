"""Simulated cohorts with known truth (reference, variants, reads)."""
