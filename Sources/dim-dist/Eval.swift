import ArgumentParser
import DIMCore
import DIMIO
import DIMTrain
import Foundation

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Judge a trained encoder: probes on frozen features (the default), or the utility of "
            + "pretraining for fine-tuning with few labels.",
        subcommands: [EvalProbes.self, EvalUtility.self], defaultSubcommand: EvalProbes.self)
}

struct EvalProbes: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probes",
        abstract: "Probe a trained encoder: linear or MLP classifiers on frozen conv / fc / y features.",
        discussion: """
        Encodes the train and test splits with the frozen encoder (BatchNorm in eval mode), trains a
        probe per feature set on standardised features with Adam, and reports test accuracy.
        --init-only evaluates the same configuration at its initial weights (BatchNorm statistics
        recalibrated on training data): the baseline to compare with. Under mpirun the encoding is
        split across ranks.
        """)

    @Option(help: "Checkpoint file, or a run directory (its latest checkpoint).") var checkpoint: String
    @Option(help: "Dataset directory with train and test splits (default: the embedded MNIST).") var data: String?
    @Option(help: "Feature sets, comma-separated: conv, fc, y.", transform: parseFeatures)
    var features: [FeatureKind] = FeatureKind.allCases
    @Option(help: ArgumentHelp("Probe: linear, mlp, both (linear and mlp), knn, or all.",
                               discussion: "knn: the k-nearest-neighbour monitor (k = 200, cosine similarity, votes weighted by exp(sim / 0.1)); nothing trained or chosen."))
    var probe: ProbeChoice = .linear
    @Option(help: "Probe training epochs.") var probeEpochs = 20
    @Option(help: ArgumentHelp(
        "Probes also train on the mirror images of the training images: auto, on or off.",
        discussion: "auto: on when the encoder trained with --flip (mirror images are then as natural to it as the "
            + "originals). Validation, test and kNN use the images as stored."))
    var mirror: MirrorChoice = .auto
    @Flag(help: "Evaluate the untrained encoder of the same configuration instead.") var initOnly = false
    @Flag(help: ArgumentHelp(
        "Learning curve: probe every checkpoint of the run directory not probed yet.",
        discussion: "Appends one record per probe to RUN/metrics.jsonl; `dim-dist plot probes RUN` draws them."))
    var everyCheckpoint = false
    @Flag(help: "Print a JSON summary on the last line.") var json = false

    func run() throws {
        let comm = try makeCommunicator()
        do { try evaluate(comm) } catch {
            if comm.size > 1 { comm.abort("dim-dist eval: rank \(comm.rank): \(error)", code: 1) }
            throw error
        }
    }

    func evaluate(_ comm: Communicator) throws {
        if everyCheckpoint { return try learningCurve(comm) }
        let path = try RunDirectory.checkpoint(checkpoint)
        let dir = try data ?? EmbeddedData.directory(comm: comm)
        let kinds = features
        let probeKinds = probe.kinds
        let (model, cfg, info) = try Evaluation.loadModel(checkpoint: path, untrained: initOnly)
        let log: (String) -> Void = { if comm.isRoot { print($0); fflush(stdout) } }
        log("eval: \(initOnly ? "UNTRAINED encoder of " : "")\(path) (step \(info.step), "
            + "\(cfg.model.architecture.rawValue), \(cfg.loss.estimator.rawValue)) on \(dir)")
        if initOnly { try Evaluation.calibrateBatchNorm(model: model,
                                                        data: try ShardedSplit(directory: dir, split: "train")) }
        let results = try Evaluation.run(model: model, data: dir, features: kinds,
                                         probes: probeKinds.map { ProbeConfig(kind: $0, epochs: probeEpochs) },
                                         knn: probe.knn, mirror: mirror.isOn(for: cfg), comm: comm, log: log)
        if json && comm.isRoot {
            struct Summary: Codable {
                var checkpoint: String, step: Int, untrained: Bool, data: String, results: [ProbeResult]
            }
            print(try jsonLine(Summary(checkpoint: path, step: info.step, untrained: initOnly, data: dir,
                                       results: results)))
        }
    }
}

extension EvalProbes {
    /// Probes each checkpoint of a run that metrics.jsonl has no probe record for yet, oldest
    /// first, and appends the records (rank 0), so it can be rerun while training goes on.
    func learningCurve(_ comm: Communicator) throws {
        let run = RunDirectory(resolving: checkpoint)
        let checkpoints = run.checkpoints().all()
        guard !checkpoints.isEmpty else { throw DIMError("\(run.path): no checkpoints in \(run.path)/checkpoints "
            + "(--every-checkpoint wants a run directory)") }
        let dir = try data ?? EmbeddedData.directory(comm: comm)
        let kinds = features
        let probes = probe.kinds.map { ProbeConfig(kind: $0, epochs: probeEpochs) }
        let metrics = run.metrics
        let done = Set(ProbeRecord.read(metrics).map { "\($0.step) \($0.series)" })
        let log: (String) -> Void = { if comm.isRoot { print($0); fflush(stdout) } }
        var events: EventFileWriter?
        for path in checkpoints {
            let (model, cfg, info) = try Evaluation.loadModel(checkpoint: path, untrained: false)
            let names = probes.map(\.kind.rawValue) + (probe.knn == nil ? [] : ["knn"])
            let wanted = names.flatMap { p in kinds.map { "\(info.step) \(p)/\($0.rawValue)" } }
            if wanted.allSatisfy(done.contains) { continue }
            log("eval: \(path) (step \(info.step))")
            let results = try Evaluation.run(model: model, data: dir, features: kinds, probes: probes, knn: probe.knn,
                                             mirror: mirror.isOn(for: cfg), comm: comm, log: log)
            if comm.isRoot {
                try ProbeRecord.append(results.map { ProbeRecord(step: info.step, $0) }, to: metrics)
                events = try events ?? EventFileWriter(directory: run.path)
                try events?.scalars(results.map { ("probe/\($0.probe)/\($0.feature)", $0.testAccuracy) },
                                    step: info.step)
            }
        }
        log("eval: probe records of \(checkpoints.count) checkpoint(s) in \(metrics)")
    }
}

/// Comma-separated feature sets; an unknown name is a usage error.
func parseFeatures(_ list: String) throws -> [FeatureKind] {
    try list.split(separator: ",").map { s -> FeatureKind in
        guard let k = FeatureKind(rawValue: String(s)) else { throw ValidationError("unknown feature set '\(s)' "
            + "(conv, fc, y)") }
        return k
    }
}

enum ProbeChoice: String, ExpressibleByArgument, CaseIterable {
    case linear, mlp, both, knn, all
    /// The trained probes asked for.
    var kinds: [ProbeConfig.Kind] {
        switch self {
        case .linear: return [.linear]
        case .mlp: return [.mlp]
        case .both, .all: return [.linear, .mlp]
        case .knn: return []
        }
    }
    /// The kNN monitor, when asked for.
    var knn: KNNClassifier? { self == .knn || self == .all ? KNNClassifier() : nil }
}

enum MirrorChoice: String, ExpressibleByArgument, CaseIterable {
    case auto, on, off
    /// Whether the probes of an encoder trained with `config` train on mirror images too.
    func isOn(for config: TrainConfig) -> Bool {
        switch self {
        case .auto: return config.augmentation.horizontalFlip
        case .on: return true
        case .off: return false
        }
    }
}
