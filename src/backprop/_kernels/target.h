/* What the CPU target the kernels are compiled for offers, as constants the Cython code
 * tests at compile time (the untaken branch is dropped).
 *
 *     BP_HAS_FMA   1 when fused multiply-add is an instruction (x86-64-v3 and up), 0 when
 *                  fma() would be a call into libm's software emulation (x86-64-v2)
 *     BP_VBYTES    the width of the widest vector register in bytes: 64 (AVX-512), 32
 *                  (AVX, AVX2), 16 (SSE, and any other target)
 */
#ifndef BACKPROP_TARGET_H
#define BACKPROP_TARGET_H

#if defined(__FMA__) || defined(__aarch64__)
#define BP_HAS_FMA 1
#else
#define BP_HAS_FMA 0
#endif

/* A build may set BP_VBYTES itself (16, 32 or 64): tests/c builds the tiles with
   AVX-512's 64-byte vectors on a CPU without it (GCC then does each vector operation in
   two or four). */
#if defined(BP_VBYTES)
#if BP_VBYTES != 16 && BP_VBYTES != 32 && BP_VBYTES != 64
#error "BP_VBYTES must be 16, 32 or 64"
#endif
#elif defined(__AVX512F__)
#define BP_VBYTES 64
#elif defined(__AVX__)
#define BP_VBYTES 32
#else
#define BP_VBYTES 16
#endif

#endif /* BACKPROP_TARGET_H */
