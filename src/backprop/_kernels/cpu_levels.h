/* The x86-64 microarchitecture level this CPU and its operating system support, asked
 * of CPUID and XGETBV (libgcc's CPU model checks that the OS saves the wide registers).
 * Compiled for the baseline, like everything that runs before a target is chosen.
 * Under user-mode emulation it sees the emulated CPU, where /proc/cpuinfo shows the
 * host's. */
#ifndef BP_CPU_LEVELS_H
#define BP_CPU_LEVELS_H

/* 4, 3 or 2 for x86-64-v4, -v3, -v2; 1 for below v2; -1 where the compiler cannot ask
 * (another architecture, or a compiler that does not know the level names). */
static inline int bp_x86_level(void) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) return 4;
    if (__builtin_cpu_supports("x86-64-v3")) return 3;
    if (__builtin_cpu_supports("x86-64-v2")) return 2;
    return 1;
#else
    return -1;
#endif
}

#endif
