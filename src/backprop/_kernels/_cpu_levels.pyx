"""CPUID's answer to which x86-64 level this CPU runs (``cpu_levels.h``), for
``backprop._cpu``. Built for the baseline, with no target flags."""

cdef extern from "cpu_levels.h":
    int bp_x86_level() nogil


def x86_level():
    """4, 3 or 2 for x86-64-v4, -v3, -v2; 1 below v2; None where it cannot be asked."""
    cdef int level = bp_x86_level()
    return None if level < 0 else level
