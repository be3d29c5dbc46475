"""The CPU targets of x86-64 (the microarchitecture levels of the psABI: ``x86-64-v2``,
SSE4.2 and POPCNT; ``x86-64-v3``, AVX2, FMA and BMI2; ``x86-64-v4``, AVX-512 F, BW, CD, DQ
and VL) and which of them this CPU runs.

Detection executes no instruction above the baseline: it reads the feature flags Linux
lists in ``/proc/cpuinfo``, which leave out what the kernel does not support (AVX when the
OS does not save the wide registers). Without that file only the baseline is taken.
Elsewhere than x86-64 there is one target, ``default``: the compiler's default.
"""

from __future__ import annotations

import platform

X86_TARGETS = ("x86-64-v2", "x86-64-v3", "x86-64-v4")
#: The feature flags (as /proc/cpuinfo names them) each x86-64 level adds to the one
#: below; "pni" is SSE3, "abm" LZCNT, "lahf_lm" LAHF/SAHF in 64-bit mode.
LEVEL_FLAGS = {
    "x86-64-v2": ("cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"),
    "x86-64-v3": ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"),
    "x86-64-v4": ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"),
}


def is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def platform_targets() -> tuple[str, ...]:
    """The targets of this kind of machine, from the baseline up."""
    return X86_TARGETS if is_x86() else ("default",)


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str] | None:
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
