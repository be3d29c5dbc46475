"""README's examples run as a reader would paste them: every ```python block on its own, in
a fresh interpreter importing the package under test. A block needing a package that is not
installed is skipped; ```bash blocks are not run."""

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import child_env

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```python\n(.*?)^```$", re.M | re.S)
# Names backprop imports on first use from an optional package, and that package.
OPTIONAL_NAMES = {"MLPClassifier": "sklearn", "MLPRegressor": "sklearn"}


def python_blocks() -> list[tuple[int, str]]:
    """(line number, code) of every ```python block in README.md."""
    if not README.exists():  # tests run from an installed copy without the repository
        return []
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in FENCE.finditer(text)]


def needed_modules(code: str) -> set[str]:
    """The top-level modules ``code`` imports, and the optional ones its backprop names need."""
    needed = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            needed |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            needed.add(node.module.split(".")[0])
            if node.module == "backprop":
                needed |= {OPTIONAL_NAMES[a.name] for a in node.names if a.name in OPTIONAL_NAMES}
        elif isinstance(node, ast.Attribute) and node.attr in OPTIONAL_NAMES:
            needed.add(OPTIONAL_NAMES[node.attr])
    return needed


BLOCKS = python_blocks()


def test_readme_has_python_examples():
    if not README.exists():
        pytest.skip("README.md is not next to the tests")
    assert len(BLOCKS) >= 2


def test_needed_modules():
    code = "import numpy as np\nimport torch.nn\nfrom backprop import MLPRegressor, Network\n"
    assert needed_modules(code) == {"numpy", "torch", "backprop", "sklearn"}
    assert needed_modules("import backprop\nbackprop.MLPClassifier()") == {"backprop", "sklearn"}
    assert needed_modules("from . import x\nprint(1)") == set()


@pytest.mark.parametrize("line,code", BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS])
def test_each_python_block_runs_on_its_own(line, code, tmp_path):
    missing = sorted(m for m in needed_modules(code) if importlib.util.find_spec(m) is None)
    if missing:
        pytest.skip(f"README.md line {line} needs {', '.join(missing)}")
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,  # whatever a block writes stays out of the repository
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"README.md line {line}:\n{done.stderr}"
