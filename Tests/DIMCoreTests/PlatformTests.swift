import Foundation
import XCTest
@testable import DIMCore
import CCPU
import CKernels

/// CPU detection, the choice of BLAS kernels, flush-to-zero and the bf16 GEMM.
final class PlatformTests: XCTestCase {
    // MARK: CPU and BLAS kernels

    /// cpuid agrees with the kernel's view of the CPU (/proc/cpuinfo flags).
    func testCPUFeaturesAgreeWithProcCpuinfo() throws {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else {
            throw XCTSkip("no /proc/cpuinfo flags")
        }
        let flags = Set(line.split(separator: ":")[1].split(separator: " ").map(String.init))
        let cpu = CPUInfo.current
        XCTAssertEqual(cpu.avx2FMA, flags.contains("avx2") && flags.contains("fma"))
        XCTAssertEqual(cpu.avx512,
                       ["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"].allSatisfy(flags.contains))
        XCTAssertEqual(cpu.avx512BF16, cpu.avx512 && flags.contains("avx512_bf16"))
        XCTAssertFalse(cpu.vendor.isEmpty)
    }

    func testTheBestKernelsAreChosenOnlyWhenTheLibraryFellShort() {
        func cpu(avx2: Bool, avx512: Bool, bf16: Bool) -> CPUInfo {
            CPUInfo(vendor: "GenuineIntel", brand: "test", family: 6, model: 207, avx2FMA: avx2, avx512: avx512,
                    avx512BF16: bf16)
        }
        let xeon = cpu(avx2: true, avx512: true, bf16: true)
        // The Xeon of the issue: OpenBLAS 0.3.21 fell back to its SSE3 kernels.
        XCTAssertEqual(BLASKernels.preferredCore(current: "Prescott", cpu: xeon), "Cooperlake")
        XCTAssertEqual(BLASKernels.preferredCore(current: "Haswell", cpu: xeon), "Cooperlake")
        // Already the best: keep the library's choice.
        XCTAssertNil(BLASKernels.preferredCore(current: "Cooperlake", cpu: xeon))
        XCTAssertNil(BLASKernels.preferredCore(current: "SapphireRapids", cpu: xeon))
        XCTAssertEqual(BLASKernels.preferredCore(current: "Haswell", cpu: cpu(avx2: true, avx512: true, bf16: false)),
                       "SkylakeX")
        XCTAssertEqual(BLASKernels.preferredCore(current: "Prescott",
                                                 cpu: cpu(avx2: true, avx512: false, bf16: false)), "Haswell")
        XCTAssertNil(BLASKernels.preferredCore(current: "Zen", cpu: cpu(avx2: true, avx512: false, bf16: false)))
        XCTAssertNil(BLASKernels.preferredCore(current: "Prescott", cpu: cpu(avx2: false, avx512: false, bf16: false)))
    }

    /// AMD: Zen 4 runs OpenBLAS's AVX2 kernels faster than the AVX-512 ones the library picks for it;
    /// Zen 3 (the same family, no AVX-512) keeps `Zen`; Zen 5 (family 26) gets `Cooperlake`.
    func testZen4GetsTheAVX2KernelsAndOtherAMDCoresKeepTheirs() {
        func amd(family: Int, model: Int, avx512: Bool) -> CPUInfo {
            CPUInfo(vendor: "AuthenticAMD", brand: "AMD EPYC", family: family, model: model, avx2FMA: true,
                    avx512: avx512, avx512BF16: avx512)
        }
        let zen3 = amd(family: 25, model: 1, avx512: false), zen4 = amd(family: 25, model: 17, avx512: true)
        let zen5 = amd(family: 26, model: 2, avx512: true)
        XCTAssertTrue(zen4.isAMDZen4)
        XCTAssertFalse(zen3.isAMDZen4)
        XCTAssertFalse(zen5.isAMDZen4)
        XCTAssertEqual(BLASKernels.preferredCore(current: "Cooperlake", cpu: zen4), "Haswell")
        XCTAssertEqual(BLASKernels.preferredCore(current: "SkylakeX", cpu: zen4), "Haswell")
        XCTAssertEqual(BLASKernels.preferredCore(current: "Prescott", cpu: zen4), "Haswell")
        XCTAssertNil(BLASKernels.preferredCore(current: "Haswell", cpu: zen4))
        XCTAssertNil(BLASKernels.preferredCore(current: "Zen", cpu: zen4))
        XCTAssertNil(BLASKernels.preferredCore(current: "Zen", cpu: zen3))
        XCTAssertNil(BLASKernels.preferredCore(current: "Cooperlake", cpu: zen5))
        XCTAssertEqual(BLASKernels.preferredCore(current: "Haswell", cpu: zen5), "Cooperlake")
        // The same family number on an Intel CPU means nothing of the kind.
        let intel = CPUInfo(vendor: "GenuineIntel", brand: "x", family: 25, model: 17, avx2FMA: true, avx512: true,
                            avx512BF16: true)
        XCTAssertFalse(intel.isAMDZen4)
    }

    func testTheCoreInUseIsNamedWithHowItWasChosen() {
        let choice = BLASKernels.choice
        XCTAssertTrue(choice.hasPrefix(BLASKernels.core), choice)
        if environment("OPENBLAS_CORETYPE") != nil { XCTAssertTrue(choice.contains("set by OPENBLAS_CORETYPE"),
                                                                   choice) }
    }

    // MARK: Subnormals

    /// 2048 x 2048 x 512 with inputs 1e-21 and 1e-20: every output is 5e-39 (subnormal) unless
    /// flushed; large enough that OpenBLAS splits it over its threads.
    private func subnormalsInThreadedSGEMM() -> Int {
        let m = 2048, n = 2048, k = 512
        let a = Tensor([m, k]), b = Tensor([k, n]), c = Tensor([m, n])
        for i in 0..<a.count { a.data[i] = 1e-21 }
        for i in 0..<b.count { b.data[i] = 1e-20 }
        sgemm(m: m, n: n, k: k, a: a.data, lda: k, b: b.data, ldb: n, c: c.data, ldc: n)
        return subnormalCount(c.data, count: c.count)
    }

    func testBLASThreadsFlushSubnormalsToZero() throws {
        let threads = blasThreads()
        setBLASThreads(2)
        defer { setBLASThreads(threads); FloatingPointEnvironment.flushSubnormalsToZero() }
        FloatingPointEnvironment.keepSubnormals()
        XCTAssertEqual(subnormalsInThreadedSGEMM(), 2048 * 2048, "without FTZ every output is subnormal")
        FloatingPointEnvironment.flushSubnormalsToZero()
        XCTAssertEqual(subnormalsInThreadedSGEMM(), 0, "FTZ on the calling thread must reach the BLAS threads")
    }

    func testThreadsStartedAfterStartUpInheritFlushToZero() {
        FloatingPointEnvironment.flushSubnormalsToZero()
        XCTAssertTrue(FloatingPointEnvironment.subnormalsFlushed)
        final class Flag: @unchecked Sendable { var value = false }
        let inThread = Flag()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            inThread.value = FloatingPointEnvironment.subnormalsFlushed
            done.signal()
        }
        thread.start()
        done.wait()
        XCTAssertTrue(inThread.value, "a thread started after start-up must flush subnormals too (the batch reader's)")
    }

    /// The estimator at large score margins: sigmoid(-100) ~ 4e-44 is subnormal in float32 (Intel
    /// cores pay ~100 cycles per subnormal operand in the backward GEMMs). The kernels flush e^x
    /// below e^-87.3 to 0, so no estimator writes a subnormal even with subnormals kept; a libm
    /// exp (the tail of a span, an earlier version) would.
    func testLargeMarginScoresLeaveNoSubnormalInTheGradient() {
        let N = 8, P = 5  // 5 positions: spans of 5 and 35 columns, not multiples of the vector width
        let u = Tensor([N, N * P]), grad = Tensor([N, N * P])
        for i in 0..<N { for j in 0..<N { for l in 0..<P { u.data[i * N * P + j * P + l] = i == j ? 100 : -100 } } }
        let block = ScoreLayout.allRows(images: N, positions: P)
        let positives = Tensor([N * P], values: [Float](repeating: 100, count: N * P)), gradPositives = Tensor([N * P])
        defer { FloatingPointEnvironment.flushSubnormalsToZero() }
        FloatingPointEnvironment.keepSubnormals()
        XCTAssertGreaterThan(subnormalCount([Float(Foundation.exp(-100.0))], count: 1), 0, "float(e^-100) is subnormal")
        for est in Estimator.allCases {
            _ = estimatorLoss(est, u: u.data, grad: grad.data, positives: positives.data,
                              gradPositives: gradPositives.data, layout: block, maskValue: -10, comm: SingleProcess())
            XCTAssertEqual(subnormalCount(grad.data, count: grad.count), 0, "\(est)")
            XCTAssertEqual(subnormalCount(gradPositives.data, count: gradPositives.count), 0, "\(est) positives")
        }
    }

    // MARK: bf16 GEMM

    func testBF16IsRefusedOnACPUWithoutIt() {
        let zen3 = CPUInfo(vendor: "AuthenticAMD", brand: "test", family: 25, model: 1, avx2FMA: true, avx512: false,
                           avx512BF16: false)
        let reason = Precision.bf16.unsupportedReason(on: zen3)
        XCTAssertNotNil(reason)
        XCTAssertTrue(reason?.contains("AVX512_BF16") ?? false, reason ?? "")
        XCTAssertNil(Precision.fp32.unsupportedReason(on: zen3))
        var sapphire = zen3
        sapphire.avx512 = true; sapphire.avx512BF16 = true
        XCTAssertNil(Precision.bf16.unsupportedReason(on: sapphire))
    }

    func testBF16RoundingIsToNearestEven() {
        XCTAssertEqual(bf16Rounded(1), 1)
        XCTAssertEqual(bf16Rounded(1 + 0x1p-8), 1, "halfway rounds to the even neighbour (down)")
        XCTAssertEqual(bf16Rounded(1 + 3 * 0x1p-8), 1 + 0x1p-6, "halfway rounds to the even neighbour (up)")
        XCTAssertEqual(bf16Rounded(1 + 0x1p-8 + 0x1p-20), 1 + 0x1p-7, "above halfway rounds up")
        XCTAssertEqual(bf16Rounded(-3.14159), -3.140625)
    }

    /// bf16 products are exact in float32, so the bf16 GEMM must equal sgemm on the rounded
    /// inputs up to float32 summation order: every transpose, accumulation and a wide C.
    func testBF16GEMMEqualsSGEMMOnRoundedInputs() throws {
        if let why = Precision.bf16.unsupportedReason() { throw XCTSkip(why) }
        var rng = SplitMix64(seed: 5, stream: 1)
        let m = 37, n = 53, k = 70, ldc = 61
        for transA in [false, true] {
            for transB in [false, true] {
                for beta: Float in [0, 1] {
                    let a = Tensor([m * k]), b = Tensor([k * n])
                    for i in 0..<a.count { a.data[i] = rng.uniform(2) }
                    for i in 0..<b.count { b.data[i] = rng.uniform(2) }
                    let lda = transA ? m : k, ldb = transB ? k : n
                    let c = Tensor([m * ldc]), expected = Tensor([m * ldc])
                    for i in 0..<c.count { c.data[i] = rng.uniform(1); expected.data[i] = c.data[i] }
                    let ra = Tensor([a.count]), rb = Tensor([b.count])
                    for i in 0..<a.count { ra.data[i] = bf16Rounded(a.data[i]) }
                    for i in 0..<b.count { rb.data[i] = bf16Rounded(b.data[i]) }
                    sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: ra.data, lda: lda, b: rb.data, ldb: ldb,
                          beta: beta, c: expected.data, ldc: ldc)
                    gemm(.bf16, transA: transA, transB: transB, m: m, n: n, k: k, a: a.data, lda: lda, b: b.data,
                         ldb: ldb,
                         beta: beta, c: c.data, ldc: ldc)
                    var worst: Float = 0
                    for i in 0..<m {
                        for j in 0..<ldc {
                            let e = abs(c.data[i * ldc + j] - expected.data[i * ldc + j])
                            // Columns past n belong to someone else: they must be untouched.
                            if j >= n { XCTAssertEqual(e, 0, "column \(j) >= n was written"); continue }
                            worst = max(worst, e)
                        }
                    }
                    XCTAssertLessThan(worst, 1e-4, "transA \(transA) transB \(transB) beta \(beta)")
                }
            }
        }
    }
}

/// Threads per rank: OPENBLAS_NUM_THREADS wins, then the affinity mask, bounded by the node's cores
/// shared among its ranks.
final class ThreadChoiceTests: XCTestCase {
    func testThreadsFollowTheCPUsARankWasGiven() {
        let choose = BLASKernels.threadChoice
        XCTAssertEqual(choose("3", 1, 64, 8).0, nil)                       // the user's setting stays
        XCTAssertEqual(choose("3", 1, 64, 8).1, "OPENBLAS_NUM_THREADS=3")
        XCTAssertEqual(choose(nil, 1, 2, 2).0, 1)                         // srun -n 2 -c 1 on 2 cores
        XCTAssertEqual(choose(nil, 1, 2, 2).1, "the 1 CPU(s) this process may run on")
        XCTAssertEqual(choose(nil, 4, 64, nil).0, 4)                      // taskset -c 0-3, one process
        XCTAssertEqual(choose(nil, 2, 2, 8).0, 1)                         // 8 unbound ranks on 2 cores
        XCTAssertEqual(choose(nil, 2, 2, 8).1, "2 cores shared by 8 ranks on this node")
        XCTAssertEqual(choose(nil, 16, 16, 2).0, 8)                       // 2 unbound ranks on 16 cores
        XCTAssertEqual(choose(nil, 16, 16, nil).0, 16)                    // one process, the whole node
        XCTAssertEqual(choose(nil, -1, 16, nil).0, 16)                    // no mask: the node's cores
    }

    /// The real mask of this process, as the kernel reports it.
    func testAllowedCPUsOfThisProcess() {
        let n = Int(dim_allowed_cpu_count())
        XCTAssertGreaterThan(n, 0)
        XCTAssertLessThanOrEqual(n, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }
}

/// Idle BLAS threads (BLASIdleThreads): 20 ms after a GEMM on 2 threads, OpenBLAS's own thread is
/// still running with the library's spin (2^28 cycles, 0.05-0.1 s), which shows that the probe
/// sees a spinning thread, and asleep with dim-dist's 2^12.
final class BLASIdleThreadTests: XCTestCase {
    func testIdleThreadsSleepSoonAfterAGEMM() throws {
        let before = blasThreads()
        setBLASThreads(2)
        defer {
            setBLASThreads(before)
            BLASIdleThreads.apply(exponent: BLASIdleThreads.defaultExponent)  // what dim-dist runs with
        }
        let n = 512
        let a = [Float](repeating: 0.5, count: n * n)
        var c = [Float](repeating: 0, count: n * n)
        // The states of the threads that the pool starts with the given spin, 20 ms after a GEMM
        // (again if a busy machine let this thread sleep past 50 ms: the long spin would be over).
        func poolThreadStates(spinExponent: Int) throws -> [Character] {
            for _ in 0..<5 {
                let ready = BLASIdleThreads.apply(exponent: spinExponent)
                try XCTSkipUnless(ready, "this BLAS library lacks openblas_read_env or blas_thread_shutdown_")
                let earlier = Set(threadStates().keys)
                c.withUnsafeMutableBufferPointer { cb in
                    sgemm(m: n, n: n, k: n, a: a, lda: n, b: a, ldb: n, c: cb.baseAddress!, ldc: n)
                }
                let end = monotonicSeconds()
                usleep(20_000)
                let states = threadStates().filter { !earlier.contains($0.key) }.map(\.value)
                if monotonicSeconds() - end < 0.05 { return states }
            }
            throw XCTSkip("this thread never woke within 50 ms of a GEMM")
        }
        let spinning = try poolThreadStates(spinExponent: 28)
        XCTAssertFalse(spinning.isEmpty, "the next GEMM did not start OpenBLAS's thread pool again")
        XCTAssertTrue(spinning.contains("R"), "with a 2^28-cycle spin: \(spinning)")
        let sleeping = try poolThreadStates(spinExponent: BLASIdleThreads.defaultExponent)
        XCTAssertFalse(sleeping.isEmpty, "the next GEMM did not start OpenBLAS's thread pool again")
        XCTAssertEqual(Set(sleeping), ["S"], "with dim-dist's spin: \(sleeping)")
    }

    /// Thread id -> state letter (R running or runnable, S sleeping, ...) of this process's threads.
    private func threadStates() -> [String: Character] {
        let ids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        var states: [String: Character] = [:]
        for id in ids {
            // "tid (name) S ...": the state follows the last ')' (a name may contain one).
            guard let stat = try? String(contentsOfFile: "/proc/self/task/\(id)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let rest = stat[stat.index(after: close)...].drop { $0 == " " }
            if let state = rest.first { states[id] = state }
        }
        return states
    }
}

/// The vectorised Adam kernel performs exactly the scalar rule's operations: bit-identical results
/// (so checkpoints, resumes and every rank agree whatever the CPU's instruction set).
final class AdamKernelTests: XCTestCase {
    func testKernelIsBitIdenticalToTheScalarRule() {
        for n in [1, 7, 8, 9, 1000, 1027] {
            var rng = SplitMix64(seed: UInt64(n))
            let g = (0..<n).map { _ in rng.uniform(1) * (rng.nextInt(4) == 0 ? 1e-9 : 1) }
            var p = (0..<n).map { _ in rng.uniform(1) }, m = (0..<n).map { _ in rng.uniform(0.1) }
            var v = (0..<n).map { _ in rng.nextFloat() * 0.01 }
            var (p0, m0, v0) = (p, m, v)
            let (b1, b2, step, inv, eps): (Float, Float, Float, Float, Float) = (0.5, 0.999, 3e-4, 1.7, 1e-8)
            var record = [Float](repeating: 0, count: n)
            dim_adam_update(&p, g, &m, &v, n, b1, b2, step, inv, eps, &record)
            for i in 0..<n {  // the scalar rule, as Adam.update computed it before the kernel
                let mi = b1 * m0[i] + (1 - b1) * g[i]
                let vi = b2 * v0[i] + (1 - b2) * g[i] * g[i]
                m0[i] = mi; v0[i] = vi
                let delta = -step * mi / (vi.squareRoot() * inv + eps)
                p0[i] += delta
                XCTAssertEqual(record[i].bitPattern, delta.bitPattern, "n \(n) i \(i)")
            }
            XCTAssertEqual(p.map(\.bitPattern), p0.map(\.bitPattern), "n \(n) (\(estimatorKernelISA))")
            XCTAssertEqual(m.map(\.bitPattern), m0.map(\.bitPattern))
            XCTAssertEqual(v.map(\.bitPattern), v0.map(\.bitPattern))
        }
    }
}

/// BatchNorm's and LayerNorm's vectorised passes perform exactly the plain loops' operations (the
/// Swift loops they replaced): bit-identical, in the vector body and the tail, NaN and -0 included.
final class NormKernelTests: XCTestCase {
    func testKernelsAreBitIdenticalToThePlainLoops() {
        for n in [1, 7, 8, 9, 64, 1027] {
            var rng = SplitMix64(seed: UInt64(n) + 99)
            func values() -> [Float] { (0..<n).map { _ in rng.uniform(3) } }
            var x = values()
            let y = values(), a = values(), b = values(), r = values().map { abs($0) + 0.1 }
            x[0] = -0.0
            if n > 8 { x[8] = .nan }
            let bits = { (v: [Float]) in v.map(\.bitPattern) }
            let (mean, rs, gamma, beta): (Float, Float, Float, Float) = (0.3, 1.7, -0.8, 0.25)
            let v = x.map { ($0 - mean) * rs }  // BatchNorm's xhat, which its kernels recompute
            for relu in [false, true] {  // affine_normalize against BatchNorm's loop
                var out = [Float](repeating: 0, count: n)
                dim_affine_normalize(x, n, mean, rs, gamma, beta, relu ? 1 : 0, &out)
                let expected = v.map { relu ? max(gamma * $0 + beta, 0) : gamma * $0 + beta }
                XCTAssertEqual(bits(out), bits(expected), "n \(n)")
                // Backward pass 1: the mask from the output recomputed, sums of g and g * xhat.
                var d = [Float](repeating: 0, count: n), sums = [0.0, 0.0]
                dim_normalized_masked_sums(y, x, n, mean, rs, gamma, beta, relu ? 1 : 0, &d, &sums)
                let masked = (0..<n).map { relu && !(expected[$0] > 0) ? 0 : y[$0] }
                XCTAssertEqual(bits(d), bits(masked), "n \(n) relu \(relu)")
                let s1 = masked.reduce(0.0) { $0 + Double($1) }
                let s2 = (0..<n).reduce(0.0) { $0 + Double(masked[$1] * v[$1]) }
                XCTAssertEqual(sums[0], s1, accuracy: 1e-12 * Double(n))
                if n <= 8 { XCTAssertEqual(sums[1], s2, accuracy: 1e-12 * Double(n)) }  // else x[8] is NaN
            }
            var d = y  // centred_scale against BatchNorm's backward
            dim_centred_scale(&d, x, n, mean, rs, gamma, a[0], b[0])
            XCTAssertEqual(bits(d), bits((0..<n).map { gamma * (y[$0] - a[0] - v[$0] * b[0]) }))
            var (s, q) = (a, b)  // shifted_sums against LayerNorm's forward
            dim_shifted_sums(x, y, n, &s, &q)
            XCTAssertEqual(bits(s), bits((0..<n).map { a[$0] + (x[$0] - y[$0]) }))
            XCTAssertEqual(bits(q), bits((0..<n).map { b[$0] + (x[$0] - y[$0]) * (x[$0] - y[$0]) }))
            // LayerNorm with per-position means mu and 1/std r; its kernels recompute xhat.
            let mu = values(), xh = (0..<n).map { (x[$0] - mu[$0]) * r[$0] }
            var out = [Float](repeating: 0, count: n)
            dim_column_normalize(x, mu, r, n, gamma, beta, &out)
            XCTAssertEqual(bits(out), bits(xh.map { gamma * $0 + beta }))
            var g = [Float](repeating: 0, count: n)  // LayerNorm's backward, pass 1 and 2
            (s, q) = (a, b)
            dim_scaled_column_sums(y, x, mu, r, n, gamma, &g, &s, &q)
            XCTAssertEqual(bits(g), bits(y.map { $0 * gamma }))
            XCTAssertEqual(bits(s), bits((0..<n).map { a[$0] + y[$0] * gamma }))
            XCTAssertEqual(bits(q), bits((0..<n).map { b[$0] + y[$0] * gamma * xh[$0] }))
            var h = y
            dim_column_centred_scale(&h, x, mu, r, a, b, n)
            XCTAssertEqual(bits(h), bits((0..<n).map { r[$0] * (y[$0] - a[$0] - xh[$0] * b[$0]) }))
            var rowSums = [0.0, 0.0]  // its weight and bias gradients
            dim_normalized_row_sums(y, x, mu, r, n, &rowSums)
            XCTAssertEqual(rowSums[0], y.reduce(0.0) { $0 + Double($1) }, accuracy: 1e-12 * Double(n))
            if n <= 8 {  // else x[8] is NaN
                let expected = (0..<n).reduce(0.0) { $0 + Double(y[$1] * xh[$1]) }
                XCTAssertEqual(rowSums[1], expected, accuracy: 1e-12 * Double(n))
            }
            x[0] = 1; if n > 8 { x[8] = 2 }  // moments: sums in double, to double rounding
            var sums = [0.0, 0.0]
            dim_moments(x, n, &sums)
            let exact = x.reduce(0.0) { $0 + Double($1) }, squares = x.reduce(0.0) { $0 + Double($1) * Double($1) }
            XCTAssertEqual(sums[0], exact, accuracy: 1e-12 * Double(n))
            XCTAssertEqual(sums[1], squares, accuracy: 1e-12 * Double(n))
        }
    }
}

/// The divergence guard's check: any NaN or infinity, in the vector body or the tail.
final class FiniteCheckTests: XCTestCase {
    func testAllFinite() {
        for n in [1, 8, 19] {
            var x = (0..<n).map { Float($0) - 3 }
            XCTAssertEqual(dim_all_finite(x, n), 1)
            for bad in [Float.nan, .infinity, -.infinity] {
                for i in [0, n / 2, n - 1] {
                    let keep = x[i]
                    x[i] = bad
                    XCTAssertEqual(dim_all_finite(x, n), 0, "n \(n) x[\(i)] = \(bad)")
                    x[i] = keep
                }
            }
            x[0] = .greatestFiniteMagnitude
            XCTAssertEqual(dim_all_finite(x, n), 1)
        }
    }

    /// The store's check and zeroing, which split the flat buffer over the rank's threads: a bad
    /// value in the first, a middle or the last piece is found, and every gradient is zeroed.
    func testTheStoreChecksAndZeroesEveryPieceOnSeveralThreads() {
        let before = blasThreads()
        defer { setBLASThreads(before) }
        for threads in [1, 2, 3] {
            setBLASThreads(threads)
            let store = ParameterStore()
            _ = store.declare("w", [5, 100_003], .zeros)  // several grains of 64 K floats, ragged
            _ = store.declare("b", [7], .zeros)
            store.allocate(seed: 0)
            let g = store.grads!, n = store.count
            for i in 0..<n { g[i] = Float(i % 11) - 5 }
            XCTAssertTrue(store.gradientsAreFinite())
            for i in [0, n / 3, n / 2 + 1, n - 1] {
                for bad in [Float.nan, .infinity, -.infinity] {
                    let keep = g[i]
                    g[i] = bad
                    XCTAssertFalse(store.gradientsAreFinite(), "\(threads) thread(s), grads[\(i)] = \(bad)")
                    g[i] = keep
                }
            }
            store.zeroGrads()
            XCTAssertTrue((0..<n).allSatisfy { g[$0] == 0 }, "\(threads) thread(s)")
        }
    }
}

final class LearningRateScheduleTests: XCTestCase {
    func testCosine() {
        let s = LearningRateSchedule(warmupSteps: 4, decaySteps: 14, finalFraction: 0.1)
        let rate = { (step: Int) in s.rate(step: step, peak: 1) }
        // Warm-up: 1/4, 2/4, 3/4, 4/4 of the peak on the first four updates.
        XCTAssertEqual((0..<4).map(rate), [0.25, 0.5, 0.75, 1])
        XCTAssertEqual(rate(4), 1, accuracy: 1e-7)
        // Half-way through the decay: the mean of peak and floor.
        XCTAssertEqual(rate(9), 0.55, accuracy: 1e-6)
        XCTAssertEqual(rate(14), 0.1, accuracy: 1e-7)
        XCTAssertEqual(rate(100), 0.1, accuracy: 1e-7)
        // Monotone after the warm-up.
        for k in 4..<20 { XCTAssertLessThanOrEqual(rate(k + 1), rate(k)) }
    }

    /// No schedule is the constant rate; a checkpoint written when schedules also stored "kind" and
    /// "peak" still reads, to the same rate.
    func testConstantAndOldCheckpoints() throws {
        XCTAssertNil(try JSONDecoder().decode(Optional<LearningRateSchedule>.self, from: Data("null".utf8)))
        let old = #"{"kind":"cosine","peak":0.001,"warmupSteps":3,"decaySteps":12,"finalFraction":0}"#
        let s = try JSONDecoder().decode(LearningRateSchedule.self, from: Data(old.utf8))
        XCTAssertEqual(s, LearningRateSchedule(warmupSteps: 3, decaySteps: 12))
    }
}
