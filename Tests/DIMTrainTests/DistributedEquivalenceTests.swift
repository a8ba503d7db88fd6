import XCTest
import DIMTestSupport
import DIMCore
import DIMMPI
@testable import DIMTrain

/// The model, data and comparison shared by the multi-rank tests. Every step runs through
/// TrainStep, the step `dim-dist train` runs.
struct EquivalenceFixture {
    let config = ModelConfig(architecture: .basic28x28, inChannels: 1, convChannels: [6, 8], fcUnits: 24,
                             globalDim: 8, miUnits: 16, discUnits: [12, 6])
    let globalBatch = 8
    let steps = 5

    /// The training configuration of these tests: `scoredRows` is --scored-rows (nil: all).
    func trainConfig(_ loss: LossConfig, scoredRows: Int? = nil, globalBatch: Int? = nil) -> TrainConfig {
        var c = TrainConfig(model: config, loss: loss, globalBatch: globalBatch ?? self.globalBatch)
        c.seed = 3
        c.learningRate = 1e-3
        c.scoredRows = scoredRows
        return c
    }

    /// The global batch of step s (the same on every rank), channel-major `[1, N, 28, 28]`.
    func globalImages(step: Int) -> [Float] {
        var rng = SplitMix64(seed: 11, stream: 9, index: UInt64(step))
        return (0..<(globalBatch * 28 * 28)).map { _ in rng.uniform(1) }
    }

    /// This rank's images of step s.
    func images(step: Int, comm: Communicator) -> Tensor {
        let n = globalBatch / comm.size
        let all = globalImages(step: step)
        return Tensor([1, n, 28, 28], values: Array(all[(comm.rank * n * 784)..<((comm.rank + 1) * n * 784)]))
    }

    /// Worst per-tensor relative difference, leaving out LossConfig.zeroGradientParameters (under
    /// infoNCE they only move by rounding noise, which Adam scales up to ±lr steps;
    /// `testZeroBySymmetryGradientIsNoise` checks it is noise).
    func worstDifference(_ a: [Float], _ b: [Float], loss: LossConfig, paramsOnly: Bool = false) -> (Double, String) {
        let model = DIMModel(config: config, loss: loss, seed: 3)
        var worst = (0.0, "")
        var offset = 0
        for p in model.params.parameters + (paramsOnly ? [] : model.discParams.parameters) {
            if loss.zeroGradientParameters.contains(p.name) {
                offset += p.count; continue
            }
            let e = relativeDifference(a[offset..<(offset + p.count)], b[offset..<(offset + p.count)])
            if e > worst.0 { worst = (e, p.name) }
            offset += p.count
        }
        return worst
    }

    /// A TrainStep over `comm` on the fixture's configuration. `localOnly`: the model sees only
    /// this rank (own images as negatives, own BatchNorm statistics) and only the gradients are
    /// summed over `comm`: not DIM's loss, to show the gathers matter. Small buckets started as
    /// soon as backward finishes them: under mpirun, many non-blocking allreduces in flight
    /// between synchronised BatchNorm's blocking ones; bf16 for every tensor of 256 values or more
    /// (the test model's are small). `sharding`: as TrainStep's (`auto` shards the update on one
    /// host, as `dim-dist train` does; the summed gradients are then nowhere whole).
    func trainStep(_ loss: LossConfig, comm: Communicator, scoredRows: Int? = nil, localOnly: Bool = false,
                   precision: Precision = .fp32, gradientPrecision: GradientPrecision = .fp32,
                   fcGradient: FCGradientReduce = .auto, update: TrainStep.Update = .adam,
                   sharding: OptimizerSharding = .auto) throws -> TrainStep {
        let config = trainConfig(loss, scoredRows: scoredRows,
                                 globalBatch: localOnly ? globalBatch / comm.size : globalBatch)
        let sync = GradientSync(comm: comm, precision: gradientPrecision, bf16MinimumTensor: 256)
        sync.bucketFloats = 256
        sync.minimumBucketFloats = 1
        let step = try TrainStep(config: config, state: TrainingState(config: config, precision: precision),
                                 comm: localOnly ? SingleProcess() : comm, fcGradientReduce: fcGradient,
                                 optimizerSharding: sharding, sync: sync)
        step.update = update
        return step
    }

    /// One step's gradients (model, then discriminator) from the initial weights, on the global
    /// batch, prior sample and row sample of `step`, summed over ranks. Comparing these per step,
    /// rather than weights after several steps, keeps the comparison about the gradients: with
    /// sampled rows a few steps of SGD turn float rounding into visible differences.
    func stepGradients(loss: LossConfig, comm: Communicator, scoredRows: Int? = nil, step: Int = 0,
                       gradientPrecision: GradientPrecision = .fp32,
                       fcGradient: FCGradientReduce = .auto) throws -> [Float] {
        let train = try trainStep(loss, comm: comm, scoredRows: scoredRows, gradientPrecision: gradientPrecision,
                                  fcGradient: fcGradient, sharding: .off)
        precondition(fcGradient != .factors || comm.size == 1 || train.gathersFCFactors)
        train.state.step = step
        try train.run(images: images(step: step, comm: comm))
        let m = train.state.model
        return m.params.grads.map { Array(UnsafeBufferPointer(start: $0, count: m.params.count)) }!
            + (m.discParams.count > 0 ? Array(UnsafeBufferPointer(start: m.discParams.grads!,
                                                                  count: m.discParams.count))
               : [])
    }

    /// Trains `steps` steps through TrainStep; returns all parameters (model, then discriminator).
    /// `update: .sgd` (p -= 0.05 g instead of Adam): Adam's first steps are +-lr whatever the size
    /// of a gradient entry, so an entry that sums to almost zero (cancelling terms; more of them
    /// when only a few rows carry gradient) turns float rounding into a full step; plain SGD keeps
    /// the comparison about the gradients.
    func train(loss: LossConfig, comm: Communicator, scoredRows: Int? = nil, localOnly: Bool = false,
               precision: Precision = .fp32, fcGradient: FCGradientReduce = .auto,
               update: TrainStep.Update = .adam, sharding: OptimizerSharding = .auto) throws -> [Float] {
        let train = try trainStep(loss, comm: comm, scoredRows: scoredRows, localOnly: localOnly, precision: precision,
                                  fcGradient: fcGradient, update: update, sharding: sharding)
        precondition(fcGradient != .factors || comm.size == 1 || localOnly || train.gathersFCFactors)
        for s in 0..<steps { try train.run(images: images(step: s, comm: comm)) }
        let m = train.state.model
        return Array(UnsafeBufferPointer(start: m.params.values!, count: m.params.count))
            + Array(UnsafeBufferPointer(start: m.discParams.values!, count: m.discParams.count))
    }
}

/// docs/design.md §6: np ranks with per-rank batch N/np reproduce one process with batch N.
///
/// Run under mpirun (.ci/run does, with 2 and 4 ranks): every rank trains its slice with the MPI
/// communicator, and also trains the single-process reference on the whole batch in-process; the
/// parameters after 5 steps must agree to relative 1e-4 per tensor. Without mpirun the tests skip.
final class DistributedEquivalenceTests: XCTestCase {
    static let comm: Communicator = MPICommunicator.launchedWithSeveralRanks ? MPICommunicator() : SingleProcess()

    let fixture = EquivalenceFixture()
    func worstDifference(_ a: [Float], _ b: [Float], loss: LossConfig, paramsOnly: Bool = false) -> (Double, String) {
        fixture.worstDifference(a, b, loss: loss, paramsOnly: paramsOnly)
    }

    func train(loss: LossConfig, comm: Communicator, localOnly: Bool = false,
               precision: Precision = .fp32) throws -> [Float] {
        try fixture.train(loss: loss, comm: comm, localOnly: localOnly, precision: precision)
    }

    func requireRanks() throws -> Communicator {
        let comm = Self.comm
        guard comm.size > 1 else { throw XCTSkip("multi-rank test: run under mpirun (.ci/run does)") }
        return comm
    }

    /// Under mpirun on one host: the host's ranks sharing the gradient sum and Adam in an MPI
    /// shared-memory window, against every rank allreducing with MPI and updating everything.
    /// Every estimator, the global term and prior matching, Adam and SGD. With 2 ranks both add
    /// the same two values (bit-identical); with 4, Open MPI adds in pairs and the shards in rank
    /// order.
    func testShardedUpdateMatchesAllreduce() throws {
        let comm = try requireRanks()
        guard comm.hosts == 1 else { throw XCTSkip("the sharded update runs on one host (\(comm.hosts) here)") }
        let losses = Estimator.allCases.map { LossConfig(estimator: $0) } + [LossConfig(estimator: .jsd, beta: 1,
                alpha: 0.5, gamma: 0.1)]
        for loss in losses {
            for update in [TrainStep.Update.adam, .sgd(rate: 0.005)] {
                let sharded = try fixture.train(loss: loss, comm: comm, update: update, sharding: .host)
                let allreduced = try fixture.train(loss: loss, comm: comm, update: update, sharding: .off)
                let (err, name) = worstDifference(allreduced, sharded, loss: loss)
                if comm.isRoot {
                    print("sharded update np=\(comm.size) \(loss.estimator) alpha \(loss.alpha) \(update): worst relative "
                          + "difference \(sci(err)) (\(name))")
                }
                if comm.size == 2 {
                    XCTAssertEqual(sharded, allreduced, "\(loss.estimator) \(update): \(name) differs by \(err)")
                } else {
                    XCTAssertLessThan(err, 1e-4, "\(loss.estimator) \(update): \(name) differs by \(err)")
                }
            }
        }
    }

    func testEveryEstimatorMatchesOneProcess() throws {
        let comm = try requireRanks()
        for est in Estimator.allCases {
            let loss = LossConfig(estimator: est)
            let distributed = try train(loss: loss, comm: comm)
            let reference = try train(loss: loss, comm: SingleProcess())
            let (err, name) = worstDifference(reference, distributed, loss: loss)
            if comm.isRoot { print("equivalence np=\(comm.size) \(est.rawValue): worst relative difference "
                + "\(sci(err)) (\(name))") }
            XCTAssertLessThan(err, 1e-4, "\(est) on \(comm.size) ranks: \(name) differs by \(err)")
        }
    }

    func testPriorMatchingAndGlobalDIMMatchOneProcess() throws {
        let comm = try requireRanks()
        let loss = LossConfig(estimator: .jsd, beta: 1, alpha: 0.5, gamma: 0.1)
        let distributed = try train(loss: loss, comm: comm)
        let reference = try train(loss: loss, comm: SingleProcess())
        let (err, name) = worstDifference(reference, distributed, loss: loss)
        if comm.isRoot { print("equivalence np=\(comm.size) jsd+global+prior: worst relative difference \(sci(err)) "
            + "(\(name))") }
        XCTAssertLessThan(err, 1e-4, "prior matching on \(comm.size) ranks: \(name) differs by \(err)")
    }

    func testBF16MatchesOneProcess() throws {
        // bf16 rounds each GEMM input elementwise, the same way whatever the split, but a float32
        // value one ulp away (another summation order) can round to the neighbouring bf16 value,
        // a 2^-8 step. So "equal" here means to bf16's precision: 2^-7 (its machine epsilon),
        // where fp32 uses 1e-4. Measured: jsd 4e-7 / 8e-7, nce 2.4e-3 (encoder.bn0.bias, whose
        // gradient is small), on 2 / 4 ranks.
        let comm = try requireRanks()
        if let why = Precision.bf16.unsupportedReason() { throw XCTSkip(why) }
        for est in [Estimator.jsd, .nce] {
            let loss = LossConfig(estimator: est)
            let distributed = try train(loss: loss, comm: comm, precision: .bf16)
            let reference = try train(loss: loss, comm: SingleProcess(), precision: .bf16)
            let (err, name) = worstDifference(reference, distributed, loss: loss)
            if comm.isRoot { print("equivalence np=\(comm.size) \(est.rawValue) bf16: worst relative difference "
                + "\(sci(err)) (\(name))") }
            XCTAssertLessThan(err, 0x1p-7, "bf16 \(est) on \(comm.size) ranks: \(name) differs by \(err)")
        }
    }

    /// Under mpirun: the MPI collectives (variable-count gather and reduce-scatter) give the same.
    func testBoundedUnderMPIMatchesOneProcess() throws {
        let comm = try requireRanks()
        for est in Estimator.allCases {
            let loss = LossConfig(estimator: est)
            var worst = (0.0, "")
            for step in 0..<10 {  // ten row samples: some leave a rank without rows
                let bounded = try fixture.stepGradients(loss: loss, comm: comm, scoredRows: 3, step: step)
                let reference = try fixture.stepGradients(loss: loss, comm: SingleProcess(), scoredRows: 3, step: step)
                let (err, name) = fixture.worstDifference(reference, bounded, loss: loss)
                if err > worst.0 { worst = (err, "step \(step) \(name)") }
            }
            if comm.isRoot { print("bounded negatives K=3 of 8, np=\(comm.size) \(est.rawValue): worst relative "
                + "gradient difference \(sci(worst.0)) (\(worst.1))") }
            XCTAssertLessThan(worst.0, 1e-4, "\(est): \(worst.1)")
        }
    }

    /// --fc-grad-reduce factors through MPI: the fc weights' gradients (the encoder's and the
    /// global-DIM critic's) from dL/dh and the fc input gathered over ranks, left out of the allreduce.
    func testFCFactorsUnderMPIMatchOneProcess() throws {
        let comm = try requireRanks()
        for loss in [LossConfig(estimator: .nce), LossConfig(estimator: .jsd, beta: 1, alpha: 0.5, gamma: 0.1)] {
            // SGD: Adam would divide a doubly counted gradient's scale out.
            let distributed = try fixture.train(loss: loss, comm: comm, fcGradient: .factors, update: .sgd(rate: 0.005))
            let reference = try fixture.train(loss: loss, comm: SingleProcess(), update: .sgd(rate: 0.005))
            let (err, name) = worstDifference(reference, distributed, loss: loss)
            if comm.isRoot { print("fc factors np=\(comm.size) \(loss.estimator.rawValue) alpha \(loss.alpha): worst "
                + "relative difference \(sci(err)) (\(name))") }
            XCTAssertLessThan(err, 1e-4, "fc factors, \(loss.estimator) on \(comm.size) ranks: \(name) differs by \(err)")
        }
    }

    /// --grad-reduce bf16 through MPI (a user-defined reduction in MPI_Iallreduce).
    func testBF16GradientReduceUnderMPI() throws {
        let comm = try requireRanks()
        let loss = LossConfig(estimator: .jsd)
        let fp32 = try fixture.stepGradients(loss: loss, comm: comm)
        let bf16 = try fixture.stepGradients(loss: loss, comm: comm, gradientPrecision: .bf16)
        let err = relativeDifference(fp32, bf16)
        if comm.isRoot {
            print("bf16 gradient allreduce np=\(comm.size): relative difference of the summed gradient \(sci(err))")
        }
        XCTAssertGreaterThan(err, 0)
        XCTAssertLessThan(err, 0x1p-8)
    }

    /// Each of LossConfig.zeroGradientParameters has a gradient at rounding level under its loss
    /// (global DIM on, so both are there), and the same tensors do not under JSD.
    func testZeroBySymmetryGradientIsNoise() throws {
        for estimator in [Estimator.nce, .jsd] {
            let loss = LossConfig(estimator: estimator, alpha: 0.5)
            let train = try fixture.trainStep(loss, comm: SingleProcess())
            try train.run(images: fixture.images(step: 0, comm: SingleProcess()))
            let model = train.state.model
            let norm = { (p: Parameter) in p.grad.array.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() }
            XCTAssertEqual(loss.zeroGradientParameters.isEmpty, estimator != .nce)
            for name in ["local_mi.ln.bias", "gdim.out.bias"] {
                let bias = norm(model.params[name]!)
                let weight = norm(model.params[name.replacingOccurrences(of: ".bias", with: ".weight")]!)
                if loss.zeroGradientParameters.contains(name) {
                    XCTAssertLessThan(bias, 1e-3 * weight, "\(estimator): \(name)'s gradient should be rounding noise")
                } else {
                    XCTAssertGreaterThan(bias, 1e-2 * weight, "\(estimator): \(name)'s gradient should not be zero")
                }
            }
        }
    }

    func testLocalNegativesAreNotEquivalent() throws {
        // Without the cross-rank collectives each rank only sees its own images as negatives: a
        // different loss, so the equivalence test above can fail.
        let comm = try requireRanks()
        let loss = LossConfig(estimator: .nce)
        let local = try train(loss: loss, comm: comm, localOnly: true)
        let reference = try train(loss: loss, comm: SingleProcess())
        let (err, name) = worstDifference(reference, local, loss: loss)
        if comm.isRoot { print("local negatives np=\(comm.size): worst relative difference \(sci(err)) (\(name))") }
        XCTAssertGreaterThan(err, 1e-3, "local negatives should change training")
    }
}

/// The same checks in plain `swift test`: ranks are threads of this process (InProcessGroup), so
/// every distributed code path (rank offsets, the gathers, reduce-scatters, per-row allreduces,
/// synchronised BatchNorm) runs at np = 2 and 4 without mpirun.
final class InProcessEquivalenceTests: XCTestCase {
    let runner = EquivalenceFixture()
    var fixture: EquivalenceFixture { runner }

    func worst(_ loss: LossConfig, np: Int) throws -> (Double, String) {
        let reference = try runner.train(loss: loss, comm: SingleProcess())
        let distributed = try InProcessGroup.run(ranks: np) { try self.runner.train(loss: loss, comm: $0) }
        // Every rank ends with the same parameters.
        for r in 1..<np { XCTAssertEqual(distributed[r], distributed[0], "rank \(r) differs from rank 0") }
        return fixture.worstDifference(reference, distributed[0], loss: loss)
    }

    func testEveryEstimatorAndTermMatchesOneProcess() throws {
        let losses = Estimator.allCases.map { LossConfig(estimator: $0) } + [LossConfig(estimator: .jsd, beta: 1,
                alpha: 0.5, gamma: 0.1)]
        for loss in losses {
            for np in [2, 4] {
                let (err, name) = try worst(loss, np: np)
                XCTAssertLessThan(err, 1e-4,
                                  "\(loss.estimator) alpha \(loss.alpha) gamma \(loss.gamma), np=\(np): "
                                  + "\(name) differs by \(err)")
            }
        }
    }

    /// --grad-reduce bf16: one step's summed gradient is within bf16's rounding of the fp32 sum
    /// (each of the np - 1 additions rounds to 8 significant bits). Compared per step: over the
    /// fixture's 5 steps this tiny model amplifies any difference ~150x (fp32 summation-order noise
    /// of 1e-6 grows to 2.3e-4 in the update; bf16's 3e-3 to 0.4), which says nothing about bf16.
    func testBF16GradientReduceStaysWithinBF16Precision() throws {
        let loss = LossConfig(estimator: .jsd)
        func reducedGradients(_ precision: GradientPrecision) throws -> [Float] {
            try InProcessGroup.run(ranks: 4) { try self.fixture.stepGradients(loss: loss, comm: $0,
                                                                              gradientPrecision: precision) }[0]
        }
        let (fp32, bf16) = (try reducedGradients(.fp32), try reducedGradients(.bf16))
        let gradientError = relativeDifference(fp32, bf16)
        print("bf16 gradient allreduce, np=4: relative difference of the summed gradient \(sci(gradientError))")
        XCTAssertGreaterThan(gradientError, 0, "bf16 must round")
        XCTAssertLessThan(gradientError, 0x1p-8)
    }

    /// --fc-grad-reduce factors: every estimator and term (the critic has an fc block too) on 2 and
    /// 4 ranks trains like one process, with Adam and with SGD. Fails if the fc weights' gradients
    /// were only this rank's (factors not gathered) or counted twice (also allreduced: Adam alone
    /// would not see that, since it divides a gradient's scale out).
    func testFCFactorsMatchOneProcess() throws {
        let losses = Estimator.allCases.map { LossConfig(estimator: $0) } + [LossConfig(estimator: .jsd, beta: 1,
                alpha: 0.5, gamma: 0.1)]
        for loss in losses {
            for update in [TrainStep.Update.adam, .sgd(rate: 0.005)] {
                let reference = try runner.train(loss: loss, comm: SingleProcess(), update: update)
                for np in [2, 4] {
                    let distributed = try InProcessGroup.run(ranks: np) { try self.runner.train(loss: loss, comm: $0,
                            fcGradient: .factors, update: update) }
                    for r in 1..<np { XCTAssertEqual(distributed[r], distributed[0], "rank \(r) differs from rank 0") }
                    let (err, name) = fixture.worstDifference(reference, distributed[0], loss: loss)
                    XCTAssertLessThan(err, 1e-4, "fc factors, \(loss.estimator) alpha \(loss.alpha), \(update), "
                                      + "np=\(np): \(name) differs by \(err)")
                }
            }
        }
    }

    /// One step's summed gradients are the same both ways, the fc weights included.
    func testFCFactorsGiveTheAllreducedGradients() throws {
        let loss = LossConfig(estimator: .jsd, beta: 1, alpha: 0.5, gamma: 0.1)
        let byFactors = try InProcessGroup.run(ranks: 2) { try self.fixture.stepGradients(loss: loss, comm: $0,
                fcGradient: .factors) }[0]
        let allreduced = try InProcessGroup.run(ranks: 2) { try self.fixture.stepGradients(loss: loss, comm: $0,
                fcGradient: .allreduce) }[0]
        let (err, name) = fixture.worstDifference(allreduced, byFactors, loss: loss)
        XCTAssertLessThan(err, 1e-5, "\(name) differs by \(err)")
    }

    /// auto gathers factors only when the ranks span hosts and the factors are small against the
    /// weight (the encoder's fc: 1024 x 4096 at 32x32, 1024 x 2304 at 28x28).
    func testFCGradientReduceChoosesFactorsBetweenHostsOnly() {
        let choices = InProcessGroup.run(ranks: 2, hosts: 2) { comm in
            [FCGradientReduce.auto.gathersFactors(comm: comm, globalBatch: 64, outputs: 1024, inputs: 4096),
             FCGradientReduce.auto.gathersFactors(comm: comm, globalBatch: 64, outputs: 1024, inputs: 2304),
             FCGradientReduce.auto.gathersFactors(comm: comm, globalBatch: 256, outputs: 1024, inputs: 4096),
             FCGradientReduce.allreduce.gathersFactors(comm: comm, globalBatch: 64, outputs: 1024, inputs: 4096)]
        }[0]
        XCTAssertEqual(choices, [true, true, false, false])
        let oneHost = InProcessGroup.run(ranks: 2, hosts: 1) { comm in
            [FCGradientReduce.auto.gathersFactors(comm: comm, globalBatch: 64, outputs: 1024, inputs: 4096),
             FCGradientReduce.factors.gathersFactors(comm: comm, globalBatch: 64, outputs: 1024, inputs: 4096)]
        }[0]
        XCTAssertEqual(oneHost, [false, true])
        XCTAssertFalse(FCGradientReduce.factors.gathersFactors(comm: SingleProcess(), globalBatch: 64, outputs: 1024,
                                                                inputs: 4096))
    }

    func testLocalOnlyTrainingIsNotEquivalent() throws {
        let loss = LossConfig(estimator: .nce)
        let reference = try runner.train(loss: loss, comm: SingleProcess())
        let local = try InProcessGroup.run(ranks: 2) { try self.runner.train(loss: loss, comm: $0, localOnly: true) }
        XCTAssertGreaterThan(fixture.worstDifference(reference, local[0], loss: loss).0, 1e-3)
    }
}

/// Bounded rows (--scored-rows K): K rows sampled from the global batch per step, the same
/// sample on any number of ranks (docs/bounded-negatives.md).
final class BoundedNegativesTests: XCTestCase {
    let runner = EquivalenceFixture()
    var fixture: EquivalenceFixture { runner }

    /// np = 1, 2, 4 compute the same gradients with K = 3 of N = 8 at ten steps (ten row samples,
    /// some leaving a rank without rows), for every estimator and with the global-DIM critic and
    /// prior matching on (JSD: the critic's column negatives too).
    func testBoundedIsTheSameLossOnAnyNumberOfRanks() throws {
        let losses = Estimator.allCases.map { LossConfig(estimator: $0) } + [LossConfig(estimator: .nce, beta: 1,
                alpha: 0.5, gamma: 0.1), LossConfig(estimator: .jsd, beta: 1, alpha: 0.5, gamma: 0.1)]
        for loss in losses {
            for step in 0..<10 {
                let reference = try runner.stepGradients(loss: loss, comm: SingleProcess(), scoredRows: 3, step: step)
                for np in [2, 4] {
                    let distributed = try InProcessGroup.run(ranks: np) { try self.runner.stepGradients(loss: loss,
                            comm: $0, scoredRows: 3, step: step) }
                    let (err, name) = fixture.worstDifference(reference, distributed[0], loss: loss)
                    XCTAssertLessThan(err, 1e-4, "bounded \(loss.estimator) alpha \(loss.alpha), np=\(np), step "
                                      + "\(step): \(name) differs by \(err)")
                }
                // Fewer rows than images is another objective (so the comparison above can fail).
                let full = try runner.stepGradients(loss: loss, comm: SingleProcess(), step: step)
                XCTAssertGreaterThan(fixture.worstDifference(full, reference, loss: loss).0, 1e-3,
                                     "\(loss.estimator): K < N must change the gradients")
            }
        }
    }

    /// K >= N is DIM's full loss, on one rank and on several.
    func testKAtLeastNIsTheFullLoss() throws {
        for est in Estimator.allCases {
            let loss = LossConfig(estimator: est)
            let full = try runner.train(loss: loss, comm: SingleProcess())
            for K in [fixture.globalBatch, 100] {
                XCTAssertEqual(try runner.train(loss: loss, comm: SingleProcess(), scoredRows: K), full)
                let two = try InProcessGroup.run(ranks: 2) { try self.runner.train(loss: loss, comm: $0,
                                                                                   scoredRows: K) }
                XCTAssertLessThan(fixture.worstDifference(full, two[0], loss: loss).0, 1e-4, "\(est) K=\(K)")
            }
        }
    }
}
