/// Bounded negatives: a mode whose cost per rank stays flat as ranks are added.
///
/// With global negatives every rank scores its patches against all N global vectors, so the score
/// GEMM, the estimator and the gather of G grow with the global batch. Here each rank gathers only
/// `k = K / ranks` global vectors from every rank (chosen from (seed, step), the same way on every
/// rank): its rows are its own n vectors (positives and local negatives) plus the K - k gathered
/// from the other ranks. The gradient of the gathered rows returns to their owners with a
/// reduce-scatter of K x U floats. JSD and DV decompose over (row, patch) pairs and are normalised
/// by the global pair counts; infoNCE's per-row normaliser would need every row on every rank, so
/// it is not offered in this mode.
public struct NegativeSelection {
    public let perRank: Int
    public let seed: UInt64
    public init(maxNegatives: Int, ranks: Int, seed: UInt64) {
        perRank = max(1, maxNegatives / max(ranks, 1))
        self.seed = seed
    }

    /// The local indices (ascending) that rank `rank` contributes at `step`.
    public func chosen(rank: Int, step: Int, localBatch n: Int) -> [Int] {
        var rng = SplitMix64(seed: seed, stream: 5, index: UInt64(step) &* 65_537 &+ UInt64(rank))
        return Array(rng.permutation(n).prefix(min(perRank, n))).sorted()
    }
}

/// JSD or DV on a block whose rows are arbitrary images (`rowImage[i]` = global index of row i);
/// columns are this rank's patches (image offset + j, P per image). Returns the global loss.
public func boundedEstimatorLoss(_ estimator: Estimator, u: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>,
                                 rowImage: [Int], n: Int, offset: Int, P: Int, comm: Communicator) -> Double {
    let R = rowImage.count, cols = n * P
    var counts = [Double(n * P), Double((R - 1) * n * P)]  // each own image has exactly one positive row
    comm.allreduceSum(&counts, count: 2)
    let (posCount, negCount) = (counts[0], counts[1])
    precondition(negCount > 0, "bounded negatives: no negatives")
    switch estimator {
    case .jsd:
        var sum = 0.0
        for i in 0..<R {
            let row = u + i * cols, g = grad + i * cols
            for j in 0..<n {
                let positive = rowImage[i] == offset + j
                for c in j * P..<(j + 1) * P {
                    let v = Double(row[c])
                    if positive { sum += softplus(-v) / posCount; g[c] = Float(-sigmoid(-v) / posCount) }
                    else { sum += softplus(v) / negCount; g[c] = Float(sigmoid(v) / negCount) }
                }
            }
        }
        return comm.sum(sum) - 2 * log(2.0)
    case .dv:
        var m = -Double.infinity
        for i in 0..<R { for j in 0..<n where rowImage[i] != offset + j { for c in j * P..<(j + 1) * P { m = max(m, Double(u[i * cols + c])) } } }
        m = comm.max(m)
        var sums = [0.0, 0.0]
        for i in 0..<R { for j in 0..<n { for c in j * P..<(j + 1) * P {
            let v = Double(u[i * cols + c])
            if rowImage[i] == offset + j { sums[1] += v } else { sums[0] += exp(v - m) }
        } } }
        comm.allreduceSum(&sums, count: 2)
        let lse = m + log(sums[0])
        for i in 0..<R { for j in 0..<n { for c in j * P..<(j + 1) * P {
            grad[i * cols + c] = rowImage[i] == offset + j ? Float(-1 / posCount) : Float(exp(Double(u[i * cols + c]) - lse))
        } } }
        return -sums[1] / posCount + lse - log(negCount)
    case .nce:
        preconditionFailure("infoNCE is not available with bounded negatives")
    }
}
