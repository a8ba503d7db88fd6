import Foundation

/// Which global vectors a step scores: the rows of the score matrix (docs/bounded-negatives.md).
///
/// Every rank scores its own local patches (the columns) against the global vectors of a set of
/// images of the global batch (the rows). `all` is DIM's loss: every image, so the score GEMM, the
/// estimator and the gather of G grow with the global batch N. `limit(K)` keeps the per-rank cost
/// flat in the number of ranks: K images drawn uniformly without replacement from the global batch
/// of the step, from (seed, step) only, so every rank (and every rank count) draws the same set.
/// The rows carry the negatives: JSD and DV average their negative term over the sampled rows and
/// over every global vector against one sampled patch of each row's image (`patches`), and still
/// score every image's positives (local to its owner); infoNCE's anchors are the sampled rows.
/// JSD and infoNCE stay unbiased estimates of the full loss, and all three equal it when K >= N.
public struct RowSelection: Equatable, Codable, CustomStringConvertible {
    /// nil: every image of the global batch.
    public var limit: Int?
    public var seed: UInt64

    public static let all = RowSelection(limit: nil, seed: 0)
    public init(limit: Int?, seed: UInt64) {
        precondition(limit.map { $0 >= 2 } ?? true, "a bounded row set needs at least 2 rows")
        self.limit = limit; self.seed = seed
    }

    /// The global image indices scored at `step`, ascending (so each owner's rows are contiguous
    /// and in rank order, as the variable-count collectives expect).
    public func rows(globalBatch N: Int, step: Int) -> [Int] {
        guard let K = limit, K < N else { return Array(0..<N) }
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

    public var description: String { limit.map { "\($0) sampled rows" } ?? "all rows" }
}

/// The rows of one step as this rank sees them: which image each row is, which rows this rank
/// owns (it sends their global vectors and receives their gradients), and the positive columns.
public struct ScoreLayout {
    /// Global image index of each row, ascending.
    public let rowImage: [Int]
    public let globalBatch: Int
    /// This rank's images are offset..<offset+n; each has P local positions (columns j*P..<(j+1)*P).
    public let n: Int, offset: Int, P: Int
    /// Rows owned by each rank (rank r owns images r*n..<(r+1)*n).
    public let rowsPerRank: [Int]
    /// The local index j of each row this rank owns, in row order; they are rows
    /// firstOwnedRow..<firstOwnedRow + ownedLocalIndex.count.
    public let ownedLocalIndex: [Int]
    public let firstOwnedRow: Int

    /// With sampled rows: the patch position of each row's image whose local vector is gathered
    /// with the row, and scored against every global vector (empty with all rows).
    public let rowPatch: [Int]
    /// The row of each local image, if it is one.
    private let rowOfLocalImage: [Int?]

    public init(rows: [Int], patches: [Int] = [], globalBatch N: Int, localBatch n: Int, rank: Int, ranks: Int,
                positions P: Int) {
        precondition(N == n * ranks, "global batch \(N) is not \(ranks) ranks x \(n)")
        precondition(patches.isEmpty || patches.count == rows.count, "one patch per row")
        rowImage = rows; rowPatch = patches; globalBatch = N; self.n = n; offset = rank * n; self.P = P
        var perRank = [Int](repeating: 0, count: ranks)
        for i in rows { perRank[i / n] += 1 }
        rowsPerRank = perRank
        firstOwnedRow = perRank[..<rank].reduce(0, +)
        ownedLocalIndex = rows[firstOwnedRow..<(firstOwnedRow + perRank[rank])].map { $0 - rank * n }
        var rowOf = [Int?](repeating: nil, count: n)
        for (t, j) in ownedLocalIndex.enumerated() { rowOf[j] = firstOwnedRow + t }
        rowOfLocalImage = rowOf
    }

    /// One process scoring all N rows (tests, benchmarks).
    public static func allRows(images N: Int, positions P: Int) -> ScoreLayout {
        ScoreLayout(rows: Array(0..<N), globalBatch: N, localBatch: N, rank: 0, ranks: 1, positions: P)
    }

    public var rowCount: Int { rowImage.count }
    public var columns: Int { n * P }
    /// The columns of row i's positives on this rank (empty when another rank owns its image).
    @inline(__always)
    public func positiveColumns(row i: Int) -> Range<Int> {
        let j = rowImage[i] - offset
        return j >= 0 && j < n ? j * P..<(j + 1) * P : 0..<0
    }
    /// Positive pairs of the whole step: every image of the global batch has P patches (JSD, DV).
    public var positiveCount: Double { Double(globalBatch * P) }
    /// infoNCE's anchors: a row's image's P patches (an anchor needs its row's normaliser).
    public var anchorCount: Double { Double(rowCount * P) }
    /// Whether the step also scores every global vector against the rows' sampled patches.
    public var hasColumnNegatives: Bool { !rowPatch.isEmpty }
    /// Column negative pairs: each image's global vector against the sampled patch of every row
    /// of another image.
    public var columnNegativeCount: Double { Double(rowCount * (globalBatch - 1)) }
    /// The row of local image j's own sampled patch, if it is a row (its column entry is no negative).
    @inline(__always)
    public func ownRow(localImage j: Int) -> Int? { rowOfLocalImage[j] }
    /// Negative pairs: each row against the patches of the N - 1 other images.
    public var negativeCount: Double { Double(rowCount * (globalBatch - 1) * P) }
}
