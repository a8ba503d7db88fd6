// Row-major float32 GEMMs of a large matrix A by a narrow one (n <= 64 columns: the encoder's fc
// layer, whose columns are the images of a rank's batch). OpenBLAS copies A into its packed layout
// on every call, a pass over 16 MB for a few columns of work (its in-step rate at 32 images per
// rank was 39 GFLOP/s where its large GEMMs run at 120); these kernels read A once, in the order
// memory holds it, with register tiles of C. Each is compiled for AVX-512, AVX2+FMA and baseline
// x86-64 like the estimator kernels.
//
// Every entry of C is computed alone, one sum over k in order: a column of C has the same bits
// whatever the other columns are, so a rank's share of the batch gives exactly the values one
// process computes for those images (OpenBLAS's Haswell kernels do not: docs/results.md).
// Rows of C are independent too: callers may hand row ranges to threads (the TN kernel's ranges
// must start at multiples of dim_narrow_row_unit()).
#pragma once
#include <stddef.h>

// The widest B (columns) the kernels take.
enum { dim_narrow_max_columns = 64 };

// Rows of C that a thread's range of the TN kernel must be a multiple of (except the last range).
size_t dim_narrow_row_unit(void);

// A buffer of at least `count` floats owned by the calling thread (reused by its next calls).
float *dim_narrow_scratch(size_t count);

// NN: B [k, n] rearranged for the kernel, in dim_narrow_nn_packed_count(n, k) floats.
size_t dim_narrow_nn_packed_count(size_t n, size_t k);
void dim_narrow_nn_pack(size_t n, size_t k, const float *b, size_t ldb, float *packed);
// C[m, n] = A[m, k] B + (beta ? C : 0), B packed by dim_narrow_nn_pack.
void dim_narrow_nn(size_t m, size_t n, size_t k, const float *a, size_t lda, const float *packed, int beta, float *c,
                   size_t ldc);

// Whether dim_narrow_tn is worth calling on this CPU (the AVX-512 variant only).
int dim_narrow_tn_available(void);

// TN: C[m, n] = A^T B + (beta ? C : 0), A stored [k, m] and B [k, n]. ct is scratch of n rows of
// ldct >= m floats (ldct should not be a multiple of 1024: rows that far apart share cache sets).
void dim_narrow_tn(size_t m, size_t n, size_t k, const float *a, size_t lda, const float *b, size_t ldb, int beta,
                   float *c, size_t ldc, float *ct, size_t ldct);
