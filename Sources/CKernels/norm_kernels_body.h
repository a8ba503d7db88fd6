// BatchNorm's and LayerNorm's elementwise passes for one instruction set (included once per variant
// by estimator_kernels.c). They were Swift loops, which compile for baseline x86-64 only (4-wide
// SSE, no FMA); here they run 8 wide in one ymm register. The same operations in the
// same order as the Swift loops they replace, contraction to FMA off: bit-identical results on every
// instruction set. Only `moments` sums in eight double lanes where Swift summed in one.

// sums[0] = sum of x, sums[1] = sum of x * x, both in double (the square too: the variance is a
// difference of the two and must not lose the float product's rounding).
TARGET static void KERNEL(moments)(const float *restrict x, size_t n, double *sums) {
#pragma clang fp contract(off)
    typedef double v8d __attribute__((vector_size(64), aligned(8)));
    v8d s1 = {0}, s2 = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8d v = __builtin_convertvector(LOAD8(x + i), v8d);
        s1 += v;
        s2 += v * v;
    }
    double t1 = 0, t2 = 0;
    for (; i < n; i++) { double v = x[i]; t1 += v; t2 += v * v; }
    for (int k = 0; k < 8; k++) { t1 += s1[k]; t2 += s2[k]; }
    sums[0] = t1;
    sums[1] = t2;
}

// out = gamma * xhat + beta with xhat = (x - mean) * r, then max(out, 0) when relu (as Swift's max:
// NaN passes, -0 becomes +0). xhat is not stored: backward recomputes it from x with the same
// operations (normalized_masked_sums, centred_scale), which saves a write and a read of the
// activation per BatchNorm.
TARGET static void KERNEL(affine_normalize)(const float *restrict x, size_t n, float mean, float r, float gamma,
                                            float beta, int relu, float *restrict out) {
#pragma clang fp contract(off)
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f v = (LOAD8(x + i) - SPLAT(mean)) * SPLAT(r);
        v8f y = SPLAT(gamma) * v + SPLAT(beta);
        if (relu) y = SELECT(y <= SPLAT(0.0f), SPLAT(0.0f), y);
        STORE8(out + i, y);
    }
    for (; i < n; i++) {
        float v = (x[i] - mean) * r;
        float y = gamma * v + beta;
        out[i] = relu && y <= 0 ? 0 : y;
    }
}

// d = k * (d - m1 - xhat * m2) with xhat = (x - mean) * r: BatchNorm's input gradient from the
// output gradient d (masked).
TARGET static void KERNEL(centred_scale)(float *restrict d, const float *restrict x, size_t n, float mean, float r,
                                         float k, float m1, float m2) {
#pragma clang fp contract(off)
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f v = (LOAD8(x + i) - SPLAT(mean)) * SPLAT(r);
        STORE8(d + i, SPLAT(k) * (LOAD8(d + i) - SPLAT(m1) - v * SPLAT(m2)));
    }
    for (; i < n; i++) d[i] = k * (d[i] - m1 - ((x[i] - mean) * r) * m2);
}

// LayerNorm forward, one channel row: with t = row - row0, sum += t and sq += t * t (per position).
TARGET static void KERNEL(shifted_sums)(const float *restrict row, const float *restrict row0, size_t n,
                                        float *restrict sum, float *restrict sq) {
#pragma clang fp contract(off)
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f t = LOAD8(row + i) - LOAD8(row0 + i);
        STORE8(sum + i, LOAD8(sum + i) + t);
        STORE8(sq + i, LOAD8(sq + i) + t * t);
    }
    for (; i < n; i++) { float t = row[i] - row0[i]; sum[i] += t; sq[i] += t * t; }
}

// LayerNorm forward, one channel row: out = w * xhat + b with xhat = (x - mean) * r (per position).
// As in BatchNorm, xhat is not stored: the backward passes recompute it from x, mean and r.
TARGET static void KERNEL(column_normalize)(const float *restrict x, const float *restrict mean,
                                            const float *restrict r, size_t n, float w, float b,
                                            float *restrict out) {
#pragma clang fp contract(off)
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f v = (LOAD8(x + i) - LOAD8(mean + i)) * LOAD8(r + i);
        STORE8(out + i, SPLAT(w) * v + SPLAT(b));
    }
    for (; i < n; i++) out[i] = w * ((x[i] - mean[i]) * r[i]) + b;
}

// LayerNorm backward, one channel row: g = dy * w; sum_g += g; sum_gx += g * xhat (per position),
// xhat = (x - mean) * r.
TARGET static void KERNEL(scaled_column_sums)(const float *restrict dy, const float *restrict x,
                                              const float *restrict mean, const float *restrict r, size_t n,
                                              float w, float *restrict g, float *restrict sum_g,
                                              float *restrict sum_gx) {
#pragma clang fp contract(off)
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f v = LOAD8(dy + i) * SPLAT(w);
        v8f xh = (LOAD8(x + i) - LOAD8(mean + i)) * LOAD8(r + i);
        STORE8(g + i, v);
        STORE8(sum_g + i, LOAD8(sum_g + i) + v);
        STORE8(sum_gx + i, LOAD8(sum_gx + i) + v * xh);
    }
    for (; i < n; i++) {
        float v = dy[i] * w;
        g[i] = v;
        sum_g[i] += v;
        sum_gx[i] += v * ((x[i] - mean[i]) * r[i]);
    }
}

// LayerNorm backward, one channel row: g = r * (g - mean_g - xhat * mean_gx) (per position).
TARGET static void KERNEL(column_centred_scale)(float *restrict g, const float *restrict x,
                                                const float *restrict mean, const float *restrict r,
                                                const float *restrict mean_g, const float *restrict mean_gx,
                                                size_t n) {
#pragma clang fp contract(off)
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f xh = (LOAD8(x + i) - LOAD8(mean + i)) * LOAD8(r + i);
        STORE8(g + i, LOAD8(r + i) * (LOAD8(g + i) - LOAD8(mean_g + i) - xh * LOAD8(mean_gx + i)));
    }
    for (; i < n; i++) g[i] = r[i] * (g[i] - mean_g[i] - ((x[i] - mean[i]) * r[i]) * mean_gx[i]);
}
