// The estimators' elementwise kernels (float32, explicit SIMD). Each is compiled for three
// instruction sets (AVX-512, AVX2+FMA, baseline x86-64) and the best one the CPU runs is used,
// chosen by CPU features on first use: Swift has no per-function targets, and its SIMD types
// compile for the baseline (SSE2) only.
#pragma once
#include <stddef.h>
#include <stdint.h>

// Over x[0..<n]: grad[i] = grad_scale * sigmoid(sign * x[i]); returns the sum of softplus(sign * x[i]).
// sign is +1 or -1 (applied as a flip of the sign bit). grad may be x (in place).
double dim_softplus_sum(const float *x, size_t n, float sign, float grad_scale, float *grad);

// Sum of e^(x[i] - shift) over x[0..<n]; with grad, grad[i] = grad_scale * e^(x[i] - shift).
// Every x[i] - shift must be <= 0 (shift is a maximum or a log-sum-exp of the same values).
double dim_exp_sum(const float *x, size_t n, float shift, float grad_scale, float *grad);

// The largest of x[0..<n] and initial.
float dim_maximum(const float *x, size_t n, float initial);

// One Adam step over n parameters (PyTorch's rule): m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g g,
// p += -step_size m / (sqrt(v) inv_sqrt_bc2 + eps); with record, the step is also written there.
// Every variant computes the same IEEE operations (no FMA contraction): bit-identical results.
void dim_adam_update(float *p, const float *g, float *m, float *v, size_t n, float b1, float b2, float step_size,
                     float inv_sqrt_bc2, float eps, float *record);

// BatchNorm and LayerNorm passes (norm_kernels_body.h says what each computes; the same float
// operations as a plain loop, so every instruction set gives the same bits).
// Per channel row of n values (BatchNorm keeps no xhat: the backward passes recompute
// xhat = (x - mean) * r, and the ReLU's mask, from the input x):
void dim_moments(const float *x, size_t n, double *sums);
void dim_affine_normalize(const float *x, size_t n, float mean, float r, float gamma, float beta, int relu,
                          float *out);
void dim_normalized_masked_sums(const float *g, const float *x, size_t n, float mean, float r, float gamma,
                                float beta, int relu, float *d, double *sums);
void dim_centred_scale(float *d, const float *x, size_t n, float mean, float r, float k, float m1, float m2);
// Per channel row of n positions, with per-position statistics (LayerNorm: xhat = (x - mean) * r
// recomputed likewise; sums in double with the same lane order on every instruction set):
void dim_shifted_sums(const float *row, const float *row0, size_t n, float *sum, float *sq);
void dim_column_normalize(const float *x, const float *mean, const float *r, size_t n, float w, float b,
                          float *out);
void dim_scaled_column_sums(const float *dy, const float *x, const float *mean, const float *r, size_t n, float w,
                            float *g, float *sum_g, float *sum_gx);
void dim_column_centred_scale(float *g, const float *x, const float *mean, const float *r, const float *mean_g,
                              const float *mean_gx, size_t n);
void dim_normalized_row_sums(const float *dy, const float *x, const float *mean, const float *r, size_t n,
                             double *sums);

// out[i] = the sum of src[0][i] .. src[k-1][i], added in that order (the same bits on every
// instruction set); out may be one of the sources.
void dim_sum_sources(float *out, const float *const *src, size_t k, size_t n);

// 1 when no x[i] is infinite or NaN.
int dim_all_finite(const float *x, size_t n);

// x[0..<n] = +0.0 with non-temporal stores: whole cache lines go to memory without first being
// read into the cache, as an ordinary store (memset included) does. For buffers larger than the
// caches, which the next pass (a GEMM accumulating into them) reads back from memory either way.
void dim_zero_streaming(float *x, size_t n);

// The instruction set of the variant in use ("AVX-512", "AVX2+FMA" or "baseline x86-64").
const char *dim_kernels_isa(void);

// float32 <-> bfloat16 (stored as uint16; float to bf16 rounds to nearest, ties to even), for
// gradients reduced in bf16.
void dim_float_to_bf16(const float *x, uint16_t *out, size_t n);
void dim_bf16_to_float(const uint16_t *x, float *out, size_t n);
