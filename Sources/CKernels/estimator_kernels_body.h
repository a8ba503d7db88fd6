// The kernels' bodies, included by estimator_kernels.c once per instruction set with TARGET (a
// target attribute) and KERNEL(name) (the name with the set's suffix) defined. Not a public header.

// Sums run over blocks of BLOCK values, INTERLEAVE vectors per step (a block is a whole number of
// steps), each vector added to the block's sum in order, as one vector per step would add them.
TARGET static double KERNEL(softplus_sum)(const float *x, size_t n, float sign, float grad_scale, float *grad) {
    double total = 0;
    size_t i = 0;
    const v8f sgn = SPLAT(sign), scale = SPLAT(grad_scale);
    v8f v[INTERLEAVE], sp[INTERLEAVE], sig[INTERLEAVE];
    while (i + 8 <= n) {
        v8f acc = SPLAT(0.0f);
        size_t end = i + BLOCK < n ? i + BLOCK : n;
        for (; i + 8 * INTERLEAVE <= end; i += 8 * INTERLEAVE) {
            for (int q = 0; q < INTERLEAVE; q++) v[q] = sgn * LOAD8(x + i + 8 * q);
            softplus_sigmoid(v, sp, sig, INTERLEAVE);
            for (int q = 0; q < INTERLEAVE; q++) {
                acc += sp[q];
                STORE8(grad + i + 8 * q, sig[q] * scale);
            }
        }
        for (; i + 8 <= end; i += 8) {
            v[0] = sgn * LOAD8(x + i);
            softplus_sigmoid(v, sp, sig, 1);
            acc += sp[0];
            STORE8(grad + i, sig[0] * scale);
        }
        total += HSUM(acc);
    }
    if (i < n) {
        size_t r = n - i;
        load_tail(v, x + i, r, 0.0f);
        v[0] = sgn * v[0];
        softplus_sigmoid(v, sp, sig, 1);
        for (size_t k = 0; k < r; k++) total += sp[0][k];
        sig[0] = sig[0] * scale;
        store_tail(grad + i, r, sig);
    }
    return total;
}

TARGET static double KERNEL(exp_sum)(const float *x, size_t n, float shift, float grad_scale, float *grad) {
    double total = 0;
    size_t i = 0;
    const v8f c = SPLAT(shift), scale = SPLAT(grad_scale);
    v8f e[INTERLEAVE];
    while (i + 8 <= n) {
        v8f acc = SPLAT(0.0f);
        size_t end = i + BLOCK < n ? i + BLOCK : n;
        for (; i + 8 * INTERLEAVE <= end; i += 8 * INTERLEAVE) {
            for (int q = 0; q < INTERLEAVE; q++) e[q] = LOAD8(x + i + 8 * q) - c;
            exp_nonpositive(e, INTERLEAVE);
            for (int q = 0; q < INTERLEAVE; q++) {
                acc += e[q];
                if (grad) STORE8(grad + i + 8 * q, e[q] * scale);
            }
        }
        for (; i + 8 <= end; i += 8) {
            e[0] = LOAD8(x + i) - c;
            exp_nonpositive(e, 1);
            acc += e[0];
            if (grad) STORE8(grad + i, e[0] * scale);
        }
        total += HSUM(acc);
    }
    if (i < n) {
        size_t r = n - i;
        load_tail(e, x + i, r, shift);
        e[0] = e[0] - c;
        exp_nonpositive(e, 1);
        for (size_t k = 0; k < r; k++) total += e[0][k];
        if (grad) {
            e[0] = e[0] * scale;
            store_tail(grad + i, r, e);
        }
    }
    return total;
}

TARGET static float KERNEL(maximum)(const float *x, size_t n, float initial) {
    v8f m = SPLAT(initial);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f v = LOAD8(x + i);
        m = SELECT(v > m, v, m);
    }
    float result = initial;
    for (int k = 0; k < 8; k++) result = m[k] > result ? m[k] : result;
    for (; i < n; i++) result = x[i] > result ? x[i] : result;
    return result;
}
