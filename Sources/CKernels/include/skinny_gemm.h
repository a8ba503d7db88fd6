// Row-major float32 GEMMs of a large matrix A by a few columns (n <= 16): the encoder's fc layer
// and the global MI head when a global batch of 64 is split over 4-8 ranks. There a GEMM is a pass
// over A (4096 x 1024 for the fc weight), and OpenBLAS spends most of the call copying A into its
// packed layout for a handful of columns (35-70 GFLOP/s on a Zen 5 where its large GEMMs run at
// 200). These kernels read A once, a few rows at a time as memory holds it, and keep the small
// side in registers. (The weight gradient, A B^T with k <= 16, is no such case: OpenBLAS packs
// only the small operands there and streams C; a kernel here was slower.) Each is compiled for AVX-512, AVX2+FMA and baseline x86-64,
// like the estimator kernels. beta is 0 (C is overwritten) or 1 (C += the product).
#pragma once
#include <stddef.h>

// C[m, n] = beta C + A[m, k] B[k, n], n <= 16.
void dim_skinny_gemm_nn(size_t m, size_t n, size_t k, const float *a, size_t lda, const float *b, size_t ldb,
                        int beta, float *c, size_t ldc);

// C[m, n] = beta C + A^T B, A stored [k, m], B [k, n], n <= 16.
void dim_skinny_gemm_tn(size_t m, size_t n, size_t k, const float *a, size_t lda, const float *b, size_t ldb,
                        int beta, float *c, size_t ldc);
