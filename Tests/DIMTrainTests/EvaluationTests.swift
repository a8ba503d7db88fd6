import Foundation
import XCTest
import DIMTestSupport
import DIMCore
import DIMIO
@testable import DIMTrain

/// `dim-dist eval` on a synthetic set whose label is visible (oriented bars): a trained encoder's
/// probe must beat the untrained encoder's by a clear margin.
final class EvaluationTests: XCTestCase {
    func testTrainedEncoderBeatsUntrained() throws {
        let dir = temporaryDirectory()
        try SyntheticDataset.write(directory: dir + "/bars", trainCount: 2000, testCount: 500, classes: 8, channels: 1,
                                   size: 28, seed: 0, shards: 2)
        var cfg = TrainConfig(model: ModelConfig(architecture: .basic28x28, inChannels: 1, convChannels: [16, 32],
                                                 fcUnits: 64,
                                                 globalDim: 16, miUnits: 64),
                              loss: LossConfig(estimator: .jsd), globalBatch: 32)
        cfg.learningRate = 1e-3
        var o = Trainer.Options(dataDirectory: dir + "/bars", outDirectory: dir + "/run", totalSteps: 300)
        o.quiet = true
        try Trainer(config: cfg, options: o, comm: SingleProcess()).run()
        let ckpt = CheckpointDirectory(path: dir + "/run/checkpoints").latest()!
        var accuracy: [Bool: [String: Double]] = [:]
        for untrained in [false, true] {
            let (model, _, _) = try Evaluation.loadModel(checkpoint: ckpt, untrained: untrained)
            if untrained { try Evaluation.calibrateBatchNorm(model: model,
                                                             data: try ShardedSplit(directory: dir + "/bars",
                                                                     split: "train")) }
            let results = try Evaluation.run(model: model, data: dir + "/bars", features: [.fc, .y],
                                             probes: [ProbeConfig(kind: .linear,
                                                                  epochs: 30)], comm: SingleProcess(), log: { _ in })
            accuracy[untrained] = Dictionary(uniqueKeysWithValues: results.map { ($0.feature, $0.testAccuracy) })
        }
        print("synthetic bars, linear probe test accuracy: trained \(accuracy[false]!), untrained \(accuracy[true]!)")
        for f in ["fc", "y"] {
            XCTAssertGreaterThan(accuracy[false]![f]! - accuracy[true]![f]!, 0.15,
                                 "\(f): trained should beat untrained by 15 points")
        }
    }

    func testProbesSeparateSeparableFeatures() {
        // Two Gaussian blobs per class in 5-d: both probes must classify them almost perfectly.
        var rng = SplitMix64(seed: 3)
        func make(_ n: Int) -> FeatureSet {
            var v: [Float] = [], l: [Int] = []
            for i in 0..<n {
                let c = i % 3
                for k in 0..<5 { v.append(rng.normal() * 0.3 + (k == c ? 3 : 0)) }
                l.append(c)
            }
            return FeatureSet(kind: .y, dim: 5, count: n, values: v, labels: l)
        }
        let train = make(600), test = make(300)
        for kind in ProbeConfig.Kind.allCases {
            let probe = Probe(inputs: 5, classes: 3, config: ProbeConfig(kind: kind, epochs: 300))
            probe.fit(train: train)
            XCTAssertGreaterThan(probe.accuracy(test), 0.97, "\(kind)")
        }
        // The protocol: settings from the grid, chosen on a validation split of the training rows.
        var selection = ProbeSelection()
        selection.weightDecays = [0, 1e-2]
        let (fit, validation) = selection.split(train)
        XCTAssertEqual(fit.count + validation.count, train.count)
        XCTAssertEqual(validation.count, 60)
        let r = selection.run(ProbeConfig(kind: .linear, epochs: 300), train: train, test: test, classes: 3)
        XCTAssertTrue(selection.weightDecays.contains(r.weightDecay))
        XCTAssertTrue((1...300).contains(r.epochs))
        XCTAssertGreaterThan(r.validationAccuracy, 0.95)
        XCTAssertGreaterThan(r.testAccuracy, 0.97)
    }

    /// Mirrored training views (`eval --mirror`): the validation split is drawn over images, so no
    /// view of a validation image is fitted, and the fit part keeps every view of its images.
    func testValidationSplitKeepsTheViewsOfAnImageTogether() {
        let n = 50
        // Feature = image id (+ 1000 in the mirrored view), so rows can be traced back.
        let stored = FeatureSet(kind: .y, dim: 1, count: n, values: (0..<n).map { Float($0) }, labels: (0..<n).map { $0 % 3 })
        let mirrored = FeatureSet(kind: .y, dim: 1, count: n, values: (0..<n).map { Float($0 + 1000) },
                                  labels: stored.labels)
        let both = stored.addingView(mirrored)
        XCTAssertEqual(both.views, 2); XCTAssertEqual(both.images, n); XCTAssertEqual(both.count, 2 * n)
        let (fit, validation) = ProbeSelection().split(both)
        XCTAssertEqual(validation.count, 5)
        XCTAssertEqual(fit.count, 2 * 45)
        XCTAssertEqual(fit.views, 2)
        let validationImages = Set(validation.values.map { Int($0) })
        XCTAssertTrue(validationImages.allSatisfy { $0 < 1000 }, "validation takes the stored view only")
        let fitImages = fit.values.map { Int($0) % 1000 }
        XCTAssertTrue(validationImages.isDisjoint(with: fitImages))
        for i in Set(fitImages) {
            XCTAssertEqual(fitImages.filter { $0 == i }.count, 2, "image \(i): both views in the fit part")
        }
        for r in 0..<fit.count { XCTAssertEqual(fit.labels[r], Int(fit.values[r]) % 1000 % 3) }
        // With one view the split is the one probes always used (same images for every encoder).
        let (fit1, validation1) = ProbeSelection().split(stored)
        XCTAssertEqual(validation1.values, validation.values)
        XCTAssertEqual(fit1.values, Array(fit.values.prefix(45)))
    }

    func testMirrorRowsFlipsEveryRowLeftToRight() {
        for w in [1, 4, 5] {
            let x = Tensor([2, 3, 2, w])
            for i in 0..<x.count { x.data[i] = Float(i) }
            mirrorRows(x, width: w)
            for r in 0..<(x.count / w) { for c in 0..<w {
                XCTAssertEqual(x.data[r * w + c], Float(r * w + w - 1 - c), "width \(w), row \(r), column \(c)")
            } }
        }
    }
}
