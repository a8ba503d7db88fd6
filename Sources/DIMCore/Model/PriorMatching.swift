import Foundation

/// Prior matching (docs/design.md §4): a ReLU MLP discriminator D on z = sigmoid(Y) against samples of
/// U[0,1)^d, trained with a gradient penalty; the encoder gets the non-saturating term
/// mean softplus(-D(sigmoid(Y))).
///
/// The penalty's gradient with respect to D's weights is written by hand: for a ReLU MLP the
/// input gradient dD/dx is a product of weight matrices and constant ReLU masks, so its derivative
/// with respect to each weight matrix is again a few GEMMs.
public final class PriorDiscriminator {
    public let layers: [Linear]
    public let inFeatures: Int
    /// g[l] = dD/d(pre-activation of layer l), `[H_l, n]`, valid after `inputGradient`.
    private var g: [Tensor]
    private let gx = Tensor([0])
    private let e = Tensor([0])
    private let dg = Tensor([0])
    private let dt = Tensor([0])
    private let dout = Tensor([0])
    private var input: Tensor?
    /// z = sigmoid(Y) of the last `encoderTerm` (the discriminator's "fake" input).
    public let encodedInput = Tensor([0])

    public init(_ store: ParameterStore, inFeatures: Int, hidden: [Int], prefix: String = "prior_disc") {
        self.inFeatures = inFeatures
        var layers: [Linear] = []
        var fin = inFeatures
        for (k, h) in (hidden + [1]).enumerated() {
            layers.append(Linear(store, "\(prefix).fc\(k)", in: fin, out: h, bias: true))
            fin = h
        }
        self.layers = layers
        g = layers.map { _ in Tensor([0]) }
    }

    /// The encoder's prior-matching term, mean over the global batch of softplus(-D(sigmoid(Y))),
    /// unweighted; adds the gradient of `weight` x the term with respect to Y (`[d, n]`) to
    /// `gradY`: weight * (-sigmoid(-D)/N) * dD/dz * z(1-z).
    public func encoderTerm(Y: Tensor, weight: Double, addingGradientTo gradY: Tensor, comm: Communicator) -> Double {
        let (d, n) = (Y.shape[0], Y.shape[1])
        let N = n * comm.size
        let z = encodedInput
        z.resize(Y.shape)
        for i in 0..<Y.count { z.data[i] = sigmoid(Y.data[i]) }
        let out = forward(z)
        let gx = inputGradient()
        var term = 0.0
        for s in 0..<n {
            let v = Double(out.data[s])
            term += softplus(-v)
            let coef = Float(-sigmoid(-v) / Double(N) * weight)
            for k in 0..<d {
                let zi = z.data[k * n + s]
                gradY.data[k * n + s] += coef * gx.data[k * n + s] * zi * (1 - zi)
            }
        }
        return comm.sum(term) / Double(N)
    }

    /// D(x) for x `[d, n]`; returns `[1, n]`. Hidden ReLUs are applied in place.
    @discardableResult
    public func forward(_ x: Tensor) -> Tensor {
        input = x
        var h = x
        for (k, layer) in layers.enumerated() {
            h = layer.forward(h)
            if k < layers.count - 1 { for i in 0..<h.count { h.data[i] = max(h.data[i], 0) } }
        }
        return h
    }

    public var output: Tensor { layers[layers.count - 1].output }

    /// Ordinary backprop of dL/dD (`[1, n]`) into D's parameter gradients.
    public func backward(_ dD: Tensor) {
        var d = dD
        for k in stride(from: layers.count - 1, through: 0, by: -1) {
            if k < layers.count - 1 {
                let h = layers[k].output
                for i in 0..<d.count where h.data[i] <= 0 { d.data[i] = 0 }
            }
            d = layers[k].backward(d, inputGrad: k > 0)
        }
    }

    /// dD/dx per sample, `[d, n]`, for the last forward (also keeps g[l] for the penalty).
    @discardableResult
    public func inputGradient() -> Tensor {
        let L = layers.count
        let n = output.count
        g[L - 1].resize([1, n])
        for i in 0..<n { g[L - 1].data[i] = 1 }
        for l in stride(from: L - 2, through: 0, by: -1) {
            let w = layers[l + 1]
            g[l].resize([w.inFeatures, n])
            sgemm(transA: true, m: w.inFeatures, n: n, k: w.outFeatures, a: w.weight.value.data, lda: w.inFeatures,
                  b: g[l + 1].data, ldb: n, c: g[l].data, ldc: n)
            let h = layers[l].output
            for i in 0..<g[l].count where h.data[i] <= 0 { g[l].data[i] = 0 }
        }
        gx.resize([inFeatures, n])
        sgemm(transA: true, m: inFeatures, n: n, k: layers[0].outFeatures, a: layers[0].weight.value.data,
              lda: inFeatures, b: g[0].data, ldb: n, c: gx.data, ldc: n)
        return gx
    }

    /// Adds the gradient of `coefficient * sum_s ||dD/dx_s||^2` with respect to D's weights
    /// (after `inputGradient`); the ReLU masks are constant almost everywhere.
    public func penaltyBackward(coefficient: Float) {
        let L = layers.count
        let n = gx.shape[1]
        e.resize(gx.shape)
        for i in 0..<gx.count { e.data[i] = 2 * coefficient * gx.data[i] }
        // dW0 += g0 e^T; dg0 = W0 e
        let w0 = layers[0]
        sgemm(transB: true, m: w0.outFeatures, n: inFeatures, k: n, a: g[0].data, lda: n, b: e.data, ldb: n,
              beta: 1, c: w0.weight.grad.data, ldc: inFeatures)
        dg.resize([w0.outFeatures, n])
        sgemm(m: w0.outFeatures, n: n, k: inFeatures, a: w0.weight.value.data, lda: inFeatures, b: e.data, ldb: n,
              c: dg.data, ldc: n)
        for l in 0..<(L - 1) {
            // g_l = m_l ⊙ (W_{l+1}^T g_{l+1}): dt = m_l ⊙ dg_l, dW_{l+1} += g_{l+1} dt^T, dg_{l+1} = W_{l+1} dt.
            let h = layers[l].output
            dt.resize(dg.shape)
            for i in 0..<dg.count { dt.data[i] = h.data[i] > 0 ? dg.data[i] : 0 }
            let w = layers[l + 1]
            sgemm(transB: true, m: w.outFeatures, n: w.inFeatures, k: n, a: g[l + 1].data, lda: n, b: dt.data, ldb: n,
                  beta: 1, c: w.weight.grad.data, ldc: w.inFeatures)
            if l + 1 < L - 1 {
                dg.resize([w.outFeatures, n])
                sgemm(m: w.outFeatures, n: n, k: w.inFeatures, a: w.weight.value.data, lda: w.inFeatures,
                      b: dt.data, ldb: n, c: dg.data, ldc: n)
            }
        }
    }

    /// One discriminator evaluation on x with label `real`: adds
    /// `sum_s softplus(∓D(x_s)) / N + penaltyWeight/2 * sum_s ||dD/dx_s||^2 / N` to the parameter
    /// gradients and returns this rank's share of that loss. N is the global batch.
    public func lossAndBackward(_ x: Tensor, real: Bool, globalBatch N: Int, penaltyWeight: Double) -> Double {
        let out = forward(x)
        let n = out.count
        dout.resize([1, n])
        var loss = 0.0
        for i in 0..<n {
            let v = Double(out.data[i])
            if real {
                loss += softplus(-v) / Double(N)
                dout.data[i] = Float(-sigmoid(-v) / Double(N))
            } else {
                loss += softplus(v) / Double(N)
                dout.data[i] = Float(sigmoid(v) / Double(N))
            }
        }
        let grad = inputGradient()
        var sq = 0.0
        for i in 0..<grad.count { sq += Double(grad.data[i]) * Double(grad.data[i]) }
        loss += 0.5 * penaltyWeight * sq / Double(N)
        penaltyBackward(coefficient: Float(0.5 * penaltyWeight / Double(N)))
        backward(dout)
        return loss
    }
}
