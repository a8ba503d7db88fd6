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
    /// Bounded negatives (see NegativeSelection): nil scores against the whole global batch.
    public var negativeSelection: NegativeSelection?
    /// The training step, which decides the bounded-negatives selection.
    public var step = 0
    private var rowImage: [Int] = []
    private var chosenOwn: [Int] = []
    private let sendRows = Tensor([0]), gatheredRows = Tensor([0]), returnRows = Tensor([0]), ownRowGrads = Tensor([0])

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
        if let sel = negativeSelection, gatherAcrossRanks {
            return boundedForward(sel, L: L, estimator: estimator, weight: weight, comm: comm)
        }
        rowImage = []
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
        // Local negatives average the ranks' separate losses, hence the 1/size.
        scaleGradient(by: weight / Double(gatherAcrossRanks ? 1 : comm.size))
        return loss * weight
    }

    /// Rows: this rank's n vectors, then k from every other rank.
    private func boundedForward(_ sel: NegativeSelection, L: Tensor, estimator: Estimator, weight: Double,
                                comm: Communicator) -> Double {
        precondition(estimator != .nce, "infoNCE is not available with bounded negatives")
        let k = min(sel.perRank, n)
        chosenOwn = sel.chosen(rank: comm.rank, step: step, localBatch: n)
        sendRows.resize([k, units])
        for (t, j) in chosenOwn.enumerated() { (sendRows.data + t * units).update(from: localT.data + j * units, count: units) }
        let all = gatheredRows
        all.resize([comm.size * k, units])
        comm.allgather(sendRows.data, count: k * units, into: all.data)
        let R = n + (comm.size - 1) * k
        gathered.resize([R, units])
        gathered.data.update(from: localT.data, count: n * units)
        rowImage = (0..<n).map { comm.rank * n + $0 }
        var row = n
        for r in 0..<comm.size where r != comm.rank {
            let theirs = sel.chosen(rank: r, step: step, localBatch: n)
            (gathered.data + row * units).update(from: all.data + r * k * units, count: k * units)
            rowImage += theirs.map { r * n + $0 }
            row += k
        }
        N = R
        scores.resize([R, n * P])
        sgemm(m: R, n: n * P, k: units, a: gathered.data, lda: units, b: L.data, ldb: n * P, c: scores.data, ldc: n * P)
        gradScores.resize([R, n * P])
        let loss = boundedEstimatorLoss(estimator, u: scores.data, grad: gradScores.data, rowImage: rowImage, n: n,
                                        offset: comm.rank * n, P: P, comm: comm)
        scaleGradient(by: weight)
        return loss * weight
    }

    /// Multiplies dloss/du by the term's weight (one pass, skipped when it is 1).
    private func scaleGradient(by factor: Double) {
        guard factor != 1 else { return }
        let w = Float(factor)
        for i in 0..<gradScores.count { gradScores.data[i] *= w }
    }

    /// Fills gradG `[U, n]` and gradL `[U, n*P]`.
    public func backward(comm: Communicator) {
        guard let L = lastL else { preconditionFailure("Scorer.backward before forward") }
        if !rowImage.isEmpty, let sel = negativeSelection {
            boundedBackward(sel, L: L, comm: comm)
            return
        }
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

    private func boundedBackward(_ sel: NegativeSelection, L: Tensor, comm: Communicator) {
        let R = N, k = min(sel.perRank, n)
        gradL.resize(L.shape)
        sgemm(transA: true, m: units, n: n * P, k: R, a: gathered.data, lda: units, b: gradScores.data, ldb: n * P,
              c: gradL.data, ldc: n * P)
        gradGathered.resize([R, units])
        sgemm(transB: true, m: R, n: units, k: n * P, a: gradScores.data, lda: n * P, b: L.data, ldb: n * P,
              c: gradGathered.data, ldc: units)
        // Gradients of the rows other ranks sent go back to them (own block zero), summed.
        let send = returnRows
        send.resize([comm.size * k, units], zero: true)
        var row = n
        for r in 0..<comm.size where r != comm.rank {
            (send.data + r * k * units).update(from: gradGathered.data + row * units, count: k * units)
            row += k
        }
        let mine = ownRowGrads
        mine.resize([k, units])
        comm.reduceScatterSum(send.data, count: k * units, into: mine.data)
        gradLocalT.resize([n, units])
        gradLocalT.data.update(from: gradGathered.data, count: n * units)
        for (t, j) in chosenOwn.enumerated() {
            let dst = gradLocalT.data + j * units, src = mine.data + t * units
            for c in 0..<units { dst[c] += src[c] }
        }
        gradG.resize([units, n])
        transpose(gradLocalT.data, rows: n, cols: units, into: gradG.data)
    }
}
