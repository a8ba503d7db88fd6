// CPU identification and the SSE floating-point control register, for Swift (which has no
// inline assembly). Header-only: the Clang importer compiles these static inline functions.
#pragma once
#include <stdint.h>
#include <unistd.h>
#include <sys/syscall.h>

/// The number of CPUs this process may run on (its affinity mask, which srun, mpirun's binding,
/// taskset and cgroups set), or -1. The raw system call: glibc's wrapper needs _GNU_SOURCE.
static inline int dim_allowed_cpu_count(void) {
    uint64_t mask[16] = {0};  // 1024 CPUs
    long bytes = syscall(SYS_sched_getaffinity, 0, sizeof mask, mask);
    if (bytes <= 0) return -1;
    int count = 0;
    for (long i = 0; i < bytes / 8; i++) count += __builtin_popcountll(mask[i]);
    return count;
}
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <xmmintrin.h>

/// Executes cpuid(leaf, subleaf); returns 0 when the leaf is above the CPU's maximum.
static inline int dim_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d) {
    uint32_t max = __get_cpuid_max(leaf & 0x80000000u, 0);
    if (max < leaf) { *a = *b = *c = *d = 0; return 0; }
    __cpuid_count(leaf, subleaf, *a, *b, *c, *d);
    return 1;
}

/// XCR0: which register states the operating system saves (bits 1-2 for AVX, 5-7 for AVX-512).
static inline uint64_t dim_xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static inline uint32_t dim_get_mxcsr(void) { return _mm_getcsr(); }
static inline void dim_set_mxcsr(uint32_t value) { _mm_setcsr(value); }
static inline int dim_is_x86(void) { return 1; }
#else
static inline int dim_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d) {
    *a = *b = *c = *d = 0; return 0;
}
static inline uint64_t dim_xgetbv0(void) { return 0; }
static inline uint32_t dim_get_mxcsr(void) { return 0; }
static inline void dim_set_mxcsr(uint32_t value) { (void)value; }
static inline int dim_is_x86(void) { return 0; }
#endif
