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
        for rows in [RowSelection.all, RowSelection(scoredRows: 2, seed: 5)] {
            for est in Estimator.allCases {
                let G = randomTensor([U, n], seed: 71, scale: 0.7)
                let L = randomTensor([U, n, P], seed: 72, scale: 0.7)
                let scorer = Scorer()
                _ = scorer.forward(G: G, L: L, positions: P, estimator: est, rows: rows, step: 3, weight: 0.8,
                                   maskValue: -10, comm: comm)
                scorer.backward(comm: comm)
                let dG = scorer.gradG.array, dL = scorer.gradL.array
                if scorer.columnScores.count > 0 {
                    checkSplitBackward(scorer, G: G, L: L, positions: P, "\(est)")
                } else {
                    // The gradients are those of weight x the (unweighted) loss that forward returns.
                    let f = {
                        0.8 * Scorer().forward(G: G, L: L, positions: P, estimator: est, rows: rows, step: 3,
                                               maskValue: -10, comm: self.comm)
                    }
                    checkGradient("\(est) \(rows) dG", value: G.data, count: G.count, analytic: dG, eps: 1e-2,
                                  tolerance: 1e-2, loss: f)
                    checkGradient("\(est) \(rows) dL", value: L.data, count: L.count, analytic: dL, eps: 1e-2,
                                  tolerance: 1e-2, loss: f)
                }
                if rows != .all {
                    let zeroColumns = (0..<n).filter { j in (0..<U).allSatisfy { dG[$0 * n + j] == 0 } }
                    XCTAssertEqual(zeroColumns.count, est == .nce ? n - 2 : 0, "\(est): images whose G is scored")
                }
            }
        }
    }

    /// With column negatives the Scorer's gradients are not the loss's derivative but its split
    /// (docs/bounded-negatives.md): dG = positives' part + 2 x the column negatives' part, dL =
    /// positives' part + 2 x the row block's part. Written out here from the score gradients (which
    /// the estimator tests check against finite differences), one rank, in plain loops.
    func checkSplitBackward(_ scorer: Scorer, G: Tensor, L: Tensor, positions P: Int, _ label: String,
                            file: StaticString = #filePath, line: UInt = #line) {
        let U = G.shape[0], R = scorer.columnScores.shape[1]
        let width = scorer.rowVectors.shape[1]
        XCTAssertEqual(width, 2 * U, "rows carry a patch vector", file: file, line: line)
        let rowsV = scorer.rowVectors.array
        let (expectG, expectL) = splitGradients(G: G, L: L, positions: P, rows: R,
                                                rowGlobal: { r, u in rowsV[r * width + u] },
                                                rowPatch: { r, u in rowsV[r * width + U + u] },
                                                gradScores: scorer.gradScores.array,
                                                gradColumns: scorer.gradColumnScores.array,
                                                gradPositives: scorer.gradPositives.array)
        let dG = scorer.gradG.array, dL = scorer.gradL.array
        for i in 0..<expectG.count {
            XCTAssertEqual(Double(dG[i]), expectG[i], accuracy: 1e-5 + 1e-4 * abs(expectG[i]), "\(label) dG[\(i)]",
                           file: file, line: line)
        }
        for i in 0..<expectL.count {
            XCTAssertEqual(Double(dL[i]), expectL[i], accuracy: 1e-5 + 1e-4 * abs(expectL[i]), "\(label) dL[\(i)]",
                           file: file, line: line)
        }
        XCTAssertGreaterThan(expectG.map(abs).max() ?? 0, 1e-4, "the check has something to compare", file: file,
                             line: line)
    }

    /// The split gradients of bounded JSD are unbiased: averaged over every row set of K = 2 of
    /// N = 4 images and every choice of the rows' patches, they equal the full loss's gradients
    /// (all rows, checked against finite differences above). With `checkSplitBackward` (the
    /// Scorer computes the split) this shows the Scorer's bounded gradients unbiased.
    func testSplitGradientsAreUnbiased() {
        let (U, N, P, K) = (5, 4, 2, 2)
        let G = randomTensor([U, N], seed: 91, scale: 0.8)
        let L = randomTensor([U, N, P], seed: 92, scale: 0.8)
        let cols = N * P
        let full = Scorer()
        _ = full.forward(G: G, L: L, positions: P, estimator: .jsd, rows: .all, step: 0, maskValue: -10, comm: comm)
        full.backward(comm: comm)
        let dot = { (j: Int, c: Int) -> Float in (0..<U).reduce(0) { $0 + G.data[$1 * N + j] * L.data[$1 * cols + c] } }
        var meanG = [Double](repeating: 0, count: U * N), meanL = [Double](repeating: 0, count: U * cols)
        var cases = 0
        for a in 0..<N { for b in (a + 1)..<N { for pa in 0..<P { for pb in 0..<P {
            let rows = [a, b], patches = [pa, pb]
            let layout = ScoreLayout(mode: .sampledWithColumns, rows: rows, patches: patches, globalBatch: N,
                                     localBatch: N, rank: 0, ranks: 1, positions: P)
            let u = Tensor([K, cols], values: rows.flatMap { i in (0..<cols).map { dot(i, $0) } })
            let positives = Tensor([cols], values: (0..<cols).map { dot($0 / P, $0) })
            let columns = Tensor([N, K], values: (0..<N).flatMap { j in (0..<K).map { dot(j, rows[$0] * P + patches[$0]) } })
            let grad = Tensor([K, cols]), gradPositives = Tensor([cols]), gradColumns = Tensor([N, K])
            _ = estimatorLoss(.jsd, u: u.data, grad: grad.data, positives: positives.data,
                              gradPositives: gradPositives.data,
                              columns: columns.data, gradColumns: gradColumns.data, layout: layout, maskValue: -10, comm: comm)
            let (dG, dL) = splitGradients(G: G, L: L, positions: P, rows: K,
                                          rowGlobal: { t, u in G.data[u * N + rows[t]] },
                                          rowPatch: { t, u in L.data[u * cols + rows[t] * P + patches[t]] },
                                          gradScores: grad.array, gradColumns: gradColumns.array,
                                          gradPositives: gradPositives.array)
            for i in 0..<meanG.count { meanG[i] += dG[i] }
            for i in 0..<meanL.count { meanL[i] += dL[i] }
            cases += 1
        } } } }
        XCTAssertEqual(cases, 6 * P * P)
        for (i, v) in full.gradG.array.enumerated() {
            XCTAssertEqual(meanG[i] / Double(cases), Double(v), accuracy: 1e-6 + 1e-4 * abs(Double(v)), "dG[\(i)]")
        }
        for (i, v) in full.gradL.array.enumerated() {
            XCTAssertEqual(meanL[i] / Double(cases), Double(v), accuracy: 1e-6 + 1e-4 * abs(Double(v)), "dL[\(i)]")
        }
    }

    /// The split backward written out (one rank): dG = positives' part + 2 x the column negatives'
    /// part, dL = positives' part + 2 x the row block's part. `rowGlobal(r, u)` and `rowPatch(r, u)`
    /// are unit u of row r's global vector and of its sampled patch vector.
    func splitGradients(G: Tensor, L: Tensor, positions P: Int, rows R: Int, rowGlobal: (Int, Int) -> Float,
                        rowPatch: (Int, Int) -> Float, gradScores ds: [Float], gradColumns dc: [Float],
                        gradPositives dp: [Float]) -> (dG: [Double], dL: [Double]) {
        let U = G.shape[0], n = G.count / U, cols = n * P
        var dG = [Double](repeating: 0, count: U * n), dL = [Double](repeating: 0, count: U * cols)
        for u in 0..<U {
            for j in 0..<n {
                var g = 0.0
                for l in 0..<P { g += Double(dp[j * P + l]) * Double(L.data[u * cols + j * P + l]) }
                for r in 0..<R { g += 2 * Double(dc[j * R + r]) * Double(rowPatch(r, u)) }
                dG[u * n + j] = g
            }
            for c in 0..<cols {
                var v = Double(G.data[u * n + c / P]) * Double(dp[c])
                for r in 0..<R { v += 2 * Double(ds[r * cols + c]) * Double(rowGlobal(r, u)) }
                dL[u * cols + c] = v
            }
        }
        return (dG, dL)
    }

    func testModelParameterCountsMatchTheDesign() {
        // docs/design.md §10: 14.1 M parameters (encoder 4.92 M, local head 4.73 M, global head 4.47 M).
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
