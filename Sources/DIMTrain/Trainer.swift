import Foundation
import DIMCore
import DIMIO

/// The training loop of `dim-dist train`, the same on one process or many: reader -> TrainStep
/// (forward, backward with the gradient allreduce overlapped, Adam) -> metrics and checkpoints on
/// rank 0.
public final class Trainer {
    public struct Options {
        public var dataDirectory: String
        public var outDirectory: String
        public var totalSteps: Int
        public var logEvery = 10
        public var checkpointEvery = 0       // steps; 0: only at the end
        /// Also a checkpoint whenever this many seconds passed since the last one (nil: off).
        public var checkpointInterval: Double? = nil
        public var keepCheckpoints = 3
        public var resume: String? = nil     // a path, or "auto"
        public var precision = Precision.fp32
        /// How gradients travel in the allreduce (not part of the checkpointed configuration).
        public var gradientPrecision = GradientPrecision.fp32
        /// Stop after this many seconds of training (checked every step, decided by all ranks
        /// together) and write a final checkpoint; nil: run to totalSteps.
        public var timeLimit: Double? = nil
        public var verifyData = true
        public var quiet = false
        public init(dataDirectory: String, outDirectory: String, totalSteps: Int) {
            self.dataDirectory = dataDirectory; self.outDirectory = outDirectory; self.totalSteps = totalSteps
        }
    }

    public let config: TrainConfig
    public let options: Options
    public let comm: Communicator
    public let state: TrainingState
    public let data: ShardedSplit
    public let reader: BatchReader
    /// The step `train`, `bench` and the tests share.
    public let step: TrainStep
    private let watchdog: Watchdog?
    private var metrics: UnsafeMutablePointer<FILE>?
    private var events: EventFileWriter?
    /// The step of the last checkpoint written or resumed from (the same on every rank).
    private var savedStep = -1

    /// `watchdog` ends the job when a step stalls (it should also observe `comm`'s collectives).
    public init(config: TrainConfig, options: Options, comm: Communicator, watchdog: Watchdog? = nil) throws {
        self.config = config; self.options = options; self.comm = comm; self.watchdog = watchdog
        try config.model.validate()
        guard config.globalBatch >= 2 else { throw DIMError("--batch-size must be at least 2 (DIM needs negatives)") }
        _ = try localBatchSize(global: config.globalBatch, ranks: comm.size)
        data = try ShardedSplit(directory: options.dataDirectory, split: "train",
                                verify: options.verifyData && comm.isRoot)
        let m = data.manifest
        guard m.height == config.model.imageSize, m.width == config.model.imageSize, m.channels == config.model.inChannels else {
            throw DIMError("\(options.dataDirectory): images are \(m.channels)x\(m.height)x\(m.width), the "
                + "\(config.model.architecture.rawValue) model wants \(config.model.inChannels)x\(config.model.imageSize)x\(config.model.imageSize)")
        }
        reader = try BatchReader(data: data, globalBatch: config.globalBatch, rank: comm.rank, ranks: comm.size,
                                 seed: config.seed, augmentation: config.augmentation)
        state = TrainingState(config: config, precision: options.precision)
        if let k = config.scoredRows, k < 2 { throw DIMError("--scored-rows must be at least 2") }
        step = TrainStep(config: config, state: state, comm: comm, gradientPrecision: options.gradientPrecision)
        step.onPhase = watchdog.map { w in { w.enter($0) } }
        state.broadcast(comm: comm)
    }

    public var outDirectory: RunDirectory { RunDirectory(path: options.outDirectory) }
    public var checkpoints: CheckpointDirectory { outDirectory.checkpoints(keep: options.keepCheckpoints) }

    // MARK: checkpoints

    public func checkpointInfo(loss: Double) -> CheckpointFile.Info {
        var info = CheckpointFile.Info()
        info.step = state.step
        info.epoch = state.step / reader.batchesPerEpoch
        info.batchInEpoch = state.step % reader.batchesPerEpoch
        info.seed = config.seed
        info.globalBatch = config.globalBatch
        info.ranks = comm.size
        info.adamStep = state.adam.step
        info.discAdamStep = state.discAdam.step
        info.loss = loss
        info.configJSON = config.json
        info.datasetFingerprint = data.manifest.fingerprint
        info.datasetCount = data.count
        info.created = ISO8601DateFormatter().string(from: Date())
        return info
    }

    /// Rank 0 writes; every rank waits so no rank runs ahead of a checkpoint it may need.
    public func saveCheckpoint() throws {
        try comm.rootActs("checkpoint") {
            let path = try checkpoints.save(step: state.step) { tmp in
                try CheckpointFile.write(path: tmp, model: state.model, adam: state.adam, discAdam: state.discAdam,
                                         info: checkpointInfo(loss: state.lastLosses.total))
            }
            if !options.quiet { log("checkpoint: \(path)") }
        }
        savedStep = state.step
    }

    /// Loads a checkpoint on rank 0, checks it against this run, and broadcasts it.
    public func resume(from spec: String) throws {
        var path: String? = spec
        if spec == "auto" { path = checkpoints.latest() }
        try comm.rootActs("resume") {
            guard let p = path else { return }
            let f = try HDF5File(p)
            let info = try CheckpointFile.readInfo(f)
            let diffs = config.differences(from: try TrainConfig(checkpoint: info, path: p))
            if !diffs.isEmpty {
                throw DIMError("\(p): made with a different configuration (the checkpoint's vs this run's): "
                              + diffs.joined(separator: "; "))
            }
            if info.datasetFingerprint != data.manifest.fingerprint || info.datasetCount != data.count {
                throw DIMError("\(p): made on a different dataset (fingerprint \(info.datasetFingerprint), "
                               + "\(info.datasetCount) examples; \(options.dataDirectory) has \(data.manifest.fingerprint), \(data.count))")
            }
            try CheckpointFile.load(f, model: state.model, adam: state.adam, discAdam: state.discAdam, info: info)
            state.step = info.step
            if !options.quiet {
                log("resumed from \(p): step \(info.step), epoch \(info.epoch), saved by \(info.ranks) rank(s), "
                    + "loss \(fmt(info.loss, 4))")
            }
        }
        if spec != "auto" && path == nil { throw DIMError("\(spec): no checkpoint") }
        // Everyone takes rank 0's state (the file need not be visible on every host).
        var counters = [Double(state.step), Double(state.adam.step),
                        Double(state.discAdam.step)] + state.model.batchNorms.map { Double($0.batchesTracked) }
        comm.broadcast(&counters, bytes: counters.count * 8, root: 0)
        state.step = Int(counters[0])
        if path != nil { savedStep = state.step }
        state.adam.restore(step: Int(counters[1]))
        state.discAdam.restore(step: Int(counters[2]))
        for (bn, c) in zip(state.model.batchNorms, counters.dropFirst(3)) { bn.batchesTracked = Int(c) }
        state.broadcast(comm: comm)
        for (adam, n) in [(state.adam, state.model.params.count),
                          (state.discAdam, state.model.discParams.count)] where n > 0 {
            comm.broadcast(UnsafeMutableRawPointer(adam.m), bytes: n * 4, root: 0)
            comm.broadcast(UnsafeMutableRawPointer(adam.v), bytes: n * 4, root: 0)
        }
    }

    // MARK: the loop

    /// One step on batch `state.step` of the data order.
    public func trainStep() throws -> DIMModel.Losses {
        let bpe = reader.batchesPerEpoch
        watchdog?.enter(.data)
        let batch = try reader.batch(epoch: state.step / bpe, index: state.step % bpe)
        return try step.run(images: batch.images)
    }

    /// How a run ended.
    public enum Outcome: Equatable {
        case finished            // reached totalSteps
        case timeLimit           // --time-limit
        case stopped(Int32)      // a stop signal (SIGTERM, SIGUSR1): checkpoint written, resumable
    }

    /// Runs to `totalSteps` (resuming first if asked), with progress, metrics and checkpoints.
    @discardableResult
    public func run() throws -> Outcome {
        watchdog?.start(comm: comm)
        defer { watchdog?.stop() }
        if let r = options.resume { try resume(from: r) }
        try openOutputs()
        defer { if let m = metrics { fclose(m); metrics = nil } }
        announce()
        var window = (start: monotonicSeconds(), steps: 0)
        let runStart = monotonicSeconds(), firstStep = state.step
        var ran = 0, outcome = Outcome.finished, lastCheckpoint = monotonicSeconds()
        comm.communicationSeconds = 0
        while state.step < options.totalSteps {
            let now = monotonicSeconds()
            watchdog?.begin(step: state.step, phase: .control)
            let control = agreeOnControl(elapsed: now - runStart, sinceCheckpoint: now - lastCheckpoint)
            if let stop = control.stop { outcome = stop; break }
            if control.checkpoint && ran > 0 {
                try saveCheckpoint()
                lastCheckpoint = monotonicSeconds()
            }
            let losses = try trainStep()
            watchdog?.finished(stepSeconds: monotonicSeconds() - now)
            ran += 1
            window.steps += 1
            let done = state.step == options.totalSteps
            if comm.isRoot && (state.step % options.logEvery == 0 || done) {
                let end = monotonicSeconds()
                let ips = Double(window.steps * config.globalBatch) / max(end - window.start, 1e-9)
                var eta = (end - runStart) / Double(state.step - firstStep) * Double(options.totalSteps - state.step)
                if let limit = options.timeLimit { eta = min(eta, limit - (end - runStart)) }
                writeMetrics(losses, imagesPerSecond: ips, elapsed: end - runStart,
                             commSeconds: comm.communicationSeconds)
                try writeEvents(losses, imagesPerSecond: ips)
                if !options.quiet { progress(losses, imagesPerSecond: ips, eta: eta, final: done) }
                window = (end, 0)
            }
            if options.checkpointEvery > 0 && state.step % options.checkpointEvery == 0 && !done {
                try saveCheckpoint()
                lastCheckpoint = monotonicSeconds()
            }
        }
        reader.drain()
        watchdog?.begin(step: state.step, phase: .checkpoint)
        if ran > 0 && savedStep != state.step { try saveCheckpoint() }
        return outcome
    }

    /// Rank 0's metrics.jsonl (append mode) and TensorBoard event file.
    private func openOutputs() throws {
        guard comm.isRoot else { return }
        try FileManager.default.createDirectory(atPath: options.outDirectory, withIntermediateDirectories: true)
        // After a resume the records past the checkpoint's step are dropped, so that the file
        // stays one record per step however often the run was interrupted.
        let path = outDirectory.metrics
        if state.step > 0 { try truncateMetrics(after: state.step) } else { fclose(fopen(path, "w")) }
        // Append mode (O_APPEND): `eval --every-checkpoint` may add probe records to the same
        // file while training runs; a plain write offset would overwrite them.
        metrics = fopen(path, "a")
        guard metrics != nil else { throw DIMError("\(path): cannot write") }
        events = try EventFileWriter(directory: options.outDirectory)
    }

    /// The machine report (every rank measures) and what this run is.
    private func announce() {
        guard !options.quiet else { return }
        let machine = machineReport(comm: comm)
        guard comm.isRoot else { return }
        machine.forEach(log)
        log("train: \(config.model.architecture.rawValue) \(state.model.params.count) parameters, "
            + "\(config.loss.estimator.rawValue), global batch \(config.globalBatch) on \(comm.size) rank(s) "
            + "(\(reader.localBatch) per rank), \(data.count) images = \(reader.batchesPerEpoch) steps/epoch, "
            + "steps \(state.step)..<\(options.totalSteps)")
    }

    /// One small collective decides, for every rank at once, whether to stop (a signal, the time
    /// limit) or to write a time-based checkpoint before this step.
    private func agreeOnControl(elapsed: Double, sinceCheckpoint: Double) -> (stop: Outcome?, checkpoint: Bool) {
        var flags: [Double] = [Double(StopSignals.pending ?? 0),
                               options.timeLimit.map { elapsed >= $0 ? 1 : 0 } ?? 0,
                               options.checkpointInterval.map { sinceCheckpoint >= $0 ? 1 : 0 } ?? 0]
        comm.allreduceMax(&flags, count: 3)
        if flags[0] != 0 {
            if comm.isRoot { log("\(StopSignals.name(Int32(flags[0]))) received: stopping after step \(state.step)") }
            return (.stopped(Int32(flags[0])), false)
        }
        if flags[1] != 0 {
            if comm.isRoot { log("time limit of \(duration(options.timeLimit!)) reached at step \(state.step)") }
            return (.timeLimit, false)
        }
        return (nil, flags[2] != 0)
    }

    /// Keeps the metrics records (loss and probe) of steps up to `step`, atomically.
    private func truncateMetrics(after step: Int) throws {
        let path = outDirectory.metrics
        guard let data = FileManager.default.contents(atPath: path),
              let text = String(data: data, encoding: .utf8) else { return }
        let kept = text.split(separator: "\n").filter { line in LossRecord.step(ofLine: line).map { $0 <= step } ?? false }
        let tmp = path + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: tmp,
                                             contents: Data((kept.joined(separator: "\n") + (kept.isEmpty ? "" : "\n")).utf8)),
              rename(tmp, path) == 0 else { throw DIMError("\(path): cannot rewrite") }
    }

    private func writeMetrics(_ l: DIMModel.Losses, imagesPerSecond: Double, elapsed: Double, commSeconds: Double) {
        guard let m = metrics else { return }
        let bpe = reader.batchesPerEpoch
        let record = LossRecord(
            step: state.step, epoch: state.step / bpe, loss: finite(l.total), local: finite(l.local), global: finite(l.global),
            prior: finite(l.prior), discriminator: finite(l.discriminator),
            learningRate: Double(config.learningRate(step: max(state.step - 1, 0))),
            imagesPerSecond: finite(imagesPerSecond), elapsedSeconds: finite(elapsed), communicationSeconds: finite(commSeconds),
            ranks: comm.size)
        guard let line = try? record.jsonLine() else { return }
        fputs(line, m)
        fflush(m)
    }

    /// The same numbers for TensorBoard (terms that are switched off are left out).
    private func writeEvents(_ l: DIMModel.Losses, imagesPerSecond: Double) throws {
        guard let events else { return }
        let lc = config.loss
        var values: [(tag: String, value: Double)] = [("loss/total", l.total)]
        if lc.beta != 0 { values.append(("loss/local", l.local)) }
        if lc.globalDIM { values.append(("loss/global", l.global)) }
        if lc.priorMatching { values += [("loss/prior", l.prior), ("loss/discriminator", l.discriminator)] }
        values += [("throughput/images_per_second", imagesPerSecond),
                   ("optimizer/learning_rate", Double(config.learningRate(step: max(state.step - 1, 0))))]
        try events.scalars(values, step: state.step)
    }

    private func progress(_ l: DIMModel.Losses, imagesPerSecond: Double, eta: Double, final: Bool) {
        let bpe = reader.batchesPerEpoch
        var terms = "loss \(fmt(l.total, 4))"
        let lc = config.loss
        if lc.globalDIM || lc.priorMatching {
            terms += " (local \(fmt(l.local, 4))" + (lc.globalDIM ? " global \(fmt(l.global, 4))" : "")
                + (lc.priorMatching ? " prior \(fmt(l.prior, 4)) disc \(fmt(l.discriminator, 4))" : "") + ")"
        }
        let line = "epoch \(state.step / bpe) step \(state.step)/\(options.totalSteps) \(terms) | \(fmt(imagesPerSecond, 1)) img/s | ETA \(duration(eta))"
        if liveLine {
            print("\r\u{1B}[K" + line, terminator: final ? "\n" : "")
            fflush(stdout)
        } else {
            print(line)
        }
    }

    /// A live, rewritten progress line on a terminal; plain lines in logs and under mpirun
    /// (which forwards rank 0's output line by line).
    private var liveLine: Bool { isatty(STDOUT_FILENO) != 0 && comm.size == 1 && getenv("OMPI_COMM_WORLD_SIZE") == nil }

    private func log(_ s: String) {
        if liveLine { print("\r\u{1B}[K", terminator: "") }
        print(s)
        fflush(stdout)
    }
}


public func duration(_ s: Double) -> String {
    guard s.isFinite else { return "?" }
    let t = Int(s.rounded())
    if t >= 3600 { return "\(t / 3600)h\(String(format: "%02d", (t % 3600) / 60))m" }
    if t >= 60 { return "\(t / 60)m\(String(format: "%02d", t % 60))s" }
    return "\(t)s"
}
