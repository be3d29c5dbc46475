"""Declares the compiled extension; all other metadata lives in pyproject.toml.

BACKPROP_DEBUG_CYTHON=1 builds the kernels with bounds, wraparound and
initialisation checks on (and without optimisation), for debugging.
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("BACKPROP_DEBUG_CYTHON", "0") not in ("", "0")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}

extension = Extension(
    "backprop._core",
    ["src/backprop/_core.pyx"],
    extra_compile_args=["-O0", "-g"] if DEBUG else ["-O3"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
)

setup(ext_modules=cythonize([extension], compiler_directives=directives))
