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

// Each channel's block of phases is framed by `pad` floats on both sides, so that a vector that
// reaches a few floats past either end of a phase row (masked off) stays inside the channel's own
// block: threads take ranges of channels.
enum { pad = 16 };

static ptrdiff_t channel_block(const geometry *g) { return g->N * g->H * g->s * g->P + 2 * pad; }

size_t dim_conv_phase_count(size_t channels, size_t batch, size_t height, size_t width, size_t stride) {
    return channels * (batch * height * stride * ((width + stride - 1) / stride) + 2 * pad);
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

// Vector runs: when Wo is a multiple of 4 or 8 floats, every output row of a run is moved as whole
// vectors loaded at the run's phase position and masked to [lo, hi): one load, AND and store per
// vector, no per-run branches (Wo = 8, DIM's middle conv, was 7-float copies between zero fills).
// The lanes masked off read (and in col2im add +0.0 to) at most `pad` floats outside the phase
// row, inside the channel's block. Adding +0.0 changes nothing: a sum that starts from +0.0 is
// never -0.0 under round-to-nearest.
typedef int v8i_t __attribute__((vector_size(32), aligned(4)));
typedef int v4i_t __attribute__((vector_size(16), aligned(4)));

// The vector width for a geometry's runs (8, 4), or 0 for the scalar runs.
static ptrdiff_t vector_width(const geometry *g, const phase_run *run) {
    ptrdiff_t length = (g->W - run->phase + g->s - 1) / g->s;
    ptrdiff_t v = g->Wo % 8 == 0 ? 8 : g->Wo % 4 == 0 ? 4 : 0;
    if (v == 0 || run->shift < -pad || run->shift + g->Wo > length + pad) return 0;
    return v;
}

// Lane masks of one output row: output column ox is kept when lo <= ox < hi.
static void run_masks(ptrdiff_t Wo, ptrdiff_t lo, ptrdiff_t hi, int *masks) {
    for (ptrdiff_t ox = 0; ox < Wo; ox++) masks[ox] = ox >= lo && ox < hi ? -1 : 0;
}

#define MAX_VECTOR_ROW 256  // Wo up to this many floats takes the vector runs

NO_BUILTIN void dim_im2col(const float *x, size_t channels, size_t batch, size_t height, size_t width,
                           size_t kernel, size_t stride, size_t padding, float *col, float *phases) {
    geometry g = make_geometry(channels, batch, height, width, kernel, stride, padding);
    ptrdiff_t cols = g.N * g.Ho * g.Wo, image = g.Ho * g.Wo;
    ptrdiff_t rowStep = g.s * g.s * g.P;  // phase floats between input rows oy and oy + 1 read
    ptrdiff_t block = channel_block(&g);
    for (ptrdiff_t c = 0; c < g.C; c++) split_phases(x + c * g.N * g.H * g.W, g.N * g.H, &g, phases + c * block + pad);
    int masks[MAX_VECTOR_ROW];
    for (ptrdiff_t c = 0; c < g.C; c++)
        for (ptrdiff_t ky = 0; ky < g.k; ky++) {
            ptrdiff_t oyLo, oyHi;
            rows_of(&g, ky, &oyLo, &oyHi);
            for (ptrdiff_t kx = 0; kx < g.k; kx++) {
                float *row = col + ((c * g.k + ky) * g.k + kx) * cols;
                phase_run run = run_of(&g, kx);
                ptrdiff_t lo = run.lo, hi = run.hi, tail = g.Wo - hi;
                ptrdiff_t v = g.Wo <= MAX_VECTOR_ROW ? vector_width(&g, &run) : 0;
                if (v) run_masks(g.Wo, lo, hi, masks);
                for (ptrdiff_t n = 0; n < g.N; n++) {
                    float *out = row + n * image;
                    if (hi == lo || oyHi == oyLo) { zero_run(out, image); continue; }
                    zero_run(out, oyLo * g.Wo);
                    const float *src = phases + c * block + pad
                                       + ((n * g.H + oyLo * g.s - g.p + ky) * g.s + run.phase) * g.P + run.shift;
                    float *dst = out + oyLo * g.Wo;
                    if (v == 8 && g.Wo == 8) {  // one vector per row, its mask in a register
                        v8i_t m = *(const v8i_t *)masks;
                        for (ptrdiff_t oy = oyLo; oy < oyHi; oy++, src += rowStep, dst += 8)
                            *(v8f *)dst = (v8f)((v8i_t)*(const v8f *)src & m);
                    } else if (v == 4 && g.Wo == 4) {
                        v4i_t m = *(const v4i_t *)masks;
                        for (ptrdiff_t oy = oyLo; oy < oyHi; oy++, src += rowStep, dst += 4)
                            *(v4f *)dst = (v4f)((v4i_t)*(const v4f *)src & m);
                    } else if (v == 8) {
                        for (ptrdiff_t oy = oyLo; oy < oyHi; oy++, src += rowStep, dst += g.Wo)
                            for (ptrdiff_t ox = 0; ox < g.Wo; ox += 8)
                                *(v8f *)(dst + ox) =
                                    (v8f)((v8i_t)*(const v8f *)(src + ox) & *(const v8i_t *)(masks + ox));
                    } else if (v == 4) {
                        for (ptrdiff_t oy = oyLo; oy < oyHi; oy++, src += rowStep, dst += g.Wo)
                            for (ptrdiff_t ox = 0; ox < g.Wo; ox += 4)
                                *(v4f *)(dst + ox) =
                                    (v4f)((v4i_t)*(const v4f *)(src + ox) & *(const v4i_t *)(masks + ox));
                    } else {
                        for (ptrdiff_t oy = oyLo; oy < oyHi; oy++, src += rowStep, dst += g.Wo) {
                            zero_run(dst, lo);
                            copy_run(dst + lo, src + lo, hi - lo);
                            zero_run(dst + hi, tail);
                        }
                    }
                    zero_run(out + oyHi * g.Wo, (g.Ho - oyHi) * g.Wo);
                }
            }
        }
}

NO_BUILTIN void dim_col2im(const float *col, size_t channels, size_t batch, size_t height, size_t width,
                           size_t kernel, size_t stride, size_t padding, float *dx, float *phases) {
    geometry g = make_geometry(channels, batch, height, width, kernel, stride, padding);
    ptrdiff_t cols = g.N * g.Ho * g.Wo, image = g.Ho * g.Wo;
    ptrdiff_t rowStep = g.s * g.s * g.P;
    ptrdiff_t block = channel_block(&g);
    zero_run(phases, g.C * block);
    int masks[MAX_VECTOR_ROW];
    for (ptrdiff_t c = 0; c < g.C; c++)
        for (ptrdiff_t ky = 0; ky < g.k; ky++) {
            ptrdiff_t oyLo, oyHi;
            rows_of(&g, ky, &oyLo, &oyHi);
            for (ptrdiff_t kx = 0; kx < g.k; kx++) {
                const float *row = col + ((c * g.k + ky) * g.k + kx) * cols;
                phase_run run = run_of(&g, kx);
                ptrdiff_t lo = run.lo, hi = run.hi;
                if (hi == lo || oyHi == oyLo) continue;
                ptrdiff_t v = g.Wo <= MAX_VECTOR_ROW ? vector_width(&g, &run) : 0;
                if (v) run_masks(g.Wo, lo, hi, masks);
                for (ptrdiff_t n = 0; n < g.N; n++) {
                    float *dst = phases + c * block + pad
                                 + ((n * g.H + oyLo * g.s - g.p + ky) * g.s + run.phase) * g.P + run.shift;
                    const float *src = row + n * image + oyLo * g.Wo;
                    if (v == 8 && g.Wo == 8) {
                        v8i_t m = *(const v8i_t *)masks;
                        for (ptrdiff_t oy = oyLo; oy < oyHi; oy++, src += 8, dst += rowStep)
                            *(v8f *)dst += (v8f)((v8i_t)*(const v8f *)src & m);
                    } else if (v == 4 && g.Wo == 4) {
                        v4i_t m = *(const v4i_t *)masks;
                        for (ptrdiff_t oy = oyLo; oy < oyHi; oy++, src += 4, dst += rowStep)
                            *(v4f *)dst += (v4f)((v4i_t)*(const v4f *)src & m);
                    } else if (v == 8) {
                        for (ptrdiff_t oy = oyLo; oy < oyHi; oy++, src += g.Wo, dst += rowStep)
                            for (ptrdiff_t ox = 0; ox < g.Wo; ox += 8)
                                *(v8f *)(dst + ox) +=
                                    (v8f)((v8i_t)*(const v8f *)(src + ox) & *(const v8i_t *)(masks + ox));
                    } else if (v == 4) {
                        for (ptrdiff_t oy = oyLo; oy < oyHi; oy++, src += g.Wo, dst += rowStep)
                            for (ptrdiff_t ox = 0; ox < g.Wo; ox += 4)
                                *(v4f *)(dst + ox) +=
                                    (v4f)((v4i_t)*(const v4f *)(src + ox) & *(const v4i_t *)(masks + ox));
                    } else {
                        for (ptrdiff_t oy = oyLo; oy < oyHi; oy++, src += g.Wo, dst += rowStep)
                            add_run(dst + lo, src + lo, hi - lo);
                    }
                }
            }
        }
    for (ptrdiff_t c = 0; c < g.C; c++) join_phases(phases + c * block + pad, g.N * g.H, &g, dx + c * g.N * g.H * g.W);
}
