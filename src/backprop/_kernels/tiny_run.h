/* Runs of one-row SGD steps through the tiniest networks, with the weights in registers:
 *
 *     bp_tiny_run_d / bp_tiny_run_s(net, theta, X, Y, order, count, total, done)
 *
 * for a network of one hidden layer, every layer at most BP_TINY = 4 units wide (the
 * tutorial's [2, 2, 1]), mean squared error on a sigmoid or identity output. For each of
 * `count` rows x (X's rows in `order`, or in turn when order is NULL), with targets y:
 *
 *     h := act(W1 x + b1),  a := out(W2 h + b2),  L := sum_j (a_j - y_j)^2 / k,
 *     d2 := 2 (a - y) / k (* a (1 - a) for sigmoid),  d1 := (W2^T d2) * act'(h),
 *     W2 := keep W2 - lr d2 h^T,  b2 := b2 - lr d2,  W1 := keep W1 - lr d1 x^T,
 *     b1 := b1 - lr d1,  *total += L
 *
 * (keep = 1 - lr decay; a step with keep = 1 skips the product). It stops before the
 * step of the first row whose loss is not finite. It returns the last row's loss, with
 * *done := the rows stepped; theta then holds the weights after them.
 *
 * Why: a run of such steps is one chain of dependent operations, each row's forward pass
 * waiting for the previous row's step, so its time is the chain's latency. Through the
 * general step (``_sample_step``) every weight makes a round trip through memory at every
 * row and every loop over 1 to 4 numbers costs its bounds: W1 (the tutorial's network,
 * 20,000 rows) took 105 ns a row. Here each layer's weights are vectors of 4 lanes (the
 * forward product reads them as columns, the backward one as rows) kept in registers
 * for the whole run, the loops are unrolled, and a sum skips the terms of padded units
 * with a branch that goes the same way at every row: 69 ns a row.
 *
 * Padded lanes: weights and biases of padded units start at 0; a padded unit's
 * activation and delta are masked to 0 before the step, so they stay 0. The sums read
 * real lanes only.
 *
 * The numbers are ``_sample_step``'s: each element goes through the same operations in
 * the same order (in double where its C computes in double: Cython writes the 1 of
 * 1 - a as 1.0), the same exponential (bp_exp_neg and ``_exp_neg`` in _elementwise.pxi),
 * up to where the compiler fuses a multiply and an add in one and not in the other; the
 * tests compare the two.
 *
 * Vector extensions, as in tile_gemm.h: 4 lanes of double are one AVX register, 4 lanes
 * of float one SSE register; the sigmoid is computed in double. On x86-64-v2 a vector of
 * 4 doubles is two SSE registers and the run spills: ``_takes_tiny_run`` leaves those
 * networks to the general step there.
 */
#ifndef BACKPROP_TINY_RUN_H
#define BACKPROP_TINY_RUN_H

#if !defined(__GNUC__)
#error "backprop's tiny runs need GCC or Clang (vector extensions)"
#endif

#include <math.h>
#include <stddef.h>

#include "target.h"

#define BP_TINY 4

/* the hidden activations a run can take (the others go through the general step) */
enum bp_tiny_act {
  BP_TINY_IDENTITY,
  BP_TINY_SIGMOID,
  BP_TINY_TANH,
  BP_TINY_RELU,
  BP_TINY_LEAKY_RELU
};

/* the network: n[0] inputs, n[1] hidden units, n[2] outputs (each 1 .. BP_TINY); the
   offsets of W1, b1, W2, b2 in theta (weights stored n_out x n_in, row-major) */
typedef struct {
  ptrdiff_t n[3];
  ptrdiff_t offsets[4];
  int hidden;         /* enum bp_tiny_act */
  int sigmoid_output; /* 1: sigmoid output, 0: identity */
  double lr, decay;
} bp_tiny_net;

typedef double bp_tiny_vd __attribute__((vector_size(4 * sizeof(double))));
typedef float bp_tiny_vf __attribute__((vector_size(4 * sizeof(float))));
typedef long long bp_tiny_vl __attribute__((vector_size(4 * sizeof(long long))));
typedef int bp_tiny_vi __attribute__((vector_size(4 * sizeof(int))));

/* The 4-lane vectors pass between inline functions only: GCC's warning that their ABI
   differs without AVX (x86-64-v2) does not apply. It is issued at the end of the
   translation unit, so it stays off from here on. */
#pragma GCC diagnostic ignored "-Wpsabi"

/* where mask (all bits set or clear per lane), a, else b: for vectors V whose lanes are
   as wide as those of the integer vectors VI */
#define BP_TINY_SELECT(V, VI, mask, a, b) ((V)(((VI)(a) & (mask)) | ((VI)(b) & ~(mask))))

/* leaky_relu's slope for z < 0 (PyTorch's default, as _elementwise.pxi's LEAKY_SLOPE) */
#define BP_TINY_LEAKY_SLOPE 0.01

/* e^x for x <= 0, lane by lane: ``_exp_neg``'s operations in its order (see there:
   Cody and Waite's reduction, the Taylor series to r^13 in Estrin's order, 2^n put in
   the exponent bits; x below -708 taken as -708). */
static inline __attribute__((always_inline)) bp_tiny_vd bp_exp_neg(bp_tiny_vd x) {
  const bp_tiny_vd floor = (bp_tiny_vd){} - 708.0;
  bp_tiny_vd t, n, r, r2, r4, p, scale;
  x = BP_TINY_SELECT(bp_tiny_vd, bp_tiny_vl, x < -708.0, floor, x);
  t = x * 1.4426950408889634 + 6755399441055744.0;
  n = t - 6755399441055744.0;
  r = x - n * 6.93147180369123816490e-01;
  r = r - n * 1.90821492927058770002e-10;
  r2 = r * r;
  r4 = r2 * r2;
  p = ((1.0 + r) + (0.5 + r * (1.0 / 6.0)) * r2
       + ((1.0 / 24.0 + r * (1.0 / 120.0)) + (1.0 / 720.0 + r * (1.0 / 5040.0)) * r2) * r4
       + (((1.0 / 40320.0 + r * (1.0 / 362880.0))
           + (1.0 / 3628800.0 + r * (1.0 / 39916800.0)) * r2)
          + (1.0 / 479001600.0 + r * (1.0 / 6227020800.0)) * r4) * (r4 * r4));
  scale = (bp_tiny_vd)(((bp_tiny_vl)t - 0x4338000000000000LL + 1023) << 52);
  return p * scale;
}

/* sigma(z) = 1 / (1 + e^-z) as ``_sigmoid`` forms it: e / (1 + e), e = e^-|z|, for z < 0 */
static inline __attribute__((always_inline)) bp_tiny_vd bp_tiny_sigmoid(bp_tiny_vd z) {
  const bp_tiny_vd e = bp_exp_neg(-(bp_tiny_vd)((bp_tiny_vl)z & 0x7fffffffffffffffLL));
  return BP_TINY_SELECT(bp_tiny_vd, bp_tiny_vl, z >= 0, (bp_tiny_vd){} + 1.0, e) / (1.0 + e);
}

#define BP_TINY_CAT_(a, b) a##b
#define BP_TINY_CAT(a, b) BP_TINY_CAT_(a, b)

#define BP_T double
#define BP_V bp_tiny_vd
#define BP_VI bp_tiny_vl
#define BP_TINY_RUN bp_tiny_run_d
#define BP_TANH tanh
#include "tiny_run_body.h"

#define BP_T float
#define BP_V bp_tiny_vf
#define BP_VI bp_tiny_vi
#define BP_TINY_RUN bp_tiny_run_s
#define BP_TANH tanhf
#include "tiny_run_body.h"

#endif /* BACKPROP_TINY_RUN_H */
