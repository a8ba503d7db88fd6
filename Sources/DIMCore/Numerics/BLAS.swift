import Foundation
import CBLAS
import CKernels

/// Precision of a layer's GEMMs. `bf16` rounds both operands to bfloat16 and accumulates in
/// float32 (weights, activations and gradients stay float32 everywhere else).
public enum Precision: String, CaseIterable, Codable {
    case fp32, bf16

    /// Why this CPU cannot run `self`, or nil when it can.
    public func unsupportedReason(on cpu: CPUInfo = .current) -> String? {
        switch self {
        case .fp32: return nil
        case .bf16:
            return cpu.avx512BF16 ? nil
                : "--precision bf16 needs a CPU with AVX512_BF16 instructions; this one (\(cpu.summary)) has none"
        }
    }
}

/// Row-major GEMM in the given precision: C = op(A) * op(B) + beta * C (beta 0 or 1), with op(A)
/// M x K, op(B) K x N and C M x N. Every layer's heavy arithmetic goes through this one call.
@inline(__always)
public func gemm(
    _ precision: Precision, transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    guard precision == .bf16, m > 0, n > 0, k > 0 else {
        sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c,
              ldc: ldc)
        return
    }
    precondition(beta == 0 || beta == 1, "bf16 GEMM: beta must be 0 or 1")
    let t0 = monotonicSeconds()
    BF16GEMM.shared.multiply(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                             accumulate: beta == 1, c: c, ldc: ldc)
    FlopCounter.count(GEMMShape(transA: transA, transB: transB, m: m, n: n, k: k, accumulate: beta == 1),
                      seconds: monotonicSeconds() - t0)
}

/// Row-major single-precision GEMM: C = alpha * op(A) * op(B) + beta * C. OpenBLAS, except the
/// GEMMs of a large matrix by a narrow one (NarrowGEMM.swift).
@inline(__always)
public func sgemm(
    transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        // BLAS leaves C untouched when K = 0 only if beta = 1; make the result well defined.
        if beta == 0 { zeroRows(c, rows: m, columns: n, stride: ldc) }
        return
    }
    let t0 = monotonicSeconds()
    if alpha != 1 || !narrowGEMM(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                                 beta: beta, c: c, ldc: ldc) {
        // OpenBLAS applies a beta other than 1 in a pass of its own before the product, and its
        // AVX2 cores (`Haswell`, `Zen`) do it with one scalar store per float: 2.2% of a training
        // step on a Zen 3 (docs/results.md, fourteenth session). Zeroing C here with vector stores
        // and asking for C += A*B skips that pass; the sums are the same.
        var libraryBeta = beta
        if beta == 0 {
            zeroRows(c, rows: m, columns: n, stride: ldc)
            libraryBeta = 1
        }
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), libraryBeta, c, Int32(ldc))
    }
    FlopCounter.count(GEMMShape(transA: transA, transB: transB, m: m, n: n, k: k, accumulate: beta != 0),
                      seconds: monotonicSeconds() - t0)
}

/// Zeroes a rows x columns block of a row-major matrix with row stride `stride` (one `zeroFloats`
/// when the rows are contiguous), on the rank's threads.
@inline(__always)
func zeroRows(_ c: UnsafeMutablePointer<Float>, rows: Int, columns: Int, stride: Int) {
    if stride == columns {
        zeroFloats(c, count: rows * columns)
    } else {
        parallelRanges(rows, grain: parallelGrain(floatsPerItem: columns)) { rs in
            for r in rs { (c + r * stride).update(repeating: 0, count: columns) }
        }
    }
}

/// Zeroes `count` floats on the rank's threads. From `streamingZeroFloats` on, with non-temporal
/// stores: an ordinary store (memset's too) first reads its line from memory, and for a buffer
/// larger than the caches that read is wasted, since the GEMM accumulating into the buffer reads
/// it from memory again. On a Zen 3, 16.8 MB (the encoder's fc weight gradient) zeroes in
/// 0.56-0.61 ms this way against 1.16-1.24 with memset, and the GEMM after it takes as long
/// (docs/results.md, sixteenth session).
func zeroFloats(_ x: UnsafeMutablePointer<Float>, count: Int) {
    let streaming = count >= streamingZeroFloats
    parallelRanges(count, grain: parallelGrain(floatsPerItem: 1)) { r in
        if streaming {
            dim_zero_streaming(x + r.lowerBound, r.count)
        } else {
            (x + r.lowerBound).update(repeating: 0, count: r.count)
        }
    }
}

/// 1 M floats (4 MB): past a core's L2 and its share of an L3; smaller buffers may still be in
/// the cache when the GEMM reads them.
let streamingZeroFloats = 1 << 20

/// Sets the number of OpenBLAS threads (the OPENBLAS_NUM_THREADS environment variable does the
/// same at start-up); bf16 GEMMs use as many OpenMP threads.
public func setBLASThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }
public func blasThreads() -> Int { Int(openblas_get_num_threads()) }
