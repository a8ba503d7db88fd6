import CKernels

/// How gradients travel in the allreduce: float32, or bfloat16 for the large weight tensors (half
/// the bytes; each sum step rounds to bf16's 8 significant bits). Tensors under
/// `bf16MinimumTensor` values (64 Ki by default) (BatchNorm and LayerNorm parameters, biases, the first
/// conv: 1% of the bytes) stay float32: their per-rank parts often nearly cancel (synchronised
/// BatchNorm), and a rounded partial sum would then be wrong by more than the result itself.
public enum GradientPrecision: String, CaseIterable, Codable {
    case fp32, bf16
}

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
    public let precision: GradientPrecision
    /// Values per allreduce call (4 M: 16 MB in fp32, large enough to reach full bandwidth, small
    /// enough to bound the temporary buffers MPI allocates).
    public var bucketFloats = 4 << 20
    /// The smallest bucket started before `finish` (smaller ranges wait for more to join them).
    public var minimumBucketFloats = 1 << 20
    /// With bf16: tensors smaller than this are reduced in float32.
    public let bf16MinimumTensor: Int
    /// Seconds the last `finish` waited (the exposed part of the reduction).
    public private(set) var exposedSeconds = 0.0

    private var store: ParameterStore?
    /// Gradients at offsets >= this have been handed to the communicator this step.
    private var startedFrom = 0
    private var pending: [PendingCollective] = []
    /// bf16: the rounded gradients in flight, and the ranges to copy back.
    private var staging: UnsafeMutablePointer<UInt16>?
    private var stagingCount = 0
    private var stagedRanges: [Range<Int>] = []

    public init(comm: Communicator, precision: GradientPrecision = .fp32, bf16MinimumTensor: Int = 1 << 16) {
        self.comm = comm
        self.precision = precision
        self.bf16MinimumTensor = bf16MinimumTensor
    }

    deinit { staging?.deallocate() }

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
        if precision == .bf16 && stagingCount < store.count {
            staging?.deallocate()
            staging = .allocate(capacity: store.count)
            stagingCount = store.count
        }
    }

    /// Every gradient at offset >= `offset` is final: start reducing whole buckets of them.
    public func gradientsFinal(from offset: Int) {
        guard comm.size > 1, store != nil else { return }
        for p in pending { _ = p.test() }  // let the library progress what is in flight
        if startedFrom - offset >= minimumBucketFloats { start(down: offset) }
    }

    /// Starts whatever is left and waits for every bucket.
    public func finish() {
        defer { store = nil; pending = []; stagedRanges = [] }
        guard comm.size > 1, let g = store?.grads else { return }
        start(down: 0)
        let t0 = monotonicSeconds()
        for p in pending { p.wait() }
        if let staging {
            for r in stagedRanges { dim_bf16_to_float(staging + r.lowerBound, g + r.lowerBound, r.count) }
        }
        exposedSeconds = monotonicSeconds() - t0
    }

    /// Starts buckets covering [offset, startedFrom), highest first.
    private func start(down offset: Int) {
        guard let store, let g = store.grads else { return }
        while startedFrom > offset {
            let n = min(bucketFloats, startedFrom - offset)
            startedFrom -= n
            let bucket = startedFrom..<(startedFrom + n)
            guard precision == .bf16 else {
                pending.append(comm.startAllreduceSum(g + startedFrom, count: n))
                continue
            }
            for (range, inBF16) in segments(of: bucket, in: store) {
                if inBF16 {
                    let s = staging! + range.lowerBound
                    dim_float_to_bf16(g + range.lowerBound, s, range.count)
                    stagedRanges.append(range)
                    pending.append(comm.startAllreduceSum(bf16: s, count: range.count))
                } else {
                    pending.append(comm.startAllreduceSum(g + range.lowerBound, count: range.count))
                }
            }
        }
    }

    /// `bucket` cut where it passes between large tensors (bf16) and small ones (float32),
    /// neighbours of the same kind merged.
    private func segments(of bucket: Range<Int>, in store: ParameterStore) -> [(Range<Int>, Bool)] {
        var out: [(Range<Int>, Bool)] = []
        for p in store.parameters {
            let (lo, hi) = (max(p.offset, bucket.lowerBound), min(p.offset + p.count, bucket.upperBound))
            guard lo < hi else { continue }
            let r = lo..<hi
            let inBF16 = p.count >= bf16MinimumTensor
            if let last = out.last, last.1 == inBF16, last.0.upperBound == r.lowerBound {
                out[out.count - 1].0 = last.0.lowerBound..<r.upperBound
            } else {
                out.append((r, inBF16))
            }
        }
        return out
    }
}
