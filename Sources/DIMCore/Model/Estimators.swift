import Foundation

/// The estimators of docs/design.md §3 on this rank's scores.
///
/// `u` is `[R, n*P]`: row i is the global vector of image `layout.rowImage[i]` (gathered from its
/// owner), column (j, l) is patch l of this rank's image j (global index offset + j). Every entry
/// of row i outside its own image's P columns is a negative. `positives` is `[n*P]`, indexed by
/// the same columns: G_j . L_{j,l} for each of this rank's images j, rows or not. The estimators
/// read positives only there and negatives only in `u` (the positive span of a row in `u` gets a
/// zero gradient). With all N rows this is DIM's loss; with a sample of rows the negatives are
/// sampled and JSD and DV still score every positive, while infoNCE's anchors are the sampled rows
/// (docs/bounded-negatives.md). Each function returns the loss of the whole step (the same number
/// on every rank) and writes `gradScale` x dloss/du into `grad` and `gradPositives`. Sums that span
/// ranks (infoNCE's per-row normaliser, DV's log-mean-exp, the loss itself) are combined with
/// allreduces, so np ranks compute what one process computes.
///
/// The elementwise work is float32 vector kernels (Sources/CKernels, through VectorMath.swift);
/// per-row and per-rank totals are Double.
public func estimatorLoss(_ estimator: Estimator, u: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>,
                          positives: UnsafePointer<Float>, gradPositives: UnsafeMutablePointer<Float>,
                          columns: UnsafePointer<Float>? = nil, gradColumns: UnsafeMutablePointer<Float>? = nil,
                          layout: ScoreLayout, maskValue: Double, gradScale: Double = 1, comm: Communicator) -> Double {
    precondition(layout.globalBatch >= 2, "DIM needs at least two images in the global batch (negatives)")
    precondition((columns != nil && gradColumns != nil) == layout.hasColumnNegatives,
                 "column scores are given exactly when the layout has sampled patches")
    precondition(!(estimator == .nce && layout.hasColumnNegatives), "infoNCE has no column negatives")
    let scores = RankScores(u: u, grad: grad, positives: positives, gradPositives: gradPositives,
                            columns: columns, gradColumns: gradColumns)
    switch estimator {
    case .jsd: return jsdLoss(scores, layout, Float(gradScale), comm)
    case .nce: return infoNCELoss(scores, layout, maskValue: maskValue, gradScale, comm)
    case .dv: return donskerVaradhanLoss(scores, layout, Float(gradScale), comm)
    }
}

/// One rank's score buffers and their gradients (see `estimatorLoss`).
struct RankScores {
    let u: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>
    let positives: UnsafePointer<Float>, gradPositives: UnsafeMutablePointer<Float>
    /// `[n, R]`: this rank's global vectors against the rows' sampled patches (column negatives).
    let columns: UnsafePointer<Float>?, gradColumns: UnsafeMutablePointer<Float>?
}

/// The share of the negative term that the row block carries: all of it, or half when the step
/// also has column negatives (the other half).
@inline(__always)
private func rowShare(_ layout: ScoreLayout) -> Double { layout.hasColumnNegatives ? 0.5 : 1 }

/// Calls `body(range)` for the entries of column row j (local image j against the R rows'
/// sampled patches) that are negatives: all but its own image's row, if that is a row.
@inline(__always)
private func forEachColumnSpan(image j: Int, _ layout: ScoreLayout, _ body: (Range<Int>) -> Void) {
    let R = layout.rowCount
    guard let own = layout.ownRow(localImage: j) else { body(0..<R); return }
    if own > 0 { body(0..<own) }
    if own + 1 < R { body((own + 1)..<R) }
}

/// Runs `body` over the rows in blocks of 16 and returns the blocks' results summed in block order.
/// The split does not depend on the thread count, so neither does the result. The blocks run on
/// several threads when the rank has several (its BLAS threads) and the score block is large.
private func sumOverRowBlocks(_ layout: ScoreLayout, _ body: (Range<Int>) -> Double) -> Double {
    let R = layout.rowCount, blockRows = 16
    let blocks = (R + blockRows - 1) / blockRows
    let range = { (b: Int) in (b * blockRows)..<min(R, (b + 1) * blockRows) }
    guard blocks > 1, blasThreads() > 1, R * layout.columns >= 1 << 16 else {
        return (0..<blocks).reduce(0.0) { $0 + body(range($1)) }
    }
    var partial = [Double](repeating: 0, count: blocks)
    partial.withUnsafeMutableBufferPointer { out in
        DispatchQueue.concurrentPerform(iterations: blocks) { b in out[b] = body(range(b)) }
    }
    return partial.reduce(0, +)
}

/// Calls `body(columns, isPositive)` for the negative spans of row i and its positive span, in
/// column order.
@inline(__always)
private func forEachSpan(row i: Int, _ layout: ScoreLayout, _ body: (Range<Int>, Bool) -> Void) {
    let pos = layout.positiveColumns(row: i)
    if pos.isEmpty { body(0..<layout.columns, false); return }
    if pos.lowerBound > 0 { body(0..<pos.lowerBound, false) }
    body(pos, true)
    if pos.upperBound < layout.columns { body(pos.upperBound..<layout.columns, false) }
}

/// JSD: mean softplus(-u) over every positive + mean softplus(u) over the rows' negatives - 2 log 2.
func jsdLoss(_ s: RankScores, _ layout: ScoreLayout, _ gradScale: Float, _ comm: Communicator) -> Double {
    let posW = 1 / layout.positiveCount, negW = rowShare(layout) / layout.negativeCount
    let positives = softplusSum(s.positives, count: layout.columns, sign: -1, gradScale: -Float(posW) * gradScale,
                                grad: s.gradPositives)
    let negScale = Float(negW) * gradScale
    let negatives = sumOverRowBlocks(layout) { rows in
        var sum = 0.0
        for i in rows {
            let row = s.u + i * layout.columns, g = s.grad + i * layout.columns
            forEachSpan(row: i, layout) { span, positive in
                let gx = g + span.lowerBound
                if positive { gx.update(repeating: 0, count: span.count); return }
                sum += softplusSum(row + span.lowerBound, count: span.count, sign: 1, gradScale: negScale, grad: gx)
            }
        }
        return sum
    }
    var columnTerm = 0.0
    if let x = s.columns, let gx = s.gradColumns {
        let colW = 0.5 / layout.columnNegativeCount, R = layout.rowCount
        for j in 0..<layout.n {
            (gx + j * R).update(repeating: 0, count: R)
            forEachColumnSpan(image: j, layout) { span in
                let offset = j * R + span.lowerBound
                columnTerm += softplusSum(x + offset, count: span.count, sign: 1, gradScale: Float(colW) * gradScale,
                                          grad: gx + offset) * colW
            }
        }
    }
    return comm.sum(positives * posW + negatives * negW + columnTerm) - 2 * log(2.0)
}

/// infoNCE's normaliser of each row: log-sum-exp over its negatives on every rank plus its P
/// own-image entries at `maskValue` (a max allreduce, then a sum allreduce of the shifted sums).
/// Returns the rows' maxima and log-sum-exps, and leaves e^(u - max) of every negative in `exps`
/// (0 at the positives), from which the gradient is a scaling per row.
private func rowLogSumExp(u: UnsafePointer<Float>, _ layout: ScoreLayout, maskValue: Double,
                          exps: UnsafeMutablePointer<Float>, _ comm: Communicator) -> (max: [Double], lse: [Double]) {
    let R = layout.rowCount, cols = layout.columns, P = layout.P
    var rowMax = [Double](repeating: maskValue, count: R)
    rowMax.withUnsafeMutableBufferPointer { rowMax in
        _ = sumOverRowBlocks(layout) { rows in
            for i in rows {
                var m = Float(rowMax[i])
                forEachSpan(row: i, layout) { span, positive in
                    if !positive { m = maximum(u + i * cols + span.lowerBound, count: span.count, initial: m) }
                }
                rowMax[i] = Double(m)
            }
            return 0
        }
    }
    comm.allreduceMax(&rowMax, count: R)
    var rowSum = [Double](repeating: 0, count: R)
    rowSum.withUnsafeMutableBufferPointer { rowSum in
        _ = sumOverRowBlocks(layout) { rows in
            for i in rows {
                var s = 0.0
                forEachSpan(row: i, layout) { span, positive in
                    let offset = i * cols + span.lowerBound
                    if positive { (exps + offset).update(repeating: 0, count: span.count); return }
                    s += expSum(u + offset, count: span.count, shift: Float(rowMax[i]), grad: exps + offset)
                }
                rowSum[i] = s
            }
            return 0
        }
    }
    comm.allreduceSum(&rowSum, count: R)
    return (rowMax, (0..<R).map { rowMax[$0] + log(rowSum[$0] + Double(P) * exp(maskValue - rowMax[$0])) })
}

/// infoNCE: for each anchor (row i, its positive patch l), softplus(LSE_i - G_i . L_{i,l}), where
/// LSE_i runs over row i's negatives (on every rank) plus its P own-image entries replaced by
/// `maskValue`; averaged over the R*P anchors. Images outside the row set have no normaliser, so
/// their positives are not scored (zero gradient).
func infoNCELoss(_ s: RankScores, _ layout: ScoreLayout, maskValue: Double, _ gradScale: Double,
                 _ comm: Communicator) -> Double {
    let R = layout.rowCount, cols = layout.columns
    let (rowMax, lse) = rowLogSumExp(u: s.u, layout, maskValue: maskValue, exps: s.grad, comm)
    // Positives live with the rank that owns row i's image; their sigmoid weights, summed per
    // row, scale the softmax over that row's negatives on every rank.
    let w = 1 / layout.anchorCount
    var loss = 0.0
    var rowWeight = [Double](repeating: 0, count: R)
    s.gradPositives.update(repeating: 0, count: cols)
    for i in 0..<R {
        // t = LSE_i - u over the row's positives, then softplus(t) summed and sigmoid(t) in place
        // (the vector kernel: as scalar Double calls these cost as much as all the negatives).
        let span = layout.positiveColumns(row: i)
        guard !span.isEmpty else { continue }
        let t = s.gradPositives + span.lowerBound
        for (k, c) in span.enumerated() { t[k] = Float(lse[i] - Double(s.positives[c])) }
        loss += softplusSum(t, count: span.count, sign: 1, gradScale: 1, grad: t) * w
        var sigmoids = 0.0
        for k in 0..<span.count {
            sigmoids += Double(t[k])
            t[k] = Float(-Double(t[k]) * w * gradScale)
        }
        rowWeight[i] = sigmoids * w
    }
    comm.allreduceSum(&rowWeight, count: R)
    // The negatives' gradient, weight_i e^(u - LSE_i): e^(u - max_i), already in grad (0 at the
    // positives), times weight_i e^(max_i - LSE_i) <= weight_i.
    for i in 0..<R {
        scale(s.grad + i * cols, count: cols, by: Float(rowWeight[i] * gradScale * exp(rowMax[i] - lse[i])))
    }
    return comm.sum(loss)
}

/// Donsker-Varadhan: -mean over every positive of u + log(mean over the negatives of e^u), the
/// negatives' mean being the rows' (and, with column negatives, half the rows' and half the columns').
func donskerVaradhanLoss(_ s: RankScores, _ layout: ScoreLayout, _ gradScale: Float, _ comm: Communicator) -> Double {
    let cols = layout.columns, R = layout.rowCount
    var m: Float = -.infinity
    for i in 0..<R {
        forEachSpan(row: i, layout) { span, positive in
            if !positive { m = maximum(s.u + i * cols + span.lowerBound, count: span.count, initial: m) }
        }
    }
    if let x = s.columns {
        for j in 0..<layout.n {
            forEachColumnSpan(image: j, layout) { m = maximum(x + j * R + $0.lowerBound, count: $0.count, initial: m) }
        }
    }
    let shift = comm.max(Double(m))
    var positives = 0.0
    for c in 0..<cols { positives += Double(s.positives[c]) }
    // e^(u - shift) of every negative stays in the gradient buffers (0 elsewhere): the gradient
    // is that times one factor per set, known once the sums are.
    let negatives = sumOverRowBlocks(layout) { rows in
        var sum = 0.0
        for i in rows {
            forEachSpan(row: i, layout) { span, positive in
                let offset = i * cols + span.lowerBound
                if positive { (s.grad + offset).update(repeating: 0, count: span.count); return }
                sum += expSum(s.u + offset, count: span.count, shift: Float(shift), grad: s.grad + offset)
            }
        }
        return sum
    }
    var columnNegatives = 0.0
    if let x = s.columns, let gx = s.gradColumns {
        for j in 0..<layout.n {
            (gx + j * R).update(repeating: 0, count: R)
            forEachColumnSpan(image: j, layout) {
                let offset = j * R + $0.lowerBound
                columnNegatives += expSum(x + offset, count: $0.count, shift: Float(shift), grad: gx + offset)
            }
        }
    }
    // Sums of e^(u - shift) over the row and column negatives, sum of u over positives.
    var sums = [negatives, positives, columnNegatives]
    comm.allreduceSum(&sums, count: 3)
    let rowW = rowShare(layout) / layout.negativeCount
    let colW = layout.hasColumnNegatives ? 0.5 / layout.columnNegativeCount : 0
    let mix = rowW * sums[0] + colW * sums[2]  // the negatives' mean of e^(u - shift)
    let posW = 1 / layout.positiveCount
    s.gradPositives.update(repeating: Float(-posW) * gradScale, count: cols)
    // d/du of log(mix) is weight e^(u - shift) / mix, weight the set's (rowW or colW).
    scale(s.grad, count: R * cols, by: gradScale * Float(rowW / mix))
    if let gx = s.gradColumns { scale(gx, count: layout.n * R, by: gradScale * Float(colW / mix)) }
    return -sums[1] * posW + shift + log(mix)
}
