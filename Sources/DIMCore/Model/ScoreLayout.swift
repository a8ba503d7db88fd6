import Foundation

/// How a step scores, declared once per step (Scorer.forward) and carried by its ScoreLayout: the
/// estimator, the backward and the collectives branch on it, never on the shapes of the buffers.
public enum ScoringMode: Equatable {
    /// Every image of the global batch is a row (DIM's loss). The score block holds every
    /// positive; the rows' gradients go back to their owners by a reduce-scatter.
    case allRows
    /// K < N sampled rows and nothing else: infoNCE's, whose anchors they are (each needs its row's
    /// normaliser). Positives are dot products on their owners; the rows' gradients go back by a
    /// reduce-scatter.
    case sampledRows
    /// K < N sampled rows for JSD and DV, each with one sampled patch of its image (column
    /// negatives). Positives are dot products on their owners; backward is split (rows train the
    /// local vectors, columns the global ones), so nothing goes back to the rows' owners.
    case sampledWithColumns

    /// The mode of a step that scores `rowCount` of the global batch's `N` images.
    public static func of(_ estimator: Estimator, rowCount: Int, globalBatch N: Int) -> ScoringMode {
        if rowCount >= N { return .allRows }
        return estimator == .nce ? .sampledRows : .sampledWithColumns
    }
}

/// The rows of one step as this rank sees them: which image each row is, which rows this rank
/// owns (it sends their global vectors and receives their gradients), and the positive columns.
public struct ScoreLayout {
    public let mode: ScoringMode
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

    public init(mode: ScoringMode, rows: [Int], patches: [Int] = [], globalBatch N: Int, localBatch n: Int,
                rank: Int, ranks: Int, positions P: Int) {
        precondition(N == n * ranks, "global batch \(N) is not \(ranks) ranks x \(n)")
        precondition((mode == .allRows) == (rows.count == N), "\(mode) with \(rows.count) rows of \(N)")
        precondition(mode == .sampledWithColumns ? patches.count == rows.count : patches.isEmpty,
                     "\(mode): one sampled patch per row with column negatives, none otherwise")
        self.mode = mode
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
        ScoreLayout(mode: .allRows, rows: Array(0..<N), globalBatch: N, localBatch: N, rank: 0, ranks: 1,
                    positions: P)
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
    public var hasColumnNegatives: Bool { mode == .sampledWithColumns }
    /// Column negative pairs: each image's global vector against the sampled patch of every row
    /// of another image.
    public var columnNegativeCount: Double { Double(rowCount * (globalBatch - 1)) }
    /// The row of local image j's own sampled patch, if it is a row (its column entry is no negative).
    @inline(__always)
    public func ownRow(localImage j: Int) -> Int? { rowOfLocalImage[j] }
    /// Negative pairs: each row against the patches of the N - 1 other images.
    public var negativeCount: Double { Double(rowCount * (globalBatch - 1) * P) }
}
