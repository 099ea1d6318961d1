"""varcall.core.jit: numba's registries load without importing scipy.linalg, and numba's
BLAS-backed functions still work afterwards."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import varcall

PACKAGE = Path(varcall.__file__).parent


def _run_ok(code: str) -> None:
    """Run ``code`` in a fresh interpreter; it must print ``ok``."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_kernels_live_only_in_numba_fns_modules():
    for path in PACKAGE.rglob("*.py"):
        if not path.name.endswith("_numba_fns.py"):
            assert not re.search(r"numba\.(njit|jit)\b", path.read_text()), path


def test_every_kernel_module_imports_numba_through_varcall_core_jit():
    kernels = sorted(PACKAGE.rglob("*_numba_fns.py"))
    assert kernels
    for path in kernels:
        text = path.read_text()
        assert "from varcall.core.jit import numba" in text, path
        assert not re.search(r"^import numba\b|^from numba\b", text, re.M), path


def test_no_kernel_uses_the_functions_whose_inner_product_depends_on_blas():
    # numba picks np.correlate/np.convolve's float inner product by whether SciPy's BLAS
    # was importable when its registries loaded; varcall.core.jit answers "no"
    for path in PACKAGE.rglob("*_numba_fns.py"):  # every kernel lives in one
        text = path.read_text()
        assert not re.search(r"\b(correlate|convolve)\s*\(", text), path


def test_registries_load_without_scipy_linalg_and_blas_still_works():
    code = (
        "import sys\n"
        "import numpy as np\n"
        "import varcall.engines.native.engine\n"
        "from varcall.core.jit import BLAS_MODULE, numba\n"
        "assert 'scipy.linalg' not in sys.modules\n"
        "assert BLAS_MODULE not in sys.modules\n"
        "f = numba.njit(lambda a, b: np.dot(a, b))\n"
        "assert f(np.arange(3.0), np.ones(3)) == 3.0\n"
        "assert sys.modules[BLAS_MODULE] is not None\n"
        "print('ok')\n"
    )
    _run_ok(code)


def test_nothing_is_blocked_when_scipy_linalg_is_already_loaded():
    code = (
        "import sys\n"
        "import scipy.linalg.cython_blas\n"
        "from varcall.core.jit import BLAS_MODULE\n"
        "assert sys.modules[BLAS_MODULE] is not None\n"
        "from numba.np import old_arraymath, new_arraymath\n"
        "assert old_arraymath._HAVE_BLAS or new_arraymath._HAVE_BLAS\n"
        "print('ok')\n"
    )
    _run_ok(code)
