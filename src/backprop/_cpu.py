"""The CPU targets the kernels are built for, which of them this CPU runs, and the choice.

The kernels are one source (``_kernels/``) compiled once per target into extension modules
of their own: on x86-64 the microarchitecture levels of the psABI, ``x86-64-v2`` (SSE4.2,
POPCNT), ``x86-64-v3`` (AVX2, FMA, BMI2) and ``x86-64-v4`` (AVX-512 F, BW, CD, DQ, VL);
elsewhere one module at the compiler's default. ``backprop._core`` imports the best one
this CPU runs, or the one ``BACKPROP_CPU`` names.

Detection executes no instruction above the baseline: it reads the feature flags Linux
lists in ``/proc/cpuinfo``, which leave out what the kernel does not support (AVX when the
OS does not save the wide registers). Without that file only the baseline target is taken.
The ``setup.py`` of the sources reads ``TARGETS`` from here.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys

#: Every target: its extension module (in ``backprop``), and the ``-march`` it is built for
#: (None: the compiler's default).
TARGETS = {
    "x86-64-v2": ("_core_v2", "x86-64-v2"),
    "x86-64-v3": ("_core_v3", "x86-64-v3"),
    "x86-64-v4": ("_core_v4", "x86-64-v4"),
    "default": ("_core_default", None),
}
X86_TARGETS = ("x86-64-v2", "x86-64-v3", "x86-64-v4")
#: The feature flags (as /proc/cpuinfo names them) each x86-64 level adds to the one
#: below; "pni" is SSE3, "abm" LZCNT, "lahf_lm" LAHF/SAHF in 64-bit mode.
LEVEL_FLAGS = {
    "x86-64-v2": ("cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"),
    "x86-64-v3": ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"),
    "x86-64-v4": ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"),
}
VARIABLE = "BACKPROP_CPU"


def is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def platform_targets() -> tuple[str, ...]:
    """The targets built on this kind of machine, from the baseline up."""
    return X86_TARGETS if is_x86() else ("default",)


def cpu_flags() -> frozenset[str] | None:
    """This CPU's feature flags as far as the targets need them: those /proc/cpuinfo
    lists, less the levels CPUID says this CPU does not run (under user-mode emulation
    /proc/cpuinfo shows the host's CPU, CPUID the emulated one), or where the file
    cannot be read, those of the levels CPUID says it runs; None where neither says."""
    flags, level = read_flags(), cpuid_level()
    if level is None or not is_x86():
        return flags
    runs = max(level - 1, 0)  # how many of X86_TARGETS CPUID says it runs
    if flags is None:
        return frozenset(f for t in X86_TARGETS[:runs] for f in LEVEL_FLAGS[t])
    return flags - {f for t in X86_TARGETS[runs:] for f in LEVEL_FLAGS[t]}


def cpuid_level() -> int | None:
    """CPUID's x86-64 level (``_cpu_levels``, built for the baseline), or None."""
    try:
        from . import _cpu_levels
    except ImportError:
        return None
    return _cpu_levels.x86_level()


def read_flags(path: str = "/proc/cpuinfo") -> frozenset[str] | None:
    """The first processor's feature flags, or None where the file cannot be read."""
    try:
        with open(path) as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return frozenset(value.split())
    except OSError:
        pass
    return None


def missing_flags(target: str, flags: frozenset[str] | None) -> list[str]:
    """The flags ``target`` needs that ``flags`` lacks, from its level and those below
    (none for the baseline when the flags are unknown)."""
    levels = platform_targets()
    if target == levels[0]:
        required = LEVEL_FLAGS.get(target, ()) if flags is not None else ()
    elif target in levels:
        required = [f for t in levels[: levels.index(target) + 1] for f in LEVEL_FLAGS[t]]
        if flags is None:
            return ["(unknown: no /proc/cpuinfo)"]
    else:
        return [f"(a target of another architecture than {platform.machine()})"]
    return [flag for flag in required if flag not in flags]


def supported(flags: frozenset[str] | None = None) -> list[str]:
    """The targets this CPU runs, from the baseline up."""
    flags = cpu_flags() if flags is None else flags
    return [t for t in platform_targets() if not missing_flags(t, flags)]


def built() -> list[str]:
    """The targets whose module is present in this copy of backprop, from the baseline up."""
    return [t for t in platform_targets() if importlib.util.find_spec(f"backprop.{TARGETS[t][0]}")]


#: The module that imports the chosen target's kernels (and fails to import without one).
CORE = "backprop._core"


def run_as_command() -> bool:
    """Whether this process is ``python -m backprop ...``, whose package import fails with
    a usage error rather than a traceback when ``BACKPROP_CPU`` names no usable target."""
    argv = getattr(sys, "orig_argv", [])
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "-m":
            return argv[i + 1 : i + 2] == ["backprop"]
        if arg.startswith("-m"):
            return arg == "-mbackprop"
        if arg in ("-X", "-W", "--check-hash-based-pycs"):  # options with a separate value
            i += 2
            continue
        if arg.startswith("-c") or arg == "-" or not arg.startswith("-"):
            return False  # a command, stdin or a script
        i += 1
    return False


def choose(forced: str | None = None) -> str:
    """The target to import: ``forced`` (default: the ``BACKPROP_CPU`` environment
    variable) when set, else the best one built that this CPU runs. Where that cannot be,
    raises ImportError naming the variable and the targets available, with ``name``
    ``backprop._core`` (the module that then fails to import)."""
    forced = os.environ.get(VARIABLE, "") if forced is None else forced
    present = built()
    flags = cpu_flags()
    runnable = [t for t in present if not missing_flags(t, flags)]
    available = (
        f"this copy of backprop has {', '.join(present) or 'no compiled kernels'}, "
        f"of which this CPU runs {', '.join(runnable) or 'none'}"
    )
    if forced:
        if forced not in TARGETS:
            raise ImportError(
                f"{VARIABLE}={forced!r} is not a CPU target; expected one of "
                f"{', '.join(platform_targets())} ({available})",
                name=CORE,
            )
        if forced not in present:
            raise ImportError(f"{VARIABLE}={forced}: not built; {available}", name=CORE)
        lacking = missing_flags(forced, flags)
        if lacking:
            raise ImportError(
                f"{VARIABLE}={forced}: this CPU lacks {', '.join(lacking)}; {available}",
                name=CORE,
            )
        return forced
    if not runnable:
        raise ImportError(f"backprop's compiled kernels cannot run here: {available}", name=CORE)
    return runnable[-1]
