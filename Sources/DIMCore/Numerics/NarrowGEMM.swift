import Foundation
import CKernels

/// dim-dist's own kernels (CKernels/include/narrow_gemm.h) for the GEMMs of a large matrix by a
/// narrow one, A of at least `narrowGEMMMinimumA` floats: the encoder's fc layer forward (NN, n
/// <= 64) and input gradient (TN, n <= `narrowTNColumns`); n is the rank's images. OpenBLAS
/// repacks A on every such call; these read it once. Measured against OpenBLAS in the step on a
/// Zen 5, n = 8, 32, 64, and the NN kernel on a Zen 3 (docs/results.md, 2026-12-06 (7), (8)).
/// Returns false for every other GEMM.
///
/// Each entry of C is one ordered sum over k, so a column's bits do not depend on the other
/// columns (a rank computes exactly what one process computes for its images) nor on how rows
/// are split over the rank's threads.
@inline(__always)
func narrowGEMM(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) -> Bool {
    guard !transB, n <= Int(dim_narrow_max_columns), m * k >= narrowGEMMMinimumA, beta == 0 || beta == 1 else {
        return false
    }
    let accumulate: Int32 = beta == 1 ? 1 : 0
    if !transA {
        let packed = dim_narrow_scratch(dim_narrow_nn_packed_count(n, k))!
        dim_narrow_nn_pack(n, k, b, ldb, packed)
        parallelRanges(m, grain: parallelGrain(floatsPerItem: k)) { rows in
            dim_narrow_nn(rows.count, n, k, a + rows.lowerBound * lda, lda, packed, accumulate,
                          c + rows.lowerBound * ldc, ldc)
        }
    } else {
        guard n <= narrowTNColumns else { return false }
        // C transposed waits in scratch rows of m + 16 floats (m is a power of two in DIM's
        // layers; rows that far apart would share cache sets).
        let ldct = m + 16, unit = dim_narrow_row_unit()
        let ct = dim_narrow_scratch(n * ldct)!
        let units = (m + unit - 1) / unit
        parallelRanges(units, grain: max(1, parallelGrain(floatsPerItem: k * unit))) { r in
            let first = r.lowerBound * unit, end = min(m, r.upperBound * unit)
            dim_narrow_tn(end - first, n, k, a + first, lda, b, ldb, accumulate, c + first * ldc, ldc, ct + first, ldct)
        }
    }
    return true
}

/// The widest B the TN kernel takes: it is fast with AVX-512 only (AVX2: 83-91 GFLOP/s where
/// OpenBLAS's Haswell kernels reach 47-99), and there it beat OpenBLAS's AVX-512 kernels up to 16
/// columns (slower at 32 and 64) and its AVX2 kernels (an AVX-512 CPU told to use them, as this
/// project's build machines are) at every width up to 64.
let narrowTNColumns: Int = {
    guard dim_narrow_tn_available() != 0 else { return 0 }
    return BLASKernels.tier(ofCore: BLASKernels.core) >= 2 ? 16 : Int(dim_narrow_max_columns)
}()

/// The smallest A (floats) worth the narrow kernels: 1 M, a 4 MB matrix that OpenBLAS would
/// copy per call (the fc weight is 4 M; the heads' and the encoder's other weights stay with OpenBLAS).
let narrowGEMMMinimumA = 1 << 20
