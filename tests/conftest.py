"""Shared fixtures: simulated cohorts, built once per test session, and Dask clients, one
per test module.

Each cohort fixture returns the cohort folder (a :class:`pathlib.Path`) laid out as
``varcall simulate`` writes it: ``reference.fa`` (+ .fai), ``truth.vcf.gz`` (+ .tbi),
``confident.bed``, ``S01.bam`` ... (+ .bai), ``bams.txt``, ``simulation.json``.
Treat the folders as read-only: they are shared by every test of the session.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from varcall.simulate.cohort import simulate_cohort
from varcall.simulate.config import SimulationConfig

#: the configurations behind the fixtures (tests may read them, e.g. for the boundaries)
COHORT_CONFIG = SimulationConfig(
    n_samples=3, n_contigs=2, contig_length=200_000, coverage=30.0, seed=1
)
SMALL_COHORT_CONFIG = SimulationConfig(
    n_samples=3,
    n_contigs=2,
    contig_length=40_000,
    coverage=20.0,
    seed=7,
    boundary_positions=(10_000, 20_000, 30_000),
)
HAPLOID_COHORT_CONFIG = SimulationConfig(
    n_samples=1,
    n_contigs=1,
    contig_length=30_000,
    coverage=20.0,
    n_haploid_contigs=1,
    seed=11,
)


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Default cohort: 3 samples, 2 diploid contigs x 200 kb, 30x, seed 1."""
    return simulate_cohort(tmp_path_factory.mktemp("cohort") / "cohort", COHORT_CONFIG)


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 samples, 2 diploid contigs x 40 kb, 20x, seed 7, boundary variants planted at
    10,000 / 20,000 / 30,000 on chr1 (see ``SimulationConfig.boundary_positions``)."""
    return simulate_cohort(tmp_path_factory.mktemp("small") / "cohort", SMALL_COHORT_CONFIG)


@pytest.fixture(scope="session")
def haploid_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 sample, 1 haploid contig x 30 kb, 20x, seed 11."""
    return simulate_cohort(tmp_path_factory.mktemp("haploid") / "cohort", HAPLOID_COHORT_CONFIG)


@contextlib.contextmanager
def _dask_client(**cluster: Any) -> Iterator[Any]:
    """A ``distributed.Client`` of a LocalCluster of 2 single-thread workers (``cluster``:
    the LocalCluster's other arguments); both are closed on exit."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, **cluster) as local,
        Client(local) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """The caller's own Dask client: 2 thread workers in this process."""
    with _dask_client(processes=False, dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def process_client() -> Iterator[Any]:
    """A Dask client of 2 worker processes on 127.0.0.1 (for tests that kill a worker)."""
    with _dask_client(processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0") as c:
        yield c
