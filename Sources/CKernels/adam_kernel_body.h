// The Adam update for one instruction set (included once per variant by estimator_kernels.c, with
// TARGET and KERNEL defined). PyTorch's rule, the same operations in the same order as the scalar
// loop it replaces, with contraction to FMA off: every variant (and every rank, whatever its CPU)
// rounds alike, so the replicas of a data-parallel job stay bit-identical.
TARGET static void KERNEL(adam_update)(float *restrict p, const float *restrict g, float *restrict m,
                                       float *restrict v, size_t n, float b1, float b2, float step_size,
                                       float inv_sqrt_bc2, float eps, float *restrict record) {
#pragma clang fp contract(off)
    const float c1 = 1 - b1, c2 = 1 - b2;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f gi = LOAD8(g + i);
        v8f mi = SPLAT(b1) * LOAD8(m + i) + SPLAT(c1) * gi;
        v8f vi = SPLAT(b2) * LOAD8(v + i) + SPLAT(c2) * gi * gi;
        STORE8(m + i, mi);
        STORE8(v + i, vi);
        v8f delta = SPLAT(-step_size) * mi / (__builtin_elementwise_sqrt(vi) * SPLAT(inv_sqrt_bc2) + SPLAT(eps));
        STORE8(p + i, LOAD8(p + i) + delta);
        if (record) STORE8(record + i, delta);
    }
    for (; i < n; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + c1 * gi;
        float vi = b2 * v[i] + c2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float delta = -step_size * mi / (__builtin_sqrtf(vi) * inv_sqrt_bc2 + eps);
        p[i] += delta;
        if (record) record[i] = delta;
    }
}
