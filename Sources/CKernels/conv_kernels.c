// See include/conv_kernels.h.
//
// Why phases: with stride s, one row of the column matrix takes every s-th pixel of an input row.
// Splitting each input row once into its s column phases (x[f], x[f+s], ...) turns every row of the
// column matrix into a contiguous run of one phase: a copy (and in col2im a vectorised add) instead
// of a strided gather with a bounds test per element. Each input pixel is read k*k/s^2 times by
// im2col (4 for DIM's k4 s2), so the split pays for itself. Pure copies, and col2im adds the same
// values in the same order as a direct scatter: the results do not depend on the instruction set.
//
// The runs are short (Wo floats), so they are moved in 8-float vectors inline; `no_builtin` keeps
// the compiler from turning those loops back into memcpy/memset calls.
#include "conv_kernels.h"

typedef float v8f __attribute__((vector_size(32), aligned(4), may_alias));
typedef float v4f __attribute__((vector_size(16), aligned(4), may_alias));
#define INLINE static inline __attribute__((always_inline, no_builtin("memcpy", "memset", "memmove")))
#define NO_BUILTIN __attribute__((no_builtin("memcpy", "memset", "memmove")))

INLINE void copy_run(float *restrict d, const float *restrict s, ptrdiff_t n) {
    for (; n >= 8; n -= 8, d += 8, s += 8) *(v8f *)d = *(const v8f *)s;
    if (n >= 4) { *(v4f *)d = *(const v4f *)s; n -= 4; d += 4; s += 4; }
    for (; n > 0; n--) *d++ = *s++;
}

INLINE void zero_run(float *d, ptrdiff_t n) {
    for (; n >= 8; n -= 8, d += 8) *(v8f *)d = (v8f){0};
    if (n >= 4) { *(v4f *)d = (v4f){0}; n -= 4; d += 4; }
    for (; n > 0; n--) *d++ = 0;
}

INLINE void add_run(float *restrict d, const float *restrict s, ptrdiff_t n) {
    for (; n >= 8; n -= 8, d += 8, s += 8) *(v8f *)d += *(const v8f *)s;
    if (n >= 4) { *(v4f *)d += *(const v4f *)s; n -= 4; d += 4; s += 4; }
    for (; n > 0; n--) *d++ += *s++;
}

typedef struct {
    ptrdiff_t C, N, H, W, k, s, p, Ho, Wo, P;
} geometry;

static geometry make_geometry(size_t channels, size_t batch, size_t height, size_t width, size_t kernel,
                              size_t stride, size_t padding) {
    geometry g = {(ptrdiff_t)channels, (ptrdiff_t)batch, (ptrdiff_t)height, (ptrdiff_t)width,
                  (ptrdiff_t)kernel, (ptrdiff_t)stride, (ptrdiff_t)padding, 0, 0, 0};
    g.Ho = (g.H + 2 * g.p - g.k) / g.s + 1;
    g.Wo = (g.W + 2 * g.p - g.k) / g.s + 1;
    g.P = (g.W + g.s - 1) / g.s;
    return g;
}

// Kernel column kx reads input column ix = ox * s - p + kx: phase `phase`, position ox + `shift`
// in it; ox in [lo, hi) have such a position (outside, the padding: zeros).
typedef struct {
    ptrdiff_t phase, shift, lo, hi;
} phase_run;

static phase_run run_of(const geometry *g, ptrdiff_t kx) {
    ptrdiff_t offset = kx - g->p;
    ptrdiff_t phase = ((offset % g->s) + g->s) % g->s;
    ptrdiff_t shift = (offset - phase) / g->s;
    ptrdiff_t length = (g->W - phase + g->s - 1) / g->s;  // columns of this phase
    ptrdiff_t lo = shift < 0 ? -shift : 0;
    ptrdiff_t hi = length - shift < g->Wo ? length - shift : g->Wo;
    return (phase_run){phase, shift, lo, hi > lo ? hi : lo};
}

size_t dim_conv_phase_count(size_t channels, size_t batch, size_t height, size_t width, size_t stride) {
    return channels * batch * height * stride * ((width + stride - 1) / stride);
}

// Each input row into its column phases: [rows, s, P] (phase f holds columns f, f + s, ...).
static void split_phases(const float *restrict x, ptrdiff_t rows, const geometry *g, float *restrict phases) {
    ptrdiff_t W = g->W, s = g->s, P = g->P;
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *src = x + r * W;
        float *dst = phases + r * s * P;
        if (s == 2 && W % 2 == 0) {  // DIM's stride: one de-interleaving pass the compiler vectorises
            for (ptrdiff_t j = 0; j < P; j++) { dst[j] = src[2 * j]; dst[P + j] = src[2 * j + 1]; }
            continue;
        }
        for (ptrdiff_t f = 0; f < s; f++)
            for (ptrdiff_t i = f, j = 0; i < W; i += s, j++) dst[f * P + j] = src[i];
    }
}

// The inverse: phases interleaved back into rows.
static void join_phases(const float *restrict phases, ptrdiff_t rows, const geometry *g, float *restrict x) {
    ptrdiff_t W = g->W, s = g->s, P = g->P;
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *src = phases + r * s * P;
        float *dst = x + r * W;
        if (s == 2 && W % 2 == 0) {
            for (ptrdiff_t j = 0; j < P; j++) { dst[2 * j] = src[j]; dst[2 * j + 1] = src[P + j]; }
            continue;
        }
        for (ptrdiff_t f = 0; f < s; f++)
            for (ptrdiff_t i = f, j = 0; i < W; i += s, j++) dst[i] = src[f * P + j];
    }
}

// Input rows iy = oy * s - p + ky exist for oy in [*lo, *hi).
static void rows_of(const geometry *g, ptrdiff_t ky, ptrdiff_t *lo, ptrdiff_t *hi) {
    ptrdiff_t first = g->p - ky;  // oy * s >= p - ky
    *lo = first <= 0 ? 0 : (first + g->s - 1) / g->s;
    ptrdiff_t last = g->H - 1 + g->p - ky;  // oy * s <= H - 1 + p - ky
    *hi = last < 0 ? 0 : last / g->s + 1;
    if (*hi > g->Ho) *hi = g->Ho;
    if (*hi < *lo) *hi = *lo;
}

NO_BUILTIN void dim_im2col(const float *x, size_t channels, size_t batch, size_t height, size_t width,
                           size_t kernel, size_t stride, size_t padding, float *col, float *phases) {
    geometry g = make_geometry(channels, batch, height, width, kernel, stride, padding);
    ptrdiff_t cols = g.N * g.Ho * g.Wo, image = g.Ho * g.Wo;
    ptrdiff_t rowStep = g.s * g.s * g.P;  // phase floats between input rows oy and oy + 1 read
    split_phases(x, g.C * g.N * g.H, &g, phases);
    for (ptrdiff_t c = 0; c < g.C; c++)
        for (ptrdiff_t ky = 0; ky < g.k; ky++) {
            ptrdiff_t oyLo, oyHi;
            rows_of(&g, ky, &oyLo, &oyHi);
            for (ptrdiff_t kx = 0; kx < g.k; kx++) {
                float *row = col + ((c * g.k + ky) * g.k + kx) * cols;
                phase_run run = run_of(&g, kx);
                ptrdiff_t lo = run.lo, hi = run.hi, tail = g.Wo - hi;
                for (ptrdiff_t n = 0; n < g.N; n++) {
                    float *out = row + n * image;
                    if (hi == lo || oyHi == oyLo) { zero_run(out, image); continue; }
                    zero_run(out, oyLo * g.Wo);
                    const float *src = phases + (((c * g.N + n) * g.H + oyLo * g.s - g.p + ky) * g.s + run.phase) * g.P
                                       + run.shift + lo;
                    float *dst = out + oyLo * g.Wo;
                    for (ptrdiff_t oy = oyLo; oy < oyHi; oy++, src += rowStep, dst += g.Wo) {
                        zero_run(dst, lo);
                        copy_run(dst + lo, src, hi - lo);
                        zero_run(dst + hi, tail);
                    }
                    zero_run(out + oyHi * g.Wo, (g.Ho - oyHi) * g.Wo);
                }
            }
        }
}

NO_BUILTIN void dim_col2im(const float *col, size_t channels, size_t batch, size_t height, size_t width,
                           size_t kernel, size_t stride, size_t padding, float *dx, float *phases) {
    geometry g = make_geometry(channels, batch, height, width, kernel, stride, padding);
    ptrdiff_t rows = g.C * g.N * g.H, cols = g.N * g.Ho * g.Wo, image = g.Ho * g.Wo;
    ptrdiff_t rowStep = g.s * g.s * g.P;
    zero_run(phases, rows * g.s * g.P);
    for (ptrdiff_t c = 0; c < g.C; c++)
        for (ptrdiff_t ky = 0; ky < g.k; ky++) {
            ptrdiff_t oyLo, oyHi;
            rows_of(&g, ky, &oyLo, &oyHi);
            for (ptrdiff_t kx = 0; kx < g.k; kx++) {
                const float *row = col + ((c * g.k + ky) * g.k + kx) * cols;
                phase_run run = run_of(&g, kx);
                ptrdiff_t lo = run.lo, hi = run.hi;
                if (hi == lo || oyHi == oyLo) continue;
                for (ptrdiff_t n = 0; n < g.N; n++) {
                    float *dst = phases + (((c * g.N + n) * g.H + oyLo * g.s - g.p + ky) * g.s + run.phase) * g.P
                                 + run.shift + lo;
                    const float *src = row + n * image + oyLo * g.Wo + lo;
                    for (ptrdiff_t oy = oyLo; oy < oyHi; oy++, src += g.Wo, dst += rowStep) add_run(dst, src, hi - lo);
                }
            }
        }
    join_phases(phases, rows, &g, dx);
}
