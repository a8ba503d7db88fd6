import Foundation
import DIMCore

/// One training step, the only one in the program: `dim-dist train` (Trainer), `dim-dist bench`
/// (runBenchmark) and every equivalence, resume and fault test run this code.
///
/// A step on this rank's images: the prior sample of the step (when prior matching is on), the
/// model's forward and backward with the gradient allreduce overlapped (GradientSync) or, for
/// ranks on one host, followed by each rank's sum of its shard (HostShardedUpdate), the
/// discriminator's allreduce, the divergence guard, and the update of both models. The step's
/// index is `state.step`; every random choice in it (prior sample, scored rows) is a function of
/// (seed, step), so a step computes the same on any number of ranks and after a resume.
public final class TrainStep {
    /// How the parameters move after the gradients are summed.
    public enum Update {
        /// Adam (both models) at the configuration's learning rate for the step: training.
        case adam
        /// p -= rate * g: tests that compare gradients through several steps (Adam's first
        /// steps are +-lr whatever the size of an entry, which turns rounding into full steps).
        case sgd(rate: Float)
    }

    /// The run's configuration (a --time-budget re-plan changes its steps: Trainer.replan).
    public internal(set) var config: TrainConfig
    public let state: TrainingState
    public let comm: Communicator
    public let sync: GradientSync
    public var update = Update.adam
    /// Told, after GradientSync, of every slice of the gradient buffer backward makes final
    /// (the benchmark records when).
    public var onGradientsFinal: ((Range<Int>) -> Void)?
    /// Told which phase the step is in (the watchdog names it when a step stalls).
    public var onPhase: ((Watchdog.Phase) -> Void)?
    /// This rank's columns of the step's prior sample, `[globalDim, localBatch]`.
    public let priorSample = Tensor([0])
    /// Whether backward computes the fc blocks' weight gradients from factors gathered over ranks
    /// (FCGradientReduce, resolved for this run's ranks and hosts) instead of allreducing them.
    public let gathersFCFactors: Bool
    /// The model's gradient sum and update shared out over the host's ranks (nil: GradientSync
    /// allreduces every gradient and every rank updates every parameter).
    public private(set) var sharded: HostShardedUpdate? = nil

    /// `sync` defaults to a GradientSync over `comm` in `gradientPrecision`; a test may pass its
    /// own (small buckets, or a sum over ranks the model does not see).
    /// `optimizerSharding`: whether the host's ranks share the model's gradient sum and Adam
    /// (HostShardedUpdate; throws for `host` where it cannot run). The discriminator's small
    /// store is always allreduced.
    public init(config: TrainConfig, state: TrainingState, comm: Communicator,
                gradientPrecision: GradientPrecision = .fp32, fcGradientReduce: FCGradientReduce = .auto,
                optimizerSharding: OptimizerSharding = .auto, sync: GradientSync? = nil) throws {
        precondition(state.config == config, "TrainStep: the state was built for another configuration")
        self.config = config
        self.state = state
        self.comm = comm
        self.sync = sync ?? GradientSync(comm: comm, precision: gradientPrecision)
        gathersFCFactors = fcGradientReduce.gathersFactors(comm: comm, globalBatch: config.globalBatch,
                                                           outputs: config.model.fcUnits,
                                                           inputs: config.model.flatFeatures)
        if try optimizerSharding.shards(comm: comm, gradientPrecision: self.sync.precision) {
            sharded = HostShardedUpdate(comm: comm, store: state.model.params,
                                        summedByBackward: gradientsSummedByBackward)
            if sharded == nil && optimizerSharding == .host {
                let megabytes = 2 * (comm.size + 1) * state.model.params.count * 4 / 1_000_000
                throw DIMError("--optimizer-sharding host: the ranks got no shared memory for their gradients "
                               + "(it needs about \(megabytes) MB free in /dev/shm: `df -h /dev/shm`, docker run "
                               + "--shm-size; and MPI shared-memory windows: Open MPI's osc sm)")
            }
        }
    }

    /// The slices of the model's gradients that backward sums over ranks itself (the fc weights,
    /// with gathered factors); the allreduce leaves them out.
    public var gradientsSummedByBackward: [Range<Int>] {
        guard gathersFCFactors else { return [] }
        return state.model.fcBlocks.map { parameterRange(from: $0.fc.weight, through: $0.fc.weight) }
    }

    /// Whether this run matches Y to the prior (the discriminator and its Adam exist and train).
    public var priorMatching: Bool { config.loss.priorMatching }

    /// Every rank's Adam moments complete on every rank (with sharding each rank keeps only its
    /// shard's current): call before writing or comparing the optimizer state. Collective.
    public func gatherOptimizerState() {
        sharded?.gatherMoments(state.adam)
    }

    /// Runs step `state.step` on this rank's images `[Cin, n, H, W]` (n = global batch / ranks)
    /// and advances `state.step`. Throws, before any parameter moves, when a loss or a gradient is
    /// not finite.
    @discardableResult
    public func run(images: Tensor) throws -> DIMModel.Losses {
        let model = state.model, step = state.step
        onPhase?(.forwardBackward)
        if priorMatching { fillPriorSample(step: step) }
        if sharded == nil { sync.begin(model.params, summedByBackward: gradientsSummedByBackward) }
        let announce: (Range<Int>) -> Void = { [sync, sharded, onGradientsFinal] range in
            if sharded == nil { sync.gradientsFinal(range) }
            onGradientsFinal?(range)
        }
        let losses = model.forwardBackward(images, priorSample: priorMatching ? priorSample : nil,
                                           rows: config.rowSelection, step: step, comm: comm,
                                           gatherFCFactors: gathersFCFactors, gradientsFinal: announce)
        onPhase?(.gradientAllreduce)
        model.timer.start()
        let shardFinite = sharded?.sumShard()
        if sharded == nil { sync.finish() }
        if priorMatching { sync.allreduce(model.discParams) }
        model.timer.mark("gradient allreduce")
        onPhase?(.optimizer)
        try checkFinite(losses, step: step, shardFinite: shardFinite)
        // With sharding, this rank updates its shard of the model's parameters and takes the
        // others' from their ranks (the moments of other shards stay stale here: gatherMoments).
        let range = sharded?.shard ?? 0..<model.params.count
        switch update {
        case .adam:
            let rate = config.learningRate(step: step)
            state.adam.lr = rate
            state.adam.update(model.params, range: range)
            if priorMatching {
                state.discAdam.lr = rate
                state.discAdam.update(model.discParams)
            }
        case .sgd(let rate):
            for (store, r) in [(model.params, range), (model.discParams, 0..<model.discParams.count)] where !r.isEmpty {
                let (p, g) = (store.values!, store.grads!)
                for i in r { p[i] -= rate * g[i] }
            }
        }
        sharded?.shareParameters()
        model.timer.mark("optimizer")
        state.step += 1
        state.lastLosses = losses
        return losses
    }

    /// The prior sample of a step: a global N x d sample of U[0,1)^d from (seed, step), of which
    /// this rank keeps its own columns, so that it does not depend on the number of ranks.
    func fillPriorSample(step: Int) {
        let d = config.model.globalDim, N = config.globalBatch, n = N / comm.size, first = comm.rank * n
        priorSample.resize([d, n])
        var rng = SplitMix64(seed: config.seed, stream: RandomStream.priorSample, index: UInt64(step))
        for i in 0..<N {
            for k in 0..<d {
                let v = rng.nextFloat()
                if i >= first && i < first + n { priorSample.data[k * n + i - first] = v }
            }
        }
    }

    /// Divergence guard: every rank sees the same summed values (or the same verdict on the
    /// shards), so all stop together.
    /// `shardFinite`: with sharding, HostShardedUpdate.sumShard's verdict on the summed gradients.
    private func checkFinite(_ losses: DIMModel.Losses, step: Int, shardFinite: Bool?) throws {
        let terms = [("local", losses.local), ("global", losses.global), ("prior", losses.prior),
                     ("discriminator", losses.discriminator)]
        let untouched = "stopping (the last checkpoint is untouched)"
        if let bad = terms.first(where: { !$0.1.isFinite }) {
            throw DIMError("step \(step + 1): the \(bad.0) loss is \(bad.1); \(untouched)")
        }
        let model = state.model
        let paramsFinite = shardFinite ?? model.params.gradientsAreFinite()
        if !paramsFinite || (priorMatching && !model.discParams.gradientsAreFinite()) {
            throw DIMError("step \(step + 1): a gradient is NaN or infinite; \(untouched)")
        }
    }
}
