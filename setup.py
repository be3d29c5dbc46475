"""Declares the compiled extension; all other metadata lives in pyproject.toml.

Environment switches:
  BACKPROP_DEBUG_CYTHON=1  bounds, wraparound and initialisation checks on, no
                           optimisation: a debug build.
  BACKPROP_MARCH=...       the -march the kernels are compiled for. The default,
                           "native", fits the machine that builds them (what
                           ``pip install .`` wants: the element-wise kernels vectorise
                           to its widest SIMD); set e.g. "x86-64-v2" for a wheel that
                           must run on other machines, or "" for the compiler's default.
"""

import os
import platform

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("BACKPROP_DEBUG_CYTHON", "0") not in ("", "0")
MARCH = os.environ.get("BACKPROP_MARCH", "native")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}

# No FP traps are ever enabled, so the compiler may if-convert the kernels' branches
# on floating-point comparisons, which lets their loops vectorise; and nothing reads
# errno, so sqrt needs no error path and vectorises too (Adam's step).
flags = ["-O0", "-g"] if DEBUG else ["-O3", "-fno-trapping-math", "-fno-math-errno"]
# OpenMP runs mid-size batches on two cores (_kernels/_parallel.pxi).
flags.append("-fopenmp")
if MARCH and platform.machine().lower() in ("x86_64", "amd64", "i686"):
    flags.append(f"-march={MARCH}")
    # GCC vectorises for 256-bit registers by default even where 512-bit ones exist;
    # the element-wise loops measured 7-8 % faster on W1 and W2 with the full width.
    flags.append("-mprefer-vector-width=512")

extension = Extension(
    "backprop._core",
    ["src/backprop/_kernels/_core.pyx"],
    include_dirs=["src/backprop/_kernels"],
    extra_compile_args=flags,
    extra_link_args=["-fopenmp"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
)

setup(ext_modules=cythonize([extension], compiler_directives=directives))
