/* The register tile of tile_gemm.h for one element type and width, included by
 * tile_gemm_body.h once per width with
 *
 *     BP_T     the element type (float or double)
 *     BP_V     a vector of BP_T (BP_VBYTES wide)
 *     BP_NV    the tile's width in vectors (1 or 2)
 *     BP_TILE  the name of the tile function
 *
 * defined; it undefines BP_NV and BP_TILE at its end. No include guard: it is meant to be
 * included more than once.
 *
 * One MR x NV-vector tile: C[r, :] := alpha sum_p row[r][p*ap] B[p, :] + keep C[r, :] for the
 * mr rows and nr columns that exist (nr <= NV vectors). keep == 0 (beta = 0 on the first
 * panel) does not read C, which may hold NaN.
 *
 * NV is a preprocessor constant, not an argument, so that acc and bv are fixed-size arrays
 * the compiler keeps in registers: GCC then emits the same machine code as the macro this
 * replaces (an argument nv, constant at each inlined call, gave the same results but
 * different register allocation). always_inline: the tile is the inner loop of the product
 * and must not cost a call per tile.
 */
#ifndef BACKPROP_TILE_GEMM_H
#error "include tile_gemm.h, not tile_gemm_tile.h"
#endif

static inline __attribute__((always_inline)) void
BP_TILE(ptrdiff_t kc, const BP_T *const *row, ptrdiff_t ap, const BP_T *bp, ptrdiff_t ldb,
        BP_T alpha, BP_T keep, BP_T *c, ptrdiff_t ldc, ptrdiff_t mr, ptrdiff_t nr) {
  enum { W = sizeof(BP_V) / sizeof(BP_T), NV = BP_NV };
  BP_V acc[BP_MR][NV];
  ptrdiff_t p, r, v, j;
  /* C's rows are wanted only after the depth loop: ask for them now, so that a C too
     large for the caches (a weight gradient added to the weights) arrives meanwhile. */
  for (r = 0; r < mr; r++) {
    __builtin_prefetch(c + r * ldc, 1, 3);
    __builtin_prefetch(c + r * ldc + NV * W - 1, 1, 3);
  }
#pragma GCC unroll 8
  for (r = 0; r < BP_MR; r++)
#pragma GCC unroll 4
    for (v = 0; v < NV; v++)
      acc[r][v] = (BP_V){0};
  for (p = 0; p < kc; p++) {
    BP_V bv[NV];
#pragma GCC unroll 4
    for (v = 0; v < NV; v++)
      bv[v] = *(const BP_V *)(bp + p * ldb + v * W);
#pragma GCC unroll 8
    for (r = 0; r < BP_MR; r++) {
      const BP_T x = row[r][p * ap];
#pragma GCC unroll 4
      for (v = 0; v < NV; v++)
        acc[r][v] += x * bv[v];
    }
  }
  for (r = 0; r < mr; r++) {
    BP_T *cr = c + r * ldc;
    if (nr == NV * W) {
      for (v = 0; v < NV; v++) {
        BP_V out = alpha * acc[r][v];
        if (keep != 0)
          out += keep * *(BP_V *)(cr + v * W);
        *(BP_V *)(cr + v * W) = out;
      }
    } else {
      BP_T t[NV * W];
      memcpy(t, acc[r], sizeof t);
      for (j = 0; j < nr; j++)
        cr[j] = keep != 0 ? alpha * t[j] + keep * cr[j] : alpha * t[j];
    }
  }
}

#undef BP_TILE
#undef BP_NV
