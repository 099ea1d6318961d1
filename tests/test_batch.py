"""varcall.run.jobs without a batch system: the job keeper's decisions on a fake dask-jobqueue
cluster, and the --cluster-timeout message. The real thing runs in tests/test_slurm.py."""

from __future__ import annotations

import asyncio

import pytest

from varcall.core.errors import VarcallError
from varcall.run.clusters import ClusterSpec
from varcall.run.jobs import JobKeeper, wait_for_first_worker


class FakeJob:
    def __init__(self, name: str, job_id: str) -> None:
        self.name, self.job_id, self.closed = name, job_id, False

    async def close(self) -> None:
        self.closed = True


class FakeCluster:
    """What JobKeeper uses of a dask-jobqueue cluster (SpecCluster)."""

    def __init__(self, n: int) -> None:
        self.status = "Status.running"
        self.periodic_callbacks: dict = {}
        self._i = 0
        self._next_id = 100
        self.worker_spec: dict = {}
        self.workers: dict = {}
        self.scheduler_info: dict = {"workers": {}}
        for _ in range(n):
            name = self._new_worker_name(self._i)
            while name in self.worker_spec:
                self._i += 1
                name = self._new_worker_name(self._i)
            self.worker_spec[name] = {"cls": "job"}
        asyncio.run(self._correct_state())

    def _new_worker_name(self, i: int) -> str:
        return f"SLURMCluster-{i}"

    async def _correct_state(self) -> None:
        for name in set(self.worker_spec) - set(self.workers):
            self._next_id += 1
            self.workers[name] = FakeJob(name, str(self._next_id))
        for name in set(self.workers) - set(self.worker_spec):
            await self.workers.pop(name).close()

    def connect(self, *names: str) -> None:
        self.scheduler_info["workers"] = {f"tcp://w/{n}": {"name": n} for n in names}


def check(keeper: JobKeeper) -> None:
    asyncio.run(keeper._check())


def test_connected_workers_are_left_alone():
    c = FakeCluster(2)
    keeper = JobKeeper(c, "pbs", grace=0)
    c.connect("SLURMCluster-0", "SLURMCluster-1")
    check(keeper)
    check(keeper)
    assert keeper.replaced == []
    assert sorted(c.workers) == ["SLURMCluster-0", "SLURMCluster-1"]


def test_lost_worker_job_is_replaced_under_a_new_name():
    c = FakeCluster(2)
    record: dict = {}
    keeper = JobKeeper(c, "pbs", record, grace=0)
    c.connect("SLURMCluster-0", "SLURMCluster-1")
    check(keeper)
    lost_job = c.workers["SLURMCluster-0"]
    c.connect("SLURMCluster-1")  # job of worker 0 cancelled
    check(keeper)
    assert [r["job_id"] for r in record["replaced_jobs"]] == [lost_job.job_id]
    entry = record["replaced_jobs"][0]
    assert entry["reason"] == "worker lost"
    assert c.workers[entry["replacement"]].job_id == entry["replacement_job_id"]
    assert lost_job.closed
    assert "SLURMCluster-0" not in c.worker_spec and "SLURMCluster-0" not in c.workers
    assert len(c.worker_spec) == 2 and len(c.workers) == 2  # back at strength
    new = (set(c.workers) - {"SLURMCluster-1"}).pop()
    assert c.workers[new].job_id not in (lost_job.job_id, c.workers["SLURMCluster-1"].job_id)
    # the replacement has not connected yet: it is not lost
    check(keeper)
    assert len(record["replaced_jobs"]) == 1


def test_a_worker_gone_for_less_than_the_grace_time_is_kept():
    c = FakeCluster(1)
    keeper = JobKeeper(c, "pbs", grace=3600)
    c.connect("SLURMCluster-0")
    check(keeper)
    c.connect()
    check(keeper)
    assert keeper.replaced == [] and "SLURMCluster-0" in c.workers


def test_scaled_down_workers_are_not_replaced():
    c = FakeCluster(2)
    keeper = JobKeeper(c, "pbs", grace=0)
    c.connect("SLURMCluster-0", "SLURMCluster-1")
    check(keeper)
    del c.worker_spec["SLURMCluster-1"]  # adaptive scaling retires it
    c.connect("SLURMCluster-0")
    check(keeper)
    assert keeper.replaced == []
    assert sorted(c.worker_spec) == ["SLURMCluster-0"]
    assert not c.workers["SLURMCluster-1"].closed  # dask closes it, not the keeper


def test_replacements_are_bounded():
    c = FakeCluster(1)
    keeper = JobKeeper(c, "pbs", grace=0, max_replacements=2)
    for _ in range(4):
        name = next(iter(c.workers))
        c.connect(name)
        check(keeper)
        c.connect()
        check(keeper)
    assert len(keeper.replaced) == 2


class SlowClient:
    def wait_for_workers(self, n: int, timeout: float) -> None:
        raise TimeoutError(f"{n} workers not there after {timeout} s")


def test_cluster_timeout_message_is_one_line_with_the_fix():
    c = FakeCluster(1)
    with pytest.raises(VarcallError) as e:
        wait_for_first_worker(SlowClient(), c, "pbs", 5)
    msg = str(e.value)
    assert "\n" not in msg
    assert "no worker started within --cluster-timeout 5 s" in msg
    assert "job 101" in msg and "--fallback-local" in msg


def test_fallback_local_needs_cluster_timeout():
    with pytest.raises(VarcallError, match="--fallback-local needs --cluster-timeout"):
        ClusterSpec(kind="slurm", fallback_local=True)
    assert ClusterSpec(kind="slurm", fallback_local=True, cluster_timeout=10).fallback_local
