import Foundation
import DIMCore

/// The k-nearest-neighbour monitor of self-supervised learning (Wu et al. 2018, and the kNN
/// monitors of MoCo and solo-learn): features L2-normalised, cosine similarity of each test image
/// to every training image, the k most similar vote for their labels with weight exp(sim / T).
/// No parameters are trained, so it is cheap enough to run during training, and nothing is chosen
/// on validation.
public struct KNNClassifier {
    public var k = 200
    public var temperature: Float = 0.1
    public init(k: Int = 200, temperature: Float = 0.1) { self.k = k; self.temperature = temperature }

    /// Test accuracy of the vote.
    public func accuracy(train: FeatureSet, test: FeatureSet, classes: Int) -> Double {
        precondition(train.dim == test.dim, "kNN: \(train.dim)-d training features, \(test.dim)-d test features")
        let d = train.dim, k = min(self.k, train.count)
        guard k > 0, test.count > 0 else { return 0 }
        let bank = Self.normalised(train), queries = Self.normalised(test)
        let chunk = 256
        let sims = UnsafeMutablePointer<Float>.allocate(capacity: chunk * train.count)
        defer { sims.deallocate() }
        var topSim = [Float](repeating: 0, count: k), topIndex = [Int](repeating: 0, count: k)
        var votes = [Double](repeating: 0, count: classes)
        var correct = 0
        bank.withUnsafeBufferPointer { b in queries.withUnsafeBufferPointer { q in
            var start = 0
            while start < test.count {
                let n = min(chunk, test.count - start)
                // sims[i][j] = <query start+i, training image j>: one GEMM per chunk.
                sgemm(transB: true, m: n, n: train.count, k: d, a: q.baseAddress! + start * d, lda: d,
                      b: b.baseAddress!, ldb: d, c: sims, ldc: train.count)
                for i in 0..<n {
                    Self.top(k, of: sims + i * train.count, count: train.count, sims: &topSim, indices: &topIndex)
                    for c in 0..<classes { votes[c] = 0 }
                    for j in 0..<k { votes[train.labels[topIndex[j]]] += Double(expf(topSim[j] / temperature)) }
                    var best = 0
                    for c in 1..<classes where votes[c] > votes[best] { best = c }
                    if best == test.labels[start + i] { correct += 1 }
                }
                start += n
            }
        } }
        return Double(correct) / Double(test.count)
    }

    /// The vote on each feature set as probe results: rank 0 votes (`log` is told each feature's
    /// accuracy and seconds there) and every rank gets the numbers.
    public func results(train: [FeatureKind: FeatureSet], test: [FeatureKind: FeatureSet], features: [FeatureKind],
                        classes: Int, comm: Communicator,
                        log: (FeatureKind, Double, Double) -> Void = { _, _, _ in }) -> [ProbeResult] {
        var accuracy = features.map { _ in 0.0 }
        if comm.isRoot {
            for (i, k) in features.enumerated() {
                let t0 = monotonicSeconds()
                accuracy[i] = self.accuracy(train: train[k]!, test: test[k]!, classes: classes)
                log(k, accuracy[i], monotonicSeconds() - t0)
            }
        }
        comm.broadcast(&accuracy, bytes: 8 * accuracy.count, root: 0)
        return zip(features, accuracy).map { k, a in
            ProbeResult(feature: k.rawValue, probe: "knn", dim: train[k]!.dim, trainAccuracy: 0, testAccuracy: a,
                        validationAccuracy: 0, weightDecay: 0, epochs: 0)
        }
    }

    /// Rows scaled to unit length (a zero row stays zero).
    static func normalised(_ f: FeatureSet) -> [Float] {
        var out = f.values
        let d = f.dim
        out.withUnsafeMutableBufferPointer { v in
            for r in 0..<f.count {
                let row = v.baseAddress! + r * d
                var s: Float = 0
                for j in 0..<d { s += row[j] * row[j] }
                let scale = s > 0 ? 1 / s.squareRoot() : 0
                for j in 0..<d { row[j] *= scale }
            }
        }
        return out
    }

    /// The k largest of `count` values (any order): a min-heap of size k, replaced at its root
    /// when a larger value comes (after the first rows, rarely).
    static func top(_ k: Int, of values: UnsafePointer<Float>, count: Int, sims: inout [Float],
                    indices: inout [Int]) {
        sims.withUnsafeMutableBufferPointer { h in indices.withUnsafeMutableBufferPointer { ix in
            func siftDown(_ start: Int) {
                var i = start
                while true {
                    let l = 2 * i + 1, r = l + 1
                    var m = i
                    if l < k && h[l] < h[m] { m = l }
                    if r < k && h[r] < h[m] { m = r }
                    if m == i { return }
                    h.swapAt(i, m); ix.swapAt(i, m)
                    i = m
                }
            }
            for j in 0..<k { h[j] = values[j]; ix[j] = j }
            for i in stride(from: k / 2 - 1, through: 0, by: -1) { siftDown(i) }
            for j in k..<count where values[j] > h[0] {
                h[0] = values[j]; ix[0] = j
                siftDown(0)
            }
        } }
    }
}
