"""The base-quality penalty table of pass 2 equals its kernel bit for bit."""

from __future__ import annotations

import numpy as np

from varcall.engines.native.observations_numba_fns import BASE_PENALTY, mismatch_penalty


def test_base_penalty_table_matches_kernel_bits() -> None:
    kernel = np.array([mismatch_penalty(float(q), 255.0) for q in range(256)])
    assert BASE_PENALTY.dtype == np.float64 and BASE_PENALTY.shape == (256,)
    assert np.array_equal(BASE_PENALTY.view(np.uint64), kernel.view(np.uint64))


def test_base_penalty_table_is_monotone_and_capped() -> None:
    # quality 0..1 share the 0.75 error cap; above it a better base costs more to mismatch
    assert BASE_PENALTY[0] == BASE_PENALTY[1]
    assert np.all(np.diff(BASE_PENALTY[1:]) > 0)
