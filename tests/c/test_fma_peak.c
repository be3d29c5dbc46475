/* The peak probe (src/backprop/_kernels/fma_peak.h) on its own: it computes what its
 * flop count assumes. Each lane of each of the BP_PEAK_CHAINS chains is followed in
 * scalar code, a_j := a_j x + y (one fused multiply-add where the target has FMA, a
 * multiply then an add where it does not), and the probe's result, the chains summed in
 * its order over every lane, must equal the scalar one bit for bit, for step counts from
 * 0 to past the chains' convergence. So no chain is dropped, merged or shortened.
 *
 * Prints each failure; exit status 0 when there are none.
 */
#include "fma_peak.h"

#include <math.h>
#include <stdio.h>

static long failures, checks;

#define CHECK_PROBE(T, probe, FMA, lanes)                                                \
  do {                                                                                   \
    static const long steps[] = {0, 1, 2, 7, 100, 10000, 3000000};                       \
    for (unsigned s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {                    \
      T a[BP_PEAK_CHAINS], sum, total = 0;                                               \
      const T x = (T)0.999999, y = (T)1e-7;                                              \
      for (int j = 0; j < BP_PEAK_CHAINS; j++) {                                         \
        volatile T product;                                                              \
        a[j] = (T)j;                                                                     \
        for (long i = 0; i < steps[s]; i++) {                                            \
          if (BP_HAS_FMA) {                                                              \
            a[j] = FMA(a[j], x, y);                                                      \
          } else {                                                                       \
            product = a[j] * x;                                                          \
            a[j] = product + y;                                                          \
          }                                                                              \
        }                                                                                \
      }                                                                                  \
      sum = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])) +          \
            ((a[8] + a[9]) + (a[10] + a[11]));                                           \
      for (int lane = 0; lane < (lanes); lane++) total += sum;                           \
      checks++;                                                                          \
      if (probe(steps[s]) != total) {                                                    \
        failures++;                                                                      \
        printf("%s, %ld steps: %.17g, expected %.17g\n", #probe, steps[s],               \
               (double)probe(steps[s]), (double)total);                                  \
      }                                                                                  \
    }                                                                                    \
  } while (0)

int main(void) {
  CHECK_PROBE(float, bp_fma_peak_s, fmaf, BP_VBYTES / 4);
  CHECK_PROBE(double, bp_fma_peak_d, fma, BP_VBYTES / 8);
  checks++;
  if (BP_PEAK_FLOPS_S != 2 * BP_PEAK_FLOPS_D || BP_PEAK_FLOPS_D != BP_VBYTES / 8 * 2 * 12) {
    failures++;
    printf("flops per step: %d float, %d double\n", BP_PEAK_FLOPS_S, BP_PEAK_FLOPS_D);
  }
  printf("%ld checks, %ld failures\n", checks, failures);
  return failures != 0;
}
