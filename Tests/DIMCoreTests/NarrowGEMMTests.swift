import Foundation
import XCTest
import CBLAS
import CKernels
@testable import DIMCore

/// The narrow GEMM kernels (NarrowGEMM.swift), through `sgemm`, the call every layer makes.
final class NarrowGEMMTests: XCTestCase {
    override func tearDown() { setBLASThreads(1) }

    /// C = op(A) B (+ C) through `sgemm`, A large enough for the narrow kernels.
    private func product(transA: Bool, m: Int, n: Int, k: Int, a: Tensor, b: Tensor, c0: Tensor?) -> [Float] {
        let c = Tensor([m, n])
        if let c0 { c.copy(from: c0) }
        sgemm(transA: transA, m: m, n: n, k: k, a: a.data, lda: transA ? m : k, b: b.data, ldb: n,
              beta: c0 == nil ? 0 : 1, c: c.data, ldc: n)
        return c.array
    }

    /// Against OpenBLAS called directly, with row counts that leave partial register tiles, odd
    /// k, every width class from 1 to 64 columns, and C += accumulation.
    func testNarrowProductsMatchOpenBLAS() {
        for (transA, m, k) in [(false, 1029, 1021), (true, 1061, 1024), (true, 4096, 256)] {
            XCTAssertGreaterThanOrEqual(m * k, narrowGEMMMinimumA, "the shape must take the narrow kernels")
            let a = randomTensor(transA ? [k, m] : [m, k], seed: 11)
            for n in [1, 5, 8, 13, 16, 24, 33, 48, 64] {
                let b = randomTensor([k, n], seed: UInt64(n)), c0 = randomTensor([m, n], seed: 99)
                for accumulate in [false, true] {
                    let got = product(transA: transA, m: m, n: n, k: k, a: a, b: b, c0: accumulate ? c0 : nil)
                    let expected = Tensor([m, n])
                    if accumulate { expected.copy(from: c0) }
                    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, CblasNoTrans, Int32(m), Int32(n),
                                Int32(k), 1, a.data, Int32(transA ? m : k), b.data, Int32(n), accumulate ? 1 : 0,
                                expected.data, Int32(n))
                    // Entries are sums of k products of values in [-1, 1]: rounding is ~sqrt(k) ulps of ~sqrt(k).
                    var worst: Float = 0
                    for i in 0..<got.count { worst = max(worst, abs(got[i] - expected.data[i])) }
                    XCTAssertLessThan(worst, 1e-4, "\(transA ? "TN" : "NN") \(m)x\(n)x\(k) accumulate \(accumulate)")
                }
            }
        }
    }

    /// A rank's images are a subset of the columns: their results must be the very bits the whole
    /// batch gives (OpenBLAS's Haswell kernels change 2-13% of them when the batch is split), and
    /// the same on two threads as on one.
    func testColumnsAndRowSplitsDoNotChangeABit() {
        let (m, k) = (1024, 1024)
        // TN takes the narrow kernel up to narrowTNColumns (0 without AVX-512); wider, OpenBLAS.
        for (transA, n) in [(false, 64)] + (narrowTNColumns > 0 ? [(true, narrowTNColumns)] : []) {
            let a = randomTensor(transA ? [k, m] : [m, k], seed: 3), b = randomTensor([k, n], seed: 4)
            let whole = product(transA: transA, m: m, n: n, k: k, a: a, b: b, c0: nil)
            for part in [0..<8, 8..<n * 5 / 8, n * 5 / 8..<n, 0..<n / 4] {
                let w = part.count, bp = Tensor([k, w])
                for t in 0..<k { for j in 0..<w { bp.data[t * w + j] = b.data[t * n + part.lowerBound + j] } }
                let got = product(transA: transA, m: m, n: w, k: k, a: a, b: bp, c0: nil)
                var differing = 0
                for i in 0..<m {
                    for j in 0..<w where got[i * w + j].bitPattern != whole[i * n + part.lowerBound + j].bitPattern {
                        differing += 1
                    }
                }
                XCTAssertEqual(differing, 0, "\(transA ? "TN" : "NN") columns \(part): \(differing) of \(m * w) differ")
            }
            setBLASThreads(2)
            let two = product(transA: transA, m: m, n: n, k: k, a: a, b: b, c0: nil)
            setBLASThreads(1)
            XCTAssertEqual(zip(whole, two).filter { $0.bitPattern != $1.bitPattern }.count, 0,
                           "\(transA ? "TN" : "NN") on two threads")
        }
    }
}
