// Row-major GEMMs of a large matrix by a narrow one (n <= 64 columns), for one instruction set:
// included once per variant with TARGET, KERNEL and NARROW_LANES (16 with AVX-512's 32 registers,
// else 8) defined. Register tiles whose shape is a compile-time constant after inlining; every
// entry of C is one accumulator, summed over k in order with a*b+c (FMA where the CPU has it).
#define NW_INLINE TARGET static inline __attribute__((always_inline))
typedef float KERNEL(nwv) __attribute__((vector_size(4 * NARROW_LANES), aligned(4)));
#define NWV KERNEL(nwv)
#define NW_LOAD(p) ({ NWV v_; memcpy(&v_, (p), sizeof v_); v_; })
#define NW_LANES NARROW_LANES

// NN tile: rows [0, R) of A times the JV vectors of a panel of packed B starting at bp (row stride
// bs floats), into C columns [0, cols) (cols <= JV * lanes).
NW_INLINE void KERNEL(nw_nn_tile)(const int R, const int JV, size_t k, const float *restrict a, size_t lda,
                                  const float *restrict bp, size_t bs, int beta, float *restrict c, size_t ldc,
                                  size_t cols) {
    NWV acc[16][4];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < JV; v++) acc[r][v] = (NWV){0};
    for (size_t t = 0; t < k; t++) {
        NWV b[4];
        for (int v = 0; v < JV; v++) b[v] = NW_LOAD(bp + t * bs + v * NW_LANES);
        for (int r = 0; r < R; r++) {
            float x = a[r * lda + t];
            for (int v = 0; v < JV; v++) acc[r][v] += x * b[v];
        }
    }
    for (int r = 0; r < R; r++) {
        float out[4 * NW_LANES];
        memcpy(out, acc[r], sizeof(NWV) * JV);
        float *cr = c + r * ldc;
        if (beta) { for (size_t j = 0; j < cols; j++) cr[j] += out[j]; }
        else { for (size_t j = 0; j < cols; j++) cr[j] = out[j]; }
    }
}

// Floats per row of packed B: n rounded up to whole register tiles (zeros past n).
TARGET static size_t KERNEL(narrow_nn_width)(size_t n) {
    size_t nvec = (n + NW_LANES - 1) / NW_LANES;
#if NARROW_LANES == 8
    if (nvec > 1) nvec = (nvec + 1) / 2 * 2;
#endif
    return nvec * NW_LANES;
}

// Columns per panel of packed B: the register tile's width (JV vectors, as chosen below). B is
// packed panel by panel, each [k, panel] contiguous, so that a tile streams its B in memory
// order (rows of the whole width, 256 bytes apart at 64 columns, cost the AVX2 kernel 15-20% on a
// Zen 3: docs/results.md, 2026-12-06 (8)).
TARGET static size_t KERNEL(narrow_nn_panel)(size_t n) {
#if NARROW_LANES == 16
    return KERNEL(narrow_nn_width)(n);  // one tile spans every column (JV = nvec <= 4)
#else
    return KERNEL(narrow_nn_width)(n) == NW_LANES ? NW_LANES : 2 * NW_LANES;
#endif
}

// C[m, n] (+)= A[m, k] B[k, n]; bp is B packed in panels of narrow_nn_panel(n) columns, each
// [k, panel] (zeros past n).
TARGET static void KERNEL(narrow_nn)(size_t m, size_t n, size_t k, const float *restrict a, size_t lda,
                                     const float *restrict bp, int beta, float *restrict c, size_t ldc) {
    const size_t nvec = (n + NW_LANES - 1) / NW_LANES;
#define NW_NN_ROWS(R, JV)                                                                                   \
    for (size_t i = 0; i < m;) {                                                                            \
        size_t rows = m - i >= (R) ? (R) : 1;                                                               \
        for (size_t v0 = 0; v0 < nvec; v0 += (JV)) {                                                        \
            size_t cols = n - v0 * NW_LANES < (JV) * NW_LANES ? n - v0 * NW_LANES : (JV) * NW_LANES;          \
            const float *panel = bp + v0 / (JV) * k * ((JV) * NW_LANES);                                     \
            if (rows == (R)) KERNEL(nw_nn_tile)((R), (JV), k, a + i * lda, lda, panel, (JV) * NW_LANES, beta,   \
                                                c + i * ldc + v0 * NW_LANES, ldc, cols);                    \
            else KERNEL(nw_nn_tile)(1, (JV), k, a + i * lda, lda, panel, (JV) * NW_LANES, beta,             \
                                    c + i * ldc + v0 * NW_LANES, ldc, cols);                                \
        }                                                                                                   \
        i += rows;                                                                                          \
    }
#if NARROW_LANES == 16
    if (nvec == 1) { NW_NN_ROWS(12, 1) }
    else if (nvec == 2) { NW_NN_ROWS(8, 2) }
    else if (nvec == 3) { NW_NN_ROWS(6, 3) }
    else { NW_NN_ROWS(5, 4) }
#else
    if (nvec == 1) { NW_NN_ROWS(8, 1) }
    else { NW_NN_ROWS(5, 2) }  // 10 accumulators, 2 of B, 1 broadcast: AVX2's 16 registers
#endif
#undef NW_NN_ROWS
}

// TN tile: ct[j, i] += sum over t < rows of A[t, i] B[t, j], for i in [0, IV * lanes), j in [0, JB);
// ct is C transposed (row stride ldct), so the accumulators load and store as vectors.
NW_INLINE void KERNEL(nw_tn_tile)(const int IV, const int JB, size_t rows, const float *restrict a, size_t lda,
                                  const float *restrict b, size_t ldb, float *restrict ct, size_t ldct) {
    NWV acc[2][12];
    for (int v = 0; v < IV; v++)
        for (int j = 0; j < JB; j++) acc[v][j] = NW_LOAD(ct + j * ldct + v * NW_LANES);
    for (size_t t = 0; t < rows; t++) {
        NWV x[2];
        for (int v = 0; v < IV; v++) x[v] = NW_LOAD(a + t * lda + v * NW_LANES);
        for (int j = 0; j < JB; j++) {
            float y = b[t * ldb + j];
            for (int v = 0; v < IV; v++) acc[v][j] += x[v] * y;
        }
    }
    for (int v = 0; v < IV; v++)
        for (int j = 0; j < JB; j++) memcpy(ct + j * ldct + v * NW_LANES, &acc[v][j], sizeof(NWV));
}

// C[m, n] (+)= A^T B with A stored [k, m] and B [k, n]; ct is scratch of n rows of ldct >= m floats.
// A is walked NW_TN_ROWS rows at a time (a few pages: the TLB holds them), its columns a tile at a
// time; the tile's sums wait in ct between blocks of rows, and are added in the same order.
#define NW_TN_ROWS 32
TARGET static void KERNEL(narrow_tn)(size_t m, size_t n, size_t k, const float *restrict a, size_t lda,
                                     const float *restrict b, size_t ldb, int beta, float *restrict c, size_t ldc,
                                     float *restrict ct, size_t ldct) {
#if NARROW_LANES == 16
    enum { JB = 12 };
#else
    enum { JB = 6 };
#endif
    const size_t tiles = m / NW_LANES * NW_LANES;
    for (size_t j = 0; j < n; j++) memset(ct + j * ldct, 0, tiles * sizeof(float));
    for (size_t t0 = 0; t0 < k; t0 += NW_TN_ROWS) {
        size_t rows = k - t0 < NW_TN_ROWS ? k - t0 : NW_TN_ROWS;
        const float *ab = a + t0 * lda, *bb = b + t0 * ldb;
        size_t i = 0;
        for (; i + 2 * NW_LANES <= tiles; i += 2 * NW_LANES) {
            // The tile's block of A, copied together: its rows lie lda apart, a power of two in
            // DIM's layers, so in place they would all fall into the same few L1 cache sets.
            enum { W = 2 * NW_LANES };
            float ap[NW_TN_ROWS * W];
            for (size_t t = 0; t < rows; t++) memcpy(ap + t * W, ab + t * lda + i, W * sizeof(float));
            float *ci = ct + i;
            size_t j = 0;
            for (; j + JB <= n; j += JB) KERNEL(nw_tn_tile)(2, JB, rows, ap, W, bb + j, ldb, ci + j * ldct, ldct);
            for (; j + 4 <= n; j += 4) KERNEL(nw_tn_tile)(2, 4, rows, ap, W, bb + j, ldb, ci + j * ldct, ldct);
            for (; j < n; j++) KERNEL(nw_tn_tile)(2, 1, rows, ap, W, bb + j, ldb, ci + j * ldct, ldct);
        }
        for (; i < tiles; i += NW_LANES)  // a last single-vector tile, in place
            for (size_t j = 0; j < n; j++)
                KERNEL(nw_tn_tile)(1, 1, rows, ab + i, lda, bb + j, ldb, ct + i + j * ldct, ldct);
    }
    for (size_t i = 0; i < tiles; i++)
        for (size_t j = 0; j < n; j++) c[i * ldc + j] = beta ? c[i * ldc + j] + ct[j * ldct + i] : ct[j * ldct + i];
    for (size_t i = tiles; i < m; i++)  // the last m % lanes rows of C: one scalar sum each, same order
        for (size_t j = 0; j < n; j++) {
            float s = 0;
            for (size_t t = 0; t < k; t++) s += a[t * lda + i] * b[t * ldb + j];
            c[i * ldc + j] = beta ? c[i * ldc + j] + s : s;
        }
}
#undef NW_TN_ROWS

#undef NW_INLINE
#undef NWV
#undef NW_LOAD
#undef NW_LANES
