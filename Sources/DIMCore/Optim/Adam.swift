import Foundation
import CKernels

/// Adam with PyTorch's update rule (bias-corrected, eps added to sqrt(v_hat)), over the flat
/// buffers of a ParameterStore: one vectorised pass per step (dim_adam_update).
public final class Adam {
    public var lr: Float, beta1: Float, beta2: Float, eps: Float
    public private(set) var step = 0
    public let count: Int
    public let m: UnsafeMutablePointer<Float>
    public let v: UnsafeMutablePointer<Float>

    public init(count: Int, lr: Float = 1e-4, beta1: Float = 0.5, beta2: Float = 0.999, eps: Float = 1e-8) {
        self.count = count; self.lr = lr; self.beta1 = beta1; self.beta2 = beta2; self.eps = eps
        m = .allocate(capacity: max(count, 1)); m.initialize(repeating: 0, count: max(count, 1))
        v = .allocate(capacity: max(count, 1)); v.initialize(repeating: 0, count: max(count, 1))
    }

    deinit { m.deallocate(); v.deallocate() }

    /// Sets the step counter from a checkpoint (the moments are loaded into `m` and `v` directly).
    public func restore(step: Int) { self.step = step }

    /// One step over the parameters in `range` (all by default; HostShardedUpdate gives a rank its
    /// share, and the moments outside it are then another rank's). With `recordUpdate`, the step
    /// each parameter receives is also written there (the reference check compares it: a float32
    /// weight near 1 cannot hold a 1e-4 step to better than ~3e-4 relative, so params_after -
    /// params would measure storage rounding, not Adam).
    public func update(_ store: ParameterStore, range: Range<Int>? = nil,
                       recordUpdate: UnsafeMutablePointer<Float>? = nil) {
        precondition(store.count == count)
        let range = range ?? 0..<count
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "Adam.update: range outside the store")
        guard let p = store.values, let g = store.grads else { return }
        step += 1
        let bc1 = 1 - pow(Double(beta1), Double(step))
        let bc2 = 1 - pow(Double(beta2), Double(step))
        let stepSize = Float(Double(lr) / bc1)
        let invSqrtBC2 = Float(1 / bc2.squareRoot())
        // The loop in C, vectorised for the CPU (CKernels): memory-bound, 28 bytes per parameter;
        // every parameter is updated on its own, so several threads take ranges of them.
        let (m, v, b1, b2, eps) = (m, v, beta1, beta2, eps)
        parallelRanges(range.count, grain: parallelGrain(floatsPerItem: 7)) { r in
            let i = range.lowerBound + r.lowerBound
            dim_adam_update(p + i, g + i, m + i, v + i, r.count, b1, b2, stepSize, invSqrtBC2, eps,
                            recordUpdate.map { $0 + i })
        }
    }
}
