import ArgumentParser
import DIMCore
import DIMIO
import DIMTrain
import Foundation

/// `dim-dist eval utility`: what pretraining saves when the encoder is fine-tuned with few labels.
struct EvalUtility: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "utility",
        abstract: "Fine-tune with N labels against training from scratch: the labels pretraining saves.",
        discussion: """
        For each N of --labels: the encoder with a linear classifier trained from scratch, the same \
        fine-tuned from the checkpoint (whole encoder), and a frozen linear probe on the checkpoint's \
        features; the same augmentation (crop and flip), schedule (Adam, warm-up over 5 epochs to \
        0.01, cosine to 1e-6 at the last of 25 epochs, batch 512) and validation split (the last 10% \
        of the training images; the N labelled images are the first N) for all three; the epoch (or \
        probe setting) with the best validation accuracy is scored on test. Utility U(N) = \
        N_scratch(a) / N - 1, where a is the fine-tuned accuracy with N labels and N_scratch(a) the \
        labels the from-scratch model needs for it (interpolated in log N; ">=" when a beats every \
        from-scratch point measured). Newell & Deng, CVPR 2020, arXiv 2003.14323.

        Results go to OUT/utility.jsonl as each run finishes: run the same command again to continue \
        an interrupted evaluation. The fine-tuned encoder of each N is written as OUT/fine-tuned-N<n>.h5 \
        (a checkpoint `encode`, `eval` and the PyTorch export read; the classifier under /classifier). \
        Under mpirun the fine-tuning is data-parallel (synchronised BatchNorm, gradients summed).
        """)

    @Option(help: "Checkpoint file, or a run directory (its latest checkpoint).") var checkpoint: String
    @Option(help: "Labelled dataset directory with train and test splits (default: the embedded MNIST).")
    var data: String?
    @Option(help: "Numbers of labels, comma-separated; 'all' for every training image outside validation.",
            transform: parseLabelCounts)
    var labels: [Int?] = [250, 1000, 4000, nil]
    @Option(help: "Repeats with different seeds (classifier initialisation, data order); the table shows the mean.")
    var seeds = 1
    @Option(help: "Fine-tuning epochs.") var epochs = 25
    @Option(help: "Warm-up epochs.") var warmupEpochs = 5
    @Option(help: "Peak learning rate (Adam).") var lr: Float = 0.01
    @Option(help: "Global batch size.") var batchSize = 512
    @Option(help: "Features the classifier reads: conv, fc or y.") var features: FeatureKind = .fc
    @Option(help: "GEMM precision: fp32 or bf16.") var precision: Precision = .fp32
    @Option(help: "Results directory (default: RUN/utility beside the checkpoint's run).") var out: String?
    @Flag(help: "Print the table as JSON on the last line.") var json = false

    func validate() throws {
        guard seeds >= 1 else { throw ValidationError("--seeds must be at least 1") }
        guard epochs >= 1, warmupEpochs >= 0, warmupEpochs < epochs else {
            throw ValidationError("--epochs must be at least 1 and more than --warmup-epochs")
        }
        guard batchSize >= 2 else { throw ValidationError("--batch-size must be at least 2") }
        guard lr > 0, lr.isFinite else { throw ValidationError("--lr must be a positive number") }
        if let why = precision.unsupportedReason() { throw ValidationError(why) }
    }

    func run() throws {
        let watchdog = Watchdog(timeout: nil)
        let comm = try makeCommunicator(observer: watchdog)
        do { try evaluate(comm, watchdog: watchdog) } catch {
            if comm.size > 1 { comm.abort("dim-dist eval utility: rank \(comm.rank): \(error)", code: 1) }
            throw error
        }
    }

    func evaluate(_ comm: Communicator, watchdog: Watchdog) throws {
        let path = try RunDirectory.checkpoint(checkpoint)
        let dir = try data ?? EmbeddedData.directory(comm: comm)
        var o = UtilityEvaluation.Options(checkpoint: path, data: dir, labels: labels,
                                          out: out ?? RunDirectory(resolving: checkpoint).path + "/utility")
        o.seeds = seeds
        o.fineTune.epochs = epochs
        o.fineTune.warmupEpochs = warmupEpochs
        o.fineTune.peakRate = lr
        o.fineTune.batch = batchSize
        o.fineTune.feature = features
        o.precision = precision
        let log: (String) -> Void = { if comm.isRoot { print($0) } }
        let evaluation = UtilityEvaluation(options: o, comm: comm, log: log)
        evaluation.watchdog = watchdog
        watchdog.start(comm: comm)
        defer { watchdog.stop() }
        let rows = try evaluation.run()
        guard comm.isRoot else { return }
        print("")
        print("labels | from scratch | fine-tuned | frozen linear | utility U(N)")
        print("---|---|---|---|---")
        func pct(_ m: Double, _ s: Double, _ seeds: Int) -> String {
            fmt(100 * m, 2) + (seeds > 1 ? " ± " + fmt(100 * s, 2) : "")
        }
        for r in rows {
            let u = (r.utilityBound == .exact ? "" : r.utilityBound.rawValue + " ") + fmt(r.utility, 2)
            print("\(r.labels) | \(pct(r.scratch, r.scratchSpread, r.seeds)) | "
                + "\(pct(r.fineTuned, r.fineTunedSpread, r.seeds)) | \(pct(r.frozen, r.frozenSpread, r.seeds)) | \(u)")
        }
        print("(test accuracy %, mean over \(seeds) seed(s); results in \(evaluation.resultsFile); "
            + "`dim-dist plot utility \(o.out)` draws them)")
        if json { print(try jsonLine(rows)) }
    }
}

/// "250,1000,all" -> [250, 1000, nil].
func parseLabelCounts(_ list: String) throws -> [Int?] {
    try list.split(separator: ",").map { s -> Int? in
        if s == "all" { return nil }
        guard let n = Int(s), n >= 2 else { throw ValidationError("--labels: '\(s)' is not a count of at least 2 "
            + "or 'all'") }
        return n
    }
}

extension FeatureKind: ExpressibleByArgument {}
