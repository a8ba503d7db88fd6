import Foundation

/// One GEMM call's shape as `gemm` takes it (row-major; `accumulate`: beta = 1, C += A B).
public struct GEMMShape: Hashable, CustomStringConvertible {
    public var transA: Bool, transB: Bool, m: Int, n: Int, k: Int, accumulate: Bool
    public var flops: Double { 2 * Double(m) * Double(n) * Double(k) }
    public var description: String {
        "\(transA ? "T" : "N")\(transB ? "T" : "N") \(m)x\(n)x\(k)\(accumulate ? " C+=" : "")"
    }
    public init(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, accumulate: Bool) {
        self.transA = transA; self.transB = transB; self.m = m; self.n = n; self.k = k; self.accumulate = accumulate
    }
}

/// Counts the floating-point operations that go through `gemm`/`sgemm` (2*M*N*K each) and the
/// time spent inside those calls, so the benchmark can report both the step's rate and the
/// GEMMs' own rate. Only the thread that runs the model calls them.
public enum FlopCounter {
    nonisolated(unsafe) public static var gemmFlops: Double = 0
    nonisolated(unsafe) public static var gemmSeconds: Double = 0
    /// The part of `gemmFlops` that repeats another rank's work (FCBlock with gathered factors):
    /// counted in the GEMM calls' rate, not in the step's work.
    nonisolated(unsafe) public static var repeatedFlops: Double = 0
    /// Calls and seconds per shape, recorded while not nil (`dim-dist bench --gemm-shapes`).
    nonisolated(unsafe) public static var shapes: [GEMMShape: (calls: Int, seconds: Double)]?

    @inline(__always)
    static func count(_ shape: GEMMShape, seconds: Double) {
        gemmFlops += shape.flops
        gemmSeconds += seconds
        if shapes != nil {
            let old = shapes![shape] ?? (0, 0)
            shapes![shape] = (old.calls + 1, old.seconds + seconds)
        }
    }

    public static func reset() { gemmFlops = 0; gemmSeconds = 0; repeatedFlops = 0 }
}

/// Accumulates wall time per named phase of a training step (encoder, heads, scores and loss,
/// backward, optimizer, communication). Off unless enabled, so training pays nothing for it.
public final class PhaseTimer {
    public var enabled = false
    public private(set) var seconds: [String: Double] = [:]
    public private(set) var order: [String] = []
    private var last = 0.0

    public init() {}

    /// Starts timing from now.
    public func start() { if enabled { last = monotonicSeconds() } }

    /// Charges the time since the last mark to `phase`.
    public func mark(_ phase: String) {
        guard enabled else { return }
        let now = monotonicSeconds()
        if seconds[phase] == nil { order.append(phase) }
        seconds[phase, default: 0] += now - last
        last = now
    }

    public func reset() { seconds = [:]; order = [] }
}
