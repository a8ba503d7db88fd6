import Foundation
import CKernels

/// BatchNorm over the channels of a channel-major `[C, M]` tensor, optionally followed by ReLU
/// (in DIM every BatchNorm is followed by ReLU, and fusing saves two passes over the largest
/// activations).
///
/// PyTorch's conventions: eps 1e-5, momentum 0.1, normalisation by the biased batch variance,
/// running variance updated with the unbiased one; eval mode uses the running statistics.
/// Training-mode statistics are taken over the **global** batch: per-channel sums are allreduced
/// over the communicator in forward and backward (synchronised BatchNorm), so np ranks compute what
/// one process computes on the whole batch.
public final class BatchNorm {
    public let channels: Int
    public let relu: Bool
    public let eps: Float, momentum: Float
    public let weight: Parameter, bias: Parameter
    public let runningMean: Parameter, runningVar: Parameter
    public var batchesTracked = 0
    public let output = Tensor([0])
    public let gradInput = Tensor([0])
    /// The last forward's input (a layer's output, kept by that layer until its next forward),
    /// mean and 1/std: backward recomputes xhat = (x - mean) / std and the ReLU's mask from them
    /// with forward's float operations rather than storing xhat (a pass over the activation less).
    private var input: Tensor?
    private var means: [Float]
    private var invStd: [Float]
    private var stats: [Double]
    private var training = true

    public init(_ store: ParameterStore, buffers: ParameterStore, _ name: String, channels: Int,
                relu: Bool, eps: Float = 1e-5, momentum: Float = 0.1) {
        self.channels = channels; self.relu = relu; self.eps = eps; self.momentum = momentum
        weight = store.declare("\(name).weight", [channels], .ones)
        bias = store.declare("\(name).bias", [channels], .zeros)
        runningMean = buffers.declare("\(name).running_mean", [channels], .zeros)
        runningVar = buffers.declare("\(name).running_var", [channels], .ones)
        means = Array(repeating: 0, count: channels)
        invStd = Array(repeating: 0, count: channels)
        stats = Array(repeating: 0, count: 2 * channels)
    }

    public var name: String { String(weight.name.dropLast(".weight".count)) }

    @discardableResult
    public func forward(_ x: Tensor, training: Bool, comm: Communicator) -> Tensor {
        precondition(x.shape[0] == channels, "BatchNorm \(name): \(x.shape[0]) channels, expected \(channels)")
        self.training = training
        let m = x.count / channels
        output.resize(x.shape)
        input = x
        let gamma = weight.value.data, beta = bias.value.data
        if training {
            // Per-channel sum and sum of squares in Double, summed over ranks in one allreduce.
            stats.withUnsafeMutableBufferPointer { s in
                let channels = channels
                parallelRanges(channels, grain: parallelGrain(floatsPerItem: m)) { range in
                    withUnsafeTemporaryAllocation(of: Double.self, capacity: 2) { pair in
                        for c in range {
                            dim_moments(x.data + c * m, m, pair.baseAddress!)
                            s[c] = pair[0]; s[channels + c] = pair[1]
                        }
                    }
                }
                comm.allreduceSum(s.baseAddress!, count: 2 * channels)
            }
            let total = Double(m * comm.size)
            let rm = runningMean.value.data, rv = runningVar.value.data
            for c in 0..<channels {
                let mean = stats[c] / total
                let variance = max(stats[channels + c] / total - mean * mean, 0)
                invStd[c] = Float(1 / (variance + Double(eps)).squareRoot())
                let unbiased = total > 1 ? variance * total / (total - 1) : variance
                rm[c] = (1 - momentum) * rm[c] + momentum * Float(mean)
                rv[c] = (1 - momentum) * rv[c] + momentum * Float(unbiased)
                means[c] = Float(mean)
            }
            batchesTracked += 1
        } else {
            let rm = runningMean.value.data, rv = runningVar.value.data
            for c in 0..<channels {
                invStd[c] = 1 / (rv[c] + eps).squareRoot()
                means[c] = rm[c]
            }
        }
        let (out, relu) = (output.data, relu ? Int32(1) : 0)
        means.withUnsafeBufferPointer { mean in
            invStd.withUnsafeBufferPointer { r in
                parallelRanges(channels, grain: parallelGrain(floatsPerItem: 2 * m)) { range in
                    for c in range {
                        dim_affine_normalize(x.data + c * m, m, mean[c], r[c], gamma[c], beta[c], relu, out + c * m)
                    }
                }
            }
        }
        return output
    }

    /// dy: gradient at the output (after the ReLU when fused). Accumulates dgamma and dbeta
    /// (this rank's share; the trainer's gradient allreduce sums them) and returns dL/dx.
    @discardableResult
    public func backward(_ dy: Tensor, comm: Communicator) -> Tensor {
        guard let x = input else { preconditionFailure("BatchNorm \(name).backward before forward") }
        let m = dy.count / channels
        gradInput.resize(dy.shape)
        let gamma = weight.value.data, beta = bias.value.data
        let dgamma = weight.grad.data, dbeta = bias.grad.data
        // Pass 1: the ReLU mask, and the per-channel sums of dy and dy * xhat, accumulated in
        // Double like the forward statistics. dx below is dy minus its mean: when dy has a large
        // part common to the whole batch (prior matching pushes every Y the same way), dx is a
        // small difference of large numbers and a Float sum's rounding, which grows with the
        // values one rank sums, came out 8e-3 different on one process than on several.
        let (dx, relu, channels, training) = (gradInput.data, relu ? Int32(1) : 0, channels, training)
        let (mean, r) = (means, invStd)
        stats.withUnsafeMutableBufferPointer { s in
            parallelRanges(channels, grain: parallelGrain(floatsPerItem: 3 * m)) { range in
                withUnsafeTemporaryAllocation(of: Double.self, capacity: 2) { pair in
                    for c in range {
                        dim_normalized_masked_sums(dy.data + c * m, x.data + c * m, m, mean[c], r[c], gamma[c],
                                                   beta[c], relu, dx + c * m, pair.baseAddress!)
                        s[c] = pair[0]; s[channels + c] = pair[1]
                        dbeta[c] += Float(pair[0]); dgamma[c] += Float(pair[1])
                    }
                }
            }
            if training { comm.allreduceSum(s.baseAddress!, count: 2 * channels) }
        }
        let total = Float(m * comm.size)
        // Pass 2: dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)).
        stats.withUnsafeBufferPointer { s in
            invStd.withUnsafeBufferPointer { r in
                parallelRanges(channels, grain: parallelGrain(floatsPerItem: 3 * m)) { range in
                    for c in range {
                        let k = gamma[c] * r[c]
                        let d = dx + c * m
                        if training {
                            dim_centred_scale(d, x.data + c * m, m, mean[c], r[c], k, Float(s[c]) / total,
                                              Float(s[channels + c]) / total)
                        } else {
                            for j in 0..<m { d[j] = k * d[j] }
                        }
                    }
                }
            }
        }
        return gradInput
    }
}
