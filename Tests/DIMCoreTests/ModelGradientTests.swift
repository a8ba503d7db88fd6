import XCTest
@testable import DIMCore

/// The scoring path (transpose, gather, score GEMM, estimator, backward GEMMs) against finite
/// differences. The whole model is compared with PyTorch's float64 reference files instead
/// (DIMTrainTests.ReferenceFileTests): a float32 finite difference through stacked BatchNorm+ReLU
/// sits at its own rounding floor.
final class ModelGradientTests: XCTestCase {
    let comm = SingleProcess()

    func testScorerGradients() {
        // All rows, and 2 sampled rows of 4: JSD and DV still score every image's positives, so every
        // G gets a gradient; infoNCE's anchors are the rows, so only the 2 sampled images' G do.
        let (U, n, P) = (6, 4, 3)
        for rows in [RowSelection.all, RowSelection(limit: 2, seed: 5)] {
            for est in Estimator.allCases {
                let G = randomTensor([U, n], seed: 71, scale: 0.7)
                let L = randomTensor([U, n, P], seed: 72, scale: 0.7)
                let scorer = Scorer()
                _ = scorer.forward(G: G, L: L, positions: P, estimator: est, rows: rows, step: 3, weight: 0.8,
                                   maskValue: -10, comm: comm)
                scorer.backward(comm: comm)
                let dG = scorer.gradG.array, dL = scorer.gradL.array
                // The gradients are those of weight x the (unweighted) loss that forward returns.
                let f = {
                    0.8 * Scorer().forward(G: G, L: L, positions: P, estimator: est, rows: rows, step: 3,
                                           maskValue: -10, comm: self.comm)
                }
                checkGradient("\(est) \(rows) dG", value: G.data, count: G.count, analytic: dG, eps: 1e-2,
                              tolerance: 1e-2, loss: f)
                checkGradient("\(est) \(rows) dL", value: L.data, count: L.count, analytic: dL, eps: 1e-2,
                              tolerance: 1e-2, loss: f)
                if rows != .all {
                    let zeroColumns = (0..<n).filter { j in (0..<U).allSatisfy { dG[$0 * n + j] == 0 } }
                    XCTAssertEqual(zeroColumns.count, est == .nce ? n - 2 : 0, "\(est): images whose G is scored")
                }
            }
        }
    }

    func testModelParameterCountsMatchTheDesign() {
        // DESIGN.md §8: 14.1 M parameters (encoder 4.92 M, local head 4.73 M, global head 4.47 M).
        let model = DIMModel(config: ModelConfig(architecture: .basic32x32, inChannels: 3))
        let count = { (prefix: String) in model.params.parameters.filter { $0.name.hasPrefix(prefix) }.reduce(0) { $0 + $1.count } }
        XCTAssertEqual(Double(count("encoder.")) / 1e6, 4.92, accuracy: 0.01)
        XCTAssertEqual(Double(count("local_mi.")) / 1e6, 4.73, accuracy: 0.01)
        XCTAssertEqual(Double(count("global_mi.")) / 1e6, 4.47, accuracy: 0.01)
        XCTAssertEqual(model.config.localPositions, 64)
    }

    func testStepIsDeterministicAndLossFalls() {
        let cfg = ModelConfig(architecture: .basic28x28, inChannels: 1, convChannels: [4, 8], fcUnits: 16,
                              globalDim: 6, miUnits: 12)
        let x = randomTensor([1, 6, 28, 28], seed: 81)
        var finals: [Double] = []
        for _ in 0..<2 {
            let model = DIMModel(config: cfg, seed: 9)
            let adam = Adam(count: model.params.count, lr: 1e-3)
            var first = 0.0, last = 0.0
            for step in 0..<8 {
                let l = model.forwardBackward(x, comm: comm).total
                adam.update(model.params)
                if step == 0 { first = l }
                last = l
            }
            XCTAssertLessThan(last, first, "training on one batch must lower the loss")
            finals.append(last)
        }
        XCTAssertEqual(finals[0], finals[1], "same seed, same result")
    }
}
