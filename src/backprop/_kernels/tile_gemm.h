/* Register-tiled matrix product, float and double:
 *
 *     C := alpha op(A) op(B) + beta C,    op(X) = X (ta/tb 'N') or X^T ('T'),
 *
 * row-major, op(A) m x k, op(B) k x n, C m x n with leading dimensions lda, ldb, ldc:
 * BLAS gemm's arguments in row-major order. beta = 0 overwrites C without reading it.
 *
 * It is C, not Cython, because Cython has no way to name a SIMD register: GCC's (and
 * Clang's) vector extensions give one portable source that compiles to the widest vectors
 * -march allows, sized below to the target's registers.
 *
 * The columns of C go in strips of NR = 2 vectors and the depth in panels of KC. A strip of
 * B is read where it lies; a strip of B^T, or a last strip narrower than NR, is first copied
 * into an aligned KC x NR buffer on the stack, zero-padded past n (B^T's a vector-square
 * block at a time, transposed in registers). Against it, tiles of
 * MR rows of op(A) are multiplied with MR x 2 vector accumulators held in registers: per
 * depth step 2 vector loads, MR broadcasts and 2 MR (fused) multiply-adds. A strip of at
 * most one vector uses a 1-vector tile (reading B in place too when it is exactly one
 * vector wide). A last partial tile of rows repeats its last row and keeps only the rows
 * that exist.
 *
 * The classic register-blocked micro-kernel: Goto and van de Geijn, "Anatomy of
 * high-performance matrix multiplication", ACM TOMS 34(3), 2008.
 *
 * Written once for both types: tile_gemm_body.h (the strip and panel loops) and
 * tile_gemm_tile.h (the register tile, once per width), included here once per type.
 */
#ifndef BACKPROP_TILE_GEMM_H
#define BACKPROP_TILE_GEMM_H

#if !defined(__GNUC__)
#error "backprop's tiled kernel needs GCC or Clang (vector extensions)"
#endif

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "target.h"

/* The vector and the tile follow the target's registers, so that the MR x 2 accumulators,
   the two vectors of B and a broadcast fit without spilling (checked in the disassembly):
     AVX-512 (x86-64-v4)   32 zmm: 64-byte vectors, MR = 8, 16 accumulators
     AVX2 (x86-64-v3)      16 ymm: 32-byte vectors, MR = 6, 12 accumulators
     SSE (x86-64-v2)       16 xmm: 16-byte vectors, MR = 6, 12 accumulators
   A tile is then 8 x 32 floats / 8 x 16 doubles, 6 x 16 / 6 x 8, or 6 x 8 / 6 x 4.
   The vectors are aligned only to the element, since strips of B and rows of C start
   anywhere; may_alias, since they are read through T pointers. */
#if BP_VBYTES == 64
#define BP_MR 8
#else
#define BP_MR 6
#endif
typedef double bp_vd __attribute__((vector_size(BP_VBYTES), aligned(8), may_alias));
typedef float bp_vf __attribute__((vector_size(BP_VBYTES), aligned(4), may_alias));

/* The width of a strip of C in bytes: two vectors. */
#define BP_STRIP_BYTES (2 * BP_VBYTES)

/* A KC x NR panel of B is at most 32 KiB of stack, float or double. */
#define BP_KC 256
/* The large products' block of op(A): at most MC rows of a KC-deep panel, 192 KiB (192
   rows of floats or 96 of doubles, whole tiles either way), so that it stays in a 512 KiB
   L2 beside the strips of B that pass through. */
#define BP_MC_BYTES (192 * 1024)

/* The block the packed form copies op(A) into: one per thread, taken from the heap on
   the thread's first large product and kept until the thread exits. Taken and given
   back at every product, a block of that size is mapped and unmapped by malloc, and two
   threads doing so at once wait on the kernel's lock and flush each other's TLB: the two
   threads of a product then ran barely faster than one. NULL if it cannot be had. */
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
static pthread_key_t bp_block_key;
static pthread_once_t bp_block_once = PTHREAD_ONCE_INIT;
static int bp_block_key_made;
static void bp_block_key_make(void) {
  bp_block_key_made = pthread_key_create(&bp_block_key, free) == 0;
}
static void *bp_thread_block(void) {
  void *block;
  pthread_once(&bp_block_once, bp_block_key_make);
  if (!bp_block_key_made) return NULL;
  block = pthread_getspecific(bp_block_key);
  if (block == NULL) {
    block = aligned_alloc(64, BP_MC_BYTES);
    if (block != NULL && pthread_setspecific(bp_block_key, block) != 0) {
      free(block);
      block = NULL;
    }
  }
  return block;
}
#else
static void *bp_thread_block(void) { return NULL; }
#endif

/* The transpose tile_gemm_body.h's BP_TRANSPOSE does in registers: n vectors of n lanes
   in log2(n) rounds; the round of distance d swaps, in each pair of vectors d apart, the
   d x d blocks either side of the diagonal:
       lo[l] = l & d ? b[l - d] : a[l],    hi[l] = l & d ? b[l] : a[l + d],
   a the pair's first vector, b its second. Each is one or two instructions on x86
   (unpack, blend, a move of 128- or 256-bit halves). BP_SWAP_MASK(BP_SWAP_LO, d) lists
   the lane indices a shuffle of a and b takes for lo (BP_SWAP_HI: hi) on vectors of
   BP_LANES lanes, each index in range even for a round the width does not have (d >= n:
   never run, but its shuffle is still compiled). BP_SHUFFLE is that shuffle: Clang's
   and GCC 12's __builtin_shufflevector, older GCC's __builtin_shuffle. */
#define BP_SWAP_LO(d, l) ((((l) & (d)) ? BP_LANES + (l) - (d) : (l)) & (2 * BP_LANES - 1))
#define BP_SWAP_HI(d, l) ((((l) & (d)) ? BP_LANES + (l) : (l) + (d)) & (2 * BP_LANES - 1))
#define BP_LANES_2(f, d) f(d, 0), f(d, 1)
#define BP_LANES_4(f, d) BP_LANES_2(f, d), f(d, 2), f(d, 3)
#define BP_LANES_8(f, d) BP_LANES_4(f, d), f(d, 4), f(d, 5), f(d, 6), f(d, 7)
#define BP_LANES_16(f, d) \
  BP_LANES_8(f, d), f(d, 8), f(d, 9), f(d, 10), f(d, 11), f(d, 12), f(d, 13), f(d, 14), f(d, 15)
#define BP_SWAP_MASK(f, d) BP_CAT(BP_LANES_, BP_LANES)(f, d)

#if defined(__clang__) || __GNUC__ >= 12
#define BP_SHUFFLE(a, b, VI, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define BP_SHUFFLE(a, b, VI, ...) __builtin_shuffle(a, b, (VI){__VA_ARGS__})
#endif

/* Lanes in a vector of floats and of doubles, as the literals BP_LANES must be, and the
   integer vectors of as many lanes (older GCC's shuffle mask). */
#if BP_VBYTES == 64
#define BP_LANES_F 16
#define BP_LANES_D 8
#elif BP_VBYTES == 32
#define BP_LANES_F 8
#define BP_LANES_D 4
#else
#define BP_LANES_F 4
#define BP_LANES_D 2
#endif
typedef int bp_vfi __attribute__((vector_size(BP_VBYTES)));
typedef long long bp_vdi __attribute__((vector_size(BP_VBYTES)));

#define BP_CAT_(a, b) a##b
#define BP_CAT(a, b) BP_CAT_(a, b)

#define BP_T float
#define BP_V bp_vf
#define BP_VI bp_vfi
#define BP_LANES BP_LANES_F
#define BP_GEMM bp_tile_sgemm
#define BP_GEMM_PACKED bp_tile_sgemm_packed
#include "tile_gemm_body.h"

#define BP_T double
#define BP_V bp_vd
#define BP_VI bp_vdi
#define BP_LANES BP_LANES_D
#define BP_GEMM bp_tile_dgemm
#define BP_GEMM_PACKED bp_tile_dgemm_packed
#include "tile_gemm_body.h"

#endif /* BACKPROP_TILE_GEMM_H */
