import Foundation
import CKernels

/// How a parameter starts before any checkpoint or reference file overwrites it.
public enum Initializer {
    case zeros
    case ones
    /// U(-bound, bound): PyTorch's default for conv and linear weights and biases, bound = 1/sqrt(fan_in).
    case uniform(Float)
    /// The MI heads' shortcut: U(-0.01, 0.01) with W[i][i] = 1 for i < n_in (docs/design.md §2).
    case identityPlusUniform(inFeatures: Int)
}

/// One named tensor of a ParameterStore: its value and (for trainable stores) its gradient, both
/// views into the store's flat buffers.
public final class Parameter {
    public let name: String
    /// PyTorch shape, as in docs/design.md §9 (conv weights [out, in, kh, kw], linear weights [out, in]).
    public let shape: [Int]
    public let count: Int
    public let offset: Int
    let initializer: Initializer
    public fileprivate(set) var value: Tensor!
    public fileprivate(set) var grad: Tensor!

    init(name: String, shape: [Int], offset: Int, initializer: Initializer) {
        self.name = name; self.shape = shape; self.count = shape.reduce(1, *)
        self.offset = offset; self.initializer = initializer
    }
}

/// The slice holding every parameter declared from `first` through `last` (a layer declares its
/// parameters together, in order, so this is "the layer's gradients" for GradientSync).
public func parameterRange(from first: Parameter, through last: Parameter) -> Range<Int> {
    precondition(first.offset <= last.offset, "parameterRange: \(first.name) is declared after \(last.name)")
    return first.offset..<(last.offset + last.count)
}

/// All parameters of one optimiser group in two flat buffers (values and gradients), so that the
/// gradient allreduce is a few large calls and Adam is one loop. Layers declare their parameters
/// while the model is built; `allocate(seed:)` then creates the buffers and initialises them in
/// declaration order.
public final class ParameterStore {
    public private(set) var parameters: [Parameter] = []
    public private(set) var count = 0
    public let trainable: Bool
    public private(set) var values: UnsafeMutablePointer<Float>? = nil
    public private(set) var grads: UnsafeMutablePointer<Float>? = nil
    private var byName: [String: Parameter] = [:]
    /// False once the gradients live in memory the store does not own (`moveGradients(to:)`).
    private var ownsGradients = true

    public init(trainable: Bool = true) { self.trainable = trainable }

    deinit {
        values?.deallocate()
        if ownsGradients { grads?.deallocate() }
    }

    public func declare(_ name: String, _ shape: [Int], _ initializer: Initializer) -> Parameter {
        precondition(values == nil, "ParameterStore: declare after allocate")
        precondition(byName[name] == nil, "ParameterStore: duplicate parameter \(name)")
        let p = Parameter(name: name, shape: shape, offset: count, initializer: initializer)
        parameters.append(p)
        byName[name] = p
        count += p.count
        return p
    }

    public subscript(name: String) -> Parameter? { byName[name] }

    /// Creates the flat buffers and initialises every parameter from `seed`.
    public func allocate(seed: UInt64) {
        let v = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        v.initialize(repeating: 0, count: max(count, 1))
        values = v
        if trainable {
            let g = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
            g.initialize(repeating: 0, count: max(count, 1))
            grads = g
        }
        var rng = SplitMix64(seed: seed, stream: RandomStream.parameters)
        for p in parameters {
            p.value = Tensor(view: v + p.offset, shape: p.shape)
            if let g = grads { p.grad = Tensor(view: g + p.offset, shape: p.shape) }
            let x = p.value.data
            switch p.initializer {
            case .zeros: x.update(repeating: 0, count: p.count)
            case .ones: x.update(repeating: 1, count: p.count)
            case .uniform(let bound):
                for i in 0..<p.count { x[i] = rng.uniform(bound) }
            case .identityPlusUniform(let nIn):
                for i in 0..<p.count { x[i] = rng.uniform(0.01) }
                let cols = p.count / p.shape[0]
                for i in 0..<min(nIn, p.shape[0]) { x[i * cols + i] = 1 }
            }
        }
    }

    /// Moves the gradients to `buffer` (`count` floats that outlive the store: the host's shared
    /// memory, HostShardedUpdate): they are copied there and every parameter's `grad` views it
    /// from now on. Layers read `grad` at each call, never keep its address.
    public func moveGradients(to buffer: UnsafeMutablePointer<Float>) {
        guard let old = grads else { preconditionFailure("ParameterStore.moveGradients: no gradients to move") }
        buffer.update(from: old, count: count)
        if ownsGradients { old.deallocate() }
        ownsGradients = false
        grads = buffer
        for p in parameters { p.grad = Tensor(view: buffer + p.offset, shape: p.shape) }
    }

    /// Zeroes every gradient (on the rank's threads: at one rank per node with many threads a
    /// serial pass over the whole buffer would be a fixed cost the rest of the step does not pay).
    public func zeroGrads() {
        guard let g = grads else { return }
        zeroFloats(g, count: count)
    }

    /// True when no gradient is NaN or infinite (the divergence guard), checked on the rank's threads.
    public func gradientsAreFinite() -> Bool {
        guard let g = grads else { return true }
        let lock = NSLock()
        var finite = true
        parallelRanges(count, grain: parallelGrain(floatsPerItem: 1)) { r in
            let ok = dim_all_finite(g + r.lowerBound, r.count) != 0
            if !ok { lock.lock(); finite = false; lock.unlock() }
        }
        return finite
    }

    public var names: [String] { parameters.map(\.name) }

    /// The slice holding every parameter whose name starts with `prefix` (empty when none does);
    /// such a group is declared together, so the slice holds nothing else.
    public func range(ofPrefix prefix: String) -> Range<Int> {
        let group = parameters.filter { $0.name.hasPrefix(prefix) }
        guard let first = group.first, let last = group.last else { return count..<count }
        return parameterRange(from: first, through: last)
    }
}
