// See include/estimator_kernels.h. One 8-lane vector type (clang vector extensions); in the AVX2
// and AVX-512 clones it is one ymm register and a*b+c contracts to FMA, in the baseline clone two
// xmm registers. Sums run in float vectors for at most 128 values, then in double.
#include "estimator_kernels.h"
#include "narrow_gemm.h"
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <pthread.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

typedef float v8f __attribute__((vector_size(32), aligned(4)));
typedef int32_t v8i __attribute__((vector_size(32), aligned(4)));

// Helpers are macros or always-inlined functions taking pointers: a 32-byte vector passed by value
// to a function compiled without AVX (the baseline variant) would change the calling convention.
#define BLOCK 128
#define INLINE static inline __attribute__((always_inline))
#define SPLAT(v) ((v8f){(v), (v), (v), (v), (v), (v), (v), (v)})
#define LOAD8(p) ({ v8f v_; memcpy(&v_, (p), sizeof v_); v_; })
#define STORE8(p, v) do { v8f s_ = (v); memcpy((p), &s_, sizeof s_); } while (0)
#define SELECT(mask, a, b) ((v8f)((((v8i)(a)) & (mask)) | (((v8i)(b)) & ~(mask))))
#define HSUM(v) ((((v)[0] + (v)[1]) + ((v)[2] + (v)[3])) + (((v)[4] + (v)[5]) + ((v)[6] + (v)[7])))

// The helpers below work on `lanes` vectors at once, statement by statement (`lanes` is a
// constant after inlining): one vector's e^x is a chain of ~30 dependent operations, and with a
// single chain per loop iteration the core runs out of scheduler entries before it runs out of
// FMA units (Zen 3: 1.4-1.6 ns per softplus score alone, 1.0 with four chains interleaved). Each
// vector's arithmetic is the same as alone, so the results do not change by a bit.
#define EACH for (int q = 0; q < lanes; q++)
#define INTERLEAVE 4

// e^x in place for x <= 0 (Cephes' expf: x = n ln2 + r, degree-6 polynomial for e^r, 2^n into the
// exponent bits). Relative error below 2e-7; x below -87.3 gives 0 (never a subnormal).
INLINE void exp_nonpositive(v8f *xp, const int lanes) {
    const v8f magic = SPLAT(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
    v8i underflow[INTERLEAVE], e[INTERLEAVE];
    v8f x[INTERLEAVE], shifted[INTERLEAVE], n[INTERLEAVE], r[INTERLEAVE], p[INTERLEAVE];
    EACH underflow[q] = xp[q] < SPLAT(-87.3f);
    EACH x[q] = SELECT(underflow[q], SPLAT(-87.3f), xp[q]);
    EACH shifted[q] = x[q] * SPLAT(1.44269504f) + magic;
    EACH n[q] = shifted[q] - magic;
    EACH r[q] = x[q] - n[q] * SPLAT(0.693359375f) + n[q] * SPLAT(2.12194440e-4f);
    EACH p[q] = SPLAT(1.9875691500e-4f) * r[q] + SPLAT(1.3981999507e-3f);
    EACH p[q] = p[q] * r[q] + SPLAT(8.3334519073e-3f);
    EACH p[q] = p[q] * r[q] + SPLAT(4.1665795894e-2f);
    EACH p[q] = p[q] * r[q] + SPLAT(1.6666665459e-1f);
    EACH p[q] = p[q] * r[q] + SPLAT(5.0000001201e-1f);
    EACH p[q] = p[q] * (r[q] * r[q]) + r[q] + SPLAT(1.0f);
    EACH e[q] = (((v8i)shifted[q]) - 0x4B400000 + 127) << 23;
    EACH xp[q] = SELECT(underflow[q], SPLAT(0.0f), p[q] * (v8f)e[q]);
}

// softplus(x) and sigmoid(x) from e = e^-|x| in (0, 1]: softplus = max(x, 0) + log1p(e) with
// log1p(e) = e + e^2 Q(e), Q of degree 7 fitted to (log1p(e) - e) / e^2 on [0, 1] for relative
// error (softplus within 1.8e-7 relative over 2M values); sigmoid = 1/(1+e) or e/(1+e). One
// division and eight FMAs after e^-|x|: the earlier 2 atanh(e / (2 + e)) series needed a
// division of (2+e)(1+e) and four more products, 1.16 against 0.98 ns per score on a Zen 3.
INLINE void softplus_sigmoid_of(const v8f *xp, const v8f *ep, v8f *softplus, v8f *sigmoid, const int lanes) {
    v8i negative[INTERLEAVE];
    v8f e[INTERLEAVE], reciprocal[INTERLEAVE], poly[INTERLEAVE];
    EACH negative[q] = xp[q] < SPLAT(0.0f);
    EACH e[q] = ep[q];
    EACH reciprocal[q] = SPLAT(1.0f) / (SPLAT(1.0f) + e[q]);
    EACH poly[q] = SPLAT(5.252544768e-3f) * e[q] + SPLAT(-2.953011543e-2f);
    EACH poly[q] = poly[q] * e[q] + SPLAT(7.817708701e-2f);
    EACH poly[q] = poly[q] * e[q] + SPLAT(-1.365177333e-1f);
    EACH poly[q] = poly[q] * e[q] + SPLAT(1.909763813e-1f);
    EACH poly[q] = poly[q] * e[q] + SPLAT(-2.484045774e-1f);
    EACH poly[q] = poly[q] * e[q] + SPLAT(3.331888616e-1f);
    EACH poly[q] = poly[q] * e[q] + SPLAT(-4.999952018e-1f);
    EACH softplus[q] = SELECT(negative[q], SPLAT(0.0f), xp[q]) + ((e[q] * e[q]) * poly[q] + e[q]);
    EACH sigmoid[q] = SELECT(negative[q], e[q] * reciprocal[q], reciprocal[q]);
}

// -|x|: x with its sign bit set.
#define MINUS_ABS(x) ((v8f)(((v8i)(x)) | (v8i)SPLAT(-0.0f)))

INLINE void softplus_sigmoid(const v8f *xp, v8f *softplus, v8f *sigmoid, const int lanes) {
    v8f e[INTERLEAVE];
    EACH e[q] = MINUS_ABS(xp[q]);
    exp_nonpositive(e, lanes);
    softplus_sigmoid_of(xp, e, softplus, sigmoid, lanes);
}

// The last n % 8 values go through the same vector code, padded (so the tail is computed exactly
// like the rest and never yields a subnormal).
INLINE void load_tail(v8f *out, const float *p, size_t r, float pad) {
    float t[8] = {pad, pad, pad, pad, pad, pad, pad, pad};
    memcpy(t, p, r * sizeof(float));
    memcpy(out, t, sizeof t);
}
INLINE void store_tail(float *p, size_t r, const v8f *v) {
    float t[8];
    memcpy(t, v, sizeof t);
    memcpy(p, t, r * sizeof(float));
}

// Three variants of every kernel: AVX-512 (x86-64-v4), AVX2 + FMA (x86-64-v3), baseline x86-64.
#define TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi2")))
#define KERNEL(name) name##_avx512
#define NARROW_LANES 16
#include "estimator_kernels_body.h"
#include "adam_kernel_body.h"
#include "reduction_kernels_body.h"
#include "norm_kernels_body.h"
#include "narrow_gemm_body.h"
#undef TARGET
#undef KERNEL
#undef NARROW_LANES
#define TARGET __attribute__((target("avx2,fma,bmi2")))
#define KERNEL(name) name##_avx2
#define NARROW_LANES 8
#include "estimator_kernels_body.h"
#include "adam_kernel_body.h"
#include "reduction_kernels_body.h"
#include "norm_kernels_body.h"
#include "narrow_gemm_body.h"
#undef TARGET
#undef KERNEL
#undef NARROW_LANES
#define TARGET
#define KERNEL(name) name##_baseline
#define NARROW_LANES 8
#include "estimator_kernels_body.h"
#include "adam_kernel_body.h"
#include "reduction_kernels_body.h"
#include "norm_kernels_body.h"
#include "narrow_gemm_body.h"
#undef TARGET
#undef KERNEL
#undef NARROW_LANES

// The variant this CPU runs, chosen on first use (by CPU features, whatever the vendor).
// DIM_KERNELS=avx2 or baseline picks a lower one (to measure or test another CPU's path here).
static int isa = -1;  // 2: AVX-512, 1: AVX2 + FMA, 0: baseline

static int pick_isa(void) {
    if (isa < 0) {
        __builtin_cpu_init();
        const char *forced = getenv("DIM_KERNELS");
        int cap = forced && !strcmp(forced, "baseline") ? 0 : forced && !strcmp(forced, "avx2") ? 1 : 2;
        if (cap >= 2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
            __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")) {
            isa = 2;
        } else if (cap >= 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
            isa = 1;
        } else {
            isa = 0;
        }
    }
    return isa;
}

const char *dim_kernels_isa(void) {
    static const char *names[] = {"baseline x86-64", "AVX2+FMA", "AVX-512"};
    return names[pick_isa()];
}

double dim_softplus_sum(const float *x, size_t n, float sign, float grad_scale, float *grad) {
    switch (pick_isa()) {
    case 2: return softplus_sum_avx512(x, n, sign, grad_scale, grad);
    case 1: return softplus_sum_avx2(x, n, sign, grad_scale, grad);
    default: return softplus_sum_baseline(x, n, sign, grad_scale, grad);
    }
}

double dim_exp_sum(const float *x, size_t n, float shift, float grad_scale, float *grad) {
    switch (pick_isa()) {
    case 2: return exp_sum_avx512(x, n, shift, grad_scale, grad);
    case 1: return exp_sum_avx2(x, n, shift, grad_scale, grad);
    default: return exp_sum_baseline(x, n, shift, grad_scale, grad);
    }
}

float dim_maximum(const float *x, size_t n, float initial) {
    switch (pick_isa()) {
    case 2: return maximum_avx512(x, n, initial);
    case 1: return maximum_avx2(x, n, initial);
    default: return maximum_baseline(x, n, initial);
    }
}

// The entry points of the kernels without a result: the variant this CPU runs, called.
#define DISPATCH(name, args)                   \
    switch (pick_isa()) {                      \
    case 2: name##_avx512 args; return;        \
    case 1: name##_avx2 args; return;          \
    default: name##_baseline args; return;     \
    }

void dim_adam_update(float *p, const float *g, float *m, float *v, size_t n, float b1, float b2, float step_size,
                     float inv_sqrt_bc2, float eps, float *record) {
    DISPATCH(adam_update, (p, g, m, v, n, b1, b2, step_size, inv_sqrt_bc2, eps, record))
}

int dim_all_finite(const float *x, size_t n) {
    switch (pick_isa()) {
    case 2: return all_finite_avx512(x, n);
    case 1: return all_finite_avx2(x, n);
    default: return all_finite_baseline(x, n);
    }
}

void dim_sum_sources(float *out, const float *const *src, size_t k, size_t n) {
    DISPATCH(sum_sources, (out, src, k, n))
}

void dim_zero_streaming(float *x, size_t n) {
#if defined(__SSE2__)
    // Ordinary stores up to a 64-byte boundary and after the last whole line; streaming stores of
    // 16 bytes in between (SSE2: every x86-64; the write-combining buffers join them into lines).
    size_t head = (size_t)((64 - ((uintptr_t)x & 63)) & 63) / sizeof(float);
    if (head > n) { memset(x, 0, n * sizeof(float)); return; }
    memset(x, 0, head * sizeof(float));
    float *p = x + head, *end = x + n;
    const __m128 zero = _mm_setzero_ps();
    for (; p + 16 <= end; p += 16) {
        _mm_stream_ps(p, zero);
        _mm_stream_ps(p + 4, zero);
        _mm_stream_ps(p + 8, zero);
        _mm_stream_ps(p + 12, zero);
    }
    _mm_sfence();  // the streamed lines are visible before anything after this call
    memset(p, 0, (size_t)(end - p) * sizeof(float));
#else
    memset(x, 0, n * sizeof(float));
#endif
}

void dim_moments(const float *x, size_t n, double *sums) { DISPATCH(moments, (x, n, sums)) }

void dim_affine_normalize(const float *x, size_t n, float mean, float r, float gamma, float beta, int relu,
                          float *out) {
    DISPATCH(affine_normalize, (x, n, mean, r, gamma, beta, relu, out))
}

void dim_normalized_masked_sums(const float *g, const float *x, size_t n, float mean, float r, float gamma,
                                float beta, int relu, float *d, double *sums) {
    DISPATCH(normalized_masked_sums, (g, x, n, mean, r, gamma, beta, relu, d, sums))
}

void dim_centred_scale(float *d, const float *x, size_t n, float mean, float r, float k, float m1, float m2) {
    DISPATCH(centred_scale, (d, x, n, mean, r, k, m1, m2))
}

void dim_shifted_sums(const float *row, const float *row0, size_t n, float *sum, float *sq) {
    DISPATCH(shifted_sums, (row, row0, n, sum, sq))
}

void dim_column_normalize(const float *x, const float *mean, const float *r, size_t n, float w, float b,
                          float *out) {
    DISPATCH(column_normalize, (x, mean, r, n, w, b, out))
}

void dim_scaled_column_sums(const float *dy, const float *x, const float *mean, const float *r, size_t n, float w,
                            float *g, float *sum_g, float *sum_gx) {
    DISPATCH(scaled_column_sums, (dy, x, mean, r, n, w, g, sum_g, sum_gx))
}

void dim_column_centred_scale(float *g, const float *x, const float *mean, const float *r, const float *mean_g,
                              const float *mean_gx, size_t n) {
    DISPATCH(column_centred_scale, (g, x, mean, r, mean_g, mean_gx, n))
}

void dim_normalized_row_sums(const float *dy, const float *x, const float *mean, const float *r, size_t n,
                             double *sums) {
    DISPATCH(normalized_row_sums, (dy, x, mean, r, n, sums))
}

void dim_float_to_bf16(const float *x, uint16_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, x + i, 4);
        u += 0x7FFF + ((u >> 16) & 1);
        out[i] = (uint16_t)(u >> 16);
    }
}

void dim_bf16_to_float(const uint16_t *x, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)x[i] << 16;
        memcpy(out + i, &u, 4);
    }
}

// The narrow GEMMs (narrow_gemm.h): the variant this CPU runs.
size_t dim_narrow_row_unit(void) { return pick_isa() == 2 ? 32 : 16; }

// The TN kernel beats OpenBLAS with AVX-512's 32 registers only; with AVX2 it reached 83-91
// GFLOP/s where OpenBLAS's Haswell kernels run 47-99 (n = 8..64, Zen 5, 2026-12-06).
int dim_narrow_tn_available(void) { return pick_isa() == 2; }

// One buffer per thread, freed when the thread ends (the tests run ranks as threads).
typedef struct {
    float *data;
    size_t capacity;
} scratch_buffer;
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static void free_scratch(void *p) {
    free(((scratch_buffer *)p)->data);
    free(p);
}
static void make_scratch_key(void) { pthread_key_create(&scratch_key, free_scratch); }

float *dim_narrow_scratch(size_t count) {
    pthread_once(&scratch_once, make_scratch_key);
    scratch_buffer *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return NULL;
        pthread_setspecific(scratch_key, s);
    }
    if (count > s->capacity) {
        free(s->data);
        s->data = malloc(count * sizeof(float));
        s->capacity = s->data ? count : 0;
    }
    return s->data;
}

static size_t narrow_nn_width(size_t n) {
    switch (pick_isa()) {
    case 2: return narrow_nn_width_avx512(n);
    case 1: return narrow_nn_width_avx2(n);
    default: return narrow_nn_width_baseline(n);
    }
}

static size_t narrow_nn_panel(size_t n) {
    switch (pick_isa()) {
    case 2: return narrow_nn_panel_avx512(n);
    case 1: return narrow_nn_panel_avx2(n);
    default: return narrow_nn_panel_baseline(n);
    }
}

size_t dim_narrow_nn_packed_count(size_t n, size_t k) { return k * narrow_nn_width(n); }

void dim_narrow_nn_pack(size_t n, size_t k, const float *b, size_t ldb, float *packed) {
    size_t width = narrow_nn_width(n), panel = narrow_nn_panel(n);
    for (size_t j0 = 0; j0 < width; j0 += panel) {
        size_t real = n > j0 ? (n - j0 < panel ? n - j0 : panel) : 0;  // columns of B in this panel
        for (size_t t = 0; t < k; t++, packed += panel) {
            memcpy(packed, b + t * ldb + j0, real * sizeof(float));
            memset(packed + real, 0, (panel - real) * sizeof(float));
        }
    }
}

void dim_narrow_nn(size_t m, size_t n, size_t k, const float *a, size_t lda, const float *packed, int beta, float *c,
                   size_t ldc) {
    DISPATCH(narrow_nn, (m, n, k, a, lda, packed, beta, c, ldc))
}

void dim_narrow_tn(size_t m, size_t n, size_t k, const float *a, size_t lda, const float *b, size_t ldb, int beta,
                   float *c, size_t ldc, float *ct, size_t ldct) {
    DISPATCH(narrow_tn, (m, n, k, a, lda, b, ldb, beta, c, ldc, ct, ldct))
}
