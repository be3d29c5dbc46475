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

#define BP_T double
#define BP_SQUARES BP_SQUARES_D
#define BP_SUM_SQUARES bp_sum_squares_d
#include "reductions_body.h"

#define BP_T float
#define BP_SQUARES BP_SQUARES_F
#define BP_SUM_SQUARES bp_sum_squares_f
#include "reductions_body.h"

#undef BP_SQUARES_D
#undef BP_SQUARES_F

#endif /* BACKPROP_REDUCTIONS_H */
