"""glibc malloc settings and numpy's huge pages in varcall's own processes
(varcall.core.allocator): applied by the CLI and given to local Dask workers, never over
a user's own MALLOC_* or NUMPY_MADVISE_HUGEPAGE settings."""

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


def test_no_huge_page_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy's huge-page requests off in this process and in the workers' environment,
    unless the environment sets NUMPY_MADVISE_HUGEPAGE."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    before = core.multiarray._get_madvise_hugepage()
    try:
        monkeypatch.delenv(allocator.HUGEPAGE_VARIABLE, raising=False)
        assert allocator.no_huge_pages()
        assert core.multiarray._get_madvise_hugepage() is False
        assert allocator.worker_environ()[allocator.HUGEPAGE_VARIABLE] == "0"
        core.multiarray._set_madvise_hugepage(True)
        monkeypatch.setenv(allocator.HUGEPAGE_VARIABLE, "1")
        assert not allocator.no_huge_pages()
        assert core.multiarray._get_madvise_hugepage() is True
        assert allocator.HUGEPAGE_VARIABLE not in allocator.worker_environ()
    finally:
        core.multiarray._set_madvise_hugepage(before)
