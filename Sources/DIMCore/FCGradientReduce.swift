/// How the gradient of an fc block's weight (the encoder's, and the global-DIM critic's) is summed
/// over ranks.
///
/// That weight is the model's largest tensor (fc x in = 1024 x 4096 values, 16.8 MB: 74% of the
/// gradient bytes with 512-unit MI heads, 56% with 1024), yet its gradient is the product of two
/// small factors over the batch: dL/dh `[fc, N]` times the flattened conv map `[in, N]`. For the
/// global batch of 64 the two factors hold (1024 + 4096) x 64 values, 1/12.8 of the weight. So
/// instead of allreducing the weight's gradient, every rank can gather the factors from all ranks
/// and compute the global batch's gradient itself ("sufficient factors", Xie et al. 2016, in
/// Poseidon): far fewer bytes on the wire, paid for with that GEMM computed on every rank (the
/// rank's own 1/ranks share is the work it did anyway). Both ways give the same sum up to float
/// rounding; the result is on every rank either way.
public enum FCGradientReduce: String, CaseIterable, Codable, Sendable {
    /// `factors` when the ranks span several hosts and the factors are at most a quarter of the
    /// weight; otherwise `allreduce`. Between hosts the link bounds the step (4 emulated hosts on
    /// 1 Gbit, 512-unit heads: 1.7x the images/s with factors); on one host the two measured the
    /// same (the repeated GEMM costs what the allreduce's copies did), so the plain sum stays
    /// (docs/results.md, 2026-12-07, thirteenth session).
    case auto
    /// The weight's gradient goes into the bucketed allreduce with every other gradient.
    case allreduce
    /// Gather the factors and compute the global batch's weight gradient on every rank.
    case factors

    /// Whether a step gathers the factors, for an fc block of `outputs` x `inputs` trained on
    /// `globalBatch` images over `comm`.
    public func gathersFactors(comm: Communicator, globalBatch: Int, outputs: Int, inputs: Int) -> Bool {
        guard comm.size > 1 else { return false }
        switch self {
        case .allreduce: return false
        case .factors: return true
        case .auto: return comm.hosts > 1 && 4 * (outputs + inputs) * globalBatch <= outputs * inputs
        }
    }
}
