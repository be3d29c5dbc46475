/* The body of tiny_run.h for one element type, included there once per type with
 *
 *     BP_T         the element type (float or double)
 *     BP_V         a vector of 4 BP_T
 *     BP_VI        the vector of 4 integers as wide as BP_T (what comparing two BP_V gives)
 *     BP_TINY_RUN  the name of the run function
 *     BP_TANH      tanh or tanhf, as ``_tanh`` takes it
 *
 * defined; it undefines them at its end. See tiny_run.h for what it computes and how.
 */
#ifndef BACKPROP_TINY_RUN_H
#error "include tiny_run.h, not tiny_run_body.h"
#endif

#define BP_ACT BP_TINY_CAT(BP_TINY_RUN, _act)
#define BP_PRIME BP_TINY_CAT(BP_TINY_RUN, _prime)
#define BP_RUN BP_TINY_CAT(BP_TINY_RUN, _one)

#define BP_SELECT(mask, a, b) BP_TINY_SELECT(BP_V, BP_VI, mask, a, b)

/* Where the general step's C (Cython's) computes in double: its constants 1 and 2 are
   the doubles 1.0 and 2.0, so with float operands those operations are done in double
   and rounded once to float when stored. The same here: widened, computed, narrowed. */
#define BP_WIDE(v) __builtin_convertvector((v), bp_tiny_vd)
#define BP_NARROW(v) __builtin_convertvector((v), BP_V)

/* b := 1.0 b + (-lr) d, as the general step forms it: in float, the product rounded to
   float and the sum done in double */
#define BP_BIAS_STEP(b, d) BP_NARROW(BP_WIDE(b) + BP_WIDE((-eta) * (d)))

/* act(z), lane by lane, as ``_act`` computes it */
static inline __attribute__((always_inline)) BP_V BP_ACT(BP_V z, int act) {
  BP_V a = z;
  int i;
  switch (act) {
    case BP_TINY_SIGMOID:
      return __builtin_convertvector(bp_tiny_sigmoid(__builtin_convertvector(z, bp_tiny_vd)),
                                     BP_V);
    case BP_TINY_TANH:
      for (i = 0; i < BP_TINY; i++) a[i] = BP_TANH(z[i]);
      return a;
    case BP_TINY_RELU:
      return BP_SELECT(z < 0, (BP_V){}, z);
    case BP_TINY_LEAKY_RELU:
      return BP_SELECT(z > 0, z, z * (BP_T)BP_TINY_LEAKY_SLOPE);
    default:
      return z;
  }
}

/* act'(z) from a = act(z), as ``_act_prime`` computes it (in double where its C does:
   1 - a is 1.0 - a there) */
static inline __attribute__((always_inline)) BP_V BP_PRIME(BP_V a, int act) {
  const BP_V one = (BP_V){} + 1;
  switch (act) {
    case BP_TINY_SIGMOID:
      return BP_NARROW(BP_WIDE(a) * (1.0 - BP_WIDE(a)));
    case BP_TINY_TANH:
      return BP_NARROW(1.0 - BP_WIDE(a * a));
    case BP_TINY_RELU:
      return BP_SELECT(a > 0, one, (BP_V){});
    case BP_TINY_LEAKY_RELU:
      return BP_SELECT(a > 0, one, (BP_V){} + (BP_T)BP_TINY_LEAKY_SLOPE);
    default:
      return one;
  }
}

/* the run for one hidden activation and output, both constants where it is inlined */
static inline __attribute__((always_inline)) double BP_RUN(
    const bp_tiny_net *net, BP_T *theta, const BP_T *X, const BP_T *Y, const ptrdiff_t *order,
    ptrdiff_t count, double *total, ptrdiff_t *done, const int act, const int sigmoid_output) {
  const ptrdiff_t n0 = net->n[0], n1 = net->n[1], n2 = net->n[2];
  BP_T *w1 = theta + net->offsets[0], *b1 = theta + net->offsets[1];
  BP_T *w2 = theta + net->offsets[2], *b2 = theta + net->offsets[3];
  const BP_VI lane = {0, 1, 2, 3};
  const BP_VI hidden_live = lane < (int)n1;
  const BP_VI output_live = lane < (int)n2;
  const BP_T eta = (BP_T)net->lr, keep = 1 - eta * (BP_T)net->decay;
  const BP_T scale = (BP_T)1 / n2;
  /* c1[i] = W1[:, i] and c2[j] = W2[:, j] (over the layer's outputs: the forward
     products), r2[o] = W2[o, :] (over its inputs: the backward product) */
  BP_V c1[BP_TINY], c2[BP_TINY], r2[BP_TINY], v1, v2;
  BP_V x = {}, y = {}, z1, h, z2, a, g, d, dp;
  /* the weights as stored (row = output), padded: filled and read with variable
     indices, so that the vectors above are only ever indexed by constants and stay in
     registers */
  BP_T m1[BP_TINY][BP_TINY] = {{0}}, m2[BP_TINY][BP_TINY] = {{0}};
  BP_T e1[BP_TINY] = {0}, e2[BP_TINY] = {0};
  const BP_T *xr, *yr;
  double value = 0;
  ptrdiff_t r, i, j, o;
  for (j = 0; j < n1; j++) {
    for (i = 0; i < n0; i++) m1[j][i] = w1[j * n0 + i];
    e1[j] = b1[j];
  }
  for (o = 0; o < n2; o++) {
    for (j = 0; j < n1; j++) m2[o][j] = w2[o * n1 + j];
    e2[o] = b2[o];
  }
  for (i = 0; i < BP_TINY; i++) {
    c1[i] = (BP_V){m1[0][i], m1[1][i], m1[2][i], m1[3][i]};
    c2[i] = (BP_V){m2[0][i], m2[1][i], m2[2][i], m2[3][i]};
    r2[i] = (BP_V){m2[i][0], m2[i][1], m2[i][2], m2[i][3]};
  }
  v1 = (BP_V){e1[0], e1[1], e1[2], e1[3]};
  v2 = (BP_V){e2[0], e2[1], e2[2], e2[3]};
  for (r = 0; r < count; r++) {
    xr = X + (order != NULL ? order[r] : r) * n0;
    yr = Y + (order != NULL ? order[r] : r) * n2;
    for (i = 0; i < BP_TINY; i++) {
      x[i] = i < n0 ? xr[i] : 0;
      y[i] = i < n2 ? yr[i] : 0;
    }
    /* forward; h's padded lanes are masked to 0 only for the weights' step: the sums
       read its real lanes alone */
    z1 = (BP_V){};
    for (i = 0; i < BP_TINY; i++)
      if (i < n0) z1 = z1 + x[i] * c1[i];
    h = BP_ACT(z1 + v1, act);
    z2 = (BP_V){};
    for (j = 0; j < BP_TINY; j++)
      if (j < n1) z2 = z2 + h[j] * c2[j];
    z2 = z2 + v2;
    a = sigmoid_output ? BP_ACT(z2, BP_TINY_SIGMOID) : z2;
    /* loss and output delta, as _mse forms them */
    g = a - y;
    value = 0;
    for (o = 0; o < n2; o++) value += g[o] * g[o];
    value = value / n2;
    if (!isfinite(value)) break;
    d = BP_NARROW(2.0 * BP_WIDE(g) * BP_WIDE(scale + (BP_V){}));
    if (sigmoid_output) d = BP_NARROW(BP_WIDE(d * a) * (1.0 - BP_WIDE(a)));
    /* the delta carried back through W2 before W2's step (0 in the padded lanes: the
       padded columns of W2 are 0) */
    dp = d[0] * r2[0];
    for (o = 1; o < BP_TINY; o++)
      if (o < n2) dp = dp + d[o] * r2[o];
    dp = dp * BP_PRIME(h, act);
    /* the steps: the decay, then the gradient (padded lanes of h and d masked to 0, so
       that padded weights stay 0) */
    h = BP_SELECT(hidden_live, h, (BP_V){});
    d = BP_SELECT(output_live, d, (BP_V){});
    if (keep != 1) {
      for (i = 0; i < BP_TINY; i++) {
        c1[i] = keep * c1[i];
        c2[i] = keep * c2[i];
        r2[i] = keep * r2[i];
      }
    }
    for (o = 0; o < BP_TINY; o++)
      if (o < n2) r2[o] = r2[o] + (-eta * d[o]) * h;
    for (j = 0; j < BP_TINY; j++)
      if (j < n1) c2[j] = c2[j] + (-eta * d) * h[j];
    v2 = BP_BIAS_STEP(v2, d);
    for (i = 0; i < BP_TINY; i++)
      if (i < n0) c1[i] = c1[i] + (-eta * dp) * x[i];
    v1 = BP_BIAS_STEP(v1, dp);
    *total += value;
  }
  for (i = 0; i < BP_TINY; i++) {
    for (j = 0; j < BP_TINY; j++) {
      m1[j][i] = c1[i][j];
      m2[i][j] = r2[i][j];
    }
    e1[i] = v1[i];
    e2[i] = v2[i];
  }
  for (j = 0; j < n1; j++) {
    for (i = 0; i < n0; i++) w1[j * n0 + i] = m1[j][i];
    b1[j] = e1[j];
  }
  for (o = 0; o < n2; o++) {
    for (j = 0; j < n1; j++) w2[o * n1 + j] = m2[o][j];
    b2[o] = e2[o];
  }
  *done = r;
  return value;
}

/* One loop per hidden activation and output: with either one a variable, the loop would
   keep the weights on the stack (tanh is a call, which clobbers every vector register). */
static double BP_TINY_RUN(const bp_tiny_net *net, BP_T *theta, const BP_T *X, const BP_T *Y,
                          const ptrdiff_t *order, ptrdiff_t count, double *total,
                          ptrdiff_t *done) {
#define BP_CASE(act)                                                                     \
  case act:                                                                              \
    return net->sigmoid_output                                                           \
               ? BP_RUN(net, theta, X, Y, order, count, total, done, act, 1)             \
               : BP_RUN(net, theta, X, Y, order, count, total, done, act, 0)
  switch (net->hidden) {
    BP_CASE(BP_TINY_SIGMOID);
    BP_CASE(BP_TINY_TANH);
    BP_CASE(BP_TINY_RELU);
    BP_CASE(BP_TINY_LEAKY_RELU);
    default:
      BP_CASE(BP_TINY_IDENTITY);
  }
#undef BP_CASE
}

#undef BP_RUN
#undef BP_WIDE
#undef BP_NARROW
#undef BP_BIAS_STEP
#undef BP_SELECT
#undef BP_ACT
#undef BP_PRIME
#undef BP_T
#undef BP_V
#undef BP_VI
#undef BP_TINY_RUN
#undef BP_TANH
