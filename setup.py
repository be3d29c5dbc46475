"""Declares the compiled extensions; all other metadata lives in pyproject.toml.

The kernels (src/backprop/_kernels/_core.pyx) are one source built once per CPU target
(src/backprop/_cpu.py lists them): backprop._core_v2, _core_v3 and _core_v4 for x86-64-v2,
-v3 and -v4 on x86-64, backprop._core_default at the compiler's default elsewhere.
backprop._core imports the best one the CPU runs, asking CPUID through
backprop._cpu_levels, built for the baseline. Each module is cythonized under its own
name (its init function must match it) into a directory of its own, then compiled for its
target; the modules compile in parallel.

Environment switches:
  BACKPROP_DEBUG_CYTHON=1  bounds, wraparound and initialisation checks on, no
                           optimisation: a debug build.
  BACKPROP_TARGETS=...     the targets to build, comma-separated (default: every one of
                           this kind of machine), e.g. "x86-64-v3" for a development
                           build that compiles once instead of three times.
"""

import glob
import os
import runpy

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
DEBUG = os.environ.get("BACKPROP_DEBUG_CYTHON", "0") not in ("", "0")
cpu = runpy.run_path(os.path.join(HERE, "src", "backprop", "_cpu.py"))

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
# The two-core paths' team of threads (_kernels/team.h) is built on POSIX threads.
flags.append("-pthread")


def target_flags(target: str) -> list[str]:
    march = cpu["TARGETS"][target][1]
    if march is None:
        return []
    if target == "x86-64-v4":
        # GCC vectorises for 256-bit registers by default even where 512-bit ones exist;
        # the element-wise loops measured 7-8 % faster on W1 and W2 with the full width.
        return [f"-march={march}", "-mprefer-vector-width=512"]
    return [f"-march={march}"]


chosen = os.environ.get("BACKPROP_TARGETS", "")
targets = [t.strip() for t in chosen.split(",") if t.strip()] or cpu["platform_targets"]()
unknown = sorted(set(targets) - set(cpu["platform_targets"]()))
if unknown:
    raise SystemExit(
        f"BACKPROP_TARGETS: unknown {', '.join(unknown)}; "
        f"expected some of {', '.join(cpu['platform_targets']())}"
    )

extensions = [
    Extension(
        f"backprop.{cpu['TARGETS'][target][0]}",
        ["src/backprop/_kernels/_core.pyx"],
        include_dirs=["src/backprop/_kernels"],
        extra_compile_args=flags + target_flags(target),
        extra_link_args=["-pthread"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for target in targets
] + [
    # CPUID's level for the dispatcher: built for the baseline (no target flags, no threads)
    Extension(
        "backprop._cpu_levels",
        ["src/backprop/_kernels/_cpu_levels.pyx"],
        include_dirs=["src/backprop/_kernels"],
        extra_compile_args=["-O2"] + (["-march=x86-64"] if cpu["is_x86"]() else []),
    )
]


class BuildTargets(build_ext):
    """Cythonizes each module into a directory of its own (one source, one C file per
    module name) and compiles the modules in parallel; in place, it first removes the
    single ``backprop._core`` module older builds made."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = min(len(self.extensions), os.cpu_count() or 1)

    def run(self):
        # A single backprop._core module an older build left, in the sources (in place) or
        # in build/ (which pip's in-tree builds reuse), would shadow _core.py and its choice.
        package = os.path.join(HERE, "src") if self.inplace else self.build_lib
        for stale in glob.glob(os.path.join(package, "backprop", "_core.*.so")):
            os.remove(stale)
        super().run()

    def build_extensions(self):
        for ext in self.extensions:  # one at a time: Cython is not thread-safe
            build_dir = os.path.join(self.build_temp, "cython", ext.name)
            (cythonized,) = cythonize([ext], build_dir=build_dir, compiler_directives=directives)
            ext.sources = cythonized.sources
        super().build_extensions()


setup(ext_modules=extensions, cmdclass={"build_ext": BuildTargets})
