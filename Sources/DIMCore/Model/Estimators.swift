import Foundation

/// The estimators of DESIGN.md §3 on this rank's scores.
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
                          layout: ScoreLayout, maskValue: Double, gradScale: Double = 1, comm: Communicator) -> Double {
    precondition(layout.globalBatch >= 2, "DIM needs at least two images in the global batch (negatives)")
    let scores = RankScores(u: u, grad: grad, positives: positives, gradPositives: gradPositives)
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
    let posW = 1 / layout.positiveCount, negW = 1 / layout.negativeCount
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
    return comm.sum(positives * posW + negatives * negW) - 2 * log(2.0)
}

/// infoNCE's normaliser of each row: log-sum-exp over its negatives on every rank plus its P
/// own-image entries at `maskValue` (a max allreduce, then a sum allreduce of the shifted sums).
private func rowLogSumExp(u: UnsafePointer<Float>, _ layout: ScoreLayout, maskValue: Double,
                          _ comm: Communicator) -> [Double] {
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
                    if !positive { s += expSum(u + i * cols + span.lowerBound, count: span.count, shift: Float(rowMax[i])) }
                }
                rowSum[i] = s
            }
            return 0
        }
    }
    comm.allreduceSum(&rowSum, count: R)
    return (0..<R).map { rowMax[$0] + log(rowSum[$0] + Double(P) * exp(maskValue - rowMax[$0])) }
}

/// infoNCE: for each anchor (row i, its positive patch l), softplus(LSE_i - G_i . L_{i,l}), where
/// LSE_i runs over row i's negatives (on every rank) plus its P own-image entries replaced by
/// `maskValue`; averaged over the R*P anchors. Images outside the row set have no normaliser, so
/// their positives are not scored (zero gradient).
func infoNCELoss(_ s: RankScores, _ layout: ScoreLayout, maskValue: Double, _ gradScale: Double,
                 _ comm: Communicator) -> Double {
    let R = layout.rowCount, cols = layout.columns
    let lse = rowLogSumExp(u: s.u, layout, maskValue: maskValue, comm)
    // Positives live with the rank that owns row i's image; their sigmoid weights, summed per
    // row, scale the softmax over that row's negatives on every rank.
    let w = 1 / layout.anchorCount
    var loss = 0.0
    var rowWeight = [Double](repeating: 0, count: R)
    s.gradPositives.update(repeating: 0, count: cols)
    for i in 0..<R {
        for c in layout.positiveColumns(row: i) {
            let t = lse[i] - Double(s.positives[c])
            loss += softplus(t) * w
            let weight = sigmoid(t) * w
            s.gradPositives[c] = Float(-weight * gradScale)
            rowWeight[i] += weight
        }
    }
    comm.allreduceSum(&rowWeight, count: R)
    _ = sumOverRowBlocks(layout) { rows in
        for i in rows {
            let scale = Float(rowWeight[i] * gradScale)
            forEachSpan(row: i, layout) { span, positive in
                let offset = i * cols + span.lowerBound
                if positive { (s.grad + offset).update(repeating: 0, count: span.count); return }
                _ = expSum(s.u + offset, count: span.count, shift: Float(lse[i]), gradScale: scale, grad: s.grad + offset)
            }
        }
        return 0
    }
    return comm.sum(loss)
}

/// Donsker-Varadhan: -mean over every positive of u + log(mean over the rows' negatives of e^u).
func donskerVaradhanLoss(_ s: RankScores, _ layout: ScoreLayout, _ gradScale: Float, _ comm: Communicator) -> Double {
    let cols = layout.columns
    var m: Float = -.infinity
    for i in 0..<layout.rowCount {
        forEachSpan(row: i, layout) { span, positive in
            if !positive { m = maximum(s.u + i * cols + span.lowerBound, count: span.count, initial: m) }
        }
    }
    let shift = comm.max(Double(m))
    var positives = 0.0
    for c in 0..<cols { positives += Double(s.positives[c]) }
    let negatives = sumOverRowBlocks(layout) { rows in
        var sum = 0.0
        for i in rows {
            forEachSpan(row: i, layout) { span, positive in
                if !positive { sum += expSum(s.u + i * cols + span.lowerBound, count: span.count, shift: Float(shift)) }
            }
        }
        return sum
    }
    var sums = [negatives, positives]  // sum of e^(u - shift) over negatives, sum of u over positives
    comm.allreduceSum(&sums, count: 2)
    let lse = shift + log(sums[0])
    let posW = 1 / layout.positiveCount
    s.gradPositives.update(repeating: Float(-posW) * gradScale, count: cols)
    _ = sumOverRowBlocks(layout) { rows in
        for i in rows {
            forEachSpan(row: i, layout) { span, positive in
                let offset = i * cols + span.lowerBound
                if positive { (s.grad + offset).update(repeating: 0, count: span.count); return }
                _ = expSum(s.u + offset, count: span.count, shift: Float(lse), gradScale: gradScale, grad: s.grad + offset)
            }
        }
        return 0
    }
    return -sums[1] * posW + lse - log(layout.negativeCount)
}
