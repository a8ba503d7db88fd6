import XCTest
@testable import DIMCore

/// The estimators' dloss/du, and the prior discriminator including the gradient penalty's
/// hand-written derivative, against finite differences.
final class EstimatorGradientTests: XCTestCase {
    let comm = SingleProcess()

    func testEstimatorsAgainstFiniteDifferences() {
        let (N, P) = (4, 3)
        let u = randomTensor([N, N * P], seed: 21, scale: 3)
        let grad = Tensor([N, N * P])
        let block = ScoreBlock(N: N, n: N, offset: 0, P: P)
        for est in Estimator.allCases {
            _ = estimatorLoss(est, u: u.data, grad: grad.data, block: block, maskValue: -10, comm: comm)
            let analytic = grad.array
            checkGradient("\(est) du", value: u.data, count: u.count, analytic: analytic, eps: 1e-2, tolerance: 1e-2) {
                let scratch = Tensor([N, N * P])
                return estimatorLoss(est, u: u.data, grad: scratch.data, block: block, maskValue: -10, comm: self.comm)
            }
        }
    }

    func testEstimatorValuesOnAKnownCase() {
        // N = 2, P = 1: u = [[a, b], [c, d]], positives a and d.
        let (a, b, c, d) = (1.0, -0.5, 0.25, 2.0)
        let u = Tensor([2, 2], values: [Float(a), Float(b), Float(c), Float(d)])
        let g = Tensor([2, 2])
        let block = ScoreBlock(N: 2, n: 2, offset: 0, P: 1)
        let jsd = estimatorLoss(.jsd, u: u.data, grad: g.data, block: block, maskValue: -10, comm: comm)
        XCTAssertEqual(jsd, (softplus(-a) + softplus(-d)) / 2 + (softplus(b) + softplus(c)) / 2 - 2 * log(2), accuracy: 1e-9)
        let nce = estimatorLoss(.nce, u: u.data, grad: g.data, block: block, maskValue: -10, comm: comm)
        let lse0 = log(exp(b) + exp(-10)), lse1 = log(exp(c) + exp(-10))
        XCTAssertEqual(nce, (softplus(lse0 - a) + softplus(lse1 - d)) / 2, accuracy: 1e-9)
        let dv = estimatorLoss(.dv, u: u.data, grad: g.data, block: block, maskValue: -10, comm: comm)
        XCTAssertEqual(dv, -(a + d) / 2 + log((exp(b) + exp(c)) / 2), accuracy: 1e-9)
    }

    func testDiscriminatorInputGradient() {
        let store = ParameterStore()
        let disc = PriorDiscriminator(store, inFeatures: 4, hidden: [7, 5])
        store.allocate(seed: 31)
        let x = randomTensor([4, 3], seed: 32)
        for i in 0..<x.count { x.data[i] = 0.5 + 0.5 * x.data[i] }
        disc.forward(x)
        let gx = disc.inputGradient().array
        // Sum over samples of D(x_s): its gradient with respect to x is dD/dx per sample.
        checkGradient("dD/dx", value: x.data, count: x.count, analytic: gx) {
            let out = disc.forward(x)
            return (0..<out.count).reduce(0.0) { $0 + Double(out.data[$1]) }
        }
    }

    func testDiscriminatorLossWithGradientPenalty() {
        let store = ParameterStore()
        let disc = PriorDiscriminator(store, inFeatures: 4, hidden: [8, 6])
        store.allocate(seed: 41)
        let real = randomTensor([4, 5], seed: 42), fake = randomTensor([4, 5], seed: 43)
        for t in [real, fake] { for i in 0..<t.count { t.data[i] = 0.5 + 0.5 * t.data[i] } }
        let total = {
            disc.lossAndBackward(real, real: true, globalBatch: 5, penaltyWeight: 1)
                + disc.lossAndBackward(fake, real: false, globalBatch: 5, penaltyWeight: 1)
        }
        store.zeroGrads()
        _ = total()
        let analytic = store.parameters.map { $0.grad.array }
        for (p, g) in zip(store.parameters, analytic) where p.name.hasSuffix("weight") || p.name.hasSuffix("bias") {
            checkGradient("disc \(p.name)", value: p.value.data, count: p.count, analytic: g, eps: 1e-3) {
                store.zeroGrads()
                return total()
            }
        }
    }

    func testPenaltyTermAloneAgainstFiniteDifferences() {
        // The penalty's weight gradient in isolation: loss = c * sum_s ||dD/dx_s||^2.
        let store = ParameterStore()
        let disc = PriorDiscriminator(store, inFeatures: 3, hidden: [6, 4])
        store.allocate(seed: 51)
        let x = randomTensor([3, 4], seed: 52)
        let penalty: () -> Double = {
            disc.forward(x)
            let g = disc.inputGradient()
            return 0.7 * (0..<g.count).reduce(0.0) { $0 + Double(g.data[$1]) * Double(g.data[$1]) }
        }
        store.zeroGrads()
        _ = penalty()
        disc.penaltyBackward(coefficient: 0.7)
        for p in store.parameters where p.name.hasSuffix("weight") {
            checkGradient("penalty \(p.name)", value: p.value.data, count: p.count, analytic: p.grad.array, loss: penalty)
        }
    }
}
