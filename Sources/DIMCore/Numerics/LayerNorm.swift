import Foundation
import CKernels

/// LayerNorm over the channels at each position of a channel-major `[C, M]` tensor (the MI heads'
/// output normalisation), affine, eps 1e-5. Column statistics are accumulated row by row so every
/// loop runs over contiguous memory.
public final class LayerNorm {
    public let channels: Int
    public let eps: Float
    public let weight: Parameter, bias: Parameter
    public let output = Tensor([0])
    public let gradInput = Tensor([0])
    private let xhat = Tensor([0])
    private let invStd = Tensor([0])
    /// Per-position scratch: forward keeps the means and the shifted sums of squares there,
    /// backward the sums of g and of g * xhat.
    private let columnSums = Tensor([0])
    private let columnSecondSums = Tensor([0])

    public init(_ store: ParameterStore, _ name: String, channels: Int, eps: Float = 1e-5) {
        self.channels = channels; self.eps = eps
        weight = store.declare("\(name).weight", [channels], .ones)
        bias = store.declare("\(name).bias", [channels], .zeros)
    }

    @discardableResult
    public func forward(_ x: Tensor) -> Tensor {
        let m = x.count / channels
        output.resize(x.shape)
        xhat.resize(x.shape)
        for t in [columnSums, columnSecondSums, invStd] { t.resize([m], zero: true) }
        let C = channels
        let mean = columnSums.data, sq = columnSecondSums.data, r = invStd.data
        // Shifted sums (by row 0) keep the one-pass variance accurate in Float.
        let x0 = x.data
        for c in 1..<max(C, 1) { dim_shifted_sums(x.data + c * m, x0, m, mean, sq) }
        let invC = 1 / Float(C)
        for j in 0..<m {
            let md = mean[j] * invC
            let variance = max(sq[j] * invC - md * md, 0)
            mean[j] = x0[j] + md
            r[j] = 1 / (variance + eps).squareRoot()
        }
        let w = weight.value.data, b = bias.value.data
        for c in 0..<C {
            dim_column_normalize(x.data + c * m, mean, r, m, w[c], b[c], xhat.data + c * m, output.data + c * m)
        }
        return output
    }

    @discardableResult
    public func backward(_ dy: Tensor) -> Tensor {
        let m = dy.count / channels
        let C = channels
        gradInput.resize(dy.shape)
        let w = weight.value.data, dw = weight.grad.data, db = bias.grad.data
        columnSums.zeroFill()
        columnSecondSums.zeroFill()
        let sumG = columnSums.data, sumGX = columnSecondSums.data, r = invStd.data
        // Pass 1: g = dy * w; column sums of g and g * xhat; dw, db. dw and db sum over every
        // position of the local batch: in Double, so that one process and several (each summing
        // its share) round alike (BatchNorm.backward says why that matters).
        withUnsafeTemporaryAllocation(of: Double.self, capacity: 2) { sums in
            for c in 0..<C {
                let d = dy.data + c * m, xh = xhat.data + c * m
                dim_scaled_column_sums(d, xh, m, w[c], gradInput.data + c * m, sumG, sumGX)
                dim_masked_sums(d, nil, xh, nil, m, sums.baseAddress!)  // db, dw: sums of dy and dy * xhat
                db[c] += Float(sums[0]); dw[c] += Float(sums[1])
            }
        }
        let invC = 1 / Float(C)
        for j in 0..<m { sumG[j] *= invC; sumGX[j] *= invC }
        // Pass 2: dx = invstd * (g - mean(g) - xhat * mean(g * xhat)).
        for c in 0..<C { dim_column_centred_scale(gradInput.data + c * m, xhat.data + c * m, r, sumG, sumGX, m) }
        return gradInput
    }
}
