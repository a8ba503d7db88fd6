import Foundation
import DIMCore
import DIMIO

/// `dim-dist eval utility`: for each number of labels N (and seed), (1) the encoder with a linear
/// classifier trained from scratch, (2) the same fine-tuned from the checkpoint, (3) a frozen
/// linear probe on the checkpoint's features; one protocol (FineTuneConfig, LabelledSplits) for
/// all three, settings chosen on validation, accuracy on test; U(N) from the scratch curve.
/// Each finished piece is appended to `OUT/utility.jsonl`, so a rerun continues where an
/// interrupted one stopped; the fine-tuned encoder of each N (first seed) is written as a
/// checkpoint `OUT/fine-tuned-N<n>.h5` that `encode`, `eval` and the PyTorch export read.
public final class UtilityEvaluation {
    public struct Options {
        /// A checkpoint file (RunDirectory.checkpoint resolves what users type).
        public var checkpoint: String
        public var data: String
        /// Label counts; nil: every labelled training image outside validation.
        public var labels: [Int?]
        public var seeds = 1
        public var fineTune = FineTuneConfig()
        /// Probe epochs: at least this many, and up to 200 when the labels are few (an epoch of
        /// 250 labels is one step), for about 200,000 examples seen.
        public var probeEpochs = 20
        public var precision = Precision.fp32
        public var out: String
        public init(checkpoint: String, data: String, labels: [Int?], out: String) {
            self.checkpoint = checkpoint; self.data = data; self.labels = labels; self.out = out
        }
    }

    public let options: Options
    public let comm: Communicator
    public var watchdog: Watchdog?
    let log: (String) -> Void

    public init(options: Options, comm: Communicator, log: @escaping (String) -> Void) {
        self.options = options; self.comm = comm; self.log = log
    }

    public var resultsFile: String { options.out + "/utility.jsonl" }

    /// Runs what `utility.jsonl` does not hold yet and returns the table of everything asked for.
    public func run() throws -> [UtilityRow] {
        let o = options
        let (pretrained, cfg, info) = try Evaluation.loadModel(checkpoint: o.checkpoint, untrained: false)
        let splits = try LabelledSplits(directory: o.data)
        let m = splits.train.manifest
        guard m.channels == cfg.model.inChannels, m.height == cfg.model.imageSize, m.width == cfg.model.imageSize else {
            throw DIMError("\(o.checkpoint): its \(cfg.model.architecture.rawValue) encoder takes "
                + "\(cfg.model.inChannels)x\(cfg.model.imageSize)x\(cfg.model.imageSize) images, \(o.data) holds "
                + "\(m.channels)x\(m.height)x\(m.width)")
        }
        let ns = try o.labels.map { try splits.labelled($0).count }
        guard o.seeds >= 1 else { throw DIMError("--seeds must be at least 1") }
        if comm.isRoot { try FileManager.default.createDirectory(atPath: o.out, withIntermediateDirectories: true) }
        comm.barrier()
        let protocolText = try jsonLine(o.fineTune)
        let earlier = UtilityRecord.read(resultsFile).filter {
            $0.checkpoint == o.checkpoint && $0.protocol_ == protocolText
        }
        var records = earlier.filter { r in ns.contains(r.labels) && r.seed < o.seeds }
        let done = Set(records.map(\.key))
        var work: [(UtilityRecord.Method, Int, UInt64)] = []
        for seed in 0..<UInt64(o.seeds) { for n in ns { for method in UtilityRecord.Method.allCases
            where !done.contains("\(method.rawValue) \(n) \(seed)") { work.append((method, n, seed)) } } }
        log("eval utility: \(o.checkpoint) (step \(info.step), \(cfg.model.architecture.rawValue)) on \(o.data): "
            + "labels \(ns.map(String.init).joined(separator: ", ")) (validation: \(splits.validation.count) "
            + "images, test: \(splits.test.count)), \(o.seeds) seed(s), \(o.fineTune.epochs) epochs, batch "
            + "\(o.fineTune.batch), classifier on \(o.fineTune.feature.rawValue)")
        if !done.isEmpty { log("  \(done.count) result(s) already in \(resultsFile); \(work.count) to run") }
        // Work in "images through the network" (a training image counts 3: forward and backward),
        // for the ETA.
        func cost(_ w: (UtilityRecord.Method, Int, UInt64)) -> Double {
            let f = o.fineTune, batch = Double(f.globalBatch(labels: w.1, ranks: comm.size))
            let steps = Double(f.epochs * max(w.1 / Int(batch), f.minimumStepsPerEpoch))
            let v = Double(splits.validation.count)
            // The frozen probe: one encoding of both splits (shared by every N), then cheap.
            return w.0 == .frozen ? Double(splits.train.count + splits.test.count) / 4
                : steps * batch * 3 + Double(f.epochs) * v + Double(splits.test.count)
        }
        let total = work.map(cost).reduce(0, +)
        var spent = 0.0, elapsed = 0.0
        var frozenFeatures: (train: FeatureSet, test: FeatureSet)?
        for (i, w) in work.enumerated() {
            let (method, n, seed) = w
            let t0 = monotonicSeconds()
            let label = "[\(i + 1)/\(work.count)] \(method.rawValue), \(n) labels, seed \(seed)"
            log(label + (spent > 0 ? " (ETA for all \(duration((total - spent) * elapsed / spent)))" : ""))
            var record: UtilityRecord
            switch method {
            case .frozen:
                if frozenFeatures == nil { frozenFeatures = try encodeFeatures(pretrained, splits) }
                record = probe(frozenFeatures!, splits: splits, labels: n, seed: seed)
            case .scratch, .fineTuned:
                let c = Classifier(config: cfg.model, feature: o.fineTune.feature, classes: splits.classes,
                                   seed: seed, precision: o.precision)
                if method == .fineTuned { c.loadEncoder(from: pretrained) }
                let tuning = FineTuning(classifier: c, config: o.fineTune, comm: comm)
                tuning.watchdog = watchdog
                let r = try tuning.run(splits: splits, examples: try splits.labelled(n), seed: seed) { p in
                    self.log("  epoch \(p.epoch)/\(p.epochs)  loss \(fmt(p.loss, 4))  train "
                             + "\(fmt(100 * p.trainAccuracy, 2))%  validation \(fmt(100 * p.validationAccuracy, 2))%  "
                             + "\(fmt(p.imagesPerSecond, 1)) img/s")
                }
                record = UtilityRecord(method: method, labels: n, seed: seed, validationAccuracy: r.validationAccuracy,
                                       testAccuracy: r.testAccuracy, chosen: "epoch \(r.epoch)", seconds: 0,
                                       checkpoint: o.checkpoint, protocol_: "")
                if method == .fineTuned && seed == 0 { try writeClassifier(c, labels: n, config: cfg, info: info) }
            }
            record.seconds = monotonicSeconds() - t0
            record.checkpoint = o.checkpoint
            record.protocol_ = protocolText
            log("  -> test \(fmt(100 * record.testAccuracy, 2))%  validation \(fmt(100 * record.validationAccuracy, 2))% "
                + "(\(record.chosen))  in \(duration(record.seconds))")
            if comm.isRoot { try UtilityRecord.append(record, to: resultsFile) }
            records.append(record)
            spent += cost(w); elapsed += record.seconds
        }
        return UtilityRow.table(records)
    }

    /// The frozen encoder's features (BatchNorm in eval mode) of the training and test splits.
    private func encodeFeatures(_ model: DIMModel, _ splits: LabelledSplits) throws -> (FeatureSet, FeatureSet) {
        let k = options.fineTune.feature
        let train = try encodeSplit(model: model, data: splits.train, kinds: [k], comm: comm)[k]!
        let test = try encodeSplit(model: model, data: splits.test, kinds: [k], comm: comm)[k]!
        return (train, test)
    }

    /// The frozen linear probe on N labels: weight decay and epochs chosen on the validation split
    /// (rank 0 trains it, the numbers go to every rank).
    private func probe(_ f: (train: FeatureSet, test: FeatureSet), splits: LabelledSplits, labels n: Int,
                       seed: UInt64) -> UtilityRecord {
        var v = [0.0, 0.0, 0.0, 0.0]
        if comm.isRoot {
            var cfg = ProbeConfig(kind: .linear, epochs: max(options.probeEpochs, min(200, (200_000 + n - 1) / n)))
            cfg.seed = seed
            let r = ProbeSelection().run(cfg, fit: f.train.rows(0..<n), validation: f.train.rows(splits.validation),
                                         test: f.test, classes: splits.classes)
            v = [r.validationAccuracy, r.testAccuracy, Double(r.weightDecay), Double(r.epochs)]
        }
        comm.broadcast(&v, bytes: 32, root: 0)
        return UtilityRecord(method: .frozen, labels: n, seed: seed, validationAccuracy: v[0], testAccuracy: v[1],
                             chosen: "weight decay \(Float(v[2])), \(Int(v[3])) epochs", seconds: 0,
                             checkpoint: options.checkpoint, protocol_: "")
    }

    /// The fine-tuned encoder as a checkpoint of the pretraining run's schema (the MI heads as
    /// pretrained), with the classifier under `/classifier` and where it came from as attributes.
    private func writeClassifier(_ c: Classifier, labels n: Int, config: TrainConfig,
                                 info: CheckpointFile.Info) throws {
        let path = options.out + "/fine-tuned-N\(n).h5"
        try comm.rootActs("writing \(path)") {
            let f = try HDF5File(options.checkpoint)
            let state = TrainingState(config: config)
            try CheckpointFile.load(f, model: state.model, adam: state.adam, discAdam: state.discAdam, info: info)
            c.storeEncoder(into: state.model)
            try CheckpointFile.write(path: path, model: state.model, adam: state.adam, discAdam: state.discAdam,
                                     info: info) { out in
                for p in c.params.parameters where p.name.hasPrefix("classifier.") {
                    try out.write("classifier/\(p.name)", UnsafeBufferPointer(start: p.value.data, count: p.count),
                                  shape: p.shape)
                }
                try out.setAttribute("fine_tuned_from", self.options.checkpoint)
                try out.setAttribute("fine_tune_labels", Int64(n))
                try out.setAttribute("fine_tune_features", self.options.fineTune.feature.rawValue)
            }
        }
    }
}
