import Foundation
import DIMCore

/// One training step, the only one in the program: `dim-dist train` (Trainer), `dim-dist bench`
/// (runBenchmark) and every equivalence, resume and fault test run this code.
///
/// A step on this rank's images: the prior sample of the step (when prior matching is on), the
/// model's forward and backward with the gradient allreduce overlapped (GradientSync), the
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

    /// `sync` defaults to a GradientSync over `comm` in `gradientPrecision`; a test may pass its
    /// own (small buckets, or a sum over ranks the model does not see).
    public init(config: TrainConfig, state: TrainingState, comm: Communicator,
                gradientPrecision: GradientPrecision = .fp32, fcGradientReduce: FCGradientReduce = .auto,
                sync: GradientSync? = nil) {
        precondition(state.config == config, "TrainStep: the state was built for another configuration")
        self.config = config
        self.state = state
        self.comm = comm
        self.sync = sync ?? GradientSync(comm: comm, precision: gradientPrecision)
        gathersFCFactors = fcGradientReduce.gathersFactors(comm: comm, globalBatch: config.globalBatch,
                                                           outputs: config.model.fcUnits,
                                                           inputs: config.model.flatFeatures)
    }

    /// The slices of the model's gradients that backward sums over ranks itself (the fc weights,
    /// with gathered factors); the allreduce leaves them out.
    public var gradientsSummedByBackward: [Range<Int>] {
        guard gathersFCFactors else { return [] }
        return state.model.fcBlocks.map { parameterRange(from: $0.fc.weight, through: $0.fc.weight) }
    }

    /// Whether this run matches Y to the prior (the discriminator and its Adam exist and train).
    public var priorMatching: Bool { config.loss.priorMatching }

    /// Runs step `state.step` on this rank's images `[Cin, n, H, W]` (n = global batch / ranks)
    /// and advances `state.step`. Throws, before any parameter moves, when a loss or a gradient is
    /// not finite.
    @discardableResult
    public func run(images: Tensor) throws -> DIMModel.Losses {
        let model = state.model, step = state.step
        onPhase?(.forwardBackward)
        if priorMatching { fillPriorSample(step: step) }
        sync.begin(model.params, summedByBackward: gradientsSummedByBackward)
        let announce: (Range<Int>) -> Void = { [sync, onGradientsFinal] range in
            sync.gradientsFinal(range)
            onGradientsFinal?(range)
        }
        let losses = model.forwardBackward(images, priorSample: priorMatching ? priorSample : nil,
                                           rows: config.rowSelection, step: step, comm: comm,
                                           gatherFCFactors: gathersFCFactors, gradientsFinal: announce)
        onPhase?(.gradientAllreduce)
        model.timer.start()
        sync.finish()
        if priorMatching { sync.allreduce(model.discParams) }
        model.timer.mark("gradient allreduce")
        onPhase?(.optimizer)
        try checkFinite(losses, step: step)
        switch update {
        case .adam:
            let rate = config.learningRate(step: step)
            state.adam.lr = rate
            state.adam.update(model.params)
            if priorMatching {
                state.discAdam.lr = rate
                state.discAdam.update(model.discParams)
            }
        case .sgd(let rate):
            for store in [model.params, model.discParams] where store.count > 0 {
                let (p, g) = (store.values!, store.grads!)
                for i in 0..<store.count { p[i] -= rate * g[i] }
            }
        }
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

    /// Divergence guard: every rank sees the same summed values, so all stop together.
    private func checkFinite(_ losses: DIMModel.Losses, step: Int) throws {
        let terms = [("local", losses.local), ("global", losses.global), ("prior", losses.prior),
                     ("discriminator", losses.discriminator)]
        let untouched = "stopping (the last checkpoint is untouched)"
        if let bad = terms.first(where: { !$0.1.isFinite }) {
            throw DIMError("step \(step + 1): the \(bad.0) loss is \(bad.1); \(untouched)")
        }
        let model = state.model
        if !model.params.gradientsAreFinite() || (priorMatching && !model.discParams.gradientsAreFinite()) {
            throw DIMError("step \(step + 1): a gradient is NaN or infinite; \(untouched)")
        }
    }
}
