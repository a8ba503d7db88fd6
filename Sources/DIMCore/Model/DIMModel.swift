import Foundation

/// The whole Deep InfoMax model: encoder, local and global MI heads, the scorer, and optionally
/// the global-DIM critic (alpha > 0) and the prior discriminator (gamma > 0).
///
/// Forward and backward on one rank: encoder -> heads -> gather G -> scores -> loss -> backward ->
/// reduce-scatter dG (none with column negatives: Scorer.splitBackward) -> global head backward ->
/// encoder fc backward -> local head backward -> encoder conv backward. Parameter gradients are
/// left in `params.grads` (this rank's share); TrainStep allreduces them (overlapped with
/// backward) and applies Adam.
public final class DIMModel {
    public let config: ModelConfig
    public var lossConfig: LossConfig
    /// Precision of the encoder's, the heads' and the critic's GEMMs (scores and the prior
    /// discriminator stay float32).
    public let precision: Precision
    public let params = ParameterStore()
    public let buffers = ParameterStore(trainable: false)
    public let discParams = ParameterStore()
    public let encoder: Encoder
    public let localHead: MIHead
    public let globalHead: MIHead
    public let globalDIM: GlobalDIMCritic?
    public let discriminator: PriorDiscriminator?
    public let localScorer = Scorer()
    private let gradY = Tensor([0])
    private let gradC = Tensor([0])
    /// Per-phase wall time of forwardBackward (enable for benchmarks).
    public let timer = PhaseTimer()

    public struct Losses: Equatable {
        public var local = 0.0, global = 0.0, prior = 0.0, discriminator = 0.0
        /// beta * local + alpha * global + gamma * prior (the encoder's objective).
        public var total = 0.0
        public init() {}
    }

    /// Builds the model and initialises every parameter from `seed` (PyTorch's default schemes).
    /// The critic and the discriminator exist when their weight is non-zero or when asked for.
    public init(config: ModelConfig, loss: LossConfig = LossConfig(), seed: UInt64 = 0,
                withGlobalDIM: Bool? = nil, withPrior: Bool? = nil, precision: Precision = .fp32) {
        self.config = config
        self.lossConfig = loss
        self.precision = precision
        encoder = Encoder(config, params: params, buffers: buffers, precision: precision)
        localHead = MIHead(params, buffers: buffers, "local_mi", in: config.localChannels, units: config.miUnits,
                           convolutional: true, precision: precision)
        globalHead = MIHead(params, buffers: buffers, "global_mi", in: config.globalDim, units: config.miUnits,
                            convolutional: false, precision: precision)
        globalDIM = (withGlobalDIM ?? loss.globalDIM)
            ? GlobalDIMCritic(config, params: params, buffers: buffers, precision: precision) : nil
        discriminator = (withPrior ?? loss.priorMatching)
            ? PriorDiscriminator(discParams, inFeatures: config.globalDim, hidden: config.discUnits) : nil
        params.allocate(seed: seed)
        buffers.allocate(seed: seed)
        discParams.allocate(seed: seed &+ 1)
    }

    /// The fc blocks (the encoder's and the critic's): their weights' gradients are the ones
    /// FCGradientReduce may compute from gathered factors.
    public var fcBlocks: [FCBlock] { [encoder.fcBlock] + (globalDIM.map { [$0.fcBlock] } ?? []) }

    public var batchNorms: [BatchNorm] {
        var all = encoder.batchNorms + [localHead.norm, globalHead.norm]
        if let g = globalDIM { all += g.batchNorms }
        return all
    }

    /// Runs the encoder alone (eval mode uses BatchNorm running statistics) for features.
    public func encode(_ x: Tensor, training: Bool = false, comm: Communicator = SingleProcess()) {
        encoder.forward(x, training: training, comm: comm)
    }

    /// One forward and backward pass on this rank's images `x` (`[Cin, n, H, W]`, channel-major,
    /// pixels in [-1, 1]). `priorSample` (`[globalDim, n]`, this rank's slice of the global
    /// sample) is required when prior matching is on (the discriminator trains on it). `rows` and
    /// `step` choose the scored global vectors (RowSelection). Gradients are zeroed first; each
    /// term returns its unweighted loss and adds the gradient of its weighted loss.
    /// `gradientsFinal(range)` is told as backward goes which slices of `params`' gradients are
    /// final (GradientSync reduces them while backward runs). `gatherFCFactors`: the fc blocks'
    /// weight gradients (`fcBlocks`) are computed for the global batch from factors gathered over
    /// ranks, so they are sums over ranks already (FCGradientReduce).
    @discardableResult
    public func forwardBackward(_ x: Tensor, priorSample: Tensor? = nil, rows: RowSelection = .all, step: Int = 0,
                                comm: Communicator, gatherFCFactors: Bool = false,
                                gradientsFinal: (Range<Int>) -> Void = { _ in }) -> Losses {
        let lc = lossConfig
        precondition(!lc.priorMatching || priorSample != nil, "prior matching (gamma > 0) needs a prior sample")
        timer.start()
        params.zeroGrads()
        discParams.zeroGrads()
        timer.mark("zeroing gradients")
        var losses = Losses()
        encoder.forward(x, training: true, comm: comm)
        timer.mark("encoder")
        gradY.resize(encoder.globalVector.shape, zero: true)
        gradC.resize(encoder.localMap.shape, zero: true)
        // Backward runs in the order that makes the large gradients final earliest, so that their
        // allreduce overlaps the rest: the terms' contributions to dL/dY come first (critic, global
        // MI head, prior), which completes dL/dY; then the encoder's fc block (its largest tensor);
        // then the local MI head's long backward, which completes dL/dC; the conv blocks last.
        // Every sum into dL/dY and dL/dC happens in the same order as in a plain backward.
        if lc.globalDIM {
            losses.global = globalTerm(rows: rows, step: step, comm: comm, gatherFCFactors: gatherFCFactors)
            gradientsFinal(params.range(ofPrefix: "gdim."))
            timer.mark("global DIM")
        }
        if lc.beta != 0 {
            losses.local = localScores(rows: rows, step: step, comm: comm, gradientsFinal: gradientsFinal)
        }
        if lc.priorMatching {
            losses.prior = priorTerm(comm: comm)
            timer.mark("prior")
        }
        encoder.backwardTop(gradY: gradY, comm: comm, gatherFCFactors: gatherFCFactors, gradientsFinal: gradientsFinal)
        timer.mark("encoder fc backward")
        if lc.beta != 0 {
            add(localHead.backward(localScorer.gradL, comm: comm, gradientsFinal: gradientsFinal), into: gradC)
            timer.mark("local head backward")
        }
        encoder.backwardConvs(gradLocalMap: lc.beta != 0 || lc.globalDIM ? gradC : nil, comm: comm,
                              gradientsFinal: gradientsFinal)
        timer.mark("encoder conv backward")
        losses.total = lc.beta * losses.local + lc.alpha * losses.global + lc.gamma * losses.prior
        if lc.priorMatching, let zp = priorSample {
            losses.discriminator = discriminatorStep(priorSample: zp, comm: comm)
            timer.mark("discriminator")
        }
        return losses
    }

    /// Local DIM up to dL/dY: both heads forward, the scores and the loss through the scorer, and
    /// the global head's backward (its dL/dY added). The local head's backward (dL/dC) is left to
    /// `forwardBackward`, which runs the encoder's fc block first.
    private func localScores(rows: RowSelection, step: Int, comm: Communicator,
                             gradientsFinal: (Range<Int>) -> Void) -> Double {
        let L = localHead.forward(encoder.localMap, training: true, comm: comm)
        let G = globalHead.forward(encoder.globalVector, training: true, comm: comm)
        timer.mark("heads")
        let loss = localScorer.forward(G: G, L: L, positions: config.localPositions, estimator: lossConfig.estimator,
                                       rows: rows, step: step, weight: lossConfig.beta,
                                       maskValue: lossConfig.nceMaskValue, comm: comm)
        localScorer.backward(comm: comm)
        timer.mark("scores+loss")
        add(globalHead.backward(localScorer.gradG, comm: comm, gradientsFinal: gradientsFinal), into: gradY)
        timer.mark("global head backward")
        return loss
    }

    /// Global DIM: the critic scores (Y, whole local map) pairs.
    private func globalTerm(rows: RowSelection, step: Int, comm: Communicator, gatherFCFactors: Bool) -> Double {
        guard let critic = globalDIM else { preconditionFailure("alpha > 0 needs the global-DIM critic") }
        let loss = critic.forward(localMap: encoder.localMap, Y: encoder.globalVector, estimator: lossConfig.estimator,
                                  rows: rows, step: step, weight: lossConfig.alpha, maskValue: lossConfig.nceMaskValue,
                                  training: true, comm: comm)
        let (dC, dY) = critic.backward(comm: comm, gatherFCFactors: gatherFCFactors)
        add(dC, into: gradC)
        add(dY, into: gradY)
        return loss
    }

    /// Prior matching, the encoder's side: mean softplus(-D(sigmoid(Y))).
    private func priorTerm(comm: Communicator) -> Double {
        guard let disc = discriminator else { preconditionFailure("gamma > 0 needs the prior discriminator") }
        return disc.encoderTerm(Y: encoder.globalVector, weight: lossConfig.gamma, addingGradientTo: gradY, comm: comm)
    }

    /// The discriminator's own loss and gradients: the prior sample against sigmoid(Y), detached.
    private func discriminatorStep(priorSample zp: Tensor, comm: Communicator) -> Double {
        guard let disc = discriminator else { preconditionFailure("gamma > 0 needs the prior discriminator") }
        let N = encoder.globalVector.shape[1] * comm.size, penalty = lossConfig.gradientPenaltyWeight
        var d = disc.lossAndBackward(zp, real: true, globalBatch: N, penaltyWeight: penalty)
        d += disc.lossAndBackward(disc.encodedInput, real: false, globalBatch: N, penaltyWeight: penalty)
        return comm.sum(d)
    }

    private func add(_ src: Tensor, into dst: Tensor) {
        precondition(src.count == dst.count, "gradient shape \(src.shape) vs \(dst.shape)")
        for i in 0..<dst.count { dst.data[i] += src.data[i] }
    }
}
