"""varcall.core.jit: kernels load from numba's disk cache without numba's registry refresh
(and without importing scipy.linalg), compile as usual on a cache miss, and numba's
BLAS-backed functions still work afterwards."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import varcall

PACKAGE = Path(varcall.__file__).parent

#: Modules that numba's registry refresh imports and loading a cached kernel does not.
REFRESH_ONLY = ("numba.np.polynomial.polynomial_core", "numba.experimental.jitclass.base")

#: Two small kernels, run in a fresh interpreter.
RUN_KERNELS = (
    "import sys\n"
    "import numpy as np\n"
    "from varcall.engines.native.model_numba_fns import log10sumexp\n"
    "from varcall.io.bam_numba_fns import scan_records\n"
    "assert abs(log10sumexp(np.array([0.0, 0.0]), 2) - np.log10(2.0)) < 1e-12\n"
    "assert tuple(scan_records(np.zeros(0, np.uint8), 0, 0, 10)) == (0, False)\n"
)


def _run_ok(code: str, env: dict[str, str] | None = None) -> None:
    """Run ``code`` in a fresh interpreter (``env`` added to the environment); it must
    print ``ok``."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_kernels_live_only_in_numba_fns_modules():
    for path in PACKAGE.rglob("*.py"):
        if not path.name.endswith("_numba_fns.py") and path != PACKAGE / "core" / "jit.py":
            text = path.read_text()
            assert not re.search(r"numba\.(njit|jit)\b|^@kernel\b", text, re.M), path


def test_every_kernel_is_declared_through_varcall_core_jit():
    kernels = sorted(PACKAGE.rglob("*_numba_fns.py"))
    assert kernels
    for path in kernels:
        text = path.read_text()
        assert re.search(r"^from varcall\.core\.jit import kernel\b", text, re.M), path
        assert not re.search(r"^import numba\b|^from numba\b", text, re.M), path
        assert not re.search(r"numba\.(njit|jit|vectorize|guvectorize)\b", text), path
        assert re.search(r"^@kernel\b", text, re.M), path


def test_no_kernel_uses_the_functions_whose_inner_product_depends_on_blas():
    # numba picks np.correlate/np.convolve's float inner product by whether SciPy's BLAS
    # was importable when its registries loaded; varcall.core.jit answers "no"
    for path in PACKAGE.rglob("*_numba_fns.py"):  # every kernel lives in one
        text = path.read_text()
        assert not re.search(r"\b(correlate|convolve)\s*\(", text), path


def test_a_cached_kernel_loads_without_the_registries_or_scipy(tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path)}
    _run_ok(RUN_KERNELS + "print('ok')\n", env)  # compiles into the empty cache
    assert list(tmp_path.rglob("*.nbi"))
    check = (
        RUN_KERNELS + f"for m in {REFRESH_ONLY!r} + ('scipy.linalg',):\n"
        "    assert m not in sys.modules, m\n"
        "print('ok')\n"
    )
    _run_ok(check, env)


def test_a_whole_native_run_loads_its_kernels_without_the_registries(small_cohort, tmp_path):
    # every kernel a single-process call loads (decoder, pileup, model, annotations, VCF
    # writer) comes from the cache; the first run fills it where it was empty
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from varcall.api import call\n"
        f"cohort = Path({str(small_cohort)!r})\n"
        "bams = sorted(str(p) for p in cohort.glob('*.bam'))\n"
        "result = call(cohort / 'reference.fa', bams, sys.argv[1], single_process=True, "
        "overwrite=True)\n"
        "assert result.n_variants > 0\n"
        f"loaded = [m for m in {REFRESH_ONLY!r} + ('scipy.linalg',) if m in sys.modules]\n"
        "print('ok' if not loaded else loaded)\n"
    )
    run = [sys.executable, "-c", code, str(tmp_path / "out")]
    subprocess.run(run, capture_output=True, timeout=600, check=True)  # warms the cache
    out = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_a_cache_miss_compiles_with_the_full_registries(tmp_path):
    code = RUN_KERNELS + f"assert all(m in sys.modules for m in {REFRESH_ONLY!r})\nprint('ok')\n"
    _run_ok(code, {"NUMBA_CACHE_DIR": str(tmp_path)})


def test_blas_is_marked_absent_only_while_a_cache_entry_is_read():
    code = (
        "import sys\n"
        "from varcall.core.jit import BLAS_MODULE, _without_blas\n"
        "assert BLAS_MODULE not in sys.modules\n"
        "with _without_blas():\n"
        "    try:\n"
        "        import scipy.linalg.cython_blas\n"
        "    except ImportError:\n"
        "        pass\n"
        "    else:\n"
        "        raise AssertionError('BLAS imported while marked absent')\n"
        "assert BLAS_MODULE not in sys.modules\n"
        "import scipy.linalg.cython_blas\n"
        "with _without_blas():\n"
        "    assert sys.modules[BLAS_MODULE] is not None  # loaded before: left alone\n"
        "print('ok')\n"
    )
    _run_ok(code)


def test_numba_blas_works_after_varcall_kernels_loaded():
    code = (
        RUN_KERNELS + "import numba\n"
        "f = numba.njit(lambda a, b: np.dot(a, b))\n"
        "assert f(np.arange(3.0), np.ones(3)) == 3.0\n"
        "from varcall.core.jit import BLAS_MODULE\n"
        "assert sys.modules[BLAS_MODULE] is not None\n"
        "print('ok')\n"
    )
    _run_ok(code)


def test_nothing_is_blocked_when_scipy_linalg_is_already_loaded():
    code = (
        "import sys\n"
        "import scipy.linalg.cython_blas\n"
        + RUN_KERNELS
        + "from varcall.core.jit import BLAS_MODULE\n"
        "assert sys.modules[BLAS_MODULE] is not None\n"
        "from numba.np import old_arraymath, new_arraymath\n"
        "assert old_arraymath._HAVE_BLAS or new_arraymath._HAVE_BLAS\n"
        "print('ok')\n"
    )
    _run_ok(code)
