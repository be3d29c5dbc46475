"""The hand-written C kernels (src/backprop/_kernels/*.h) on their own, without Python.

tests/c/test_tile_gemm.c checks bp_tile_sgemm/dgemm against naive loops in long double
over every transpose, alpha and beta (0 and 1 among them), k = 0 and shapes on either
side of the tile edges, and bp_sum_squares_d/f against a naive sum. It is compiled
warning-free (-Wall -Wextra -Werror) for a baseline x86-64 target and for this machine,
the two kinds of target the kernels are built for, and must exit 0.
"""

import platform
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "src" / "backprop" / "_kernels"
SOURCE = ROOT / "tests" / "c" / "test_tile_gemm.c"
X86 = platform.machine().lower() in ("x86_64", "amd64")


# A baseline x86-64 target (what a wheel is built for) and this machine's (a local build).
MARCHES = [
    pytest.param("x86-64-v2", marks=pytest.mark.skipif(not X86, reason="x86-64 only")),
    "native",
]


@pytest.mark.parametrize("march", MARCHES)
def test_c_kernels(tmp_path, march):
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (cc) on PATH")
    binary = tmp_path / f"test_tile_gemm_{march}"
    flags = ["-O2", f"-march={march}", "-std=c11", "-fopenmp", "-Wall", "-Wextra", "-Werror"]
    build = subprocess.run(
        [cc, *flags, "-I", str(KERNELS), str(SOURCE), "-o", str(binary)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(binary)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 failures" in run.stdout
