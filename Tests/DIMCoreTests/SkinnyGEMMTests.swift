import Foundation
import XCTest
@testable import DIMCore
import CKernels
import CBLAS

/// The skinny GEMM kernels (CKernels/skinny_gemm.h) against a double-precision reference, and the
/// dispatch in `sgemm` that sends them the GEMMs of a small per-rank batch.
final class SkinnyGEMMTests: XCTestCase {
    override func tearDown() { setBLASThreads(1) }

    /// C = beta C + op(A) B in double, op(A) = A ([m, k], lda) or A^T (A stored [k, m]).
    private func reference(transA: Bool, m: Int, n: Int, k: Int, a: [Float], lda: Int, b: [Float], ldb: Int,
                           beta: Float, c: [Float], ldc: Int) -> [Float] {
        var out = c
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for t in 0..<k { s += Double(transA ? a[t * lda + i] : a[i * lda + t]) * Double(b[t * ldb + j]) }
                out[i * ldc + j] = Float(Double(beta) * Double(c[i * ldc + j]) + s)
            }
        }
        return out
    }

    private func random(_ count: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in rng.nextFloat() * 2 - 1 }
    }

    /// Every row/column remainder of the register tiles and the row blocks, with leading
    /// dimensions wider than the matrices (the entries between must stay untouched), at beta 0
    /// and 1: each kernel within float rounding of the reference.
    func testKernelsMatchTheReferenceOnEveryTileRemainder() {
        for transA in [false, true] {
            for n in transA ? [1, 3, 8] : [1, 5, 8, 9, 16] {
                for (m, k) in [(1, 1), (7, 13), (37, 64), (40, 17), (300, 70)] {
                    for beta: Float in [0, 1] {
                        let (lda, ldb, ldc) = ((transA ? m : k) + 3, n + 2, n + 5)
                        let a = random((transA ? k : m) * lda, seed: UInt64(m * 1000 + k))
                        let b = random(k * ldb, seed: UInt64(n * 7 + k))
                        var c = random(m * ldc, seed: 99)
                        let expected = reference(transA: transA, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                                                 beta: beta, c: c, ldc: ldc)
                        let before = c
                        if transA {
                            dim_skinny_gemm_tn(m, n, k, a, lda, b, ldb, Int32(beta), &c, ldc)
                        } else {
                            dim_skinny_gemm_nn(m, n, k, a, lda, b, ldb, Int32(beta), &c, ldc)
                        }
                        let what = "\(transA ? "TN" : "NN") m \(m) n \(n) k \(k) beta \(beta)"
                        for i in 0..<m {
                            for j in 0..<ldc {
                                let (got, want) = (c[i * ldc + j], j < n ? expected[i * ldc + j] : before[i * ldc + j])
                                if j >= n {
                                    XCTAssertEqual(got.bitPattern, want.bitPattern, "\(what): padding changed")
                                } else if abs(got - want) > 1e-5 * Float(k).squareRoot() * 4 {
                                    XCTFail("\(what): C[\(i), \(j)] = \(got), expected \(want)")
                                    return
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The fc layer's GEMMs at 8 images per rank go to the skinny kernels through `sgemm` (the
    /// same bits as the kernel called directly; OpenBLAS's own result differs in rounding only),
    /// and give the same bits on 1 and 2 threads.
    func testSGEMMSendsSkinnyShapesToTheKernelsOnAnyThreadCount() {
        let (m, n, k) = (1024, 8, 4096)
        let w = random(m * k, seed: 1), x = random(k * n, seed: 2), dh = random(m * n, seed: 3)
        for transA in [false, true] {
            // NN: y[m, n] = W x; TN: dx[k, n] = W^T dh.
            let (rows, inner) = transA ? (k, m) : (m, k)
            let b = transA ? dh : x
            func run(threads: Int) -> [Float] {
                setBLASThreads(threads)
                var c = [Float](repeating: 0, count: rows * n)
                sgemm(transA: transA, m: rows, n: n, k: inner, a: w, lda: k, b: b, ldb: n, c: &c, ldc: n)
                return c
            }
            let one = run(threads: 1), two = run(threads: 2)
            var direct = [Float](repeating: 0, count: rows * n)
            if transA {
                dim_skinny_gemm_tn(rows, n, inner, w, k, b, n, 0, &direct, n)
            } else {
                dim_skinny_gemm_nn(rows, n, inner, w, k, b, n, 0, &direct, n)
            }
            XCTAssertEqual(one.map(\.bitPattern), direct.map(\.bitPattern), "sgemm did not use the skinny kernel")
            XCTAssertEqual(one.map(\.bitPattern), two.map(\.bitPattern), "1 and 2 threads differ")
            var openblas = [Float](repeating: 0, count: rows * n)
            cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, CblasNoTrans, Int32(rows), Int32(n),
                        Int32(inner), 1, w, Int32(k), b, Int32(n), 0, &openblas, Int32(n))
            let worst = zip(one, openblas).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(worst, 1e-3, "\(transA ? "TN" : "NN"): OpenBLAS and the kernel disagree")
            XCTAssertNotEqual(one.map(\.bitPattern), openblas.map(\.bitPattern),
                              "identical to OpenBLAS's bits: the dispatch cannot be told apart")
        }
    }
}
