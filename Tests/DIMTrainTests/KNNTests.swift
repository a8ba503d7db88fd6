import Foundation
import XCTest
import DIMTestSupport
import DIMCore
import DIMIO
@testable import DIMTrain

/// The kNN monitor: the vote against a plain re-implementation, and the in-training curve.
final class KNNTests: XCTestCase {
    /// Random features: the GEMM + heap implementation must give the accuracy of sorting every
    /// similarity and voting with the k largest (ties are measure-zero with random floats).
    func testVoteMatchesSortingEverySimilarity() {
        var rng = SplitMix64(seed: 5)
        func make(_ n: Int) -> FeatureSet {
            let d = 7
            var v: [Float] = [], l: [Int] = []
            for i in 0..<n {
                let c = i % 3
                for k in 0..<d { v.append(rng.normal() + (k == c ? 1.5 : 0)) }
                l.append(c)
            }
            return FeatureSet(kind: .y, dim: d, count: n, values: v, labels: l)
        }
        let train = make(700), test = make(300)
        let knn = KNNClassifier(k: 25, temperature: 0.1)
        let fast = knn.accuracy(train: train, test: test, classes: 3)
        let b = KNNClassifier.normalised(train), q = KNNClassifier.normalised(test)
        var correct = 0
        for i in 0..<test.count {
            var sims: [(Float, Int)] = []
            for j in 0..<train.count {
                var s: Float = 0
                for k in 0..<train.dim { s += q[i * train.dim + k] * b[j * train.dim + k] }
                sims.append((s, j))
            }
            sims.sort { $0.0 > $1.0 }
            var votes = [Double](repeating: 0, count: 3)
            for (s, j) in sims.prefix(25) { votes[train.labels[j]] += Double(expf(s / 0.1)) }
            if votes.indices.max(by: { votes[$0] < votes[$1] }) == test.labels[i] { correct += 1 }
        }
        XCTAssertEqual(fast, Double(correct) / Double(test.count), accuracy: 1.5 / Double(test.count))
        XCTAssertGreaterThan(fast, 0.6, "separable classes")
    }

    /// `train --knn-every`: records at step 0 (the untrained encoder), every N steps and at the end.
    func testTrainingWritesTheKNNCurve() throws {
        let dir = temporaryDirectory()
        try SyntheticDataset.write(directory: dir + "/bars", trainCount: 300, testCount: 100, classes: 4, channels: 1,
                                   size: 28, seed: 0, shards: 1)
        let cfg = TrainConfig(model: UtilityTests.model, loss: LossConfig(estimator: .jsd), globalBatch: 16)
        var o = Trainer.Options(dataDirectory: dir + "/bars", outDirectory: dir + "/run", totalSteps: 5)
        o.quiet = true
        o.knnEvery = 2
        try Trainer(config: cfg, options: o, comm: SingleProcess()).run()
        let records = ProbeRecord.read(dir + "/run/metrics.jsonl").filter { $0.probe == "knn" }
        XCTAssertEqual(records.map(\.step), [0, 0, 2, 2, 4, 4, 5, 5])
        XCTAssertEqual(Set(records.map(\.feature)), ["fc", "y"])
        XCTAssertTrue(records.allSatisfy { (0...1).contains($0.testAccuracy) })
    }
}
