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
    /// The last forward's input (the head's residual, kept until its next forward) and its
    /// per-position mean and 1/std: backward recomputes xhat from them with forward's float
    /// operations rather than storing it (a pass over the activation less).
    private var input: Tensor?
    private let means = Tensor([0])
    private let invStd = Tensor([0])
    /// Per-position scratch: forward's shifted sums of squares, backward's sums of g and g * xhat.
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
        input = x
        for t in [means, columnSecondSums, invStd] { t.resize([m], zero: true) }
        let C = channels, invC = 1 / Float(C), eps = eps
        let x0 = x.data, mean = means.data, sq = columnSecondSums.data, r = invStd.data
        let w = weight.value.data, b = bias.value.data, out = output.data
        // Positions are independent: several threads take ranges of them through every pass.
        parallelRanges(m, grain: parallelGrain(floatsPerItem: 3 * C)) { js in
            let (j0, n) = (js.lowerBound, js.count)
            // Shifted sums (by row 0) keep the one-pass variance accurate in Float.
            for c in 1..<max(C, 1) { dim_shifted_sums(x0 + c * m + j0, x0 + j0, n, mean + j0, sq + j0) }
            for j in js {
                let md = mean[j] * invC
                let variance = max(sq[j] * invC - md * md, 0)
                mean[j] = x0[j] + md
                r[j] = 1 / (variance + eps).squareRoot()
            }
            for c in 0..<C {
                dim_column_normalize(x0 + c * m + j0, mean + j0, r + j0, n, w[c], b[c], out + c * m + j0)
            }
        }
        return output
    }

    @discardableResult
    public func backward(_ dy: Tensor) -> Tensor {
        guard let input else { preconditionFailure("LayerNorm.backward before forward") }
        let m = dy.count / channels
        let C = channels
        gradInput.resize(dy.shape)
        let w = weight.value.data, dw = weight.grad.data, db = bias.grad.data
        columnSums.resize([m], zero: true)
        columnSecondSums.zeroFill()
        let sumG = columnSums.data, sumGX = columnSecondSums.data, r = invStd.data, mean = means.data
        let x = input.data, dx = gradInput.data, invC = 1 / Float(C)
        // Positions are independent in dx: several threads take ranges of them.
        parallelRanges(m, grain: parallelGrain(floatsPerItem: 4 * C)) { js in
            let (j0, n) = (js.lowerBound, js.count)
            // Pass 1: g = dy * w; column sums of g and g * xhat.
            for c in 0..<C {
                dim_scaled_column_sums(dy.data + c * m + j0, x + c * m + j0, mean + j0, r + j0, n, w[c],
                                       dx + c * m + j0, sumG + j0, sumGX + j0)
            }
            for j in js { sumG[j] *= invC; sumGX[j] *= invC }
            // Pass 2: dx = invstd * (g - mean(g) - xhat * mean(g * xhat)).
            for c in 0..<C {
                dim_column_centred_scale(dx + c * m + j0, x + c * m + j0, mean + j0, r + j0, sumG + j0, sumGX + j0,
                                         n)
            }
        }
        // dw and db sum over every position of the local batch: one channel's whole row per call,
        // in Double, so that one process and several (each summing its share) round alike
        // (BatchNorm.backward says why that matters); channels are independent.
        parallelRanges(C, grain: parallelGrain(floatsPerItem: 2 * m)) { cs in
            withUnsafeTemporaryAllocation(of: Double.self, capacity: 2) { sums in
                for c in cs {
                    dim_normalized_row_sums(dy.data + c * m, x + c * m, mean, r, m, sums.baseAddress!)  // dy, dy * xhat
                    db[c] += Float(sums[0]); dw[c] += Float(sums[1])
                }
            }
        }
        return gradInput
    }
}
