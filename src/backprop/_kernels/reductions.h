/* Sum of squares, sum_i x_i^2, accumulated in float64 for float and double input.
 *
 * Blocks of 16 elements go to two 8-lane float64 accumulators (float input is squared in
 * float, then widened); the last n mod 16 elements are squared in the input type and
 * summed in a scalar; the result is the 8 lanes of the two accumulators' sum, added in
 * order, plus that tail. The order is fixed by the source, not by the compiler's
 * vectoriser, so a given x gives the same bits on every call and at every -march.
 */
#ifndef BACKPROP_REDUCTIONS_H
#define BACKPROP_REDUCTIONS_H

#if !defined(__GNUC__)
#error "backprop's reductions need GCC or Clang (vector extensions)"
#endif

#include <stddef.h>
#include <string.h>

/* Element-aligned and may_alias: they are loaded straight from the caller's arrays. */
typedef double bp_sum_vd __attribute__((vector_size(64), aligned(8), may_alias));
typedef float bp_sum_vf __attribute__((vector_size(32), aligned(4), may_alias));

/* The squares of the 8 elements at p in float64 (float is squared in float, then widened).
   Two loads of p, as in the Cython-embedded code these replace: GCC then emits the same
   machine code for it, so results stay bit-identical. */
#define BP_SQUARES_D(p) ((*(const bp_sum_vd *)(p)) * (*(const bp_sum_vd *)(p)))
#define BP_SQUARES_F(p)                                                                            \
  __builtin_convertvector((*(const bp_sum_vf *)(p)) * (*(const bp_sum_vf *)(p)), bp_sum_vd)

static double bp_sum_squares_d(const double *x, ptrdiff_t n) {
  bp_sum_vd acc0 = (bp_sum_vd){0}, acc1 = (bp_sum_vd){0};
  double lanes[8], s = 0, tail = 0;
  ptrdiff_t i = 0, j;
  for (; i + 16 <= n; i += 16) {
    acc0 += BP_SQUARES_D(x + i);
    acc1 += BP_SQUARES_D(x + i + 8);
  }
  for (; i < n; i++) {
    const double v = x[i] * x[i];
    tail += v;
  }
  acc0 += acc1;
  memcpy(lanes, &acc0, sizeof lanes);
  for (j = 0; j < 8; j++)
    s += lanes[j];
  return s + tail;
}

static double bp_sum_squares_f(const float *x, ptrdiff_t n) {
  bp_sum_vd acc0 = (bp_sum_vd){0}, acc1 = (bp_sum_vd){0};
  double lanes[8], s = 0, tail = 0;
  ptrdiff_t i = 0, j;
  for (; i + 16 <= n; i += 16) {
    acc0 += BP_SQUARES_F(x + i);
    acc1 += BP_SQUARES_F(x + i + 8);
  }
  for (; i < n; i++) {
    const float v = x[i] * x[i];
    tail += v;
  }
  acc0 += acc1;
  memcpy(lanes, &acc0, sizeof lanes);
  for (j = 0; j < 8; j++)
    s += lanes[j];
  return s + tail;
}

#undef BP_SQUARES_D
#undef BP_SQUARES_F

#endif /* BACKPROP_REDUCTIONS_H */
