import Foundation
import DIMCore

/// Softmax cross-entropy of `logits` `[classes, n]` (one column per example) against `labels`:
/// writes dL/dlogits into `gradient`, where L is the loss summed over the n examples and divided by
/// `normaliser` (n for a mean over this batch; the global batch under mpirun, so that the sum of
/// the ranks' gradients is the gradient of the global mean). Returns the summed loss (natural log)
/// and how many examples the largest logit classifies correctly. Used by the probes and fine-tuning.
public func softmaxCrossEntropy(_ logits: Tensor, labels: [Int], normaliser: Int,
                                gradient: Tensor) -> (loss: Double, correct: Int) {
    let classes = logits.shape[0], n = logits.shape[1]
    precondition(labels.count == n, "softmaxCrossEntropy: \(labels.count) labels for \(n) examples")
    gradient.resize(logits.shape)
    let o = logits.data, g = gradient.data, denominator = Float(normaliser)
    var loss = 0.0, correct = 0
    for j in 0..<n {
        var best = 0
        for c in 1..<classes where o[c * n + j] > o[best * n + j] { best = c }
        let mx = o[best * n + j]
        var z: Float = 0
        for c in 0..<classes {
            let e = expf(o[c * n + j] - mx)
            g[c * n + j] = e
            z += e
        }
        let label = labels[j]
        precondition(label >= 0 && label < classes, "softmaxCrossEntropy: label \(label) of \(classes) classes")
        loss += Double(logf(z) - (o[label * n + j] - mx))
        if best == label { correct += 1 }
        for c in 0..<classes { g[c * n + j] = (g[c * n + j] / z - (c == label ? 1 : 0)) / denominator }
    }
    return (loss, correct)
}

/// The index of the largest logit of each column of `[classes, n]`.
public func predictedClasses(_ logits: Tensor) -> [Int] {
    let classes = logits.shape[0], n = logits.shape[1], o = logits.data
    return (0..<n).map { j in
        var best = 0
        for c in 1..<classes where o[c * n + j] > o[best * n + j] { best = c }
        return best
    }
}
