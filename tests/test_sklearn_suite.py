"""The estimators as scikit-learn's MLP, judged by scikit-learn's own tests, and the
package without scikit-learn.

``sklearn/neural_network/tests/test_mlp.py`` of the installed scikit-learn is copied,
its import of ``MLPClassifier`` and ``MLPRegressor`` rewritten to backprop's, and run
by pytest in a subprocess with scikit-learn's own conftest (its fixtures, thread limits
and, with ``SKLEARN_WARNINGS_AS_ERRORS=1``, its warnings as errors). Every test passes;
``DESELECTED`` lists the tests left out and why (none at present). About 20-45 s on
two cores, most of it ``test_n_iter_no_change_inf`` (3000 epochs).
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import backprop

SKLEARN_IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor\n"
BACKPROP_IMPORT = "from backprop import MLPClassifier, MLPRegressor\n"

# test id -> why it is left out
DESELECTED: dict[str, str] = {}

# Appended to the copy: the suite ran against backprop's classes, not scikit-learn's.
IDENTITY_CHECK = """

def test_the_estimators_are_backprops():
    assert MLPClassifier.__module__ == MLPRegressor.__module__ == "backprop.estimators"
"""


def _environment():
    """This process's environment, with the backprop under test first on the path."""
    source = str(Path(backprop.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return dict(
        os.environ,
        PYTHONPATH=source if not path else source + os.pathsep + path,
        SKLEARN_WARNINGS_AS_ERRORS="1",
    )


def test_scikit_learns_mlp_tests_pass(tmp_path):
    pytest.importorskip("sklearn")
    spec = importlib.util.find_spec("sklearn.neural_network.tests.test_mlp")
    if spec is None or spec.origin is None:
        pytest.skip("scikit-learn is installed without its tests")
    source = Path(spec.origin).read_text()
    # the one line rewritten is still there, once: else the copy would test scikit-learn
    assert source.count(SKLEARN_IMPORT) == 1
    (tmp_path / "test_mlp.py").write_text(
        source.replace(SKLEARN_IMPORT, BACKPROP_IMPORT) + IDENTITY_CHECK
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not this project's configuration
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "-p", "sklearn.conftest", "test_mlp.py"]  # fmt: skip
    for test_id in DESELECTED:
        command += ["--deselect", f"test_mlp.py::{test_id}"]
    run = subprocess.run(command, cwd=tmp_path, env=_environment(), capture_output=True,
                         text=True, timeout=900)  # fmt: skip
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    print(summary)
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", summary)}
    assert counts.get("passed", 0) > 50
    assert set(counts) <= {"passed", "deselected"}, summary
    assert counts.get("deselected", 0) == len(DESELECTED)


# Without scikit-learn: a meta-path finder in a fresh interpreter makes every import of
# sklearn fail as it does when scikit-learn is not installed.
WITHOUT_SKLEARN = textwrap.dedent("""
    import json
    import sys

    class NoSklearn:
        def find_spec(self, name, path=None, target=None):
            if name == "sklearn" or name.startswith("sklearn."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoSklearn())
    import numpy as np

    import backprop

    net = backprop.Network([2, 3, 1], seed=0)
    result = {"network": bool(np.isfinite(net.forward(np.ones((4, 2)))).all())}
    for name, statement in [
        ("from", "from backprop import MLPClassifier"),
        ("attribute", "backprop.MLPRegressor"),
        ("module", "import backprop.estimators"),
    ]:
        try:
            exec(statement)
        except ImportError as err:
            result[name] = [type(err).__name__, str(err)]
        else:
            result[name] = None
    print(json.dumps(result))
""")


def test_without_scikit_learn_the_estimators_name_the_extra():
    run = subprocess.run([sys.executable, "-c", WITHOUT_SKLEARN], env=_environment(),
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result.pop("network")  # import backprop and Network work without it
    for name, error in result.items():
        assert error is not None, f"{name}: imported without scikit-learn"
        kind, message = error
        assert kind == "ImportError", (name, error)
        assert 'pip install "backprop[sklearn]"' in message, (name, message)
