// Sums over the batch for BatchNorm's and LayerNorm's backward, and the gradients' finiteness check,
// for one instruction set (included once per variant by estimator_kernels.c). Eight lanes of
// partial sums in double in every variant, combined in the same order: the result does not
// depend on the CPU, and the double partials keep a sum that nearly cancels accurate.

// BatchNorm's backward pass 1 without a stored xhat or output: xhat = (x - mean) * r and the
// output y = gamma * xhat + beta recomputed as affine_normalize computed them; v = g, or 0 where
// relu and not y > 0 (the fused ReLU's mask); d[i] = v; sums[0] = sum of v, sums[1] = sum of
// v * xhat.
TARGET static void KERNEL(normalized_masked_sums)(const float *restrict g, const float *restrict x, size_t n,
                                                  float mean, float r, float gamma, float beta, int relu,
                                                  float *restrict d, double *sums) {
#pragma clang fp contract(off)
    typedef double v8d __attribute__((vector_size(64), aligned(8)));
    v8d s1 = {0}, s2 = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f xh = (LOAD8(x + i) - SPLAT(mean)) * SPLAT(r);
        v8f v = LOAD8(g + i);
        if (relu) v = SELECT(SPLAT(gamma) * xh + SPLAT(beta) > SPLAT(0.0f), v, SPLAT(0.0f));
        STORE8(d + i, v);
        s1 += __builtin_convertvector(v, v8d);
        s2 += __builtin_convertvector(v * xh, v8d);
    }
    double t1 = 0, t2 = 0;
    for (; i < n; i++) {
        float xh = (x[i] - mean) * r;
        float v = g[i];
        if (relu && !(gamma * xh + beta > 0)) v = 0;
        d[i] = v;
        t1 += v;
        t2 += (double)(v * xh);
    }
    for (int k = 0; k < 8; k++) { t1 += s1[k]; t2 += s2[k]; }
    sums[0] = t1;
    sums[1] = t2;
}

// LayerNorm's weight and bias gradients, one channel row: sums[0] = sum of dy, sums[1] = sum of
// dy * xhat with xhat = (x - mean) * r per position, in double as above.
TARGET static void KERNEL(normalized_row_sums)(const float *restrict dy, const float *restrict x,
                                               const float *restrict mean, const float *restrict r, size_t n,
                                               double *sums) {
#pragma clang fp contract(off)
    typedef double v8d __attribute__((vector_size(64), aligned(8)));
    v8d s1 = {0}, s2 = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f v = LOAD8(dy + i);
        v8f xh = (LOAD8(x + i) - LOAD8(mean + i)) * LOAD8(r + i);
        s1 += __builtin_convertvector(v, v8d);
        s2 += __builtin_convertvector(v * xh, v8d);
    }
    double t1 = 0, t2 = 0;
    for (; i < n; i++) {
        float v = dy[i];
        t1 += v;
        t2 += (double)(v * ((x[i] - mean[i]) * r[i]));
    }
    for (int k = 0; k < 8; k++) { t1 += s1[k]; t2 += s2[k]; }
    sums[0] = t1;
    sums[1] = t2;
}

TARGET static int KERNEL(all_finite)(const float *restrict x, size_t n) {
    v8i any = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8i bits;
        memcpy(&bits, x + i, sizeof bits);
        any |= (bits & 0x7F800000) == 0x7F800000;  // exponent all ones: inf or NaN
    }
    int bad = 0;
    for (int k = 0; k < 8; k++) bad |= any[k];
    for (; i < n; i++) {
        uint32_t u;
        memcpy(&u, x + i, 4);
        bad |= (u & 0x7F800000u) == 0x7F800000u;
    }
    return !bad;
}

// out[i] = ((src[0][i] + src[1][i]) + src[2][i]) + ... over k sources, in that order (the ranks' order,
// as InProcessCommunicator adds them). out may be one of the sources: each i is read before written.
TARGET static void KERNEL(sum_sources)(float *out, const float *const *src, size_t k, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f s = LOAD8(src[0] + i);
        for (size_t r = 1; r < k; r++) s += LOAD8(src[r] + i);
        STORE8(out + i, s);
    }
    for (; i < n; i++) {
        float s = src[0][i];
        for (size_t r = 1; r < k; r++) s += src[r][i];
        out[i] = s;
    }
}
