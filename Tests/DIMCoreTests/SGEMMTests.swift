import XCTest
@testable import DIMCore

/// `sgemm` hands OpenBLAS C += A*B on a C it zeroed itself for beta = 0 (BLAS.swift): the result
/// must still be the product alone, whatever C held, and nothing outside the m x n block may move.
final class SGEMMTests: XCTestCase {
    func testBetaZeroOverwritesItsBlockAndNothingElse() {
        // Small shapes, ones above OpenBLAS's blocking (k > 256, m and n past one panel), and k = 0
        // (no product: BLAS would leave C as it was, `sgemm` zeroes it).
        for (m, n, k) in [(3, 5, 7), (70, 33, 300), (130, 257, 64), (4, 6, 0)] {
            for transA in [false, true] {
                for transB in [false, true] {
                    let lda = transA ? m : k, ldb = transB ? k : n, ldc = n + 3
                    let a = (0..<max(m * k, 1)).map { Float(($0 * 7) % 13) / 13 - 0.5 }
                    let b = (0..<max(k * n, 1)).map { Float(($0 * 5) % 11) / 11 - 0.5 }
                    var c = [Float](repeating: .nan, count: m * ldc)
                    a.withUnsafeBufferPointer { ap in
                        b.withUnsafeBufferPointer { bp in
                            c.withUnsafeMutableBufferPointer { cp in
                                sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: ap.baseAddress!, lda: lda,
                                      b: bp.baseAddress!, ldb: ldb, beta: 0, c: cp.baseAddress!, ldc: ldc)
                            }
                        }
                    }
                    var worst = 0.0, padding = 0
                    for i in 0..<m {
                        for j in 0..<ldc {
                            let got = c[i * ldc + j]
                            if j >= n { if !got.isNaN { padding += 1 }; continue }
                            var want = 0.0
                            for t in 0..<k {
                                let x = transA ? a[t * lda + i] : a[i * lda + t]
                                let y = transB ? b[j * ldb + t] : b[t * ldb + j]
                                want += Double(x) * Double(y)
                            }
                            worst = max(worst, Double(got).isNaN ? .infinity : abs(Double(got) - want))
                        }
                    }
                    let label = "\(transA ? "T" : "N")\(transB ? "T" : "N") \(m)x\(n)x\(k)"
                    XCTAssertLessThan(worst, 1e-4, "\(label): C is not the product (what C held leaked in?)")
                    XCTAssertEqual(padding, 0, "\(label): entries past column n were written")
                }
            }
        }
    }

    /// `zeroFloats` (beta = 0's zeroing and the gradients' zeroing): the ordinary path and the
    /// streaming one (non-temporal stores between a memset head and tail), at offsets across a
    /// cache line and lengths around the switch and around whole lines, on 1 and 2 threads. Every
    /// float of the range must be +0.0 and every neighbour untouched.
    func testZeroFloatsClearsItsRangeAndNothingElse() {
        defer { setBLASThreads(1) }
        let big = streamingZeroFloats
        let small = [0, 1, 15, 16, 17, 100], large = [big - 1, big, big + 1, big + 15, big + 16, big + 17]
        let count = big + 64
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count)
        defer { buffer.deallocate() }
        for threads in [1, 2] {
            setBLASThreads(threads)
            for offset in 0..<16 {
                for n in small + ([0, 1, 7, 15].contains(offset) ? large : []) where offset + n + 8 <= count {
                    buffer.update(repeating: .nan, count: count)
                    zeroFloats(buffer + offset, count: n)
                    var notZero = 0, touched = 0
                    for i in 0..<count {
                        if i >= offset && i < offset + n {
                            if buffer[i].bitPattern != 0 { notZero += 1 }
                        } else if !buffer[i].isNaN {
                            touched += 1
                        }
                    }
                    let label = "\(threads) thread(s), offset \(offset), \(n) floats"
                    XCTAssertEqual(notZero, 0, "\(label): \(notZero) of the range not +0.0")
                    XCTAssertEqual(touched, 0, "\(label): \(touched) floats outside the range written")
                }
            }
        }
    }
}
