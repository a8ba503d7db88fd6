import Foundation

/// Which global vectors a step scores: the rows of the score matrix (docs/bounded-negatives.md).
///
/// Every rank scores its own local patches (the columns) against the global vectors of a set of
/// images of the global batch (the rows). `all` is DIM's loss: every image, so the score GEMM, the
/// estimator and the gather of G grow with the global batch N. `limit(K)` keeps the per-rank cost
/// flat in the number of ranks: K images (`--scored-rows K`) drawn uniformly without replacement from the global batch
/// of the step, from (seed, step) only, so every rank (and every rank count) draws the same set.
/// The rows carry the negatives: JSD and DV average their negative term over the sampled rows and
/// over every global vector against one sampled patch of each row's image (`patches`), and still
/// score every image's positives (local to its owner); infoNCE's anchors are the sampled rows.
/// JSD and infoNCE stay unbiased estimates of the full loss, and all three equal it when K >= N.
public struct RowSelection: Equatable, Codable, CustomStringConvertible {
    /// K, the rows scored per step (`--scored-rows`); nil: every image of the global batch.
    public var scoredRows: Int?
    public var seed: UInt64

    public static let all = RowSelection(scoredRows: nil, seed: 0)
    public init(scoredRows: Int?, seed: UInt64) {
        precondition(scoredRows.map { $0 >= 2 } ?? true, "a bounded row set needs at least 2 rows")
        self.scoredRows = scoredRows; self.seed = seed
    }

    /// The global image indices scored at `step`, ascending (so each owner's rows are contiguous
    /// and in rank order, as the variable-count collectives expect).
    public func rows(globalBatch N: Int, step: Int) -> [Int] {
        guard let K = scoredRows, K < N else { return Array(0..<N) }
        var rng = SplitMix64(seed: seed, stream: RandomStream.scoredRows, index: UInt64(step))
        return Array(rng.permutation(N).prefix(K)).sorted()
    }

    /// With sampled rows, one patch position of each row's image (in row order), from (seed, step):
    /// the patch vectors that every rank's global vectors are scored against (column negatives).
    /// Empty with all rows.
    public func patches(rows: [Int], globalBatch N: Int, step: Int, positions P: Int) -> [Int] {
        guard rows.count < N else { return [] }
        var rng = SplitMix64(seed: seed, stream: RandomStream.scoredPatches, index: UInt64(step))
        return rows.map { _ in rng.nextInt(P) }
    }

    public var description: String { scoredRows.map { "\($0) sampled rows" } ?? "all rows" }
}
