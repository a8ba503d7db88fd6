// oneDNN (Debian libdnnl-dev 2.6, no pkg-config file) for the bf16 GEMMs, OpenMP's thread count
// (Debian builds oneDNN on OpenMP, whose default of one thread per core would oversubscribe the
// cores when several ranks share a machine), and the float32 -> bf16 rounding of GEMM operands.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <dnnl.h>
void omp_set_num_threads(int n);

#if defined(__x86_64__)
#include <immintrin.h>
// Rounds n floats to bfloat16 (nearest even, as the scalar fallback) with AVX512_BF16's
// vcvtne2ps2bf16, 32 at a time. Only called when the CPU has AVX512_BF16 (bf16 is refused
// otherwise), hence the target attribute instead of a build-wide flag.
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static inline void dim_round_to_bf16(const float *x, uint16_t *out, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
        _mm512_storeu_si512((void *)(out + i), (__m512i)v);
    }
    for (; i < n; i++) {
        uint32_t bits; __builtin_memcpy(&bits, x + i, 4);
        out[i] = (uint16_t)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }
}
#endif
