import Foundation

/// The estimators of DESIGN.md §3 on this rank's block of the score matrix.
///
/// `u` is `[R, n*P]`: row i is the global vector of image `layout.rowImage[i]` (gathered from its
/// owner), column (j, l) is patch l of this rank's image j (global index offset + j). Row i's
/// positives are its own image's P patches (on the rank that owns it); every other entry of the
/// row is a negative. With all N rows this is DIM's loss; with a sample of rows, each estimator
/// averages over the sampled rows (docs/bounded-negatives.md). Each function returns the loss of
/// the whole step (the same number on every rank) and writes `gradScale` x dloss/du into `grad`.
/// Sums that span ranks (infoNCE's per-row normaliser, DV's log-mean-exp, the loss itself) are
/// combined with allreduces, so np ranks compute what one process computes.
///
/// The elementwise work is float32 vector kernels (Sources/CKernels, through VectorMath.swift);
/// per-row and per-rank totals are Double.
public func estimatorLoss(_ estimator: Estimator, u: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>,
                          layout: ScoreLayout, maskValue: Double, gradScale: Double = 1, comm: Communicator) -> Double {
    precondition(layout.globalBatch >= 2, "DIM needs at least two images in the global batch (negatives)")
    switch estimator {
    case .jsd: return jsdLoss(u: u, grad: grad, layout, Float(gradScale), comm)
    case .nce: return infoNCELoss(u: u, grad: grad, layout, maskValue: maskValue, gradScale, comm)
    case .dv: return donskerVaradhanLoss(u: u, grad: grad, layout, Float(gradScale), comm)
    }
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

/// JSD: mean softplus(-u) over positives + mean softplus(u) over negatives - 2 log 2.
func jsdLoss(u: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>, _ layout: ScoreLayout, _ gradScale: Float,
             _ comm: Communicator) -> Double {
    let posW = 1 / layout.positiveCount, negW = 1 / layout.negativeCount
    let (posScale, negScale) = (-Float(posW) * gradScale, Float(negW) * gradScale)
    let total = sumOverRowBlocks(layout) { rows in
        var positives = 0.0, negatives = 0.0
        for i in rows {
            let row = u + i * layout.columns, g = grad + i * layout.columns
            forEachSpan(row: i, layout) { span, positive in
                let (x, gx, count) = (row + span.lowerBound, g + span.lowerBound, span.count)
                if positive {
                    positives += softplusSum(x, count: count, sign: -1, gradScale: posScale, grad: gx)
                } else {
                    negatives += softplusSum(x, count: count, sign: 1, gradScale: negScale, grad: gx)
                }
            }
        }
        return positives * posW + negatives * negW
    }
    return comm.sum(total) - 2 * log(2.0)
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

/// infoNCE: for each anchor (row i, its positive patch l), softplus(LSE_i - u[i, (i, l)]), where
/// LSE_i runs over row i's negatives (on every rank) plus its P own-image entries replaced by
/// `maskValue`; averaged over the R*P anchors.
func infoNCELoss(u: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>, _ layout: ScoreLayout,
                 maskValue: Double, _ gradScale: Double, _ comm: Communicator) -> Double {
    let R = layout.rowCount, cols = layout.columns
    let lse = rowLogSumExp(u: u, layout, maskValue: maskValue, comm)
    // Positives live with the rank that owns row i's image; their sigmoid weights, summed per
    // row, scale the softmax over that row's negatives on every rank.
    let w = 1 / layout.positiveCount
    var loss = 0.0
    var rowWeight = [Double](repeating: 0, count: R)
    for i in 0..<R {
        for c in layout.positiveColumns(row: i) {
            let t = lse[i] - Double(u[i * cols + c])
            loss += softplus(t) * w
            let s = sigmoid(t) * w
            grad[i * cols + c] = Float(-s * gradScale)
            rowWeight[i] += s
        }
    }
    comm.allreduceSum(&rowWeight, count: R)
    _ = sumOverRowBlocks(layout) { rows in
        for i in rows {
            let scale = Float(rowWeight[i] * gradScale)
            forEachSpan(row: i, layout) { span, positive in
                if positive { return }
                let offset = i * cols + span.lowerBound
                _ = expSum(u + offset, count: span.count, shift: Float(lse[i]), gradScale: scale, grad: grad + offset)
            }
        }
        return 0
    }
    return comm.sum(loss)
}

/// Donsker-Varadhan: -mean over positives of u + log(mean over all negatives of e^u).
func donskerVaradhanLoss(u: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>, _ layout: ScoreLayout,
                         _ gradScale: Float, _ comm: Communicator) -> Double {
    let cols = layout.columns
    var m: Float = -.infinity
    for i in 0..<layout.rowCount {
        forEachSpan(row: i, layout) { span, positive in
            if !positive { m = maximum(u + i * cols + span.lowerBound, count: span.count, initial: m) }
        }
    }
    let shift = comm.max(Double(m))
    var positives = 0.0
    for i in 0..<layout.rowCount {
        for c in layout.positiveColumns(row: i) { positives += Double(u[i * cols + c]) }
    }
    let negatives = sumOverRowBlocks(layout) { rows in
        var s = 0.0
        for i in rows {
            forEachSpan(row: i, layout) { span, positive in
                if !positive { s += expSum(u + i * cols + span.lowerBound, count: span.count, shift: Float(shift)) }
            }
        }
        return s
    }
    var sums = [negatives, positives]  // sum of e^(u - shift) over negatives, sum of u over positives
    comm.allreduceSum(&sums, count: 2)
    let lse = shift + log(sums[0])
    let posW = 1 / layout.positiveCount
    _ = sumOverRowBlocks(layout) { rows in
        for i in rows {
            forEachSpan(row: i, layout) { span, positive in
                let offset = i * cols + span.lowerBound
                if positive {
                    for c in 0..<span.count { grad[offset + c] = Float(-posW) * gradScale }
                } else {
                    _ = expSum(u + offset, count: span.count, shift: Float(lse), gradScale: gradScale, grad: grad + offset)
                }
            }
        }
        return 0
    }
    return -sums[1] * posW + lse - log(layout.negativeCount)
}
