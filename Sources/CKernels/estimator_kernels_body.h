// The kernels' bodies, included by estimator_kernels.c once per instruction set with TARGET (a
// target attribute) and KERNEL(name) (the name with the set's suffix) defined. Not a public header.

// Sums run over blocks of BLOCK values, INTERLEAVE vectors per step (a block is a whole number of
// steps), each vector added to the block's sum in order, as one vector per step would add them.
//
// softplus_sum takes a block in two passes, e^-|x| for the whole block into `exps` (L1), then
// softplus and sigmoid from it: the same operations on every value as in one pass (the same
// bits), but each pass's chain of dependent operations is about half as long and keeps fewer
// values live in AVX2's 16 registers, so the core overlaps more steps. The sign is a bit flip
// rather than a product (one FMA-pipe operation less). Zen 3, AVX2, one thread, 256 K scores,
// A/B in one process (best of 2000 calls): 0.90-0.93 -> 0.75-0.78 ns/score; `bench`'s JSD, 8
// alternating runs: 0.94-1.26 -> 0.75-0.97 (docs/results.md, seventeenth session).
// `sign` is +1 or -1: sign * x is x with its sign bit flipped when `sign` is negative.
TARGET static double KERNEL(softplus_sum)(const float *x, size_t n, float sign, float grad_scale, float *grad) {
    double total = 0;
    size_t i = 0;
    const v8f scale = SPLAT(grad_scale);
    const v8i flip = (v8i)SPLAT(sign) & (v8i)SPLAT(-0.0f);
#define SIGNED(v) ((v8f)((v8i)(v) ^ flip))
    float exps[BLOCK];
    v8f v[INTERLEAVE], e[INTERLEAVE], sp[INTERLEAVE], sig[INTERLEAVE];
    while (i + 8 <= n) {
        v8f acc = SPLAT(0.0f);
        const size_t start = i, end = i + BLOCK < n ? i + BLOCK : n;
        // e^-|sign x| = e^-|x|; x may be grad (in place), so the block is read before it is written.
        for (size_t j = start; j + 8 * INTERLEAVE <= end; j += 8 * INTERLEAVE) {
            for (int q = 0; q < INTERLEAVE; q++) e[q] = MINUS_ABS(LOAD8(x + j + 8 * q));
            exp_nonpositive(e, INTERLEAVE);
            for (int q = 0; q < INTERLEAVE; q++) STORE8(exps + (j - start) + 8 * q, e[q]);
        }
        for (; i + 8 * INTERLEAVE <= end; i += 8 * INTERLEAVE) {
            for (int q = 0; q < INTERLEAVE; q++) {
                v[q] = SIGNED(LOAD8(x + i + 8 * q));
                e[q] = LOAD8(exps + (i - start) + 8 * q);
            }
            softplus_sigmoid_of(v, e, sp, sig, INTERLEAVE);
            for (int q = 0; q < INTERLEAVE; q++) {
                acc += sp[q];
                STORE8(grad + i + 8 * q, sig[q] * scale);
            }
        }
        for (; i + 8 <= end; i += 8) {
            v[0] = SIGNED(LOAD8(x + i));
            softplus_sigmoid(v, sp, sig, 1);
            acc += sp[0];
            STORE8(grad + i, sig[0] * scale);
        }
        total += HSUM(acc);
    }
    if (i < n) {
        size_t r = n - i;
        load_tail(v, x + i, r, 0.0f);
        v[0] = SIGNED(v[0]);
        softplus_sigmoid(v, sp, sig, 1);
        for (size_t k = 0; k < r; k++) total += sp[0][k];
        sig[0] = sig[0] * scale;
        store_tail(grad + i, r, sig);
    }
#undef SIGNED
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
