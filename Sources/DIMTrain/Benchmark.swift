import Foundation
import DIMCore

/// Times training steps (forward, backward, gradient allreduce, Adam) of a model on random data.
/// Rank 0's figures are what `dim-dist bench` prints.
public struct BenchmarkResult {
    public var steps: Int
    public var globalBatch: Int
    public var seconds: Double
    public var gflopPerStep: Double   // this rank's GEMM work
    public var gemmSecondsPerStep: Double   // time inside GEMM calls
    /// GEMM work that repeats other ranks' (the fc weight gradients from gathered factors,
    /// FCGradientReduce; 0 without them): in the GEMM calls' time and rate, not in the step's work.
    public var repeatedGflopPerStep = 0.0
    public var phases: [(String, Double)]  // seconds per step
    /// Per step: the wait for the gradient allreduce after backward (overlapped with it).
    public var exposedAllreduceSeconds = 0.0
    /// The same allreduce alone and blocking (nil on one rank, and with a sharded update).
    public var blockingAllreduceSeconds: Double?
    /// Whether the host's ranks summed and updated shards of the parameters (HostShardedUpdate)
    /// instead of allreducing all gradients.
    public var shardedUpdate = false
    /// The model's parameters.
    public var parameterCount = 0
    /// Gradients in the allreduce (all but those backward sums itself).
    public var allreducedCount = 0
    /// When backward announced gradients final (GradientSync starts their allreduce): per
    /// announcement, the slice of the flat buffer and the mean seconds since the step began; and
    /// when backward ended. cluster/scaling_model.py replays them.
    public var gradientReady: [(range: Range<Int>, seconds: Double)] = []
    public var backwardEndSeconds = 0.0
    /// With `recordShapes`: per GEMM shape, calls and seconds per step, the most time first.
    public var gemmShapes: [(shape: GEMMShape, calls: Double, seconds: Double)] = []
    /// With `collectiveTimes` (the communicator's observer): per kind of collective in the timed
    /// steps, calls and seconds per step over the ranks (empty on one rank).
    public var collectives: [CollectiveTimes.Line] = []
    /// The same by call of the step, in call order (empty when steps made different calls).
    public var collectiveSites: [CollectiveTimes.SiteLine] = []
    /// The reference GEMM's rate (GFLOP/s) before the first round and after each round (every
    /// rank at once), and every timed step's seconds.
    public var references: [Double] = []
    public var stepSeconds: [Double] = []
    /// Per round: its median step's rate, and its GEMM calls' rate, over the mean of the two
    /// references around it.
    public var roundShares: [Double] = []
    public var roundGEMMShares: [Double] = []
    public var imagesPerSecond: Double { Double(globalBatch * steps) / seconds }
    public var gflopsPerSecond: Double { gflopPerStep * Double(steps) / seconds }
    /// The GEMMs' own rate: their FLOPs over the time spent inside them.
    public var gemmGflopsPerSecond: Double { (gflopPerStep + repeatedGflopPerStep) / gemmSecondsPerStep }
    /// The step's rate as a share of the reference GEMM's on the same machine at the same time:
    /// the median over rounds of (the round's median step) / (the references just before and
    /// after it). On a shared VM the speed of both moves by 10-50% within a minute (other
    /// tenants); a share of two medians taken over the whole run mixes slow and fast periods
    /// (one run on a Zen 3 gave 106% for its GEMM calls), a share within a round of 1-2 s does
    /// not, and the median over rounds drops the round a change of speed cut through.
    public var shareOfReference: Double { median(roundShares) }
    /// The GEMM calls' rate as a share of the reference's, likewise.
    public var gemmShareOfReference: Double { median(roundGEMMShares) }
    /// The median of the references (GFLOP/s).
    public var reference: Double { median(references) }

    /// The phase of the step (`phases`, in order) that was running `seconds` into a step.
    public func phase(at seconds: Double) -> String {
        var end = 0.0
        for (name, s) in phases where !name.hasPrefix("(") {
            end += s
            if seconds <= end { return name }
        }
        return phases.last { !$0.0.hasPrefix("(") }?.0 ?? "?"
    }
}

/// The middle value (the mean of the two middle ones for an even count; 0 for none).
public func median(_ values: [Double]) -> Double {
    let v = values.sorted()
    guard !v.isEmpty else { return 0 }
    return v.count % 2 == 1 ? v[v.count / 2] : (v[v.count / 2 - 1] + v[v.count / 2]) / 2
}

/// The reference GEMM (`precision`'s 2048x2048x4096, every rank at once), then `rounds` rounds,
/// each: `warmup` untimed steps (the reference evicted the step's data from the caches), `steps`
/// timed steps, the reference again. Each round's steps are rated against the references on
/// either side, the machine of their own second (`BenchmarkResult.shareOfReference`).
/// `recordShapes`: also time the GEMM calls by shape (a dictionary update per call).
/// `collectiveTimes`: `comm`'s observer, if any, to time its collectives by kind.
public func runBenchmark(_ config: TrainConfig, precision: Precision = .fp32,
                         gradientPrecision: GradientPrecision = .fp32, fcGradientReduce: FCGradientReduce = .auto,
                         optimizerSharding: OptimizerSharding = .auto, steps: Int, warmup: Int, rounds roundCount: Int = 1, comm: Communicator,
                         recordShapes: Bool = false, collectiveTimes: CollectiveTimes? = nil,
                         log: (String) -> Void) throws -> BenchmarkResult {
    precondition(roundCount >= 1, "runBenchmark: at least one round")
    let n = try config.localBatch(ranks: comm.size)
    let state = TrainingState(config: config, precision: precision)
    let train = try TrainStep(config: config, state: state, comm: comm, gradientPrecision: gradientPrecision,
                              fcGradientReduce: fcGradientReduce, optimizerSharding: optimizerSharding)
    let model = state.model, sync = train.sync
    let x = randomImages(config.model, localBatch: n, rank: comm.rank)
    var exposed = 0.0, stepStart = 0.0, announcement = 0, recording = false
    var ready: [(range: Range<Int>, seconds: Double)] = [], backwardEnd = 0.0
    // When backward announces each slice final, and when it ends (the allreduce phase begins).
    train.onGradientsFinal = { range in
        guard recording else { return }
        if announcement == ready.count { ready.append((range, 0)) }
        ready[announcement].seconds += monotonicSeconds() - stepStart
        announcement += 1
    }
    train.onPhase = { phase in
        if recording && phase == .gradientAllreduce { backwardEnd += monotonicSeconds() - stepStart }
    }
    func step() throws {
        stepStart = monotonicSeconds()
        if recording { collectiveTimes?.beginStep() }
        announcement = 0
        try train.run(images: x)
        if recording { exposed += sync.exposedSeconds }
    }
    // The step's counters add up over the rounds' timed steps only: what the warm-up steps and the
    // reference add to them is put back. The time in collectives is taken over the timed steps
    // alone: the barriers around them wait for the slowest rank's warm-up and reference GEMM.
    model.timer.reset()
    var collectiveSeconds = 0.0
    collectiveTimes?.reset()
    FlopCounter.reset()
    FlopCounter.shapes = recordShapes ? [:] : nil
    defer { FlopCounter.shapes = nil }
    var elapsed = 0.0, references: [Double] = [], stepSeconds: [Double] = []
    var rounds: [(medianStepSeconds: Double, gemmRate: Double, reference: Double)] = []
    // Without timed steps there is nothing to rate: one round of warm-up, no reference.
    for round in 0..<(steps > 0 ? roundCount : 1) {
        comm.barrier()
        // A round's reference before is the previous round's after.
        if steps > 0 && references.isEmpty { references.append(BLASKernels.measureGEMM(precision)) }
        let saved = (FlopCounter.gemmFlops, FlopCounter.gemmSeconds, FlopCounter.repeatedFlops, FlopCounter.shapes)
        for _ in 0..<warmup { try step() }
        (FlopCounter.gemmFlops, FlopCounter.gemmSeconds, FlopCounter.repeatedFlops, FlopCounter.shapes) = saved
        comm.barrier()
        model.timer.enabled = true
        recording = true
        collectiveTimes?.enabled = true
        let t0 = monotonicSeconds(), gemmAtStart = (FlopCounter.gemmFlops, FlopCounter.gemmSeconds)
        let collectivesAtStart = comm.communicationSeconds
        for s in 0..<steps {
            try step()
            stepSeconds.append(monotonicSeconds() - stepStart)
            if comm.isRoot { log("  round \(round + 1) step \(s + 1)/\(steps): \(fmt(monotonicSeconds() - t0, 2)) s") }
        }
        collectiveSeconds += comm.communicationSeconds - collectivesAtStart
        collectiveTimes?.enabled = false
        comm.barrier()
        elapsed += monotonicSeconds() - t0
        model.timer.enabled = false
        recording = false
        if steps > 0 {
            let before = references.last!, after = BLASKernels.measureGEMM(precision)
            references.append(after)
            let gemmRate = (FlopCounter.gemmFlops - gemmAtStart.0) / (FlopCounter.gemmSeconds - gemmAtStart.1) / 1e9
            rounds.append((median(Array(stepSeconds.suffix(steps))), gemmRate, (before + after) / 2))
        }
    }
    let timedSteps = steps * rounds.count
    let phases = model.timer.order.map { ($0, model.timer.seconds[$0]! / Double(timedSteps)) }
    var result = BenchmarkResult(steps: timedSteps, globalBatch: config.globalBatch, seconds: elapsed,
                                 gflopPerStep: (FlopCounter.gemmFlops - FlopCounter.repeatedFlops) / 1e9
                                     / Double(timedSteps),
                                 gemmSecondsPerStep: FlopCounter.gemmSeconds / Double(timedSteps), phases: phases)
    result.repeatedGflopPerStep = FlopCounter.repeatedFlops / 1e9 / Double(timedSteps)
    result.phases.append(("(of which in collectives)", collectiveSeconds / Double(timedSteps)))
    result.exposedAllreduceSeconds = exposed / Double(timedSteps)
    result.parameterCount = model.params.count
    result.references = references
    result.stepSeconds = stepSeconds
    result.roundShares = rounds.map { result.gflopPerStep / $0.medianStepSeconds / $0.reference }
    result.roundGEMMShares = rounds.map { $0.gemmRate / $0.reference }
    result.gradientReady = ready.map { ($0.range, $0.seconds / Double(max(timedSteps, 1))) }
    result.backwardEndSeconds = backwardEnd / Double(max(timedSteps, 1))
    result.gemmShapes = (FlopCounter.shapes ?? [:])
        .map { (shape: $0.key, calls: Double($0.value.calls) / Double(timedSteps),
                seconds: $0.value.seconds / Double(timedSteps)) }
        .sorted { $0.seconds > $1.seconds }
    if let times = collectiveTimes, comm.size > 1 {
        result.collectives = times.summary(steps: timedSteps, comm: comm)
        result.collectiveSites = times.sitesSummary(steps: timedSteps, comm: comm)
    }
    // The same reduction alone and blocking, for how much of it the overlap hid.
    let summed = train.gradientsSummedByBackward
    result.allreducedCount = model.params.count - summed.reduce(0) { $0 + $1.count }
    result.shardedUpdate = train.sharded != nil
    if comm.size > 1 && !result.shardedUpdate {
        result.blockingAllreduceSeconds = timeBlockingAllreduce(model.params, sync: sync, summedByBackward: summed)
    }
    return result
}

/// `dim-dist bench --json`: one step's measurements as one record (cluster/scaling_model.py reads it).
public struct BenchRecord: Codable {
    public var kind = "bench"
    public var ranks: Int, threads: Int, globalBatch: Int, precision: String, gradReduce: String
    public var miUnits: Int, scoredRows: Int?, parameterCount: Int
    public var imagesPerS: Double, msPerStep: Double, gflopsPerRank: Double, gemmGflops: Double
    /// The median of the references, and the step's share of the reference around it
    /// (BenchmarkResult.shareOfReference).
    public var referenceGemmGflops: Double, shareOfReference: Double
    public var exposedAllreduceMs: Double, blockingAllreduceMs: Double?
    /// Whether the host's ranks shared the gradient sum and Adam (then nothing was allreduced).
    public var shardedUpdate: Bool
    public var estimatorKernels: String, estimatorNsPerScore: [String: Double], phaseMs: [String: Double]
    /// [first, end, ms]: gradients [first, end) of the flat buffer were final that many ms into the step.
    public var gradientReady: [[Double]]
    public var backwardEndMs: Double

    enum CodingKeys: String, CodingKey {
        case kind, ranks, threads, precision
        case globalBatch = "global_batch", gradReduce = "grad_reduce", miUnits = "mi_units"
        case scoredRows = "scored_rows", parameterCount = "parameter_count", imagesPerS = "images_per_s"
        case msPerStep = "ms_per_step", gflopsPerRank = "gflops_per_rank", gemmGflops = "gemm_gflops"
        case referenceGemmGflops = "reference_gemm_gflops", shareOfReference = "share_of_reference"
        case exposedAllreduceMs = "exposed_allreduce_ms"
        case blockingAllreduceMs = "blocking_allreduce_ms", shardedUpdate = "sharded_update"
        case estimatorKernels = "estimator_kernels"
        case estimatorNsPerScore = "estimator_ns_per_score", phaseMs = "phase_ms"
        case gradientReady = "gradient_ready", backwardEndMs = "backward_end_ms"
    }

    public init(_ r: BenchmarkResult, config: TrainConfig, precision: Precision, gradientPrecision: GradientPrecision,
                ranks: Int, estimators: [(Estimator, Double)], referenceGemmGflops: Double) {
        self.ranks = ranks; threads = blasThreads(); globalBatch = config.globalBatch
        self.precision = precision.rawValue; gradReduce = gradientPrecision.rawValue
        miUnits = config.model.miUnits; scoredRows = config.scoredRows; parameterCount = r.parameterCount
        imagesPerS = r.imagesPerSecond; msPerStep = r.seconds / Double(r.steps) * 1000
        gflopsPerRank = r.gflopsPerSecond; gemmGflops = r.gemmGflopsPerSecond
        self.referenceGemmGflops = referenceGemmGflops
        shareOfReference = r.shareOfReference
        exposedAllreduceMs = r.exposedAllreduceSeconds * 1000
        blockingAllreduceMs = r.blockingAllreduceSeconds.map { $0 * 1000 }
        shardedUpdate = r.shardedUpdate
        estimatorKernels = estimatorKernelISA
        estimatorNsPerScore = Dictionary(uniqueKeysWithValues: estimators.map { ($0.0.rawValue, $0.1) })
        phaseMs = Dictionary(uniqueKeysWithValues: r.phases.map { ($0.0, $0.1 * 1000) })
        gradientReady = r.gradientReady.map { [Double($0.range.lowerBound), Double($0.range.upperBound),
                                               $0.seconds * 1000] }
        backwardEndMs = r.backwardEndSeconds * 1000
    }
}

/// Random images in [-1, 1] for one rank (the benchmark needs no data set; the prior sample
/// comes from the step itself).
func randomImages(_ config: ModelConfig, localBatch n: Int, rank: Int) -> Tensor {
    var rng = SplitMix64(seed: 42, stream: RandomStream.benchmarkImages(rank: rank))
    let x = Tensor([config.inChannels, n, config.imageSize, config.imageSize])
    for i in 0..<x.count { x.data[i] = rng.uniform(1) }
    return x
}

/// The best of three blocking allreduces of a store's gradients (those the step allreduces).
func timeBlockingAllreduce(_ store: ParameterStore, sync: GradientSync, summedByBackward: [Range<Int>]) -> Double {
    var best = Double.infinity
    for _ in 0..<3 {
        sync.comm.barrier()
        let t = monotonicSeconds()
        sync.begin(store, summedByBackward: summedByBackward)
        sync.finish()
        best = min(best, monotonicSeconds() - t)
    }
    return best
}

/// Nanoseconds per score of each estimator on `threads` threads, on a block of random scores shaped
/// like a step's (`rows` x `columns`; the per-rank allreduces of one process are free). The best
/// of at least `repeats` calls and `seconds` of calls: one call takes a fraction of a millisecond,
/// and the best of 5 moved by 50% from run to run on a busy 2-vCPU VM.
public func measureEstimators(rows: Int, localBatch n: Int, positions P: Int, threads: Int = 1,
                              repeats: Int = 5, seconds: Double = 0.1) -> [(Estimator, Double)] {
    let before = blasThreads()
    setBLASThreads(threads)
    defer { setBLASThreads(before) }
    let N = max(rows, n)
    let layout = ScoreLayout(mode: rows < N ? .sampledRows : .allRows, rows: Array(0..<rows), globalBatch: N,
                             localBatch: N, rank: 0, ranks: 1, positions: P)
    let cols = layout.columns
    let u = Tensor([rows, cols]), grad = Tensor([rows, cols])
    let positives = Tensor([cols]), gradPositives = Tensor([cols])
    var rng = SplitMix64(seed: 9, stream: RandomStream.benchmarkImages(rank: 0))
    for i in 0..<u.count { u.data[i] = rng.uniform(8) }
    for i in 0..<cols { positives.data[i] = rng.uniform(8) }
    return Estimator.allCases.map { est in
        var best = Double.infinity
        let start = monotonicSeconds()
        var calls = 0
        while calls < repeats || monotonicSeconds() - start < seconds {
            let t0 = monotonicSeconds()
            _ = estimatorLoss(est, u: u.data, grad: grad.data, positives: positives.data,
                              gradPositives: gradPositives.data, layout: layout, maskValue: -10, comm: SingleProcess())
            best = min(best, monotonicSeconds() - t0)
            calls += 1
        }
        return (est, best / Double(rows * cols) * 1e9)
    }
}

/// Times the three collectives of a DIM step (gradient allreduce, all-gather of G, reduce-scatter
/// of its gradient) over a range of message sizes. `bytes` is the size of the whole result
/// (the allreduced buffer, the gathered matrix, the reduce-scatter input).
public struct CollectiveTiming: Codable {
    public var op: String
    public var bytes: Int
    public var seconds: Double
    public var ranks: Int
}

public func runCollectiveBenchmark(comm: Communicator, sizes: [Int], repeats: Int) -> [CollectiveTiming] {
    var out: [CollectiveTiming] = []
    for bytes in sizes {
        let total = max(bytes / 4 / comm.size * comm.size, comm.size)
        let per = total / comm.size
        let buf = Tensor([total]), res = Tensor([total])
        for i in 0..<total { buf.data[i] = Float(i % 7) }
        let ops: [(String, () -> Void)] = [
            ("allreduce", { comm.allreduceSum(buf.data, count: total) }),
            // The gradients' path (GradientSync): non-blocking, another algorithm in Open MPI.
            ("iallreduce", { comm.startAllreduceSum(buf.data, count: total).wait() }),
            ("allgather", { comm.allgather(buf.data, count: per, into: res.data) }),
            ("reduce_scatter", { comm.reduceScatterSum(buf.data, count: per, into: res.data) }),
        ]
        for (name, op) in ops {
            op()  // warm-up (connections, buffers)
            comm.barrier()
            let reps = bytes >= 16 << 20 ? max(2, repeats / 4) : repeats
            let t0 = monotonicSeconds()
            for _ in 0..<reps { op() }
            comm.barrier()
            var t = (monotonicSeconds() - t0) / Double(reps)
            comm.allreduceMax(&t, count: 1)
            out.append(CollectiveTiming(op: name, bytes: total * 4, seconds: t, ranks: comm.size))
        }
    }
    return out
}
