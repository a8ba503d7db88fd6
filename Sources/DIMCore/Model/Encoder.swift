import Foundation

/// E = f ∘ C (docs/design.md §1): conv blocks (conv, BN, ReLU), flatten, an fc block (linear, BN, ReLU)
/// and a final linear layer to the global vector Y. The output of conv `localMapIndex` is the
/// local map C.
public final class Encoder {
    public let config: ModelConfig
    public let convStack: ConvStack
    public let fcBlock: FCBlock
    public let head: Linear
    private var gradTop = Tensor([0])

    public init(_ config: ModelConfig, params: ParameterStore, buffers: ParameterStore, prefix: String = "encoder",
                precision: Precision = .fp32) {
        self.config = config
        convStack = ConvStack(config, layers: 0..<config.convCount, params: params, buffers: buffers, prefix: prefix,
                              precision: precision)
        fcBlock = FCBlock(config, params: params, buffers: buffers, prefix: prefix, precision: precision)
        head = Linear(params, "\(prefix).fc\(config.convCount + 2)", in: config.fcUnits, out: config.globalDim,
                      bias: true, precision: precision)
    }

    public var batchNorms: [BatchNorm] { convStack.norms + [fcBlock.norm] }
    /// The local map C: `[C, N, H, W]` (valid after forward).
    public var localMap: Tensor { convStack.output(ofBlock: config.localMapIndex) }
    /// The last conv block's output (the "conv" features of the probes).
    public var convFeatures: Tensor { convStack.norms[convStack.norms.count - 1].output }
    /// The fc block's output `[fc, N]` (the "fc" features).
    public var fcFeatures: Tensor { fcBlock.output }
    /// The global vector Y `[globalDim, N]`.
    public var globalVector: Tensor { head.output }

    /// x: images `[Cin, N, H, W]`, pixels in [-1, 1].
    public func forward(_ x: Tensor, training: Bool, comm: Communicator) {
        head.forward(fcBlock.forward(convStack.forward(x, training: training, comm: comm), training: training,
                                     comm: comm))
    }

    /// Backward in two parts, `backwardTop` then `backwardConvs`; `gradientsFinal(range)` is told,
    /// layer by layer, which parameter gradients are final, so their allreduce can start.
    ///
    /// The top part: the final linear layer and the fc block, from dL/dY to the last conv block's
    /// output (kept for `backwardConvs`). It needs only dL/dY, so the model runs it before the
    /// local MI head's long backward: the fc weight (the encoder's largest tensor) is then final,
    /// and reduced, while that backward runs.
    public func backwardTop(gradY: Tensor, comm: Communicator, gatherFCFactors: Bool = false,
                            gradientsFinal: (Range<Int>) -> Void = { _ in }) {
        let dfc = head.backward(gradY)
        gradientsFinal(parameterRange(from: head.weight, through: head.bias ?? head.weight))
        gradTop = fcBlock.backward(dfc, comm: comm, gatherFactors: gatherFCFactors, gradientsFinal: gradientsFinal)
    }

    /// Backward through the conv blocks from the gradient `backwardTop` left, with dL/dC (when
    /// given) added at the local map.
    public func backwardConvs(gradLocalMap: Tensor?, comm: Communicator,
                              gradientsFinal: (Range<Int>) -> Void = { _ in }) {
        convStack.backward(gradTop, adding: gradLocalMap.map { (config.localMapIndex, $0) }, inputGrad: false,
                           comm: comm, gradientsFinal: gradientsFinal)
    }
}
