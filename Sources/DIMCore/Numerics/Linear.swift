import Foundation
import CKernels

/// y[out, M] = W[out, in] * x[in, M] (+ b): a fully connected layer on channel-major vectors, and
/// equally a 1x1 convolution on a channel-major map (M = images x positions).
public final class Linear {
    public let inFeatures: Int, outFeatures: Int
    public let weight: Parameter
    public let bias: Parameter?
    public let precision: Precision
    public let output = Tensor([0])
    public let gradInput = Tensor([0])
    private var input: Tensor?

    /// `weightShape` lets 1x1 convolutions keep PyTorch's 4-D [out, in, 1, 1] shape in files.
    public init(_ store: ParameterStore, _ name: String, in inFeatures: Int, out outFeatures: Int,
                bias: Bool, weightShape: [Int]? = nil, weightInit: Initializer? = nil, precision: Precision = .fp32) {
        self.inFeatures = inFeatures; self.outFeatures = outFeatures
        self.precision = precision
        let bound = 1 / Float(inFeatures).squareRoot()
        weight = store.declare("\(name).weight", weightShape ?? [outFeatures, inFeatures],
                               weightInit ?? .uniform(bound))
        self.bias = bias ? store.declare("\(name).bias", [outFeatures], .uniform(bound)) : nil
    }

    /// x: [in, ...] with M = x.count / in columns. Writes into `into` (default: own output); with
    /// `accumulate` the result is added to what `into` holds (a residual sum without a pass).
    /// The input must stay unchanged until backward.
    @discardableResult
    public func forward(_ x: Tensor, into: Tensor? = nil, accumulate: Bool = false) -> Tensor {
        precondition(x.shape[0] == inFeatures,
                     "Linear \(weight.name): input has \(x.shape[0]) channels, expected \(inFeatures)")
        let m = x.count / inFeatures
        input = x
        let y = into ?? output
        var shape = x.shape
        shape[0] = outFeatures
        if !accumulate { y.resize(shape) }
        gemm(precision, m: outFeatures, n: m, k: inFeatures, a: weight.value.data, lda: inFeatures,
              b: x.data, ldb: m, beta: accumulate ? 1 : 0, c: y.data, ldc: m)
        if let b = bias { addRowBias(y.data, b.value.data, rows: outFeatures, cols: m) }
        return y
    }

    /// Accumulates dW (and db) from dy and returns dL/dx in `gradInput`, or adds it into
    /// `accumulateInto`. With `inputGrad: false` only the parameter gradients are computed.
    @discardableResult
    public func backward(_ dy: Tensor, inputGrad: Bool = true, accumulateInto: Tensor? = nil) -> Tensor {
        backwardParameters(dy)
        guard inputGrad else { return gradInput }
        return backwardInput(dy, accumulateInto: accumulateInto)
    }

    /// The parameter half of backward: accumulates dW (and db) from dy. Callers that split the
    /// halves make the parameter gradients final one GEMM earlier (for the overlapped allreduce).
    public func backwardParameters(_ dy: Tensor) {
        guard let x = input else { preconditionFailure("Linear.backward before forward") }
        let m = x.count / inFeatures
        gemm(precision, transB: true, m: outFeatures, n: inFeatures, k: m, a: dy.data, lda: m,
              b: x.data, ldb: m, beta: 1, c: weight.grad.data, ldc: inFeatures)
        if let b = bias { addRowSums(dy.data, rows: outFeatures, cols: m, into: b.grad.data) }
    }

    /// dW += dy^T x over sample rows, `dy` `[M, out]` and `x` `[M, in]`: the weight gradient of
    /// factors gathered from every rank (FCBlock), M being the global batch. For layers without bias.
    public func backwardParameters(outputGradientRows dy: Tensor, inputRows x: Tensor) {
        precondition(bias == nil, "Linear \(weight.name): gradient from gathered factors needs a layer without bias")
        precondition(dy.count == dy.shape[0] * outFeatures && x.count == x.shape[0] * inFeatures
                     && dy.shape[0] == x.shape[0], "Linear \(weight.name): factor rows do not match")
        gemm(precision, transA: true, m: outFeatures, n: inFeatures, k: dy.shape[0], a: dy.data, lda: outFeatures,
             b: x.data, ldb: inFeatures, beta: 1, c: weight.grad.data, ldc: inFeatures)
    }

    /// The input half of backward: dL/dx in `gradInput`, or added into `accumulateInto`.
    @discardableResult
    public func backwardInput(_ dy: Tensor, accumulateInto: Tensor? = nil) -> Tensor {
        guard let x = input else { preconditionFailure("Linear.backward before forward") }
        let m = x.count / inFeatures
        let dx = accumulateInto ?? gradInput
        if accumulateInto == nil { dx.resize(x.shape) }
        gemm(precision, transA: true, m: inFeatures, n: m, k: outFeatures, a: weight.value.data, lda: inFeatures,
              b: dy.data, ldb: m, beta: accumulateInto == nil ? 0 : 1, c: dx.data, ldc: m)
        return dx
    }
}

/// y[r, :] += b[r], rows on the rank's threads.
@inline(__always)
func addRowBias(_ y: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, rows: Int, cols: Int) {
    parallelRanges(rows, grain: parallelGrain(floatsPerItem: cols)) { rs in
        for r in rs {
            let row = y + r * cols
            let v = b[r]
            for j in 0..<cols { row[j] += v }
        }
    }
}

/// out[r] += sum_j x[r, j], summed in Double: a bias gradient sums over the whole local batch,
/// and one process must round like several that each sum a share. (BatchNorm's moments kernel:
/// its sum of squares comes free with a pass that is bound by reading x.)
@inline(__always)
func addRowSums(_ x: UnsafePointer<Float>, rows: Int, cols: Int, into out: UnsafeMutablePointer<Float>) {
    parallelRanges(rows, grain: parallelGrain(floatsPerItem: cols)) { range in
        withUnsafeTemporaryAllocation(of: Double.self, capacity: 2) { sums in
            for r in range {
                dim_moments(x + r * cols, cols, sums.baseAddress!)
                out[r] += Float(sums[0])
            }
        }
    }
}
