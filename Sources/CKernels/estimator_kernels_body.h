// The kernels' bodies, included by estimator_kernels.c once per instruction set with TARGET (a
// target attribute) and KERNEL(name) (the name with the set's suffix) defined. Not a public header.

TARGET static double KERNEL(softplus_sum)(const float *x, size_t n, float sign, float grad_scale, float *grad) {
    double total = 0;
    size_t i = 0;
    const v8f sgn = SPLAT(sign), scale = SPLAT(grad_scale);
    v8f v, sp, sig;
    while (i + 8 <= n) {
        v8f acc = SPLAT(0.0f);
        size_t end = i + BLOCK < n ? i + BLOCK : n;
        for (; i + 8 <= end; i += 8) {
            v = sgn * LOAD8(x + i);
            softplus_sigmoid(&v, &sp, &sig);
            acc += sp;
            STORE8(grad + i, sig * scale);
        }
        total += HSUM(acc);
    }
    if (i < n) {
        size_t r = n - i;
        load_tail(&v, x + i, r, 0.0f);
        v = sgn * v;
        softplus_sigmoid(&v, &sp, &sig);
        for (size_t k = 0; k < r; k++) total += sp[k];
        sig = sig * scale;
        store_tail(grad + i, r, &sig);
    }
    return total;
}

TARGET static double KERNEL(exp_sum)(const float *x, size_t n, float shift, float grad_scale, float *grad) {
    double total = 0;
    size_t i = 0;
    const v8f c = SPLAT(shift), scale = SPLAT(grad_scale);
    v8f e;
    while (i + 8 <= n) {
        v8f acc = SPLAT(0.0f);
        size_t end = i + BLOCK < n ? i + BLOCK : n;
        for (; i + 8 <= end; i += 8) {
            e = LOAD8(x + i) - c;
            exp_nonpositive(&e);
            acc += e;
            if (grad) STORE8(grad + i, e * scale);
        }
        total += HSUM(acc);
    }
    if (i < n) {
        size_t r = n - i;
        load_tail(&e, x + i, r, shift);
        e = e - c;
        exp_nonpositive(&e);
        for (size_t k = 0; k < r; k++) total += e[k];
        if (grad) {
            e = e * scale;
            store_tail(grad + i, r, &e);
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
