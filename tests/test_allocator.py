"""glibc malloc settings of varcall's own processes (varcall.core.allocator): applied by
the CLI and given to local Dask workers, never over a user's own MALLOC_* settings."""

from __future__ import annotations

import platform

import pytest

from varcall.core import allocator
from varcall.run import forkserver


def _no_malloc_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in [k for k in os.environ if k.startswith("MALLOC_")]:
        monkeypatch.delenv(key)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_applied_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_malloc_env(monkeypatch)
    assert allocator.keep_freed_memory()


def test_user_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_malloc_env(monkeypatch)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert allocator.user_malloc_settings()
    assert not allocator.keep_freed_memory()
    assert "MALLOC_MMAP_MAX_" not in forkserver._worker_environ()


def test_local_workers_get_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fork server's environment (forked workers inherit glibc's settings from it):
    the allocator's variables, not Dask's 65536-byte trim threshold."""
    _no_malloc_env(monkeypatch)
    env = forkserver._worker_environ()
    for key, value in allocator.ENVIRON.items():
        assert env[key] == value
    assert env["MALLOC_TRIM_THRESHOLD_"] == str(allocator.TRIM_THRESHOLD)
