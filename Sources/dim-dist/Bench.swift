import Foundation
import ArgumentParser
import DIMCore
import DIMTrain

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time training steps on random data: images/s, GFLOP/s and where the time goes.",
        discussion: """
        Runs forward, backward, gradient allreduce and Adam on random images of the chosen model.
        Under mpirun, --batch-size is the global batch and the time in collectives is reported.
        Use OPENBLAS_NUM_THREADS to choose threads per rank.
        """)

    @OptionGroup var model: ModelOptions
    @Option(help: "Global batch size.") var batchSize = 64
    @Option(help: "Timed steps (in each round).") var steps = 5
    @Option(help: "Untimed warm-up steps (at the start of each round).") var warmup = 1
    @Option(help: ArgumentHelp(
        "Rounds of: the warm-up steps, the timed steps, one reference GEMM call (one more before the first round).",
        discussion: """
        The report rates each round's median step against the reference calls on either side of \
        it and prints the median over the rounds, with the ranges (a shared machine's speed drifts \
        within seconds).
        """))
    var rounds = 3
    @Option(name: [.customLong("scored-rows"), .customLong("max-negatives")],
            help: "Bounded rows: score K sampled global vectors per step (as train --scored-rows).")
    var scoredRows: Int?
    @Option(help: "Gradient allreduce in fp32 or bf16 (as train --grad-reduce).") var gradReduce: GradientPrecision = .fp32
    @Option(help: "fc weights' gradients: auto, allreduce or factors (as train --fc-grad-reduce).")
    var fcGradReduce: FCGradientReduce = .auto
    @Option(help: "Ranks on one host share the gradient sum and Adam: auto, off or host (as train --optimizer-sharding).")
    var optimizerSharding: OptimizerSharding = .auto
    @Flag(help: "Time the collectives (allreduce, allgather, reduce-scatter) over message sizes instead.") var collectives = false
    @Option(help: "Message sizes in bytes for --collectives, comma-separated.") var sizes = "4096,65536,1048576,8388608,58720256"
    @Option(help: "Repetitions per size for --collectives.") var repeats = 20
    @Flag(help: "One JSON record per line (per message size with --collectives, else one for the step).")
    var json = false
    @Flag(help: """
        Also time the step's GEMMs by shape, then each shape alone: the rate they reach by \
        themselves bounds the whole step's (every other pass removed).
        """)
    var gemmShapes = false

    func run() throws {
        let collectiveTimes = CollectiveTimes()
        let comm = try makeCommunicator(observer: collectiveTimes)
        if collectives { return try timeCollectives(comm) }
        let config = try model.config(imageSize: nil, channels: nil)
        let loss = model.lossConfig()
        let machine = machineReport(comm: comm)
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
        // bf16's rate where the CPU has it (the step's reference is measured in each round).
        let bf16Rate = Precision.bf16.unsupportedReason() == nil ? BLASKernels.measureGEMM(.bf16) : nil
        // With --json, stdout carries only the record; the header goes to stderr.
        let say: (String) -> Void = json ? { printError($0) } : { print($0) }
        if comm.isRoot {
            machine.forEach { say($0) }
            if let r = bf16Rate {
                let fp32 = BLASKernels.measureGEMM(.fp32)
                say("bf16 GEMM 2048x2048x4096 (oneDNN): \(fmt(r, 1)) GFLOP/s = \(fmt(r / fp32, 2))x fp32")
            } else {
                say("bf16 GEMM: not available on this CPU (no AVX512_BF16)")
            }
            say("bench: \(config.architecture.rawValue) in=\(config.inChannels) conv=\(config.convChannels) "
                + "fc=\(config.fcUnits) y=\(config.globalDim) mi=\(config.miUnits), "
                + "estimator \(loss.estimator.rawValue), "
                + "precision \(model.precision.rawValue), global batch \(batchSize), "
                + "\(comm.size) rank(s) x \(blasThreads()) BLAS thread(s)")
        }
        var training = TrainConfig(model: config, loss: loss, globalBatch: batchSize)
        training.scoredRows = scoredRows
        let r = try runBenchmark(training, precision: model.precision, gradientPrecision: gradReduce,
                                 fcGradientReduce: fcGradReduce, optimizerSharding: optimizerSharding, steps: steps,
                                 warmup: warmup, rounds: rounds, comm: comm,
                                 recordShapes: gemmShapes, collectiveTimes: collectiveTimes, log: { _ in })
        // Every rank times the shapes alone at once, as the reference was measured.
        let alone = r.gemmShapes.map { BLASKernels.timeGEMM($0.shape, model.precision) }
        let reference = r.reference
        // The estimators alone, on this rank's block of scores (rows x local patches).
        let rowsPerStep = min(scoredRows ?? batchSize, batchSize)
        let estimators = measureEstimators(rows: rowsPerStep, localBatch: batchSize / comm.size,
                                           positions: config.localPositions)
        let threaded = blasThreads() > 1
            ? measureEstimators(rows: rowsPerStep, localBatch: batchSize / comm.size, positions: config.localPositions,
                                threads: blasThreads())
            : nil
        guard comm.isRoot else { return }
        if json {
            print(try jsonLine(BenchRecord(r, config: training, precision: model.precision,
                                           gradientPrecision: gradReduce,
                                           ranks: comm.size, estimators: estimators, referenceGemmGflops: reference)))
        } else {
            printReport(r, estimators: estimators, threaded: threaded, ranks: comm.size,
                        scores: "\(rowsPerStep) x \(batchSize / comm.size * config.localPositions)")
            if gemmShapes && r.steps > 0 { printShapes(r, alone: alone, reference: reference) }
        }
    }

    /// --collectives: each collective of a step over message sizes.
    func timeCollectives(_ comm: Communicator) throws {
        let timings = runCollectiveBenchmark(comm: comm, sizes: try parseList(sizes, "--sizes"), repeats: repeats)
        guard comm.isRoot else { return }
        if !json { print("collectives on \(comm.size) rank(s): seconds per call (bytes = whole result)") }
        for t in timings {
            if json {
                print(try jsonLine(t))
            } else {
                print("  \(padRight(t.op, 15)) \(pad(String(t.bytes), 10)) B  \(pad(fmt(t.seconds * 1e3, 3), 10)) ms  "
                      + "\(pad(fmt(Double(t.bytes) / t.seconds / 1e9, 3), 7)) GB/s")
            }
        }
    }

    /// --gemm-shapes: each shape's rate in the step and alone, and the ceiling they set.
    func printShapes(_ r: BenchmarkResult, alone: [Double], reference: Double) {
        print("  GEMMs by shape (C+= accumulates): calls/step, ms/step, GFLOP/s in the step and alone")
        var inStep = 0.0, byThemselves = 0.0, flops = 0.0
        for ((shape, calls, seconds), single) in zip(r.gemmShapes, alone) {
            inStep += seconds; byThemselves += calls * single; flops += calls * shape.flops
            print("    \(padRight(shape.description, 24)) \(pad(fmt(calls, 1), 5)) \(pad(fmt(seconds * 1000, 2), 8)) ms  "
                  + "\(pad(fmt(calls * shape.flops / seconds / 1e9, 1), 7))  \(pad(fmt(shape.flops / single / 1e9, 1), 7))")
        }
        let ceiling = flops / byThemselves / 1e9
        print("  the step's GEMMs: \(fmt(inStep * 1000, 1)) ms in the step, \(fmt(byThemselves * 1000, 1)) ms alone "
              + "= \(fmt(ceiling, 1)) GFLOP/s = \(fmt(100 * ceiling / reference, 1))% of the reference (\(fmt(reference, 1))): "
              + "the whole step's ceiling with every other pass removed")
    }

    /// The human-readable report: rates, where the step's time goes, the overlap, the estimators.
    func printReport(_ r: BenchmarkResult, estimators: [(Estimator, Double)], threaded: [(Estimator, Double)]?,
                     ranks: Int, scores: String) {
        if r.steps > 0 {
            let perStep = r.seconds / Double(r.steps)
            print("  \(fmt(r.imagesPerSecond, 1)) images/s, \(fmt(perStep * 1000, 1)) ms/step, "
                  + "\(fmt(r.gflopsPerSecond, 1)) GFLOP/s per rank (GEMM work \(fmt(r.gflopPerStep, 2)) GFLOP/step/rank = "
                  + "\(fmt(r.gflopPerStep * Double(ranks) / Double(batchSize), 3)) GFLOP/image)")
            let gemm = "\(model.precision.rawValue) 2048x2048x4096"
            let stepRange = [r.stepSeconds.max()!, r.stepSeconds.min()!].map { fmt(r.gflopPerStep / $0, 1) }
            let refRange = [r.references.min()!, r.references.max()!].map { fmt($0, 1) }
            let shareRange = [r.roundShares.min()!, r.roundShares.max()!].map { fmt(100 * $0, 1) }
            print("  whole step: \(fmt(r.gflopPerStep / median(r.stepSeconds), 1)) GFLOP/s in the median step = "
                  + "\(fmt(100 * r.shareOfReference, 1))% of the \(gemm) rate around it (median of \(r.roundShares.count) "
                  + "round(s): \(shareRange.joined(separator: "-"))%; steps \(stepRange.joined(separator: "-")), "
                  + "references \(refRange.joined(separator: "-")) GFLOP/s)")
            if r.repeatedGflopPerStep > 0 {
                print("  fc weights' gradients from factors gathered over ranks: \(fmt(r.repeatedGflopPerStep, 2)) "
                      + "GFLOP/step/rank repeat other ranks' work (in the GEMM calls' rate, not in the step's)")
            }
            print("  GEMM calls: \(fmt(r.gemmGflopsPerSecond, 1)) GFLOP/s = "
                  + "\(fmt(100 * r.gemmShareOfReference, 1))% of the \(gemm) rate around them (median of rounds); "
                  + "\(fmt(100 * r.gemmSecondsPerStep / perStep, 1))% of the step is in GEMMs")
            for (name, s) in r.phases {
                print("    \(padRight(name, 28)) \(pad(fmt(s * 1000, 1), 9)) ms  \(pad(fmt(100 * s / perStep, 1), 5))%")
            }
            if !r.collectives.isEmpty {
                // Waiting for a slower rank is spent inside the next blocking collective: the gap
                // between the least and the most a rank spent is the ranks' imbalance, not the network.
                print("  collectives by kind, per step: calls, ms on the mean rank (least-most rank; the first "
                      + "rank to arrive waits for the others)")
                for c in r.collectives {
                    print("    \(padRight(c.name, 28)) \(pad(fmt(c.calls, 1), 6)) calls \(pad(fmt(c.meanSeconds * 1000, 1), 7)) ms "
                          + "(\(fmt(c.leastSeconds * 1000, 1))-\(fmt(c.mostSeconds * 1000, 1)))")
                }
            }
            if !r.collectiveSites.isEmpty {
                // The same waits by call: where in the step one rank ran ahead of another.
                print("  where the ranks waited: the 5 longest of the step's \(r.collectiveSites.count) collective calls, "
                      + "ms on the mean rank (least-most rank), when the call ended (ms into the step) and its phase")
                for c in r.collectiveSites.sorted(by: { $0.meanSeconds > $1.meanSeconds }).prefix(5) {
                    let what = c.count > 0 ? "\(c.name) [\(c.count)]" : c.name
                    print("    #\(padRight("\(c.index + 1) \(what)", 38)) \(pad(fmt(c.meanSeconds * 1000, 1), 6)) ms "
                          + "(\(fmt(c.leastSeconds * 1000, 1))-\(fmt(c.mostSeconds * 1000, 1)))  at "
                          + "\(fmt(c.endOffset * 1000, 1)) ms, \(r.phase(at: c.endOffset))")
                }
            }
            if r.shardedUpdate {
                print("  gradient sum and Adam: \(ranks) shards in the host's shared memory (--optimizer-sharding), "
                      + "in the gradient allreduce and optimizer phases")
            }
            if let blocking = r.blockingAllreduceSeconds {
                let hidden = max(0, 1 - r.exposedAllreduceSeconds / blocking)
                let megabytes = Double((gradReduce == .bf16 ? 2 : 4) * r.allreducedCount) / 1e6
                print("  gradient allreduce (\(gradReduce.rawValue), \(fmt(megabytes, 1)) MB): "
                    + "\(fmt(blocking * 1000, 1)) ms alone; "
                      + "overlapped with backward, \(fmt(r.exposedAllreduceSeconds * 1000, 1)) ms stayed exposed "
                      + "(\(fmt(100 * hidden, 0))% hidden)")
            }
        } else {
            print("  no timed steps (--steps 0): the estimators alone")
        }
        print("  estimators (\(estimatorKernelISA) kernels) on one thread, \(scores) scores: "
              + estimators.map { "\($0.0.rawValue) \(fmt($0.1, 2)) ns/score" }.joined(separator: ", "))
        if let threaded {
            print("  estimators on \(blasThreads()) threads: "
                  + threaded.map { "\($0.0.rawValue) \(fmt($0.1, 2)) ns/score" }.joined(separator: ", "))
        }
    }
}
