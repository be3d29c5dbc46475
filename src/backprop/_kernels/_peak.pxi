# The arithmetic peak the kernels' target reaches on this machine (fma_peak.h), run on
# the team as the two-core paths are: what the benchmark compares its speeds with.

cdef extern from "fma_peak.h":
    # the flops of one step of the probe, float and double
    const long BP_PEAK_FLOPS_S
    const long BP_PEAK_FLOPS_D
    float _peak_s "bp_fma_peak_s"(long steps) noexcept nogil
    double _peak_d "bp_fma_peak_d"(long steps) noexcept nogil


cdef struct PeakRun:
    long steps
    bint doubles
    double sums[2]


cdef void _peak_part(void* ctx, int part) noexcept nogil:
    """One thread's probe: ``steps`` steps of every chain."""
    cdef PeakRun* run = <PeakRun*>ctx
    if run.doubles:
        run.sums[part] = _peak_d(run.steps)
    else:
        run.sums[part] = _peak_s(run.steps)


def peak_flops(long steps, bint doubles, int threads):
    """Runs the probe (fma_peak.h) as ``threads`` parts of ``steps`` steps each (1 or 2),
    on the team, as many threads as it has now (``team_size``); returns the flops done.
    Time it to get the peak: the parts run at once when the team has two threads, one
    after the other when it has one (then the peak is one core's)."""
    cdef PeakRun run
    if steps < 0 or threads not in (1, 2):
        raise ValueError(f"need steps >= 0 and threads 1 or 2, got {steps}, {threads}")
    run.steps, run.doubles = steps, doubles
    with nogil:
        _team_run(threads, _peak_part, &run, min(threads, _team_size()))
    return threads * steps * (BP_PEAK_FLOPS_D if doubles else BP_PEAK_FLOPS_S)
