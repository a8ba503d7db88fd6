/// The whole Deep InfoMax model: encoder, local and global MI heads, the scorer, and optionally
/// the global-DIM critic (alpha > 0) and the prior discriminator (gamma > 0).
///
/// One training step on one rank: encoder -> heads -> gather G -> scores -> loss -> backward ->
/// reduce-scatter dG -> heads' backward -> encoder backward. Parameter gradients are left in
/// `params.grads` (this rank's share); the trainer allreduces them and applies Adam.
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
    private let z = Tensor([0])
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
        globalDIM = (withGlobalDIM ?? (loss.alpha != 0))
            ? GlobalDIMCritic(config, params: params, buffers: buffers, precision: precision) : nil
        discriminator = (withPrior ?? (loss.gamma != 0))
            ? PriorDiscriminator(discParams, inFeatures: config.globalDim, hidden: config.discUnits) : nil
        params.allocate(seed: seed)
        buffers.allocate(seed: seed)
        discParams.allocate(seed: seed &+ 1)
    }

    public var batchNorms: [BatchNorm] {
        var all = encoder.convNorms + [encoder.fcNorm, localHead.norm, globalHead.norm]
        if let g = globalDIM { all += g.convNorms + [g.fcNorm] }
        return all
    }

    /// Runs the encoder alone (eval mode uses BatchNorm running statistics) for features.
    public func encode(_ x: Tensor, training: Bool = false, comm: Communicator = SingleProcess()) {
        encoder.forward(x, training: training, comm: comm)
    }

    /// One forward and backward pass on this rank's images `x` (`[Cin, n, H, W]`, channel-major,
    /// pixels in [-1, 1]). `priorSample` (`[globalDim, n]`, this rank's slice of the global
    /// sample) is needed when the discriminator is trained. Gradients are zeroed first.
    @discardableResult
    public func forwardBackward(_ x: Tensor, priorSample: Tensor? = nil, comm: Communicator,
                                trainDiscriminator: Bool = true) -> Losses {
        params.zeroGrads()
        discParams.zeroGrads()
        let lc = lossConfig
        var losses = Losses()
        timer.start()
        encoder.forward(x, training: true, comm: comm)
        timer.mark("encoder")
        let C = encoder.localMap, Y = encoder.globalVector
        let n = Y.shape[1], N = n * comm.size
        gradY.resize(Y.shape, zero: true)
        gradC.resize(C.shape, zero: true)
        if lc.beta != 0 {
            let L = localHead.forward(C, training: true, comm: comm)
            let G = globalHead.forward(Y, training: true, comm: comm)
            timer.mark("heads")
            losses.local = localScorer.forward(G: G, L: L, positions: config.localPositions, estimator: lc.estimator,
                                               weight: lc.beta, maskValue: lc.nceMaskValue, comm: comm) / lc.beta
            localScorer.backward(comm: comm)
            timer.mark("scores+loss")
            add(localHead.backward(localScorer.gradL, comm: comm), into: gradC)
            add(globalHead.backward(localScorer.gradG, comm: comm), into: gradY)
            timer.mark("heads backward")
        }
        if lc.alpha != 0 {
            guard let critic = globalDIM else { preconditionFailure("alpha > 0 needs the global-DIM critic") }
            losses.global = critic.forward(localMap: C, Y: Y, estimator: lc.estimator, weight: lc.alpha,
                                           maskValue: lc.nceMaskValue, training: true, comm: comm) / lc.alpha
            let (dC, dY) = critic.backward(comm: comm)
            add(dC, into: gradC)
            add(dY, into: gradY)
        }
        if lc.gamma != 0 {
            guard let disc = discriminator else { preconditionFailure("gamma > 0 needs the prior discriminator") }
            z.resize(Y.shape)
            for i in 0..<Y.count { z.data[i] = sigmoid(Y.data[i]) }
            let out = disc.forward(z)
            let gx = disc.inputGradient()
            // d/dY of gamma * mean softplus(-D(sigmoid(Y))) = gamma * (-sigmoid(-D)/N) * dD/dz * z(1-z).
            var term = 0.0
            let d = Y.shape[0]
            for s in 0..<n {
                let v = Double(out.data[s])
                term += softplus(-v)
                let coef = Float(-sigmoid(-v) / Double(N) * lc.gamma)
                for k in 0..<d {
                    let zi = z.data[k * n + s]
                    gradY.data[k * n + s] += coef * gx.data[k * n + s] * zi * (1 - zi)
                }
            }
            losses.prior = comm.sum(term) / Double(N)
        }
        timer.mark("global DIM + prior")
        encoder.backward(gradY: gradY, gradLocalMap: lc.beta != 0 || lc.alpha != 0 ? gradC : nil, comm: comm)
        timer.mark("encoder backward")
        losses.total = lc.beta * losses.local + lc.alpha * losses.global + lc.gamma * losses.prior
        if lc.gamma != 0, trainDiscriminator, let disc = discriminator, let zp = priorSample {
            // z_q = sigmoid(Y), detached: the discriminator's loss reaches only its own weights.
            var d = disc.lossAndBackward(zp, real: true, globalBatch: N, penaltyWeight: lc.gradientPenaltyWeight)
            d += disc.lossAndBackward(z, real: false, globalBatch: N, penaltyWeight: lc.gradientPenaltyWeight)
            losses.discriminator = comm.sum(d)
            timer.mark("discriminator")
        }
        return losses
    }

    private func add(_ src: Tensor, into dst: Tensor) {
        precondition(src.count == dst.count, "gradient shape \(src.shape) vs \(dst.shape)")
        for i in 0..<dst.count { dst.data[i] += src.data[i] }
    }
}
