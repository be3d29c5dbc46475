"""The sdist holds everything a build and a test run need: every tracked file of the kernels,
the tests (helper modules and C test included) and the benchmarks, README and LICENSE;
and nothing a build generates.

The file list is setuptools' own (``setup.py egg_info`` writes the sdist's SOURCES.txt
without building anything), compared with git's list of tracked files; these tests run
only from a git checkout of the sources.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What the sdist must hold besides the Python package, which setuptools finds by itself.
REQUIRED = ["src/backprop/_kernels", "tests", "benches", "README.md", "LICENSE"]


@pytest.fixture(scope="module")
def tracked() -> set[str]:
    """Git's tracked files under REQUIRED."""
    if not (ROOT / "setup.py").is_file() or shutil.which("git") is None:
        pytest.skip("not run from a source checkout")
    listing = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--", *REQUIRED], capture_output=True, text=True
    )
    if listing.returncode != 0 or not listing.stdout:
        pytest.skip("not run from a git checkout")
    return set(listing.stdout.split())


@pytest.fixture(scope="module")
def shipped(tracked, tmp_path_factory) -> set[str]:
    """The files setuptools puts in the sdist."""
    egg_base = tmp_path_factory.mktemp("egg_info")
    run = subprocess.run(
        [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(egg_base)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    (sources,) = egg_base.glob("*.egg-info/SOURCES.txt")
    return set(sources.read_text().split())


def test_sdist_holds_the_kernels_tests_and_benchmarks(tracked, shipped):
    assert {"src/backprop/_kernels/_core.pyx", "tests/tutorial.py"} <= tracked
    missing = sorted(tracked - shipped)
    assert not missing, f"tracked files missing from the sdist: {missing}"


def test_sdist_holds_no_build_products(shipped):
    built = sorted(name for name in shipped if name.endswith((".so", ".pyd", ".pyc", ".c")))
    assert all(name.startswith("tests/c/") for name in built), built
