/// The estimators of DESIGN.md §3 on a block of the score matrix.
///
/// `u` is this rank's block `[N, n*P]`: row i is a global image (its vector gathered from every
/// rank), column (j, l) is patch l of local image j, whose global index is `offset + j`.
/// Positives are the entries with i == offset + j. Each function returns the loss of the **global**
/// batch (the same number on every rank) and writes dloss/du for this rank's block into `grad`.
/// Sums that span ranks (infoNCE's per-anchor normaliser, DV's log-mean-exp, the loss itself) are
/// combined with allreduces, so np ranks compute exactly what one process computes.
public struct ScoreBlock {
    public var N: Int       // global batch
    public var n: Int       // local batch
    public var offset: Int  // global index of local image 0
    public var P: Int       // positions per image
    public init(N: Int, n: Int, offset: Int, P: Int) { self.N = N; self.n = n; self.offset = offset; self.P = P }
    var cols: Int { n * P }
}

public func estimatorLoss(_ estimator: Estimator, u: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>,
                          block b: ScoreBlock, maskValue: Double, comm: Communicator) -> Double {
    precondition(b.N >= 2, "DIM needs at least two images in the global batch (negatives)")
    switch estimator {
    case .jsd: return jsdLoss(u: u, grad: grad, b, comm)
    case .nce: return infoNCELoss(u: u, grad: grad, b, maskValue: maskValue, comm)
    case .dv: return donskerVaradhanLoss(u: u, grad: grad, b, comm)
    }
}

/// JSD: mean softplus(-u) over positives + mean softplus(u) over negatives - 2 log 2.
func jsdLoss(u: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>, _ b: ScoreBlock, _ comm: Communicator) -> Double {
    let posW = 1 / Double(b.N * b.P)
    let negW = 1 / Double(b.N * (b.N - 1) * b.P)
    var sum = 0.0
    for i in 0..<b.N {
        let row = u + i * b.cols, g = grad + i * b.cols
        for j in 0..<b.n {
            let positive = (b.offset + j == i)
            for l in 0..<b.P {
                let c = j * b.P + l
                let v = Double(row[c])
                if positive {
                    sum += softplus(-v) * posW
                    g[c] = Float(-sigmoid(-v) * posW)
                } else {
                    sum += softplus(v) * negW
                    g[c] = Float(sigmoid(v) * negW)
                }
            }
        }
    }
    return comm.sum(sum) - 2 * log(2.0)
}

/// infoNCE: for each anchor (i, l), softplus(LSE_i - u[i, i, l]), where LSE_i runs over the
/// negatives of row i plus the P self-image entries replaced by `maskValue`.
func infoNCELoss(u: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>, _ b: ScoreBlock,
                 maskValue: Double, _ comm: Communicator) -> Double {
    var rowMax = [Double](repeating: maskValue, count: b.N)
    for i in 0..<b.N {
        let row = u + i * b.cols
        var m = rowMax[i]
        for j in 0..<b.n where b.offset + j != i {
            for c in j * b.P..<(j + 1) * b.P { m = max(m, Double(row[c])) }
        }
        rowMax[i] = m
    }
    comm.allreduceMax(&rowMax, count: b.N)
    var rowSum = [Double](repeating: 0, count: b.N)
    for i in 0..<b.N {
        let row = u + i * b.cols
        var s = 0.0
        for j in 0..<b.n where b.offset + j != i {
            for c in j * b.P..<(j + 1) * b.P { s += exp(Double(row[c]) - rowMax[i]) }
        }
        rowSum[i] = s
    }
    comm.allreduceSum(&rowSum, count: b.N)
    var lse = [Double](repeating: 0, count: b.N)
    for i in 0..<b.N {
        lse[i] = rowMax[i] + log(rowSum[i] + Double(b.P) * exp(maskValue - rowMax[i]))
    }
    // Positives live with the rank that owns image i; their sigmoid weights, summed per row,
    // scale the softmax over that row's negatives on every rank.
    let w = 1 / Double(b.N * b.P)
    var loss = 0.0
    var rowWeight = [Double](repeating: 0, count: b.N)
    for j in 0..<b.n {
        let i = b.offset + j
        let row = u + i * b.cols, g = grad + i * b.cols
        for c in j * b.P..<(j + 1) * b.P {
            let t = lse[i] - Double(row[c])
            loss += softplus(t) * w
            let s = sigmoid(t) * w
            g[c] = Float(-s)
            rowWeight[i] += s
        }
    }
    comm.allreduceSum(&rowWeight, count: b.N)
    for i in 0..<b.N {
        let row = u + i * b.cols, g = grad + i * b.cols
        for j in 0..<b.n where b.offset + j != i {
            for c in j * b.P..<(j + 1) * b.P { g[c] = Float(rowWeight[i] * exp(Double(row[c]) - lse[i])) }
        }
    }
    return comm.sum(loss)
}

/// Donsker-Varadhan: -mean over positives of u + log(mean over all negatives of e^u).
func donskerVaradhanLoss(u: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>, _ b: ScoreBlock,
                         _ comm: Communicator) -> Double {
    var m = -Double.infinity
    for i in 0..<b.N {
        let row = u + i * b.cols
        for j in 0..<b.n where b.offset + j != i {
            for c in j * b.P..<(j + 1) * b.P { m = max(m, Double(row[c])) }
        }
    }
    m = comm.max(m)
    var s = 0.0, pos = 0.0
    for i in 0..<b.N {
        let row = u + i * b.cols
        for j in 0..<b.n {
            if b.offset + j == i {
                for c in j * b.P..<(j + 1) * b.P { pos += Double(row[c]) }
            } else {
                for c in j * b.P..<(j + 1) * b.P { s += exp(Double(row[c]) - m) }
            }
        }
    }
    var sums = [s, pos]
    comm.allreduceSum(&sums, count: 2)
    let lse = m + log(sums[0])
    let count = Double(b.N * (b.N - 1) * b.P)
    let posW = 1 / Double(b.N * b.P)
    for i in 0..<b.N {
        let row = u + i * b.cols, g = grad + i * b.cols
        for j in 0..<b.n {
            if b.offset + j == i {
                for c in j * b.P..<(j + 1) * b.P { g[c] = Float(-posW) }
            } else {
                for c in j * b.P..<(j + 1) * b.P { g[c] = Float(exp(Double(row[c]) - lse)) }
            }
        }
    }
    return -sums[1] * posW + lse - log(count)
}
