/// Encode-and-dot-product scoring across ranks (DESIGN.md §2 and §6).
///
/// Each rank holds one "global" vector per local image (`G`, `[U, n]`) and P "local" vectors per
/// local image (`L`, `[U, n*P]`). The G of all ranks are all-gathered (N x U floats, small), every
/// rank scores its own L against every G (`u = G_all * L`, `[N, n*P]`), and the estimator turns the
/// block into the global loss. Backward sends dL/dG_all through a reduce-scatter, so each rank gets
/// the summed gradient of its own G; the L are never sent.
public final class Scorer {
    public let scores = Tensor([0])
    public let gradScores = Tensor([0])
    public let gathered = Tensor([0])
    public let gradG = Tensor([0])
    public let gradL = Tensor([0])
    private let localT = Tensor([0])
    private let gradGathered = Tensor([0])
    private let gradLocalT = Tensor([0])
    private var lastL: Tensor?
    private var units = 0, n = 0, N = 0, P = 0
    /// When false, each rank scores only against its own images' G (local negatives). This is
    /// not DIM's loss: it exists so tests can show that the cross-rank gather matters.
    public var gatherAcrossRanks = true

    public init() {}

    /// Returns the loss of the global batch times `weight`, and keeps weight * dloss/du for backward.
    public func forward(G: Tensor, L: Tensor, positions: Int, estimator: Estimator, weight: Double,
                        maskValue: Double, comm: Communicator) -> Double {
        units = G.shape[0]; n = G.count / units; P = positions
        precondition(L.shape[0] == units && L.count / units == n * P, "Scorer: L shape \(L.shape) does not match G \(G.shape) x \(P)")
        let ranks = gatherAcrossRanks ? comm.size : 1
        N = n * ranks
        lastL = L
        localT.resize([n, units])
        transpose(G.data, rows: units, cols: n, into: localT.data)
        gathered.resize([N, units])
        if gatherAcrossRanks {
            comm.allgather(localT.data, count: n * units, into: gathered.data)
        } else {
            gathered.data.update(from: localT.data, count: n * units)
        }
        scores.resize([N, n * P])
        sgemm(m: N, n: n * P, k: units, a: gathered.data, lda: units, b: L.data, ldb: n * P, c: scores.data, ldc: n * P)
        gradScores.resize([N, n * P])
        let block = ScoreBlock(N: N, n: n, offset: gatherAcrossRanks ? comm.rank * n : 0, P: P)
        let local: Communicator = gatherAcrossRanks ? comm : SingleProcess()
        var loss = estimatorLoss(estimator, u: scores.data, grad: gradScores.data, block: block, maskValue: maskValue, comm: local)
        if !gatherAcrossRanks { loss = comm.sum(loss) / Double(comm.size) }
        if weight != 1 {
            let w = Float(weight)
            for i in 0..<gradScores.count { gradScores.data[i] *= w }
        }
        if !gatherAcrossRanks && comm.size > 1 {
            let w = 1 / Float(comm.size)
            for i in 0..<gradScores.count { gradScores.data[i] *= w }
        }
        return loss * weight
    }

    /// Fills gradG `[U, n]` and gradL `[U, n*P]`.
    public func backward(comm: Communicator) {
        guard let L = lastL else { preconditionFailure("Scorer.backward before forward") }
        gradL.resize(L.shape)
        sgemm(transA: true, m: units, n: n * P, k: N, a: gathered.data, lda: units,
              b: gradScores.data, ldb: n * P, c: gradL.data, ldc: n * P)
        gradGathered.resize([N, units])
        sgemm(transB: true, m: N, n: units, k: n * P, a: gradScores.data, lda: n * P,
              b: L.data, ldb: n * P, c: gradGathered.data, ldc: units)
        gradLocalT.resize([n, units])
        if gatherAcrossRanks {
            comm.reduceScatterSum(gradGathered.data, count: n * units, into: gradLocalT.data)
        } else {
            gradLocalT.data.update(from: gradGathered.data, count: n * units)
        }
        gradG.resize([units, n])
        transpose(gradLocalT.data, rows: n, cols: units, into: gradG.data)
    }
}
