import Foundation

/// A 2-D convolution without bias (every conv in DIM is followed by BatchNorm) as im2col + GEMM.
/// Input `[Cin, N, H, W]`, output `[Cout, N, Ho, Wo]`, weight `[Cout, Cin, k, k]`.
public final class Conv2D {
    public let inChannels: Int, outChannels: Int, kernel: Int, stride: Int, padding: Int
    public let weight: Parameter
    public let precision: Precision
    public let output = Tensor([0])
    public let gradInput = Tensor([0])
    private let columns = Tensor([0])
    private let gradColumns = Tensor([0])
    private let phases = Tensor([0])  // im2col's and col2im's scratch
    private var geometry: ConvGeometry?
    private var batch = 0

    public init(_ store: ParameterStore, _ name: String, in inChannels: Int, out outChannels: Int,
                kernel: Int, stride: Int, padding: Int, precision: Precision = .fp32) {
        self.inChannels = inChannels; self.outChannels = outChannels
        self.precision = precision
        self.kernel = kernel; self.stride = stride; self.padding = padding
        let fanIn = inChannels * kernel * kernel
        weight = store.declare("\(name).weight", [outChannels, inChannels, kernel, kernel],
                               .uniform(1 / Float(fanIn).squareRoot()))
    }


    /// x: [Cin, N, H, W]. The column matrix is kept for the weight gradient.
    @discardableResult
    public func forward(_ x: Tensor) -> Tensor {
        precondition(x.shape.count == 4 && x.shape[0] == inChannels,
                     "Conv2D \(weight.name): input shape \(x.shape), expected [\(inChannels), N, H, W]")
        let (n, h, w) = (x.shape[1], x.shape[2], x.shape[3])
        let g = ConvGeometry(inChannels: inChannels, height: h, width: w, kernel: kernel, stride: stride,
                             padding: padding)
        geometry = g
        batch = n
        let cols = n * g.outHeight * g.outWidth
        columns.resize([g.patchSize, cols])
        phases.resize([g.phaseCount(batch: n)])
        im2col(x.data, batch: n, g, into: columns.data, phases: phases.data)
        output.resize([outChannels, n, g.outHeight, g.outWidth])
        gemm(precision, m: outChannels, n: cols, k: g.patchSize, a: weight.value.data, lda: g.patchSize,
              b: columns.data, ldb: cols, c: output.data, ldc: cols)
        return output
    }

    /// Accumulates dW and, unless `inputGrad` is false (the first layer), returns dL/dx.
    @discardableResult
    public func backward(_ dy: Tensor, inputGrad: Bool = true) -> Tensor {
        guard let g = geometry else { preconditionFailure("Conv2D.backward before forward") }
        let cols = batch * g.outHeight * g.outWidth
        gemm(precision, transB: true, m: outChannels, n: g.patchSize, k: cols, a: dy.data, lda: cols,
              b: columns.data, ldb: cols, beta: 1, c: weight.grad.data, ldc: g.patchSize)
        guard inputGrad else { return gradInput }
        gradColumns.resize([g.patchSize, cols])
        gemm(precision, transA: true, m: g.patchSize, n: cols, k: outChannels, a: weight.value.data, lda: g.patchSize,
              b: dy.data, ldb: cols, c: gradColumns.data, ldc: cols)
        gradInput.resize([inChannels, batch, g.height, g.width])
        phases.resize([g.phaseCount(batch: batch)])
        col2im(gradColumns.data, batch: batch, g, into: gradInput.data, phases: phases.data)
        return gradInput
    }
}
