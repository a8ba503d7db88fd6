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
        /// How the fc weights' gradients are summed over ranks (not checkpointed either).
        public var fcGradientReduce = FCGradientReduce.auto
        public var optimizerSharding = OptimizerSharding.auto
        /// Stop after this many seconds of training (checked every step, decided by all ranks
        /// together) and write a final checkpoint; nil: run to totalSteps.
        public var timeLimit: Double? = nil
        /// The kNN monitor every this many steps (0: off; KNNMonitor).
        public var knnEvery = 0
        /// When this process decided the run's --time-budget: the monotonic time the budget counts
        /// from. The run then re-measures its step time once (TimeBudget.replanStep) and re-decides
        /// its steps. nil: the steps stay (no budget, or a resumed run's stored decision).
        public var budgetStart: Double? = nil
        public var verifyData = true
        public var quiet = false
        public init(dataDirectory: String, outDirectory: String, totalSteps: Int) {
            self.dataDirectory = dataDirectory; self.outDirectory = outDirectory; self.totalSteps = totalSteps
        }
    }

    /// The run's configuration and options; a --time-budget re-plan changes their steps (replan).
    public private(set) var config: TrainConfig
    public private(set) var options: Options
    public let comm: Communicator
    public let state: TrainingState
    public let data: ShardedSplit
    public let reader: BatchReader
    /// The step `train`, `bench` and the tests share.
    public let step: TrainStep
    private let watchdog: Watchdog?
    /// Progress, messages, metrics.jsonl and TensorBoard events (rank 0).
    let runLog: RunLog
    /// The step of the last checkpoint written or resumed from (the same on every rank).
    var savedStep = -1
    let knnMonitor: KNNMonitor?

    /// `watchdog` ends the job when a step stalls (it should also observe `comm`'s collectives).
    public init(config: TrainConfig, options: Options, comm: Communicator, watchdog: Watchdog? = nil) throws {
        self.config = config; self.options = options; self.comm = comm; self.watchdog = watchdog
        _ = try config.localBatch(ranks: comm.size)
        data = try ShardedSplit(directory: options.dataDirectory, split: "train",
                                verify: options.verifyData && comm.isRoot)
        let m = data.manifest
        let (size, channels) = (config.model.imageSize, config.model.inChannels)
        guard m.height == size, m.width == size, m.channels == channels else {
            throw DIMError("\(options.dataDirectory): images are \(m.channels)x\(m.height)x\(m.width), the "
                + "\(config.model.architecture.rawValue) model wants \(channels)x\(size)x\(size)")
        }
        reader = try BatchReader(data: data, globalBatch: config.globalBatch, rank: comm.rank, ranks: comm.size,
                                 seed: config.seed, augmentation: config.augmentation)
        state = TrainingState(config: config, precision: options.precision)
        step = try TrainStep(config: config, state: state, comm: comm, gradientPrecision: options.gradientPrecision,
                             fcGradientReduce: options.fcGradientReduce, optimizerSharding: options.optimizerSharding)
        runLog = RunLog(config: config, run: RunDirectory(path: options.outDirectory), totalSteps: options.totalSteps,
                        batchesPerEpoch: reader.batchesPerEpoch, comm: comm, quiet: options.quiet)
        step.onPhase = watchdog.map { w in { w.enter($0) } }
        knnMonitor = options.knnEvery > 0 ? try KNNMonitor(directory: options.dataDirectory) : nil
        state.broadcast(comm: comm)
    }

    public var outDirectory: RunDirectory { RunDirectory(path: options.outDirectory) }
    public var checkpoints: CheckpointDirectory { outDirectory.checkpoints(keep: options.keepCheckpoints) }

    // MARK: the loop

    /// One step on batch `state.step` of the data order.
    public func trainStep() throws -> DIMModel.Losses {
        let bpe = reader.batchesPerEpoch
        watchdog?.enter(.data)
        let batch = try reader.batch(epoch: state.step / bpe, index: state.step % bpe)
        return try step.run(images: batch.images)
    }

    /// Runs `steps` training steps from the current state (which they change: for a throwaway
    /// trainer) and returns the median time of the last half, the largest over ranks.
    public func measureStepSeconds(steps: Int) throws -> Double {
        var times: [Double] = []
        for _ in 0..<max(steps, 3) {
            let t0 = monotonicSeconds()
            _ = try trainStep()
            times.append(monotonicSeconds() - t0)
        }
        reader.drain()
        return slowestMedianOfLastHalf(times)
    }

    /// The median of the last half of `times` (the first steps fault pages in and warm caches),
    /// the largest over ranks, so every rank decides the same.
    func slowestMedianOfLastHalf(_ times: [Double]) -> Double {
        let kept = times.suffix(max(times.count / 2, 1)).sorted()
        return comm.max(kept[kept.count / 2])
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
        try runLog.open(atStep: state.step)
        defer { runLog.close() }
        announce()
        var window = (start: monotonicSeconds(), steps: 0)
        let runStart = monotonicSeconds(), firstStep = state.step
        var ran = 0, outcome = Outcome.finished, lastCheckpoint = monotonicSeconds()
        var stepTimes: [Double] = []  // for the time budget's re-plan
        let replanAt = options.budgetStart == nil ? nil
            : config.timeBudget.map { $0.replanStep(warmupSteps: config.schedule?.warmupSteps ?? 0) }
        comm.communicationSeconds = 0
        if let knn = knnMonitor, state.step == 0 {  // the untrained encoder: where the curve starts
            let t0 = monotonicSeconds()
            try runLog.probes(step: 0, try knn.measure(model: state.model, comm: comm), seconds: monotonicSeconds() - t0)
        }
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
            if let at = replanAt, ran <= at {
                stepTimes.append(monotonicSeconds() - now)
                if ran == at { replan(stepTimes: stepTimes) }
            }
            window.steps += 1
            let done = state.step == options.totalSteps
            if comm.isRoot && (state.step % options.logEvery == 0 || done) {
                let end = monotonicSeconds()
                let ips = Double(window.steps * config.globalBatch) / max(end - window.start, 1e-9)
                var eta = (end - runStart) / Double(state.step - firstStep) * Double(options.totalSteps - state.step)
                if let limit = options.timeLimit { eta = min(eta, limit - (end - runStart)) }
                try runLog.record(step: state.step, losses: losses, imagesPerSecond: ips, elapsed: end - runStart,
                                  eta: eta, final: done)
                window = (end, 0)
            }
            if let knn = knnMonitor, state.step % options.knnEvery == 0 || done {
                reader.drain()  // HDF5 reads from one thread at a time
                let t0 = monotonicSeconds()
                let results = try knn.measure(model: state.model, comm: comm)
                try runLog.probes(step: state.step, results, seconds: monotonicSeconds() - t0)
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

    /// --time-budget's second look: the median of the last half of the run's own step times (the
    /// slowest rank's) decides the steps again, and the cosine's end with them when it ended at
    /// the budget's steps. Every rank decides the same; checkpoints from now on store the decision.
    private func replan(stepTimes: [Double]) {
        guard let budget = config.timeBudget, let start = options.budgetStart else { return }
        let measured = slowestMedianOfLastHalf(stepTimes)
        let elapsed = comm.max(monotonicSeconds() - start)
        let new = budget.replanned(atStep: state.step, elapsed: elapsed, stepSeconds: measured)
        config.timeBudget = new
        if config.schedule?.decaySteps == budget.steps { config.schedule?.decaySteps = new.steps }
        options.totalSteps = new.steps
        state.config = config
        step.config = config
        runLog.replan(config: config, totalSteps: new.steps)
        let epochs = Double(new.steps * config.globalBatch) / Double(max(data.count, 1))
        runLog.message("time budget \(duration(budget.seconds)) re-planned: \(fmt(1000 * measured, 1)) ms/step over steps "
            + "\(state.step - max(stepTimes.count / 2, 1) + 1)-\(state.step) (calibration \(fmt(1000 * budget.stepSeconds, 1))) -> "
            + "\(new.steps) steps = \(fmt(epochs, 1)) epochs"
            + (config.schedule.map { ", cosine to step \($0.decaySteps)" } ?? ""))
    }

    /// The machine report (every rank measures) and what this run is.
    private func announce() {
        guard !options.quiet else { return }
        let machine = machineReport(comm: comm)
        guard comm.isRoot else { return }
        machine.forEach(runLog.message)
        runLog.message("train: \(config.model.architecture.rawValue) \(state.model.params.count) parameters, "
            + "\(config.loss.estimator.rawValue), global batch \(config.globalBatch) on \(comm.size) rank(s) "
            + "(\(reader.localBatch) per rank), \(data.count) images = \(reader.batchesPerEpoch) steps/epoch, "
            + "steps \(state.step)..<\(options.totalSteps)")
        if comm.size > 1 {
            let fc = step.gathersFCFactors ? "from factors gathered over ranks" : "in the allreduce"
            let sum = step.sharded != nil
                ? "fp32 sums and Adam in \(comm.size) shards in the host's shared memory"
                : "\(options.gradientPrecision.rawValue) allreduce"
            runLog.message("gradients: \(sum) over \(comm.size) ranks on \(comm.hosts) host(s) (--optimizer-sharding "
                + "\(options.optimizerSharding.rawValue)); fc weights \(fc) (--fc-grad-reduce "
                + "\(options.fcGradientReduce.rawValue))")
        }
    }

    /// One small collective decides, for every rank at once, whether to stop (a signal, the time
    /// limit) or to write a time-based checkpoint before this step.
    private func agreeOnControl(elapsed: Double, sinceCheckpoint: Double) -> (stop: Outcome?, checkpoint: Bool) {
        var flags: [Double] = [Double(StopSignals.pending ?? 0),
                               options.timeLimit.map { elapsed >= $0 ? 1 : 0 } ?? 0,
                               options.checkpointInterval.map { sinceCheckpoint >= $0 ? 1 : 0 } ?? 0]
        comm.allreduceMax(&flags, count: 3)
        if flags[0] != 0 {
            runLog.message("\(StopSignals.name(Int32(flags[0]))) received: stopping after step \(state.step)")
            return (.stopped(Int32(flags[0])), false)
        }
        if flags[1] != 0 {
            runLog.message("time limit of \(duration(options.timeLimit!)) reached at step \(state.step)")
            return (.timeLimit, false)
        }
        return (nil, flags[2] != 0)
    }
}
