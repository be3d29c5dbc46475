"""The hand-written C kernels (src/backprop/_kernels/*.h) on their own, without Python.

tests/c/test_tile_gemm.c checks bp_tile_sgemm/dgemm against naive loops in long double
over every transpose, alpha and beta (0 and 1 among them), k = 0 and shapes on either
side of the tile edges, and bp_sum_squares_d/f against a naive sum. tests/c/test_team.c
checks the two-core paths' team of threads: every part run once, by either thread, hot
and asleep, and a forked child that trains again. tests/c/test_fma_peak.c checks that the
peak probe computes every chain it counts, against scalar code, bit for bit. Each is
compiled warning-free (-Wall -Wextra -Werror) for every CPU target the kernels are built
for (``backprop._cpu``) and must exit 0 on each one this CPU runs. test_tile_gemm.c is
also built for the baseline with AVX-512's 64-byte vectors (BP_VBYTES=64, each vector
operation done in parts): the code the x86-64-v4 wheel runs, 16 floats to a vector and
tiles of 8 rows, run on a CPU without AVX-512.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

from backprop import _cpu

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "src" / "backprop" / "_kernels"
SOURCES = ("test_tile_gemm.c", "test_team.c", "test_fma_peak.c")


def _build_and_run(tmp_path, target, source, defines=()):
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (cc) on PATH")
    binary = tmp_path / f"{source[:-2]}_{target}"
    march = _cpu.TARGETS[target][1]
    # GNU C, as the extension is built: floating-point contraction (FMA) on, so that the
    # packed and plain tiles are compared bit for bit as they ship
    flags = ["-O3", "-std=gnu11", "-pthread", "-Wall", "-Wextra", "-Werror", *defines]
    if march:
        flags.append(f"-march={march}")
    build = subprocess.run(
        [cc, *flags, "-I", str(KERNELS), str(ROOT / "tests" / "c" / source), "-o", str(binary)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    lacking = _cpu.missing_flags(target, _cpu.cpu_flags())
    if lacking:
        pytest.skip(f"built; this CPU lacks {', '.join(lacking)} to run it")
    run = subprocess.run([str(binary)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 failures" in run.stdout


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("target", _cpu.platform_targets())
def test_c_kernels(tmp_path, target, source):
    _build_and_run(tmp_path, target, source)


@pytest.mark.skipif(not _cpu.is_x86(), reason="AVX-512's vector width is an x86 target's")
def test_tiles_at_avx512_width(tmp_path):
    # every transpose round, 16-lane masks included, and MR x 2 tiles of 16 floats
    _build_and_run(tmp_path, _cpu.platform_targets()[0], "test_tile_gemm.c",
                   defines=("-DBP_VBYTES=64",))  # fmt: skip
