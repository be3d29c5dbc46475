/* The C kernels in src/backprop/_kernels against naive loops in long double.
 *
 * bp_tile_sgemm / bp_tile_dgemm: every (ta, tb), alpha and beta including beta = 0 (C filled
 * with NaN first: it must not be read) and beta = 1, k = 0, and m, n, k on either side of the
 * tile edges of every target (MR = 6 or 8 rows; one and two vectors of 2 to 16 elements of
 * columns; KC = 256 of depth), with leading dimensions wider than the matrices; the gaps
 * past each row must stay untouched. The bound
 * is (k + 2) eps (|alpha| sum_p |a_ip b_pj| + |beta c_ij|), the classic one for a dot product
 * of length k, with room for the scaling by alpha and beta.
 *
 * bp_tile_sgemm_packed / dgemm_packed: bit for bit bp_tile_sgemm / dgemm's result, on products
 * that take each of its ways: A^T copied in one block and in several (m past the 192 KiB
 * block, with a last block that is not whole tiles), a strip of B read in place (a last one
 * exactly a vector wide too) and copied (rows a multiple of 1 KiB apart), depth past one
 * panel, and op(A) = A (left to bp_tile_?gemm). Built as the extension is (GNU C, FMA
 * contraction on), so the comparison holds for the code that ships.
 *
 * bp_sum_squares_d / _f: against sum_i x_i^2, relative (n + 2) eps of the input type.
 *
 * Prints each failure; exit status 0 when there are none.
 */
#include "reductions.h"
#include "tile_gemm.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ptrdiff_t edges[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 15, 16, 17, 31, 32, 33, 257};
enum { NEDGES = sizeof edges / sizeof edges[0] };

/* (alpha, beta) pairs, cycled through the shapes so every shape class meets each. */
static const double scalings[][2] = {{1, 0}, {1, 1}, {-0.5, 0.25}, {2, 0}, {0.75, 1}, {-1, -2}};
enum { NSCALINGS = sizeof scalings / sizeof scalings[0] };

static long failures, checks;

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;
static double uniform(void) { /* in [-1, 1) */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (double)(rng_state >> 11) * 0x1p-52 - 1.0;
}

#define SENTINEL 12345.0

/* x rounded to the type under test, so that the reference sees exactly the kernel's input */
static double in_type(double x, int single) { return single ? (double)(float)x : x; }

/* Runs the kernel of the type under test on double arrays (copied to float and back for
   bp_tile_sgemm: the copies are exact). */
static void run_gemm(int single, char ta, char tb, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                     double alpha, const double *a, ptrdiff_t lda, size_t na, const double *b,
                     ptrdiff_t ldb, size_t nb, double beta, double *c, ptrdiff_t ldc, size_t nc) {
  size_t i;
  if (!single) {
    bp_tile_dgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  float *af = malloc(sizeof(float) * na), *bf = malloc(sizeof(float) * nb);
  float *cf = malloc(sizeof(float) * nc);
  for (i = 0; i < na; i++)
    af[i] = (float)a[i];
  for (i = 0; i < nb; i++)
    bf[i] = (float)b[i];
  for (i = 0; i < nc; i++)
    cf[i] = (float)c[i];
  bp_tile_sgemm(ta, tb, m, n, k, (float)alpha, af, lda, bf, ldb, (float)beta, cf, ldc);
  for (i = 0; i < nc; i++)
    c[i] = cf[i];
  free(af);
  free(bf);
  free(cf);
}

static void check_gemm_type(int single, char ta, char tb, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                            double alpha, double beta) {
  const char *name = single ? "bp_tile_sgemm" : "bp_tile_dgemm";
  const long double eps = single ? FLT_EPSILON : DBL_EPSILON;
  const ptrdiff_t ar = ta == 'N' ? m : k, ac = ta == 'N' ? k : m;
  const ptrdiff_t br = tb == 'N' ? k : n, bc = tb == 'N' ? n : k;
  const ptrdiff_t lda = ac + 3, ldb = bc + 5, ldc = n + 2;
  const size_t na = (size_t)(ar * lda), nb = (size_t)(br * ldb), nc = (size_t)(m * ldc);
  double *a = malloc(sizeof(double) * na), *b = malloc(sizeof(double) * nb);
  double *c = malloc(sizeof(double) * nc), *c0 = malloc(sizeof(double) * nc);
  ptrdiff_t i, j, p, bad = 0;
  alpha = in_type(alpha, single);
  beta = in_type(beta, single);
  for (i = 0; i < ar * lda; i++)
    a[i] = in_type(uniform(), single);
  for (i = 0; i < br * ldb; i++)
    b[i] = in_type(uniform(), single);
  for (i = 0; i < m; i++)
    for (j = 0; j < ldc; j++)
      c[i * ldc + j] = c0[i * ldc + j] = j >= n      ? SENTINEL
                                         : beta == 0 ? NAN
                                                     : in_type(uniform(), single);
  run_gemm(single, ta, tb, m, n, k, alpha, a, lda, na, b, ldb, nb, beta, c, ldc, nc);
  for (i = 0; i < m; i++) {
    for (j = 0; j < ldc; j++) {
      const double got = c[i * ldc + j];
      if (j >= n) { /* the gap past the row: never written */
        bad += got != SENTINEL;
        continue;
      }
      long double want = 0, mag = 0;
      for (p = 0; p < k; p++) {
        const long double x = ta == 'N' ? a[i * lda + p] : a[p * lda + i];
        const long double y = tb == 'N' ? b[p * ldb + j] : b[j * ldb + p];
        want += x * y;
        mag += fabsl(x * y);
      }
      want *= alpha;
      mag *= fabsl((long double)alpha);
      if (beta != 0) {
        want += (long double)beta * c0[i * ldc + j];
        mag += fabsl((long double)beta * c0[i * ldc + j]);
      }
      if (!(fabsl(got - want) <= (k + 2) * eps * mag)) {
        if (bad < 3)
          printf("FAIL %s ta=%c tb=%c m=%td n=%td k=%td alpha=%g beta=%g: C[%td,%td] = %.17g, "
                 "expected %.17Lg\n",
                 name, ta, tb, m, n, k, alpha, beta, i, j, got, want);
        bad++;
      }
    }
  }
  if (bad >= 3)
    printf("FAIL %s ta=%c tb=%c m=%td n=%td k=%td: %td wrong elements\n", name, ta, tb, m, n, k,
           bad);
  failures += bad != 0;
  checks++;
  free(a);
  free(b);
  free(c);
  free(c0);
}

static void check_gemm(char ta, char tb, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, int scaling) {
  const double alpha = scalings[scaling % NSCALINGS][0], beta = scalings[scaling % NSCALINGS][1];
  check_gemm_type(1, ta, tb, m, n, k, alpha, beta);
  check_gemm_type(0, ta, tb, m, n, k, alpha, beta);
}

/* x[0 .. n) := uniform numbers, as floats or doubles. */
static void fill_uniform(void *x, size_t n, int single) {
  size_t i;
  for (i = 0; i < n; i++)
    if (single)
      ((float *)x)[i] = (float)uniform();
    else
      ((double *)x)[i] = uniform();
}

/* The packed form against bp_tile_?gemm on the same operands: equal bit for bit. ldb is
   given, to place the rows of B a multiple of 1 KiB apart or not. */
static void check_packed_type(int single, char ta, char tb, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                              ptrdiff_t ldb, double alpha, double beta) {
  const char *name = single ? "bp_tile_sgemm_packed" : "bp_tile_dgemm_packed";
  const ptrdiff_t ar = ta == 'N' ? m : k, ac = ta == 'N' ? k : m;
  const ptrdiff_t br = tb == 'N' ? k : n;
  const ptrdiff_t lda = ac + 1, ldc = n + 3;
  const size_t na = (size_t)(ar * lda), nb = (size_t)(br * ldb), nc = (size_t)(m * ldc);
  const size_t size = single ? sizeof(float) : sizeof(double);
  void *a = malloc(size * na), *b = malloc(size * nb), *c1 = malloc(size * nc);
  void *c2 = malloc(size * nc);
  fill_uniform(a, na, single);
  fill_uniform(b, nb, single);
  fill_uniform(c1, nc, single);
  memcpy(c2, c1, size * nc);
  if (single) {
    bp_tile_sgemm(ta, tb, m, n, k, (float)alpha, a, lda, b, ldb, (float)beta, c1, ldc);
    bp_tile_sgemm_packed(ta, tb, m, n, k, (float)alpha, a, lda, b, ldb, (float)beta, c2, ldc);
  } else {
    bp_tile_dgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c1, ldc);
    bp_tile_dgemm_packed(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c2, ldc);
  }
  if (memcmp(c1, c2, size * nc) != 0) {
    printf("FAIL %s ta=%c tb=%c m=%td n=%td k=%td ldb=%td: not bp_tile_gemm's result\n", name,
           ta, tb, m, n, k, ldb);
    failures++;
  }
  checks++;
  free(a);
  free(b);
  free(c1);
  free(c2);
}

static void check_packed(void) {
  static const char ops[] = {'N', 'T'};
  /* rows of C: one tile, one block, several blocks with a ragged last tile (the block is
     192 rows of floats, 96 of doubles); columns: a narrow strip, whole strips, a ragged
     last one; depth: within a panel and past it */
  static const ptrdiff_t ms[] = {5, 130, 401}, ks[] = {3, 300};
  int t, u, mi, ni, ki, single, scaling = 0;
  for (single = 0; single < 2; single++)
    for (t = 0; t < 2; t++)
      for (u = 0; u < 2; u++)
        for (mi = 0; mi < 3; mi++)
          for (ni = 0; ni < 4; ni++)
            for (ki = 0; ki < 2; ki++) {
              const char ta = ops[t], tb = ops[u];
              /* the last: two whole strips and one exactly a vector wide, read in place */
              const ptrdiff_t w = BP_VBYTES / (single ? sizeof(float) : sizeof(double));
              const ptrdiff_t ns[] = {7, 64, 77, 5 * w};
              const ptrdiff_t n = ns[ni], k = ks[ki], bc = tb == 'N' ? n : k;
              /* rows of B 1 KiB apart (copied) or not (read in place) */
              const ptrdiff_t kib = 1024 / (single ? sizeof(float) : sizeof(double));
              const ptrdiff_t ldbs[] = {bc + 5, (bc + kib - 1) / kib * kib};
              for (int l = 0; l < 2; l++, scaling++)
                check_packed_type(single, ta, tb, ms[mi], n, k, ldbs[l],
                                  scalings[scaling % NSCALINGS][0],
                                  scalings[scaling % NSCALINGS][1]);
            }
}

static void check_sum_squares(ptrdiff_t n) {
  double *xd = malloc(sizeof(double) * (size_t)(n + 1));
  float *xf = malloc(sizeof(float) * (size_t)(n + 1));
  long double want_d = 0, want_f = 0;
  ptrdiff_t i;
  for (i = 0; i < n; i++) {
    xd[i] = uniform() * 4;
    xf[i] = (float)xd[i];
    want_d += (long double)xd[i] * xd[i];
    want_f += (long double)xf[i] * xf[i];
  }
  const double got_d = bp_sum_squares_d(xd, n), got_f = bp_sum_squares_f(xf, n);
  if (!(fabsl(got_d - want_d) <= (n + 2) * (long double)DBL_EPSILON * want_d)) {
    printf("FAIL bp_sum_squares_d n=%td: %.17g, expected %.17Lg\n", n, got_d, want_d);
    failures++;
  }
  if (!(fabsl(got_f - want_f) <= (n + 2) * (long double)FLT_EPSILON * want_f)) {
    printf("FAIL bp_sum_squares_f n=%td: %.17g, expected %.17Lg\n", n, got_f, want_f);
    failures++;
  }
  checks += 2;
  free(xd);
  free(xf);
}

int main(void) {
  static const char ops[] = {'N', 'T'};
  int t, u, mi, ni, ki, s, scaling = 0;
  ptrdiff_t n;

  for (t = 0; t < 2; t++)
    for (u = 0; u < 2; u++) {
      const char ta = ops[t], tb = ops[u];
      /* Every m x n edge pair with a short and a two-panel depth; every depth with a few
         m x n. At most one dimension is 257, which keeps the naive loops fast. */
      for (mi = 0; mi < NEDGES; mi++)
        for (ni = 0; ni < NEDGES; ni++) {
          check_gemm(ta, tb, edges[mi], edges[ni], 9, scaling++);
          if (edges[mi] < 257 && edges[ni] < 257)
            check_gemm(ta, tb, edges[mi], edges[ni], 257, scaling++);
        }
      for (ki = 0; ki < NEDGES; ki++) {
        check_gemm(ta, tb, 9, 17, edges[ki], scaling++);
        check_gemm(ta, tb, 16, 33, edges[ki], scaling++);
        check_gemm(ta, tb, 1, 8, edges[ki], scaling++);
      }
      /* k = 0: C := beta C, and beta = 0 writes zeros over NaN */
      for (s = 0; s < NSCALINGS; s++)
        check_gemm(ta, tb, 9, 33, 0, s);
    }

  check_packed();

  for (n = 0; n <= 40; n++)
    check_sum_squares(n);
  check_sum_squares(1000);
  check_sum_squares(1001);

  printf("%ld checks, %ld failures\n", checks, failures);
  return failures != 0;
}
