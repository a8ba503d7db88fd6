import Foundation

/// `MI1x1ConvNet` (docs/design.md §2): h = LayerNorm(conv_b(ReLU(BN(conv_a(x)))) + shortcut(x)).
/// On the local map every layer is a 1x1 convolution; on Y the same net is an MLP. Both are the
/// same GEMMs on channel-major `[C, M]` tensors; only names and stored shapes differ.
public final class MIHead {
    public let inFeatures: Int, units: Int
    public let layerA: Linear
    public let norm: BatchNorm
    public let layerB: Linear
    public let shortcut: Linear
    public let layerNorm: LayerNorm
    private let residual = Tensor([0])

    /// `convolutional` selects the local head's names (conv_a, conv_b, 4-D weights) over the
    /// global head's (fc_a, fc_b).
    public init(_ params: ParameterStore, buffers: ParameterStore, _ name: String, in inFeatures: Int,
                units: Int, convolutional: Bool, precision: Precision = .fp32) {
        self.inFeatures = inFeatures; self.units = units
        let (a, b) = convolutional ? ("conv_a", "conv_b") : ("fc_a", "fc_b")
        func shape(_ o: Int, _ i: Int) -> [Int] { convolutional ? [o, i, 1, 1] : [o, i] }
        layerA = Linear(params, "\(name).\(a)", in: inFeatures, out: units, bias: false,
                        weightShape: shape(units, inFeatures),
                        precision: precision)
        norm = BatchNorm(params, buffers: buffers, "\(name).bn", channels: units, relu: true)
        layerB = Linear(params, "\(name).\(b)", in: units, out: units, bias: true, weightShape: shape(units, units),
                        precision: precision)
        shortcut = Linear(params, "\(name).shortcut", in: inFeatures, out: units, bias: false,
                          weightShape: shape(units,
                                             inFeatures), weightInit: .identityPlusUniform(inFeatures: inFeatures),
                          precision: precision)
        layerNorm = LayerNorm(params, "\(name).ln", channels: units)
    }

    public var output: Tensor { layerNorm.output }

    /// x: `[in, ...]`; returns `[units, ...]`.
    @discardableResult
    public func forward(_ x: Tensor, training: Bool, comm: Communicator) -> Tensor {
        let r = norm.forward(layerA.forward(x), training: training, comm: comm)
        shortcut.forward(x, into: residual)
        layerB.forward(r, into: residual, accumulate: true)
        return layerNorm.forward(residual)
    }

    /// Returns dL/dx (in layerA's gradInput). The parameter gradients of layer b, the shortcut and
    /// the LayerNorm (declared after layer a and the BatchNorm; 94-97% of the head's parameters
    /// at 2048 units) are computed first and announced with `gradientsFinal`, so their allreduce
    /// overlaps layer b's large input-gradient GEMM and everything after it (GradientSync).
    @discardableResult
    public func backward(_ dOut: Tensor, comm: Communicator,
                         gradientsFinal: (Range<Int>) -> Void = { _ in }) -> Tensor {
        let dh = layerNorm.backward(dOut)
        shortcut.backwardParameters(dh)
        layerB.backwardParameters(dh)
        gradientsFinal(parameterRange(from: layerB.weight, through: layerNorm.bias))
        let dr = layerB.backwardInput(dh)
        let dx = layerA.backward(norm.backward(dr, comm: comm))
        shortcut.backwardInput(dh, accumulateInto: dx)
        gradientsFinal(parameterRange(from: layerA.weight, through: norm.bias))
        return dx
    }
}
