import Foundation

/// Encode-and-dot-product scoring across ranks (docs/design.md §2 and §6), for the local DIM term and
/// the global-DIM critic alike.
///
/// Each rank holds one "global" vector per local image (`G`, `[U, n]`) and P "local" vectors per
/// local image (`L`, `[U, n*P]`). The rows of a step are the global vectors of a set of images of
/// the global batch (`RowSelection`: all N, or a sample of K): their owners contribute them to a
/// (variable-count) all-gather, every rank scores its own L against them (`u = G_rows * L`,
/// `[R, n*P]`) and the estimator turns the block into the step's loss. Backward sends dL/dG_rows
/// through a reduce-scatter, so each owner gets the summed gradient of its rows; the L are never
/// sent. With all rows the collectives carry N x U floats; with K rows, K x U on any rank count
/// (for JSD and DV, whose rows bring a sampled patch vector each, the column negatives: an
/// all-gather of K x 2U floats and no reduce-scatter, see `splitBackward`).
/// Each rank also has its own images' positives, G_j . L_{j,l} (`positives`, `[n*P]`, no
/// communication), whether or not j is a row: the estimators take positives from there and
/// negatives from the row block, so a sampled row set samples negatives, not positives.
public final class Scorer {
    public let scores = Tensor([0])
    public let gradScores = Tensor([0])
    /// G_j . L_{j,l} for this rank's images, in column order: `[n*P]`.
    public let positives = Tensor([0])
    public let gradPositives = Tensor([0])
    /// The gathered rows: `[R, U]` global vectors, or `[R, 2U]` with column negatives (each row's
    /// global vector, then its image's sampled patch vector).
    public let rowVectors = Tensor([0])
    /// Column negatives: this rank's global vectors against the rows' sampled patches, `[n, R]`.
    public let columnScores = Tensor([0])
    public let gradColumnScores = Tensor([0])
    public let gradG = Tensor([0])
    public let gradL = Tensor([0])
    /// This rank's global vectors, one per image (`[n, U]`, G transposed).
    private let localGlobals = Tensor([0])
    private let ownedRows = Tensor([0])
    private let gradRowVectors = Tensor([0])
    private let gradOwnedRows = Tensor([0])
    private let gradLocalGlobals = Tensor([0])
    private var lastL: Tensor?
    private var lastG: Tensor?
    private var layout: ScoreLayout?

    public init() {}

    /// The loss of the step (unweighted), keeping `weight` x dloss/du for `backward`. `step`
    /// decides a sampled row set (the same on every rank).
    public func forward(G: Tensor, L: Tensor, positions P: Int, estimator: Estimator, rows selection: RowSelection,
                        step: Int, weight: Double = 1, maskValue: Double, comm: Communicator) -> Double {
        let units = G.shape[0], n = G.count / units
        precondition(L.shape[0] == units && L.count / units == n * P,
                     "Scorer: L shape \(L.shape) does not match G \(G.shape) x \(P)")
        let N = n * comm.size
        let rows = selection.rows(globalBatch: N, step: step)
        let mode = ScoringMode.of(estimator, rowCount: rows.count, globalBatch: N)
        // Column negatives (docs/bounded-negatives.md): JSD and DV with sampled rows.
        let patches = mode == .sampledWithColumns
            ? selection.patches(rows: rows, globalBatch: N, step: step, positions: P) : []
        let layout = ScoreLayout(mode: mode, rows: rows, patches: patches, globalBatch: N, localBatch: n,
                                 rank: comm.rank, ranks: comm.size, positions: P)
        self.layout = layout
        lastL = L
        lastG = G
        localGlobals.resize([n, units])
        transpose(G.data, rows: units, cols: n, into: localGlobals.data)
        // This rank's rows, in row order (with their sampled patch vectors), then everyone's.
        let width = rowWidth(layout, units: units), cols = layout.columns
        ownedRows.resize([layout.ownedLocalIndex.count, width])
        for (t, j) in layout.ownedLocalIndex.enumerated() {
            let row = ownedRows.data + t * width
            row.update(from: localGlobals.data + j * units, count: units)
            if layout.hasColumnNegatives {
                let column = j * P + layout.rowPatch[layout.firstOwnedRow + t]
                for unit in 0..<units { row[units + unit] = L.data[unit * cols + column] }
            }
        }
        rowVectors.resize([layout.rowCount, width])
        comm.allgather(ownedRows.data, counts: layout.rowsPerRank.map { $0 * width }, into: rowVectors.data)
        let R = layout.rowCount
        scores.resize([R, cols])
        sgemm(m: R, n: cols, k: units, a: rowVectors.data, lda: width, b: L.data, ldb: cols, c: scores.data, ldc: cols)
        gradScores.resize([R, cols])
        scoreOwnPositives(G: G, L: L, layout)
        let columns = layout.hasColumnNegatives
        if columns {
            columnScores.resize([n, R])
            sgemm(transB: true, m: n, n: R, k: units, a: localGlobals.data, lda: units, b: rowVectors.data + units,
                  ldb: width, c: columnScores.data, ldc: R)
            gradColumnScores.resize([n, R])
        }
        return estimatorLoss(estimator, u: scores.data, grad: gradScores.data, positives: positives.data,
                             gradPositives: gradPositives.data, columns: columns ? columnScores.data : nil,
                             gradColumns: columns ? gradColumnScores.data : nil, layout: layout,
                             maskValue: maskValue, gradScale: weight, comm: comm)
    }

    /// Fills gradG `[U, n]` and gradL `[U, n*P]` (of weight x the loss).
    public func backward(comm: Communicator) {
        guard let L = lastL, let G = lastG, let layout else { preconditionFailure("Scorer.backward before forward") }
        gradL.resize(L.shape)
        if layout.mode == .sampledWithColumns {
            splitBackward(G: G, L: L, layout)
            return
        }
        // Rows are global vectors only (all rows, or infoNCE's sampled anchors).
        let units = L.shape[0], n = layout.n, R = layout.rowCount, cols = layout.columns
        if layout.mode == .allRows {
            // With all rows the positives' gradients go back through the block's GEMMs (the
            // estimator left the rows' own-image spans at 0).
            let P = layout.P
            for (t, j) in layout.ownedLocalIndex.enumerated() {
                (gradScores.data + (layout.firstOwnedRow + t) * cols + j * P)
                    .update(from: gradPositives.data + j * P, count: P)
            }
        }
        sgemm(transA: true, m: units, n: cols, k: R, a: rowVectors.data, lda: units,
              b: gradScores.data, ldb: cols, c: gradL.data, ldc: cols)
        gradRowVectors.resize([R, units])
        sgemm(transB: true, m: R, n: units, k: cols, a: gradScores.data, lda: cols,
              b: L.data, ldb: cols, c: gradRowVectors.data, ldc: units)
        // Every rank's contribution to each row's gradient, summed at the row's owner.
        gradOwnedRows.resize([layout.ownedLocalIndex.count, units])
        comm.reduceScatterSum(gradRowVectors.data, counts: layout.rowsPerRank.map { $0 * units },
                              into: gradOwnedRows.data)
        // Images outside the row set get no gradient through G from the block (infoNCE's sampled
        // anchors: only the rows' images are scored at all).
        gradLocalGlobals.resize([n, units], zero: true)
        for (t, j) in layout.ownedLocalIndex.enumerated() {
            (gradLocalGlobals.data + j * units).update(from: gradOwnedRows.data + t * units, count: units)
        }
        gradG.resize([units, n])
        transpose(gradLocalGlobals.data, rows: n, cols: units, into: gradG.data)
        if layout.mode == .sampledRows { addOwnPositivesBackward(G: G, L: L, positions: layout.P) }
    }

    /// Backward with column negatives (JSD, DV with sampled rows): each sample trains one side of
    /// its negative pairs. The row block's negatives train the local vectors L (every patch against
    /// K global vectors), the column negatives train the global vectors G (every global vector
    /// against K patches), each at twice the half share the loss gives it, so for JSD each side's
    /// gradient is an unbiased estimate of the full loss's (DV's loss is biased to begin with;
    /// docs/bounded-negatives.md). The rows' own gradients through the block would reach only the
    /// K sampled G's, each weighted N/K (and the sampled patches' through the columns likewise):
    /// unbiased too, but a variance that grows with N/K. Nothing goes back to the rows' owners, so
    /// there is no reduce-scatter.
    private func splitBackward(G: Tensor, L: Tensor, _ layout: ScoreLayout) {
        let units = L.shape[0], n = layout.n, R = layout.rowCount, cols = layout.columns
        let width = rowWidth(layout, units: units)
        // dL = 2 G_rows^T [U, R] x dscores [R, nP].
        sgemm(transA: true, m: units, n: cols, k: R, alpha: 2, a: rowVectors.data, lda: width,
              b: gradScores.data, ldb: cols, c: gradL.data, ldc: cols)
        // dG^T = 2 dcolumns [n, R] x patches [R, U].
        gradLocalGlobals.resize([n, units])
        sgemm(m: n, n: units, k: R, alpha: 2, a: gradColumnScores.data, lda: R, b: rowVectors.data + units,
              ldb: width, c: gradLocalGlobals.data, ldc: units)
        gradG.resize([units, n])
        transpose(gradLocalGlobals.data, rows: n, cols: units, into: gradG.data)
        addOwnPositivesBackward(G: G, L: L, positions: layout.P)
    }

    /// Floats per gathered row: the global vector, and with column negatives its sampled patch vector.
    private func rowWidth(_ layout: ScoreLayout, units: Int) -> Int { layout.hasColumnNegatives ? 2 * units : units }

    /// positives[j*P + l] = G_j . L_{j,l}: copied from the score block with all rows (the GEMM has
    /// computed every positive already), summed here otherwise: with sampled rows all of them are
    /// dot products here, one summation order for every image whatever the rank count (taking the
    /// rows' from the block and the rest from here made 5 SGD steps at np = 4 drift 30x further
    /// from np = 1: float rounding, amplified). One unit (a row of G and of L) at a time so that the inner loop runs
    /// over contiguous columns (P U multiply-adds per image; memory-bound: it streams L once).
    private func scoreOwnPositives(G: Tensor, L: Tensor, _ layout: ScoreLayout) {
        let units = G.shape[0], n = layout.n, P = layout.P, cols = layout.columns
        positives.resize([cols], zero: true)
        gradPositives.resize([cols])
        let pos = positives.data
        if layout.mode == .allRows {
            for (t, j) in layout.ownedLocalIndex.enumerated() {
                (pos + j * P).update(from: scores.data + (layout.firstOwnedRow + t) * cols + j * P, count: P)
            }
            return
        }
        for unit in 0..<units {
            let g = G.data + unit * n, l = L.data + unit * cols
            for j in 0..<n {
                let gj = g[j]
                for c in (j * P)..<((j + 1) * P) { pos[c] += gj * l[c] }
            }
        }
    }

    /// The positives' gradients when they were dot products: dG[u, j] += sum_l dpos[j*P + l]
    /// L[u, j*P + l] and dL[u, c] += G[u, j] dpos[c].
    private func addOwnPositivesBackward(G: Tensor, L: Tensor, positions P: Int) {
        let units = G.shape[0], n = G.count / units, cols = n * P
        let dpos = gradPositives.data
        for unit in 0..<units {
            let g = G.data + unit * n, l = L.data + unit * cols
            let dg = gradG.data + unit * n, dl = gradL.data + unit * cols
            for j in 0..<n {
                let gj = g[j]
                var sum: Float = 0
                for c in (j * P)..<((j + 1) * P) {
                    sum += dpos[c] * l[c]
                    dl[c] += gj * dpos[c]
                }
                dg[j] += sum
            }
        }
    }
}
