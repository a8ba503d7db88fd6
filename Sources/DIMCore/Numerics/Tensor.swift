import Foundation

/// A flat Float32 buffer with a shape. Layers keep their outputs and caches in Tensors that are
/// allocated once and reused every step (`resize` only reallocates when the size grows), so the
/// training loop does no per-step allocation.
///
/// Activations use one layout everywhere: **channel-major `[C, M]`**, where M runs over
/// (image, row, column) of the local batch. A 1x1 convolution and a linear layer are then the same
/// GEMM, and BatchNorm, LayerNorm and ReLU are the same loops for conv maps and fc vectors.
public final class Tensor {
    public private(set) var data: UnsafeMutablePointer<Float>
    public private(set) var shape: [Int]
    public private(set) var count: Int
    private var capacity: Int
    private let owned: Bool

    public init(_ shape: [Int]) {
        let n = shape.reduce(1, *)
        self.shape = shape
        self.count = n
        self.capacity = max(n, 1)
        self.owned = true
        self.data = .allocate(capacity: capacity)
        data.initialize(repeating: 0, count: capacity)
    }

    /// A view on memory owned by someone else (a parameter inside a flat ParameterStore).
    public init(view: UnsafeMutablePointer<Float>, shape: [Int]) {
        self.data = view
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.capacity = count
        self.owned = false
    }

    public convenience init(_ shape: [Int], values: [Float]) {
        self.init(shape)
        precondition(values.count == count, "Tensor: \(values.count) values for shape \(shape)")
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
    }

    deinit { if owned { data.deallocate() } }

    /// Gives the tensor a new shape, keeping the memory when it is large enough. Contents are
    /// undefined afterwards unless `zero` is set.
    public func resize(_ newShape: [Int], zero: Bool = false) {
        let n = newShape.reduce(1, *)
        if n > capacity {
            precondition(owned, "cannot grow a view")
            data.deallocate()
            capacity = n
            data = .allocate(capacity: n)
            data.initialize(repeating: 0, count: n)
        }
        shape = newShape
        count = n
        if zero { zeroFill() }
    }

    public func zeroFill() { data.update(repeating: 0, count: count) }

    public func copy(from other: Tensor) {
        resize(other.shape)
        data.update(from: other.data, count: count)
    }

    public var array: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    public subscript(i: Int) -> Float {
        get { data[i] }
        set { data[i] = newValue }
    }
}
