import Foundation

/// E = f ∘ C (docs/design.md §1): conv blocks (conv, BN, ReLU), flatten, an fc block (linear, BN, ReLU)
/// and a final linear layer to the global vector Y. The output of conv `localMapIndex` is the
/// local map C.
public final class Encoder {
    public let config: ModelConfig
    public let convs: [Conv2D]
    public let convNorms: [BatchNorm]
    public let fc: Linear
    public let fcNorm: BatchNorm
    public let head: Linear
    private let flat = Tensor([0])
    private let gradMap = Tensor([0])

    public init(_ config: ModelConfig, params: ParameterStore, buffers: ParameterStore, prefix: String = "encoder",
                precision: Precision = .fp32) {
        self.config = config
        (convs, convNorms) = Self.convBlocks(config, layers: 0..<config.convCount, params: params, buffers: buffers,
                                             prefix: prefix, precision: precision)
        let n = config.convCount
        fc = Linear(params, "\(prefix).fc\(n + 1)", in: config.flatFeatures, out: config.fcUnits, bias: false,
                    precision: precision)
        fcNorm = BatchNorm(params, buffers: buffers, "\(prefix).bn\(n + 1)", channels: config.fcUnits, relu: true)
        head = Linear(params, "\(prefix).fc\(n + 2)", in: config.fcUnits, out: config.globalDim, bias: true,
                      precision: precision)
    }

    /// Conv -> BatchNorm -> ReLU blocks `layers` of the config's conv stack, named prefix.conv{i} and
    /// prefix.bn{i} (the encoder's, and the global-DIM critic's copies of the layers after the local map).
    static func convBlocks(_ config: ModelConfig, layers: Range<Int>, params: ParameterStore, buffers: ParameterStore,
                           prefix: String, precision: Precision) -> ([Conv2D], [BatchNorm]) {
        let g = config.architecture.convGeometry
        var convs: [Conv2D] = [], norms: [BatchNorm] = []
        for i in layers {
            let cin = i == 0 ? config.inChannels : config.convChannels[i - 1], cout = config.convChannels[i]
            convs.append(Conv2D(params, "\(prefix).conv\(i)", in: cin, out: cout, kernel: g.kernel, stride: g.stride,
                                padding: g.padding, precision: precision))
            norms.append(BatchNorm(params, buffers: buffers, "\(prefix).bn\(i)", channels: cout, relu: true))
        }
        return (convs, norms)
    }

    /// The local map C: `[C, N, H, W]` (valid after forward).
    public var localMap: Tensor { convNorms[config.localMapIndex].output }
    /// The last conv block's output (the "conv" features of the probes).
    public var convFeatures: Tensor { convNorms[convNorms.count - 1].output }
    /// The fc block's output `[fc, N]` (the "fc" features).
    public var fcFeatures: Tensor { fcNorm.output }
    /// The global vector Y `[globalDim, N]`.
    public var globalVector: Tensor { head.output }

    /// x: images `[Cin, N, H, W]`, pixels in [-1, 1].
    public func forward(_ x: Tensor, training: Bool, comm: Communicator) {
        var h = x
        for i in convs.indices {
            h = convNorms[i].forward(convs[i].forward(h), training: training, comm: comm)
        }
        flattenMap(h, into: flat)
        head.forward(fcNorm.forward(fc.forward(flat), training: training, comm: comm))
    }

    /// Backward in two parts, `backwardTop` then `backwardConvs`; `gradientsFinal(range)` is told,
    /// layer by layer, which parameter gradients are final, so their allreduce can start.
    ///
    /// The top part: the final linear layer and the fc block, from dL/dY to the last conv block's
    /// output (kept for `backwardConvs`). It needs only dL/dY, so the model runs it before the
    /// local MI head's long backward: the fc weight (the encoder's largest tensor) is then final,
    /// and reduced, while that backward runs.
    public func backwardTop(gradY: Tensor, comm: Communicator, gradientsFinal: (Range<Int>) -> Void = { _ in }) {
        let dfc = head.backward(gradY)
        gradientsFinal(parameterRange(from: head.weight, through: head.bias ?? head.weight))
        let dh = fcNorm.backward(dfc, comm: comm)
        fc.backwardParameters(dh)
        gradientsFinal(parameterRange(from: fc.weight, through: fcNorm.bias))
        let dflat = fc.backwardInput(dh)
        let last = convNorms[convNorms.count - 1].output
        unflattenMap(dflat, channels: last.shape[0], height: last.shape[2], width: last.shape[3], into: gradMap)
    }

    /// Backward through the conv blocks from the gradient `backwardTop` left, with dL/dC (when
    /// given) added at the local map.
    public func backwardConvs(gradLocalMap: Tensor?, comm: Communicator,
                              gradientsFinal: (Range<Int>) -> Void = { _ in }) {
        var d = gradMap
        for i in stride(from: convs.count - 1, through: 0, by: -1) {
            if i == config.localMapIndex, let dC = gradLocalMap {
                precondition(dC.count == d.count)
                for j in 0..<d.count { d.data[j] += dC.data[j] }
            }
            d = convs[i].backward(convNorms[i].backward(d, comm: comm), inputGrad: i > 0)
            gradientsFinal(parameterRange(from: convs[i].weight, through: convNorms[i].bias))
        }
    }
}
