"""What ``import backprop`` costs: it loads NumPy and its own modules, not SciPy's linear
algebra (~0.3 s on its own: the kernels bind scipy's BLAS on their first call) nor
scikit-learn (the estimators are imported on first use); and Dask stays optional."""

import subprocess
import sys

from conftest import child_env

DEFERRED = ["scipy.linalg", "scipy.optimize", "scipy.sparse", "sklearn"]


def child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=120
    )


def test_import_defers_scipy_and_sklearn():
    done = child(f"import sys, backprop; print([m for m in {DEFERRED!r} if m in sys.modules])")
    assert (done.returncode, done.stdout) == (0, "[]\n"), done.stderr


def test_dask_stays_optional():
    # the estimators import no part of Dask, and fit and predict without it installed
    code = """
import sys
sys.modules["dask"] = sys.modules["distributed"] = None
import numpy as np
from backprop import MLPClassifier
X = np.random.default_rng(0).standard_normal((60, 3))
y = (X[:, 0] > 0).astype(int)
clf = MLPClassifier(hidden_layer_sizes=(4,), solver="lbfgs", random_state=0).fit(X, y)
assert clf.score(X, y) > 0.9
print("ok")
"""
    done = child(code)
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr
    imported = child("import sys, backprop.estimators; print('dask' in sys.modules)")
    assert (imported.returncode, imported.stdout) == (0, "False\n"), imported.stderr


def test_the_first_call_binds_blas_and_uses_it():
    # a narrow product for BLAS (a transposed layer of 5 units: X W with W 600 x 5), in a
    # fresh process: the plan binds BLAS first, so the first call's result is bit for bit
    # a later call's (the tiles, which stand in for an unbound BLAS, round differently)
    code = """
import numpy as np, sys, backprop
from backprop import _core
assert "scipy.linalg" not in sys.modules
net = backprop.Network([600, 5], seed=0, dtype=np.float32, output="identity")
assert net._arch.transposed
X = np.random.default_rng(0).standard_normal((512, 600), dtype=np.float32)
out = net.forward(X)
assert "scipy.linalg.cython_blas" in sys.modules
assert _core.blas_library() is None or _core.blas_threads() >= 1
assert np.array_equal(out, net.forward(X))
_core.set_thresholds(0, 1 << 40, 1 << 40, 1 << 40)
tiles = net.forward(X)
assert not np.array_equal(out, tiles)
np.testing.assert_allclose(out, tiles, rtol=1e-4, atol=1e-5)
print("ok")
"""
    done = child(code)
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr
