// GEMMs with one side of at most 16 (skinny_gemm.h says when and why), for one instruction set:
// included once per variant by estimator_kernels.c with TARGET, KERNEL and SKINNY_LANES (16 where
// the CPU has AVX-512's 32 wide registers, else 8) defined. Row-major; products are contracted to
// FMA where the CPU has it. Every kernel reads the large operand once, a few rows at a time in the
// order memory holds it, and keeps the small operand's part in registers.
#define SK_INLINE TARGET static inline __attribute__((always_inline))
typedef float KERNEL(skv) __attribute__((vector_size(4 * SKINNY_LANES), aligned(4)));
#define SKV KERNEL(skv)
#define SK_LOAD(p) ({ SKV v_; memcpy(&v_, (p), sizeof v_); v_; })
#define SK_STORE(p, v) do { SKV s_ = (v); memcpy((p), &s_, sizeof s_); } while (0)
#define SK_SPLAT(x) ({ float x_ = (x); SKV v_; for (int l_ = 0; l_ < SKINNY_LANES; l_++) v_[l_] = x_; v_; })

// NN, C[m, n] (+)= A[m, k] B[k, n] with n <= 16: `rows` rows of A at a time; bp holds B's rows
// padded to 8 * nv floats (nv = 1 for n <= 8, else 2). Per step of k: nv loads of B, `rows`
// broadcasts of A, rows * nv FMAs into accumulators that stay in registers.
SK_INLINE void KERNEL(sk_nn_rows)(size_t rows, size_t nv, size_t n, size_t k, const float *restrict a, size_t lda,
                                  const float *restrict bp, int beta, float *restrict c, size_t ldc) {
    v8f acc[8][2] = {{{0}}};
    for (size_t t = 0; t < k; t++) {
        v8f b[2];
        b[0] = LOAD8(bp + t * 8 * nv);
        if (nv > 1) b[1] = LOAD8(bp + t * 8 * nv + 8);
        for (size_t r = 0; r < rows; r++) {
            v8f x = SPLAT(a[r * lda + t]);
            for (size_t v = 0; v < nv; v++) acc[r][v] += x * b[v];
        }
    }
    for (size_t r = 0; r < rows; r++) {
        float out[16];
        for (size_t v = 0; v < nv; v++) STORE8(out + 8 * v, acc[r][v]);
        for (size_t j = 0; j < n; j++) c[r * ldc + j] = beta ? c[r * ldc + j] + out[j] : out[j];
    }
}

TARGET static void KERNEL(skinny_nn)(size_t m, size_t n, size_t k, const float *restrict a, size_t lda,
                                     const float *restrict bp, int beta, float *restrict c, size_t ldc) {
    size_t i = 0;
    if (n <= 8) {
        for (; i + 8 <= m; i += 8) KERNEL(sk_nn_rows)(8, 1, n, k, a + i * lda, lda, bp, beta, c + i * ldc, ldc);
        for (; i < m; i++) KERNEL(sk_nn_rows)(1, 1, n, k, a + i * lda, lda, bp, beta, c + i * ldc, ldc);
    } else {
        for (; i + 4 <= m; i += 4) KERNEL(sk_nn_rows)(4, 2, n, k, a + i * lda, lda, bp, beta, c + i * ldc, ldc);
        for (; i < m; i++) KERNEL(sk_nn_rows)(1, 2, n, k, a + i * lda, lda, bp, beta, c + i * ldc, ldc);
    }
}

// TN, C[m, n] (+)= A^T B with A stored [k, m] and B [k, n], n <= 16. ct ([n, m], zeroed by the
// caller) accumulates C transposed. A is taken SK_TN_ROWS rows at a time (that many streams, which
// the hardware prefetchers follow), walked along its columns SKINNY_LANES at a time; for each
// such tile the `jn` columns of ct stay in registers through the block's rows. Columns past the
// last full tile go through a scalar loop.
#define SK_TN_ROWS 16
SK_INLINE void KERNEL(sk_tn_tile)(size_t jn, size_t rows, const float *restrict a, size_t lda,
                                  const float *restrict b, size_t ldb, float *restrict ct, size_t m) {
    SKV acc[16];
    for (size_t j = 0; j < jn; j++) acc[j] = SK_LOAD(ct + j * m);
    for (size_t t = 0; t < rows; t++) {
        SKV x = SK_LOAD(a + t * lda);
        for (size_t j = 0; j < jn; j++) acc[j] += SK_SPLAT(b[t * ldb + j]) * x;
    }
    for (size_t j = 0; j < jn; j++) SK_STORE(ct + j * m, acc[j]);
}

TARGET static void KERNEL(skinny_tn)(size_t m, size_t n, size_t k, const float *restrict a, size_t lda,
                                     const float *restrict b, size_t ldb, float *restrict ct) {
    // Register tiles: 16 columns of ct on AVX-512 (32 registers), 8 otherwise.
    const size_t group = SKINNY_LANES == 16 && n > 8 ? 16 : 8, tiles = m / SKINNY_LANES * SKINNY_LANES;
    for (size_t t0 = 0; t0 < k; t0 += SK_TN_ROWS) {
        size_t rows = k - t0 < SK_TN_ROWS ? k - t0 : SK_TN_ROWS;
        const float *ab = a + t0 * lda, *bb = b + t0 * ldb;
        for (size_t j0 = 0; j0 < n; j0 += group) {
            size_t jn = n - j0 < group ? n - j0 : group;
            float *cg = ct + j0 * m;
            size_t i = 0;
            // Constant tile heights, so that the accumulators are registers.
            if (jn == 16) {
                for (; i < tiles; i += SKINNY_LANES) KERNEL(sk_tn_tile)(16, rows, ab + i, lda, bb + j0, ldb, cg + i, m);
            } else if (jn == 8) {
                for (; i < tiles; i += SKINNY_LANES) KERNEL(sk_tn_tile)(8, rows, ab + i, lda, bb + j0, ldb, cg + i, m);
            } else {
                for (; i < tiles; i += SKINNY_LANES) KERNEL(sk_tn_tile)(jn, rows, ab + i, lda, bb + j0, ldb, cg + i, m);
            }
            for (; i < m; i++) {
                for (size_t j = 0; j < jn; j++) {
                    float s = cg[j * m + i];
                    for (size_t t = 0; t < rows; t++) s += bb[t * ldb + j0 + j] * ab[t * lda + i];
                    cg[j * m + i] = s;
                }
            }
        }
    }
}

#undef SK_INLINE
#undef SK_TN_ROWS
#undef SKV
#undef SK_LOAD
#undef SK_STORE
#undef SK_SPLAT
