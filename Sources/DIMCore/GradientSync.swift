import Foundation

/// Sums parameter gradients over ranks in a few large buckets (not one call per tensor): the
/// gradients already live in one flat buffer, so a bucket is a contiguous slice of it.
///
/// Overlapped (as DDP and Horovod do): backward reports, layer by layer, the offset from which
/// every gradient of the flat buffer is final (parameters are laid out in forward order, so
/// backward finishes them from the end down); `gradientsFinal(from:)` starts a non-blocking
/// allreduce for each bucket's worth of newly final gradients while backward goes on, and
/// `finish` starts the rest and waits. Only what is still in flight then is exposed time.
public final class GradientSync {
    public let comm: Communicator
    /// Floats per allreduce call (16 MB by default: large enough to reach full bandwidth, small
    /// enough to bound the temporary buffers MPI allocates).
    public var bucketFloats = 4 << 20
    /// The smallest bucket started before `finish` (smaller ranges wait for more to join them).
    public var minimumBucketFloats = 1 << 20
    /// Seconds the last `finish` waited (the exposed part of the reduction).
    public private(set) var exposedSeconds = 0.0

    private var store: ParameterStore?
    /// Gradients at offsets >= this have been handed to the communicator this step.
    private var startedFrom = 0
    private var pending: [PendingCollective] = []

    public init(comm: Communicator) { self.comm = comm }

    /// Blocking: sums every gradient of `store` over ranks.
    public func allreduce(_ store: ParameterStore) {
        begin(store)
        finish()
    }

    /// Starts a step's overlapped reduction of `store` (gradients zeroed, nothing final yet).
    public func begin(_ store: ParameterStore) {
        precondition(pending.isEmpty, "GradientSync.begin while a reduction is in flight")
        self.store = store
        startedFrom = store.count
    }

    /// Every gradient at offset >= `offset` is final: start reducing whole buckets of them.
    public func gradientsFinal(from offset: Int) {
        guard comm.size > 1, store != nil else { return }
        for p in pending { _ = p.test() }  // let the library progress what is in flight
        if startedFrom - offset >= minimumBucketFloats { start(down: offset) }
    }

    /// Starts whatever is left and waits for every bucket.
    public func finish() {
        defer { store = nil; pending = [] }
        guard comm.size > 1, store != nil else { return }
        start(down: 0)
        let t0 = monotonicSeconds()
        for p in pending { p.wait() }
        exposedSeconds = monotonicSeconds() - t0
    }

    /// Starts buckets covering [offset, startedFrom), highest first.
    private func start(down offset: Int) {
        guard let g = store?.grads else { return }
        while startedFrom > offset {
            let n = min(bucketFloats, startedFrom - offset)
            startedFrom -= n
            pending.append(comm.startAllreduceSum(g + startedFrom, count: n))
        }
    }
}
