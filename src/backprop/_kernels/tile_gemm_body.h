/* The body of tile_gemm.h for one element type, included there once per type with
 *
 *     BP_T     the element type (float or double)
 *     BP_V     a vector of BP_T (BP_VBYTES wide)
 *     BP_VI    the integer vector of as many lanes (a shuffle's mask)
 *     BP_LANES its lanes, a literal
 *     BP_GEMM  the name of the product function
 *
 * defined; it undefines them at its end. No include guard: it is meant to be included
 * more than once. See tile_gemm.h for what it computes and how.
 */
#ifndef BACKPROP_TILE_GEMM_H
#error "include tile_gemm.h, not tile_gemm_body.h"
#endif

#define BP_TILE1 BP_CAT(BP_GEMM, _tile1)
#define BP_TILE2 BP_CAT(BP_GEMM, _tile2)
#define BP_STRIP_B BP_CAT(BP_GEMM, _strip_b)
#define BP_TILE_STRIP BP_CAT(BP_GEMM, _tile_strip)
#define BP_TRANSPOSE BP_CAT(BP_GEMM, _transpose)

#define BP_NV 2
#define BP_TILE BP_TILE2
#include "tile_gemm_tile.h"

#define BP_NV 1
#define BP_TILE BP_TILE1
#include "tile_gemm_tile.h"

/* One round of BP_TRANSPOSE (see BP_SWAP_LO in tile_gemm.h): distance d, a constant. */
#define BP_SWAP_ROUND(v, d)                                                           \
  if ((d) < W)                                                                        \
    _Pragma("GCC unroll 16") for (i = 0; i < W; i++)                                  \
      if (!(i & (d))) {                                                               \
        const BP_V a_ = v[i], b_ = v[i + (d)];                                        \
        v[i] = BP_SHUFFLE(a_, b_, BP_VI, BP_SWAP_MASK(BP_SWAP_LO, d));                \
        v[i + (d)] = BP_SHUFFLE(a_, b_, BP_VI, BP_SWAP_MASK(BP_SWAP_HI, d));          \
      }

/* dst[i NR + l] := src[l lds + i] for i, l < W: a block of one vector square transposed,
   its W rows loaded as vectors and their lanes swapped in registers, log2(W) rounds. */
static inline __attribute__((always_inline)) void BP_TRANSPOSE(const BP_T *src, ptrdiff_t lds,
                                                               BP_T *dst) {
  enum { W = sizeof(BP_V) / sizeof(BP_T), NR = 2 * W };
  BP_V v[W];
  ptrdiff_t i;
#pragma GCC unroll 16
  for (i = 0; i < W; i++) v[i] = *(const BP_V *)(src + i * lds);
  BP_SWAP_ROUND(v, 1)
  BP_SWAP_ROUND(v, 2)
  BP_SWAP_ROUND(v, 4)
  BP_SWAP_ROUND(v, 8)
#pragma GCC unroll 16
  for (i = 0; i < W; i++) *(BP_V *)(dst + i * NR) = v[i];
}

/* The kc x nr strip of op(B) from row p0 and column j0, as a tile reads it; *ld is its row
   stride. A strip of B exactly one or two vectors wide is read in place. Others are copied
   into panel, zeros past nr: B^T's strip is strided, a narrower last strip would be
   over-read, and a strip whose rows lie a multiple of 1 KiB apart would fall in a quarter
   of L1's sets (in one at 4 KiB) and evict itself between tiles. B's strip is copied row
   by row; B^T's a block of W x W at a time (BP_TRANSPOSE: measured 1.08x on W3's first
   forward product, 1.18x on W2's), and what is left column by column (each a row of B^T,
   read contiguously). With two-lane vectors (SSE's doubles) the blocks gained nothing
   (0.91-0.99x), so there every column is copied so. */
static inline __attribute__((always_inline)) const BP_T *
BP_STRIP_B(char tb, const BP_T *b, ptrdiff_t ldb, ptrdiff_t p0, ptrdiff_t j0, ptrdiff_t kc,
           ptrdiff_t nr, BP_T *panel, ptrdiff_t *ld) {
  enum { W = sizeof(BP_V) / sizeof(BP_T), NR = 2 * W };
  ptrdiff_t p, j;
  if (tb == 'N') {
    const BP_T *bs = b + p0 * ldb + j0;
    if ((nr == NR || nr == W) && (ldb * (ptrdiff_t)sizeof(BP_T)) % 1024 != 0) {
      *ld = ldb;
      return bs;
    }
    if (nr == NR)
      for (p = 0; p < kc; p++) memcpy(panel + p * NR, bs + p * ldb, sizeof(BP_T) * NR);
    else
      for (p = 0; p < kc; p++)
        for (j = 0; j < NR; j++) panel[p * NR + j] = j < nr ? bs[p * ldb + j] : (BP_T)0;
  } else {
    const BP_T *bs = b + j0 * ldb + p0;
    /* the first jb columns' first pb rows in blocks, the rest element by element */
    const ptrdiff_t jb = W >= 4 ? nr / W * W : 0, pb = kc / W * W;
    for (j = 0; j < jb; j += W)
      for (p = 0; p < pb; p += W) BP_TRANSPOSE(bs + j * ldb + p, ldb, panel + p * NR + j);
    for (j = 0; j < NR; j++)
      if (j < nr)
        for (p = j < jb ? pb : 0; p < kc; p++) panel[p * NR + j] = bs[j * ldb + p];
      else
        for (p = 0; p < kc; p++) panel[p * NR + j] = 0;
  }
  *ld = NR;
  return panel;
}

/* The tile for a strip of nr columns: one vector wide or two. */
static inline __attribute__((always_inline)) void
BP_TILE_STRIP(ptrdiff_t kc, const BP_T *const *row, ptrdiff_t ap, const BP_T *bp, ptrdiff_t ldb,
              BP_T alpha, BP_T keep, BP_T *c, ptrdiff_t ldc, ptrdiff_t mr, ptrdiff_t nr) {
  if (nr <= (ptrdiff_t)(sizeof(BP_V) / sizeof(BP_T)))
    BP_TILE1(kc, row, ap, bp, ldb, alpha, keep, c, ldc, mr, nr);
  else
    BP_TILE2(kc, row, ap, bp, ldb, alpha, keep, c, ldc, mr, nr);
}

/* noinline: one copy of the loops and their inlined tiles per type, not one per call site. */
__attribute__((noinline)) static void BP_GEMM(char ta, char tb, ptrdiff_t m, ptrdiff_t n,
                                              ptrdiff_t k, BP_T alpha, const BP_T *a, ptrdiff_t lda,
                                              const BP_T *b, ptrdiff_t ldb, BP_T beta, BP_T *c,
                                              ptrdiff_t ldc) {
  enum { W = sizeof(BP_V) / sizeof(BP_T), NR = 2 * W };
  BP_T panel[BP_KC * NR] __attribute__((aligned(64)));
  /* Strides of op(A) down a column (ai) and along a row (ap). */
  const ptrdiff_t ai = ta == 'N' ? lda : 1, ap = ta == 'N' ? 1 : lda;
  ptrdiff_t i0, j0, p0, r, j, kc, nr, mr, ld;
  const BP_T *row[BP_MR];
  const BP_T *bp;
  if (k == 0) {
    for (i0 = 0; i0 < m; i0++)
      for (j = 0; j < n; j++)
        c[i0 * ldc + j] = beta != 0 ? beta * c[i0 * ldc + j] : (BP_T)0;
    return;
  }
  for (j0 = 0; j0 < n; j0 += NR) {
    nr = n - j0 < NR ? n - j0 : NR;
    for (p0 = 0; p0 < k; p0 += BP_KC) {
      kc = k - p0 < BP_KC ? k - p0 : BP_KC;
      bp = BP_STRIP_B(tb, b, ldb, p0, j0, kc, nr, panel, &ld);
      /* beta scales C once, on the first panel; later panels add to it. */
      const BP_T keep = p0 == 0 ? beta : (BP_T)1;
      for (i0 = 0; i0 < m; i0 += BP_MR) {
        mr = m - i0 < BP_MR ? m - i0 : BP_MR;
        /* Rows past m repeat the last one: the tile always computes MR rows without reading
           past A, and the extra rows are never stored. */
        for (r = 0; r < BP_MR; r++)
          row[r] = a + (i0 + (r < mr ? r : mr - 1)) * ai + p0 * ap;
        BP_TILE_STRIP(kc, row, ap, bp, ld, alpha, keep, c + i0 * ldc + j0, ldc, mr, nr);
      }
    }
  }
}

/* BP_GEMM for large products, computing the same numbers in the same order. A product
   whose A is transposed (a layer's weight gradient, D^T A_prev) is computed otherwise:
   A^T is read a column at a time, one line per depth step, and those lines, a row of A
   apart, fall in the same few L1 sets (all in one when rows are 4 KiB apart): they evict
   each other before the next tile comes back to them. So A^T is copied, a block of at
   most BP_MC_BYTES per KC-deep panel (blocks as equal as whole tiles allow), into tiles
   of MR rows laid out depth-major; a block stays in L2 while every strip of B passes by.
   Strips of B are copied as BP_GEMM copies them. Other products gain nothing from the
   copies (measured on W3's and W4's, A's rows 4 KiB apart included: 0.6-1.0x), and
   keeping a strip of C in cache across the panels, as BP_GEMM's loops do, counts more
   for them. The block is the thread's (bp_thread_block); without one, BP_GEMM computes
   the product. */
__attribute__((noinline)) static void BP_GEMM_PACKED(char ta, char tb, ptrdiff_t m, ptrdiff_t n,
                                                     ptrdiff_t k, BP_T alpha, const BP_T *a,
                                                     ptrdiff_t lda, const BP_T *b, ptrdiff_t ldb,
                                                     BP_T beta, BP_T *c, ptrdiff_t ldc) {
  enum {
    W = sizeof(BP_V) / sizeof(BP_T),
    NR = 2 * W,
    MC = BP_MC_BYTES / (BP_KC * sizeof(BP_T)) / BP_MR * BP_MR
  };
  BP_T panel[BP_KC * NR] __attribute__((aligned(64)));
  const ptrdiff_t blocks = m > 0 ? (m + MC - 1) / MC : 1;
  const ptrdiff_t block_rows = ((m + blocks - 1) / blocks + BP_MR - 1) / BP_MR * BP_MR;
  ptrdiff_t j0, p0, b0, p, r, t, kc, nr, mr, mb, tiles, ld;
  const BP_T *row[BP_MR];
  const BP_T *bp;
  BP_T *block = ta == 'T' && k > 0 && m > 0 && n > 0 ? (BP_T *)bp_thread_block() : NULL;
  if (block == NULL) {
    BP_GEMM(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  for (p0 = 0; p0 < k; p0 += BP_KC) {
    kc = k - p0 < BP_KC ? k - p0 : BP_KC;
    /* beta scales C once, on the first panel; later panels add to it. */
    const BP_T keep = p0 == 0 ? beta : (BP_T)1;
    for (b0 = 0; b0 < m; b0 += block_rows) {
      mb = m - b0 < block_rows ? m - b0 : block_rows;
      tiles = (mb + BP_MR - 1) / BP_MR;
      /* block[(t kc + p) MR + r] = A[p0 + p, b0 + t MR + r] (= A^T's element); rows past
         the block repeat its last row, as BP_GEMM's tiles do */
      for (t = 0; t < tiles; t++) {
        mr = mb - t * BP_MR < BP_MR ? mb - t * BP_MR : BP_MR;
        for (p = 0; p < kc; p++) {
          const BP_T *src = a + (p0 + p) * lda + b0 + t * BP_MR;
          BP_T *dst = block + (t * kc + p) * BP_MR;
          if (mr == BP_MR)
            memcpy(dst, src, sizeof(BP_T) * BP_MR);
          else
            for (r = 0; r < BP_MR; r++) dst[r] = src[r < mr ? r : mr - 1];
        }
      }
      for (j0 = 0; j0 < n; j0 += NR) {
        nr = n - j0 < NR ? n - j0 : NR;
        bp = BP_STRIP_B(tb, b, ldb, p0, j0, kc, nr, panel, &ld);
        for (t = 0; t < tiles; t++) {
          mr = mb - t * BP_MR < BP_MR ? mb - t * BP_MR : BP_MR;
          for (r = 0; r < BP_MR; r++) row[r] = block + t * kc * BP_MR + r;
          BP_TILE_STRIP(kc, row, BP_MR, bp, ld, alpha, keep, c + (b0 + t * BP_MR) * ldc + j0,
                        ldc, mr, nr);
        }
      }
    }
  }
}

#undef BP_TILE1
#undef BP_TILE2
#undef BP_STRIP_B
#undef BP_TILE_STRIP
#undef BP_TRANSPOSE
#undef BP_SWAP_ROUND
#undef BP_GEMM_PACKED
#undef BP_GEMM
#undef BP_V
#undef BP_VI
#undef BP_LANES
#undef BP_T
