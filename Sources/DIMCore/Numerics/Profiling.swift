/// Counts the floating-point operations that go through `sgemm` (2*M*N*K each), so the benchmark
/// can report achieved GFLOP/s. Only the thread that runs the model calls sgemm.
public enum FlopCounter {
    nonisolated(unsafe) public static var gemmFlops: Double = 0
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
