import Foundation
import XCTest
@testable import DIMCore

/// The estimators' dloss/du, and the prior discriminator including the gradient penalty's
/// hand-written derivative, against finite differences.
final class EstimatorGradientTests: XCTestCase {
    let comm = SingleProcess()

    /// An estimator's loss and gradients on a score block `u` and this rank's positives. The
    /// gradient buffers start at 7 so that an entry the estimator forgets to write shows up.
    func score(_ est: Estimator, u: Tensor, positives: Tensor, columns: Tensor? = nil, layout: ScoreLayout)
        -> (loss: Double, grad: [Float], gradPositives: [Float], gradColumns: [Float]) {
        let grad = Tensor(u.shape, values: [Float](repeating: 7, count: u.count))
        let gradPositives = Tensor(positives.shape, values: [Float](repeating: 7, count: positives.count))
        let gradColumns = columns.map { Tensor($0.shape, values: [Float](repeating: 7, count: $0.count)) }
        let loss = estimatorLoss(est, u: u.data, grad: grad.data, positives: positives.data,
                                 gradPositives: gradPositives.data, columns: columns.map { UnsafePointer($0.data) },
                                 gradColumns: gradColumns?.data, layout: layout, maskValue: -10, comm: comm)
        return (loss, grad.array, gradPositives.array, gradColumns?.array ?? [])
    }

    /// Both gradients of every estimator against finite differences on (u, positives).
    func checkEstimators(layout: ScoreLayout, seed: UInt64, _ label: String,
                         estimators: [Estimator] = Estimator.allCases) {
        let u = randomTensor([layout.rowCount, layout.columns], seed: seed, scale: 3)
        let positives = randomTensor([layout.columns], seed: seed + 100, scale: 3)
        let columns = layout.hasColumnNegatives ? randomTensor([layout.n, layout.rowCount], seed: seed + 200, scale: 3)
                                                : nil
        for est in estimators {
            let (_, grad, gradPositives, gradColumns) = score(est, u: u, positives: positives, columns: columns,
                                                              layout: layout)
            let loss = { self.score(est, u: u, positives: positives, columns: columns, layout: layout).loss }
            checkGradient("\(est) \(label) du", value: u.data, count: u.count, analytic: grad, eps: 1e-2,
                          tolerance: 1e-2, loss: loss)
            checkGradient("\(est) \(label) dpositives", value: positives.data, count: positives.count,
                          analytic: gradPositives, eps: 1e-2, tolerance: 1e-2, loss: loss)
            if let columns {
                checkGradient("\(est) \(label) dcolumns", value: columns.data, count: columns.count,
                              analytic: gradColumns, eps: 1e-2, tolerance: 1e-2, loss: loss)
            }
        }
    }

    /// Sampled rows with column negatives (JSD and DV): every image's global vector against the
    /// rows' sampled patches; an image's own row entry is no negative.
    func testColumnNegativesAgainstFiniteDifferences() {
        let layout = ScoreLayout(mode: .sampledWithColumns, rows: [1, 3], patches: [0, 1], globalBatch: 5,
                                 localBatch: 5, rank: 0, ranks: 1,
                                 positions: 2)
        checkEstimators(layout: layout, seed: 28, "columns", estimators: [.jsd, .dv])
    }

    /// With P = 1 the column negatives are the transposed block, so JSD over every 2-subset of rows
    /// (rows and columns, half each) averages to the full loss.
    func testColumnNegativesKeepJSDUnbiased() {
        let (N, K) = (6, 2)
        let u = randomTensor([N, N], seed: 29, scale: 2)
        let positives = diagonalPositives(u, images: N, positions: 1)
        let full = score(.jsd, u: u, positives: positives, layout: .allRows(images: N, positions: 1)).loss
        var total = 0.0, subsets = 0
        for a in 0..<N { for b in (a + 1)..<N {
            let rows = [a, b]
            let sub = Tensor([K, N], values: rows.flatMap { i in (0..<N).map { u.data[i * N + $0] } })
            // columns[j, t] = G_j . L_{rows[t]} = u[j, rows[t]].
            let columns = Tensor([N, K], values: (0..<N).flatMap { j in rows.map { u.data[j * N + $0] } })
            let layout = ScoreLayout(mode: .sampledWithColumns, rows: rows, patches: [0, 0], globalBatch: N,
                                     localBatch: N, rank: 0, ranks: 1,
                                     positions: 1)
            total += score(.jsd, u: sub, positives: positives, columns: columns, layout: layout).loss
            subsets += 1
        } }
        XCTAssertEqual(total / Double(subsets), full, accuracy: 1e-5 * abs(full))
    }

    func testEstimatorsAgainstFiniteDifferences() {
        checkEstimators(layout: .allRows(images: 4, positions: 3), seed: 21, "all rows")
    }

    /// A sampled row set (rows 1 and 3 of 5): finite differences, including the positives of the
    /// images that are not rows (JSD and DV score them, infoNCE has no anchor there).
    func testSampledRowsAgainstFiniteDifferences() {
        let layout = ScoreLayout(mode: .sampledRows, rows: [1, 3], globalBatch: 5, localBatch: 5, rank: 0, ranks: 1,
                                 positions: 2)
        checkEstimators(layout: layout, seed: 23, "sampled")
    }

    /// With sampled rows JSD is still docs/design.md's formula with every positive and the rows'
    /// negatives; infoNCE scores only the rows' positives.
    func testSampledRowsKeepEveryPositive() {
        let (N, P) = (5, 2), rows = [1, 3]
        let layout = ScoreLayout(mode: .sampledRows, rows: rows, globalBatch: N, localBatch: N, rank: 0, ranks: 1,
                                 positions: P)
        let u = randomTensor([rows.count, N * P], seed: 26, scale: 2)
        let positives = randomTensor([N * P], seed: 27, scale: 2)
        var pos = 0.0, neg = 0.0
        for c in 0..<(N * P) { pos += softplus(-Double(positives.data[c])) }
        for (i, image) in rows.enumerated() {
            for c in 0..<(N * P) where c / P != image { neg += softplus(Double(u.data[i * N * P + c])) }
        }
        let jsd = score(.jsd, u: u, positives: positives, layout: layout)
        XCTAssertEqual(jsd.loss, pos / Double(N * P) + neg / Double(rows.count * (N - 1) * P) - 2 * log(2),
                       accuracy: 1e-6)
        let nce = score(.nce, u: u, positives: positives, layout: layout)
        for c in 0..<(N * P) {
            XCTAssertNotEqual(jsd.gradPositives[c], 0, "JSD scores image \(c / P)'s positives")
            XCTAssertEqual(nce.gradPositives[c] != 0, rows.contains(c / P), "infoNCE anchors are rows only")
        }
    }

    /// The positives of an all-rows block are its diagonal spans (what Scorer computes apart).
    func diagonalPositives(_ u: Tensor, images N: Int, positions P: Int) -> Tensor {
        Tensor([N * P], values: (0..<(N * P)).map { u.data[($0 / P) * N * P + $0] })
    }

    /// JSD and infoNCE over a uniform sample of K rows are unbiased: their mean over every K-subset
    /// of the N rows is the full loss (DV takes a log of the sampled mean, so it is not).
    func testSampledJSDAndInfoNCEAreUnbiased() {
        let (N, P, K) = (6, 3, 2)
        let u = randomTensor([N, N * P], seed: 24, scale: 2)
        let positives = diagonalPositives(u, images: N, positions: P)
        for est in [Estimator.jsd, .nce] {
            let full = score(est, u: u, positives: positives, layout: .allRows(images: N, positions: P)).loss
            var total = 0.0, subsets = 0
            for a in 0..<N { for b in (a + 1)..<N {
                let sub = Tensor([K, N * P],
                                 values: Array(u.array[(a * N * P)..<((a + 1) * N * P)] + u.array[(b * N * P)..<((b + 1) * N * P)]))
                let layout = ScoreLayout(mode: .sampledRows, rows: [a, b], globalBatch: N, localBatch: N, rank: 0,
                                         ranks: 1, positions: P)
                total += score(est, u: sub, positives: positives, layout: layout).loss
                subsets += 1
            } }
            XCTAssertEqual(total / Double(subsets), full, accuracy: 1e-5 * abs(full), "\(est)")
        }
    }

    /// Rows split over threads give the same numbers as one thread (the blocks are fixed).
    func testEstimatorsOnSeveralThreadsEqualOneThread() {
        let (N, P) = (64, 64)
        let u = randomTensor([N, N * P], seed: 25, scale: 4)
        let positives = diagonalPositives(u, images: N, positions: P)
        let layout = ScoreLayout.allRows(images: N, positions: P)
        let before = blasThreads()
        defer { setBLASThreads(before) }
        for est in Estimator.allCases {
            var results: [(Double, [Float], [Float], [Float])] = []
            for threads in [1, 2] {
                setBLASThreads(threads)
                results.append(score(est, u: u, positives: positives, layout: layout))
            }
            XCTAssertEqual(results[0].0, results[1].0, "\(est) loss")
            XCTAssertEqual(results[0].1, results[1].1, "\(est) gradient")
            XCTAssertEqual(results[0].2, results[1].2, "\(est) positives' gradient")
        }
    }

    /// The float32 SIMD kernels against Double libm on values from -100 to 100.
    func testVectorKernelsMatchDouble() {
        let count = 1003
        let x = (0..<count).map { Float(-100 + 200 * Double($0) / Double(count - 1)) }
        var g = [Float](repeating: 0, count: count)
        for sign: Float in [1, -1] {
            let sum = softplusSum(x, count: count, sign: sign, gradScale: 0.5, grad: &g)
            let expected = x.reduce(0.0) { $0 + softplus(Double(sign * $1)) }
            XCTAssertEqual(sum, expected, accuracy: 1e-6 * expected)
            // In place (JSD's column terms write the sigmoids over their scores): the same bits.
            var inPlace = x
            let sumInPlace = inPlace.withUnsafeMutableBufferPointer {
                softplusSum($0.baseAddress!, count: count, sign: sign, gradScale: 0.5, grad: $0.baseAddress!)
            }
            XCTAssertEqual(sumInPlace, sum)
            XCTAssertEqual(inPlace, g)
            for i in 0..<count {
                let s = 0.5 * sigmoid(Double(sign * x[i]))
                XCTAssertEqual(Double(g[i]), s, accuracy: max(3e-7 * s, 1e-37), "sigmoid(\(sign * x[i]))")
                // Each softplus alone (a one-value tail runs the same vector code), to 3e-7 relative;
                // below float's smallest normal number (x < -87.3) the kernels give 0, never a subnormal.
                var one: Float = 0
                let value = softplusSum([x[i]], count: 1, sign: sign, gradScale: 1, grad: &one)
                let exact = softplus(Double(sign * x[i]))
                XCTAssertEqual(value, exact, accuracy: max(3e-7 * exact, Double(Float.leastNormalMagnitude)), "softplus(\(sign * x[i]))")
            }
        }
        let shifted = x.map { $0 / 10 }
        let m = maximum(shifted, count: count, initial: -.infinity)
        XCTAssertEqual(m, shifted.max()!)
        let e = expSum(shifted, count: count, shift: m, gradScale: 2, grad: &g)
        let expected = shifted.reduce(0.0) { $0 + Foundation.exp(Double($1 - m)) }
        XCTAssertEqual(e, expected, accuracy: 1e-6 * expected)
        for i in 0..<count { XCTAssertEqual(Double(g[i]), 2 * Foundation.exp(Double(shifted[i] - m)),
                                            accuracy: 3e-7 * 2) }
    }

    func testEstimatorValuesOnAKnownCase() {
        // float32 kernels: agreement to ~1e-8 absolute on these O(1) values.
        // N = 2, P = 1: u = [[a, b], [c, d]], positives a and d.
        let (a, b, c, d) = (1.0, -0.5, 0.25, 2.0)
        let u = Tensor([2, 2], values: [Float(a), Float(b), Float(c), Float(d)])
        let positives = Tensor([2], values: [Float(a), Float(d)])
        let block = ScoreLayout.allRows(images: 2, positions: 1)
        let jsd = score(.jsd, u: u, positives: positives, layout: block).loss
        XCTAssertEqual(jsd, (softplus(-a) + softplus(-d)) / 2 + (softplus(b) + softplus(c)) / 2 - 2 * log(2),
                       accuracy: 1e-7)
        let nce = score(.nce, u: u, positives: positives, layout: block).loss
        let lse0 = log(exp(b) + exp(-10)), lse1 = log(exp(c) + exp(-10))
        XCTAssertEqual(nce, (softplus(lse0 - a) + softplus(lse1 - d)) / 2, accuracy: 1e-7)
        let dv = score(.dv, u: u, positives: positives, layout: block).loss
        XCTAssertEqual(dv, -(a + d) / 2 + log((exp(b) + exp(c)) / 2), accuracy: 1e-7)
    }

    func testDiscriminatorInputGradient() {
        let store = ParameterStore()
        let disc = PriorDiscriminator(store, inFeatures: 4, hidden: [7, 5])
        store.allocate(seed: 31)
        let x = randomTensor([4, 3], seed: 32)
        for i in 0..<x.count { x.data[i] = 0.5 + 0.5 * x.data[i] }
        disc.forward(x)
        let gx = disc.inputGradient().array
        // Sum over samples of D(x_s): its gradient with respect to x is dD/dx per sample.
        checkGradient("dD/dx", value: x.data, count: x.count, analytic: gx) {
            let out = disc.forward(x)
            return (0..<out.count).reduce(0.0) { $0 + Double(out.data[$1]) }
        }
    }

    func testDiscriminatorLossWithGradientPenalty() {
        let store = ParameterStore()
        let disc = PriorDiscriminator(store, inFeatures: 4, hidden: [8, 6])
        store.allocate(seed: 41)
        let real = randomTensor([4, 5], seed: 42), fake = randomTensor([4, 5], seed: 43)
        for t in [real, fake] { for i in 0..<t.count { t.data[i] = 0.5 + 0.5 * t.data[i] } }
        let total = {
            disc.lossAndBackward(real, real: true, globalBatch: 5, penaltyWeight: 1)
                + disc.lossAndBackward(fake, real: false, globalBatch: 5, penaltyWeight: 1)
        }
        store.zeroGrads()
        _ = total()
        let analytic = store.parameters.map { $0.grad.array }
        for (p, g) in zip(store.parameters, analytic) where p.name.hasSuffix("weight") || p.name.hasSuffix("bias") {
            checkGradient("disc \(p.name)", value: p.value.data, count: p.count, analytic: g, eps: 1e-3) {
                store.zeroGrads()
                return total()
            }
        }
    }

    func testPenaltyTermAloneAgainstFiniteDifferences() {
        // The penalty's weight gradient in isolation: loss = c * sum_s ||dD/dx_s||^2.
        let store = ParameterStore()
        let disc = PriorDiscriminator(store, inFeatures: 3, hidden: [6, 4])
        store.allocate(seed: 51)
        let x = randomTensor([3, 4], seed: 52)
        let penalty: () -> Double = {
            disc.forward(x)
            let g = disc.inputGradient()
            return 0.7 * (0..<g.count).reduce(0.0) { $0 + Double(g.data[$1]) * Double(g.data[$1]) }
        }
        store.zeroGrads()
        _ = penalty()
        disc.penaltyBackward(coefficient: 0.7)
        for p in store.parameters where p.name.hasSuffix("weight") {
            checkGradient("penalty \(p.name)", value: p.value.data, count: p.count, analytic: p.grad.array,
                          loss: penalty)
        }
    }
}
