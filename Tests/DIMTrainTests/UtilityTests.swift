import Foundation
import XCTest
import DIMTestSupport
import DIMCore
import DIMIO
@testable import DIMTrain

/// `dim-dist eval utility`: the utility arithmetic, fine-tuning on two ranks against one, a set
/// where pretraining plainly helps, the classifier checkpoint, and bad input through the binary.
final class UtilityTests: XCTestCase {
    static let model = ModelConfig(architecture: .basic28x28, inChannels: 1, convChannels: [16, 32], fcUnits: 64,
                                   globalDim: 16, miUnits: 64)

    func testScratchLabelsAreInterpolatedInLogN() {
        let curve = [(labels: 100, accuracy: 0.3), (labels: 1000, accuracy: 0.5), (labels: 10000, accuracy: 0.7)]
        let (n, bound) = Utility.scratchLabels(for: 0.6, curve: curve)
        XCTAssertEqual(n, pow(10, 3.5), accuracy: 1e-6)
        XCTAssertEqual(bound, .exact)
        XCTAssertEqual(Utility.scratchLabels(for: 0.5, curve: curve).0, 1000, accuracy: 1e-9)
        XCTAssertEqual(Utility.scratchLabels(for: 0.2, curve: curve).1, .atMost)
        XCTAssertEqual(Utility.scratchLabels(for: 0.8, curve: curve).1, .atLeast)
        // U(100) when fine-tuning with 100 labels matches scratch with 1000: 9 (saves 900 labels).
        XCTAssertEqual(Utility.utility(labels: 100, fineTunedAccuracy: 0.5, curve: curve).value, 9, accuracy: 1e-9)
        // A dip in the scratch curve does not make N_scratch jump back: the curve is made monotone.
        let dip = [(labels: 100, accuracy: 0.5), (labels: 1000, accuracy: 0.4), (labels: 10000, accuracy: 0.7)]
        XCTAssertEqual(Utility.scratchLabels(for: 0.6, curve: dip).0, pow(10, 3.5), accuracy: 1e-6)
        XCTAssertEqual(Utility.scratchLabels(for: 0.45, curve: dip).1, .atMost)
    }

    /// Fine-tuning at np = 2 (per-rank batch B/2, synchronised BatchNorm, GradientSync) computes
    /// what np = 1 computes with batch B: the same chosen epoch, the same accuracies, the same
    /// weights to float rounding. Both the scratch and the fine-tuned start.
    func testFineTuningOnTwoRanksMatchesOne() throws {
        let dir = temporaryDirectory()
        try SyntheticDataset.write(directory: dir, trainCount: 400, testCount: 100, classes: 4, channels: 1, size: 28,
                                   seed: 3, shards: 2)
        let splits = try LabelledSplits(directory: dir)
        var cfg = FineTuneConfig()
        cfg.epochs = 3; cfg.warmupEpochs = 1; cfg.batch = 32; cfg.minimumStepsPerEpoch = 4; cfg.peakRate = 1e-3
        let pretrained = DIMModel(config: Self.model, seed: 9)
        for fineTuned in [false, true] {
            let runs = try InProcessGroup.run(ranks: 2) { comm -> (FineTuning.Result, [Float]) in
                let c = Classifier(config: Self.model, feature: .fc, classes: splits.classes, seed: 1)
                if fineTuned { c.loadEncoder(from: pretrained) }
                let r = try FineTuning(classifier: c, config: cfg, comm: comm).run(splits: splits, examples: 0..<96,
                                                                                   seed: 4)
                return (r, Array(UnsafeBufferPointer(start: c.params.values, count: c.params.count)))
            }
            let c = Classifier(config: Self.model, feature: .fc, classes: splits.classes, seed: 1)
            if fineTuned { c.loadEncoder(from: pretrained) }
            let one = try FineTuning(classifier: c, config: cfg, comm: SingleProcess()).run(splits: splits,
                                                                                           examples: 0..<96, seed: 4)
            let params = Array(UnsafeBufferPointer(start: c.params.values, count: c.params.count))
            for (r, p) in runs {
                XCTAssertEqual(r.epoch, one.epoch)
                XCTAssertEqual(r.steps, one.steps)
                XCTAssertEqual(r.testAccuracy, one.testAccuracy, accuracy: 0.011)
                let worst = zip(p, params).map { abs($0 - $1) }.max()!
                print("fine-tuning (\(fineTuned ? "fine-tuned" : "scratch")) np=2 vs np=1: worst parameter "
                      + "difference \(worst), test \(r.testAccuracy) vs \(one.testAccuracy)")
                XCTAssertLessThan(worst, 1e-4)
            }
            XCTAssertEqual(runs[0].1, runs[1].1, "both ranks hold the same weights")
        }
    }

    /// A pretraining that plainly helps: the encoder of a checkpoint fine-tuned on all 1,800
    /// labels of oriented bars (eval utility's own classifier checkpoint, so this also shows that
    /// checkpoint is a working input), judged with 16, 64 and 256 labels: fine-tuning it must beat
    /// training from scratch at 16 labels, so U(16) > 0. Runs the command's code (UtilityEvaluation)
    /// and checks what it writes and that a rerun picks up the recorded results.
    func testAPretrainingThatHelpsHasPositiveUtilityWithFewLabels() throws {
        let dir = temporaryDirectory()
        try SyntheticDataset.write(directory: dir + "/bars", trainCount: 2000, testCount: 500, classes: 8, channels: 1,
                                   size: 28, seed: 0, shards: 2)
        var train = TrainConfig(model: Self.model, loss: LossConfig(estimator: .jsd), globalBatch: 32)
        train.learningRate = 1e-3
        var o = Trainer.Options(dataDirectory: dir + "/bars", outDirectory: dir + "/run", totalSteps: 1)
        o.quiet = true
        try Trainer(config: train, options: o, comm: SingleProcess()).run()
        let start = CheckpointDirectory(path: dir + "/run/checkpoints").latest()!
        var supervised = UtilityEvaluation.Options(checkpoint: start, data: dir + "/bars", labels: [nil],
                                                   out: dir + "/supervised")
        supervised.fineTune.epochs = 4; supervised.fineTune.warmupEpochs = 1; supervised.fineTune.batch = 64
        supervised.fineTune.peakRate = 1e-3
        let s = try UtilityEvaluation(options: supervised, comm: SingleProcess(), log: { _ in }).run()
        XCTAssertEqual(s.map(\.labels), [1800])
        let pretrained = dir + "/supervised/fine-tuned-N1800.h5"

        var u = UtilityEvaluation.Options(checkpoint: pretrained, data: dir + "/bars", labels: [16, 64, 256],
                                          out: dir + "/utility")
        u.fineTune = supervised.fineTune
        u.fineTune.epochs = 3; u.fineTune.minimumStepsPerEpoch = 10
        var lines: [String] = []
        let rows = try UtilityEvaluation(options: u, comm: SingleProcess(), log: { lines.append($0) }).run()
        for r in rows {
            print("bars, \(r.labels) labels: scratch \(r.scratch), fine-tuned \(r.fineTuned), frozen \(r.frozen), "
                  + "U \(r.utilityBound.rawValue) \(r.utility)")
        }
        XCTAssertEqual(rows.map(\.labels), [16, 64, 256])
        XCTAssertGreaterThan(rows[0].fineTuned, rows[0].scratch + 0.1, "fine-tuning should beat scratch at 16 labels")
        XCTAssertGreaterThan(rows[0].utility, 0)
        XCTAssertGreaterThan(rows[0].frozen, rows[0].scratch, "the frozen probe on good features beats scratch")
        // Every piece was recorded; a second run finds them all and runs nothing.
        XCTAssertEqual(UtilityRecord.read(dir + "/utility/utility.jsonl").count, 9)
        lines = []
        let again = try UtilityEvaluation(options: u, comm: SingleProcess(), log: { lines.append($0) }).run()
        XCTAssertEqual(again, rows)
        XCTAssertTrue(lines.contains { $0.contains("9 result(s) already") && $0.contains("0 to run") }, "\(lines)")
        // The fine-tuned encoder's checkpoint: `eval` reads it, its encoder moved, its head is there.
        let (model, _, _) = try Evaluation.loadModel(checkpoint: dir + "/utility/fine-tuned-N16.h5", untrained: false)
        let original = try Evaluation.loadModel(checkpoint: pretrained, untrained: false).0
        let w = model.params["encoder.conv0.weight"]!, w0 = original.params["encoder.conv0.weight"]!
        XCTAssertNotEqual(Array(UnsafeBufferPointer(start: w.value.data, count: w.count)),
                          Array(UnsafeBufferPointer(start: w0.value.data, count: w0.count)))
        let f = try HDF5File(dir + "/utility/fine-tuned-N16.h5")
        let (head, shape): ([Float], [Int]) = try f.read("classifier/classifier.fc.weight")
        XCTAssertEqual(shape, [8, 64])
        XCTAssertTrue(head.allSatisfy(\.isFinite))
    }
}
