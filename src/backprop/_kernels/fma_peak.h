/* The machine's arithmetic peak, as the kernels' target can reach it: a probe that does
 * nothing but independent multiply-adds in registers,
 *
 *     a_j := a_j x + y,    j = 1 .. BP_PEAK_CHAINS, for `steps` steps,
 *
 * each a_j one vector of the target's widest registers (BP_VBYTES), so
 *
 *     flops = 2 * (BP_VBYTES / sizeof(T)) * BP_PEAK_CHAINS * steps.
 *
 * One step is BP_PEAK_CHAINS multiply-adds that do not depend on each other. A core
 * issues at most two a cycle and each takes about four cycles to finish (Haswell to Zen 4
 * and Ice Lake), so at least 8 chains keep both units busy; 12, the most that leave a
 * register for x and one for y among SSE's and AVX2's 16, also cover a multiply and an
 * add issued separately (x86-64-v2 has no FMA: the target's peak is then one multiply and
 * one add a cycle per unit, and GCC emits exactly that for `a * x + y`). With 0 < x < 1
 * the chains converge to y / (1 - x): no overflow, no subnormals, whatever `steps` is.
 *
 * Vector extensions, as in tile_gemm.h: one source, compiled to the target's widest
 * vectors (and to fused multiply-adds where the target has them: -ffp-contract=fast,
 * GCC's default in GNU C).
 */
#ifndef BACKPROP_FMA_PEAK_H
#define BACKPROP_FMA_PEAK_H

#include "target.h"

#define BP_PEAK_CHAINS 12

typedef float bp_peak_vf __attribute__((vector_size(BP_VBYTES)));
typedef double bp_peak_vd __attribute__((vector_size(BP_VBYTES)));

/* The chains' sum over every lane, returned so that no chain can be dropped as dead. */
#define BP_PEAK_PROBE(name, T, V)                                                        \
  static T name(long steps) {                                                            \
    const V x = (V){} + (T)0.999999, y = (V){} + (T)1e-7;                                \
    V a0 = (V){} + 0, a1 = (V){} + 1, a2 = (V){} + 2, a3 = (V){} + 3, a4 = (V){} + 4;    \
    V a5 = (V){} + 5, a6 = (V){} + 6, a7 = (V){} + 7, a8 = (V){} + 8, a9 = (V){} + 9;    \
    V a10 = (V){} + 10, a11 = (V){} + 11, s;                                             \
    T total = 0;                                                                         \
    long i;                                                                              \
    for (i = 0; i < steps; i++) {                                                        \
      a0 = a0 * x + y; a1 = a1 * x + y; a2 = a2 * x + y; a3 = a3 * x + y;                \
      a4 = a4 * x + y; a5 = a5 * x + y; a6 = a6 * x + y; a7 = a7 * x + y;                \
      a8 = a8 * x + y; a9 = a9 * x + y; a10 = a10 * x + y; a11 = a11 * x + y;            \
    }                                                                                    \
    s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11));   \
    for (i = 0; i < (long)(sizeof(V) / sizeof(T)); i++) total += s[i];                   \
    return total;                                                                        \
  }

BP_PEAK_PROBE(bp_fma_peak_s, float, bp_peak_vf)
BP_PEAK_PROBE(bp_fma_peak_d, double, bp_peak_vd)

/* the flops of one step: a multiply and an add per lane and chain */
#define BP_PEAK_FLOPS_S (2 * (BP_VBYTES / 4) * BP_PEAK_CHAINS)
#define BP_PEAK_FLOPS_D (2 * (BP_VBYTES / 8) * BP_PEAK_CHAINS)

#endif /* BACKPROP_FMA_PEAK_H */
