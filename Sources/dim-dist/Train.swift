import Foundation
import ArgumentParser
import DIMCore
import DIMIO
import DIMTrain
import DIMMPI

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a DIM encoder, on one process or under mpirun (negatives gathered from all ranks).",
        discussion: """
        The loss is defined on the global batch: np ranks with --batch-size B train exactly like one
        process with batch B. Rank 0 prints progress and writes OUT/metrics.jsonl and
        OUT/checkpoints/ckpt-<step>.h5 (latest pointer in OUT/checkpoints/latest).
        Example: mpirun --oversubscribe -np 8 -x OPENBLAS_NUM_THREADS=1 dim-dist train --steps 300
        """)

    @Option(help: "Dataset directory (default: the embedded MNIST, imported into data/mnist on first use).")
    var data: String?
    @OptionGroup var model: ModelOptions
    @Option(help: "Global batch size (divided among ranks).") var batchSize = 64
    @Option(help: "Epochs to train (ignored when --steps is given).") var epochs = 1
    @Option(help: "Total steps to train (overrides --epochs).") var steps: Int?
    @Option(help: "Adam learning rate (the peak rate with a schedule).") var lr: Float = 1e-4
    @Option(help: ArgumentHelp("Learning-rate schedule: constant (the paper's) or cosine.",
                               discussion: "cosine: linear warm-up over --warmup-steps, then half a cosine down to --final-lr-fraction x --lr at --lr-decay-steps."))
    var lrSchedule: ScheduleName = .constant
    @Option(help: "Cosine schedule: warm-up steps.") var warmupSteps = 0
    @Option(help: "Cosine schedule: the step where the decay ends (default: the run's total steps).") var lrDecaySteps: Int?
    @Option(help: "Cosine schedule: the final rate as a fraction of --lr.") var finalLrFraction: Float = 0
    @Option(help: "Adam beta1.") var beta1: Float = 0.5
    @Option(help: "Random seed (initial weights, data order, augmentation, prior samples).") var seed: UInt64 = 0
    @Option(help: "Augmentation: random crop with this much padding (0 = off).") var cropPadding = 0
    @Flag(help: "Augmentation: random horizontal flips.") var flip = false
    @Option(help: ArgumentHelp("Augmentation: random-resized crops covering at least this fraction of the image (e.g. 0.2).",
                               discussion: "Area fraction uniform in [s, 1], aspect ratio log-uniform in [3/4, 4/3], resized back (bilinear); replaces --crop-padding. SimCLR: 0.08, AMDIM: 0.3."))
    var resizedCropMinScale: Float?
    @Option(help: ArgumentHelp("Augmentation: colour jitter strength (e.g. 0.4).",
                               discussion: "Brightness, contrast and saturation each scaled by a factor uniform in [1-s, 1+s], for 80% of the images (SimCLR's CIFAR setting 0.4, without hue)."))
    var colorJitter: Float?
    @Option(help: "Augmentation: the probability of turning an image grey (e.g. 0.2, SimCLR's).") var grayscale: Float?
    @Option(name: [.customLong("scored-rows"), .customLong("max-negatives")], help: ArgumentHelp(
        "Bounded rows: score K global vectors per step, sampled from the global batch (default: all).",
        discussion: "The cost per rank stays flat as ranks are added. The rows carry the negatives: JSD and DV still score every image's positives and every global vector against one sampled patch of each row's image, infoNCE's anchors are the sampled rows; JSD and infoNCE stay unbiased estimates of the full loss (docs/bounded-negatives.md). --max-negatives is the old name.",
        valueName: "K"))
    var scoredRows: Int?
    @Option(help: "Stop after this much training time (e.g. 2h, 90m, 3600s) and write a checkpoint.",
            transform: parseDuration)
    var timeLimit: Double?
    @Option(help: ArgumentHelp(
        "Fit the run to this much wall-clock time (e.g. 2h): the total steps, and the cosine's end, follow.",
        discussion: "A short calibration (40 steps, all ranks) times the step on this machine; the run then takes as many steps as fit, and --lr-schedule cosine decays to its end. After the warm-up (at least 200 steps) the run times its own steps and decides once more. The decided steps are stored in the checkpoints: a resumed run (--resume, same --time-budget) takes the same steps. Replaces --steps and --epochs."),
            transform: parseDuration)
    var timeBudget: Double?
    @Option(help: ArgumentHelp(
        "End the job when a step makes no progress for this long (e.g. 10m, 90s).",
        discussion: "Default: max(10 minutes, 20 x the median step time). Start-up (MPI_Init, reading the data, resuming) counts as step 0. The message names the step, the collective and the silent ranks."),
        transform: parseDuration)
    var stepTimeout: Double?
    @Option(help: ArgumentHelp("Gradient allreduce in fp32 or bf16.",
                               discussion: "bf16 sends half the bytes; each sum step rounds to bf16 (about 2^-9 relative)."))
    var gradReduce: GradientPrecision = .fp32
    @Option(help: ArgumentHelp("How the fc weights' gradients are summed over ranks: auto, allreduce, or factors.",
                               discussion: """
        factors: every rank gathers dL/dh and the fc input from all ranks (1/12.8 of the weight's \
        bytes at batch 64) and computes the global batch's gradient itself. auto: factors when the \
        ranks span several hosts and the factors are at most a quarter of the weight (a global \
        batch up to 204 at 32x32); the log's gradients: line says which.
        """))
    var fcGradReduce: FCGradientReduce = .auto
    @Option(help: ArgumentHelp("Whether ranks on one host share the gradient sum and Adam: auto, off, or host.",
                               discussion: """
        host: each rank sums 1/k of the gradients over the host's ranks in shared memory and runs \
        Adam on them alone, instead of every rank allreducing and updating all of them (ZeRO-1 \
        within the host). auto: host when all ranks are on one host, --grad-reduce is fp32 and \
        /dev/shm has room (else the allreduce); the log's gradients: line says which.
        """))
    var optimizerSharding: OptimizerSharding = .auto
    @Option(help: "Output directory for metrics and checkpoints.") var out = "runs/train"
    @Option(help: "Log a progress line and a metrics record every N steps.") var logEvery = 10
    @Option(help: ArgumentHelp("Write a checkpoint every N steps, or every so long: 30m, 2h, 600s (0: only at the end).",
                               valueName: "steps|duration"))
    var checkpointEvery = "0"
    @Option(help: "Checkpoints to keep.") var keep = 3
    @Option(help: ArgumentHelp("Every N steps (and at the end), the kNN monitor on fc and y features (0: off).",
                               discussion: "k = 200 nearest of the first 10,000 training images by cosine similarity, votes weighted by exp(sim / 0.1), on the first 2,000 test images; a few seconds per point. Records in metrics.jsonl (plot probes) and TensorBoard."))
    var knnEvery = 0
    @Option(help: "Resume from a checkpoint file, or 'auto' for OUT/checkpoints/latest (fresh start when there is none).")
    var resume: String?

    func validate() throws {
        guard lr > 0, lr.isFinite else { throw ValidationError("--lr must be a positive number") }
        guard warmupSteps >= 0 else { throw ValidationError("--warmup-steps must not be negative") }
        guard (0...1).contains(finalLrFraction) else { throw ValidationError("--final-lr-fraction must be in 0...1") }
        if lrSchedule == .constant && (warmupSteps != 0 || lrDecaySteps != nil) {
            throw ValidationError("--warmup-steps and --lr-decay-steps need --lr-schedule cosine")
        }
        if timeBudget != nil && steps != nil { throw ValidationError("--time-budget decides the steps: drop --steps") }
        if let b = timeBudget, b <= TimeBudget.reserveSeconds {
            throw ValidationError("--time-budget must exceed \(Int(TimeBudget.reserveSeconds)) seconds")
        }
        if let d = lrDecaySteps, d <= warmupSteps { throw ValidationError("--lr-decay-steps must exceed "
            + "--warmup-steps") }
    }

    func run() throws {
        let watchdog = Watchdog(timeout: stepTimeout)
        if MPICommunicator.launchedWithSeveralRanks {
            watchdog.startup("MPI_Init")
            watchdog.guardStartup()
        }
        let comm = try makeCommunicator(observer: watchdog)
        watchdog.startup("reading the data and building the model")
        do {
            try train(comm, watchdog: watchdog)
        } catch let stop as ExitCode {
            throw stop  // every rank stops the same way (a stop signal)
        } catch {
            if comm.size > 1 { comm.abort("dim-dist train: rank \(comm.rank): \(error)", code: 1) }
            throw error
        }
    }

    func train(_ comm: Communicator, watchdog: Watchdog) throws {
        let started = monotonicSeconds()
        let dataDir = try data ?? EmbeddedData.directory(comm: comm)
        let manifest = try DatasetManifest.load(directory: dataDir)
        guard manifest.height == manifest.width else { throw DIMError("\(dataDir): images are not square") }
        var cfg = TrainConfig(model: try model.config(imageSize: manifest.height, channels: manifest.channels,
                                                      data: dataDir),
                              loss: model.lossConfig(), globalBatch: batchSize)
        cfg.learningRate = lr
        let trainImages = try manifest.split("train").count
        let totalSteps = steps ?? epochs * (trainImages / max(batchSize, 1))
        if lrSchedule != .constant {
            cfg.schedule = LearningRateSchedule(warmupSteps: warmupSteps, decaySteps: lrDecaySteps ?? totalSteps,
                                                finalFraction: finalLrFraction)
        }
        cfg.beta1 = beta1
        cfg.seed = seed
        cfg.augmentation = Augmentation(cropPadding: cropPadding, horizontalFlip: flip,
                                        resizedCropMinScale: resizedCropMinScale, colorJitter: colorJitter,
                                        grayscale: grayscale)
        if let problem = cfg.augmentation.problem { throw ValidationError(problem) }
        cfg.scoredRows = scoredRows
        var opts = Trainer.Options(dataDirectory: dataDir, outDirectory: out, totalSteps: totalSteps)
        opts.logEvery = logEvery
        if let steps = Int(checkpointEvery) {
            guard steps >= 0 else { throw ValidationError("--checkpoint-every must not be negative") }
            opts.checkpointEvery = steps
        } else {
            opts.checkpointInterval = try parseDuration(checkpointEvery)
        }
        opts.keepCheckpoints = keep
        opts.knnEvery = knnEvery
        opts.resume = resume
        opts.precision = model.precision
        opts.gradientPrecision = gradReduce
        opts.fcGradientReduce = fcGradReduce
        opts.optimizerSharding = optimizerSharding
        opts.timeLimit = timeLimit
        if let budget = timeBudget {
            try fitToBudget(budget, config: &cfg, options: &opts, trainImages: trainImages, started: started,
                            comm: comm)
        }
        let trainer = try Trainer(config: cfg, options: opts, comm: comm, watchdog: watchdog)
        StopSignals.install()
        if case .stopped(let signal) = try trainer.run() {
            if comm.isRoot {
                print("train: stopped by \(StopSignals.name(signal)) after a checkpoint; continue with --resume auto "
                      + "(exit status \(StopSignals.exitStatus))")
            }
            throw ExitCode(StopSignals.exitStatus)
        }
    }
}

extension Train {
    /// --time-budget: the steps (and the cosine's end) of a resumed run are the ones its checkpoint
    /// stores; a new run times 40 steps on every rank and takes what fits in the time left, then
    /// re-decides once from its own steps (Trainer.replan).
    func fitToBudget(_ budget: Double, config cfg: inout TrainConfig, options opts: inout Trainer.Options,
                     trainImages: Int, started: Double, comm: Communicator) throws {
        let decided = try comm.isRoot ? budgetOfResumedRun(budget) : nil
        var v: [Double] = [decided == nil ? 0 : 1, Double(decided?.steps ?? 0), decided?.stepSeconds ?? 0,
                           Double(decided?.replannedAt ?? -1)]
        comm.broadcast(&v, bytes: 8 * v.count, root: 0)
        let log: (String) -> Void = { if comm.isRoot { print($0) } }
        let chosen: TimeBudget
        if v[0] == 1 {
            // The stored decision, re-planned or not: a resumed run does not re-plan.
            chosen = TimeBudget(seconds: budget, steps: Int(v[1]), stepSeconds: v[2],
                                replannedAt: v[3] < 0 ? nil : Int(v[3]))
            log("time budget \(duration(budget)): the resumed run's \(chosen.steps) steps")
        } else {
            opts.budgetStart = started
            let stepSeconds = try TimeBudget.calibrate(config: cfg, options: opts, comm: comm)
            let elapsed = comm.max(monotonicSeconds() - started)
            chosen = TimeBudget(seconds: budget, steps: TimeBudget.steps(seconds: budget, elapsed: elapsed,
                                                                        stepSeconds: stepSeconds),
                                stepSeconds: stepSeconds)
            let epochs = Double(chosen.steps * cfg.globalBatch) / Double(max(trainImages, 1))
            log("time budget \(duration(budget)): \(fmt(1000 * stepSeconds, 1)) ms/step (median of "
                + "\(TimeBudget.calibrationSteps) timed steps, slowest rank; \(fmt(elapsed, 1)) s spent) -> "
                + "\(chosen.steps) steps = \(fmt(epochs, 1)) epochs"
                + (cfg.schedule.map { ", warm-up \($0.warmupSteps), cosine to step \(lrDecaySteps ?? chosen.steps)" } ?? ""))
        }
        cfg.timeBudget = chosen
        if lrDecaySteps == nil { cfg.schedule?.decaySteps = chosen.steps }
        opts.totalSteps = chosen.steps
    }

    /// The budget stored in the checkpoint --resume names, when it was made with this budget.
    func budgetOfResumedRun(_ budget: Double) throws -> TimeBudget? {
        guard let spec = resume else { return nil }
        let path = spec == "auto" ? RunDirectory(path: out).checkpoints().latest() : spec
        guard let path, FileManager.default.fileExists(atPath: path) else { return nil }
        let info = try CheckpointFile.readInfo(try HDF5File(path))
        guard let b = try TrainConfig(checkpoint: info, path: path).timeBudget, b.seconds == budget else { return nil }
        return b
    }
}

/// `--lr-schedule`: constant (no schedule) or cosine (a LearningRateSchedule).
enum ScheduleName: String, ExpressibleByArgument, CaseIterable { case constant, cosine }

extension GradientPrecision: ExpressibleByArgument {}
extension FCGradientReduce: ExpressibleByArgument {}
extension OptimizerSharding: ExpressibleByArgument {}
