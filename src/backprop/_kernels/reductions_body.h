/* The body of bp_sum_squares_d and bp_sum_squares_f (reductions.h), written once: included
 * with BP_T the element type, BP_SQUARES(p) the squares of the 8 elements at p in float64
 * and BP_SUM_SQUARES the function's name, which it #undefs. */

static double BP_SUM_SQUARES(const BP_T *x, ptrdiff_t n) {
  bp_sum_vd acc0 = (bp_sum_vd){0}, acc1 = (bp_sum_vd){0};
  double lanes[8], s = 0, tail = 0;
  ptrdiff_t i = 0, j;
  for (; i + 16 <= n; i += 16) {
    acc0 += BP_SQUARES(x + i);
    acc1 += BP_SQUARES(x + i + 8);
  }
  for (; i < n; i++) {
    const BP_T v = x[i] * x[i];
    tail += v;
  }
  acc0 += acc1;
  memcpy(lanes, &acc0, sizeof lanes);
  for (j = 0; j < 8; j++)
    s += lanes[j];
  return s + tail;
}

#undef BP_T
#undef BP_SQUARES
#undef BP_SUM_SQUARES
