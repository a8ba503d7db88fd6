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
/// Overlapped (as DDP and Horovod do): backward announces, layer by layer, which slice of the flat
/// buffer is final (`gradientsFinal(_:)`), in whatever order backward finishes them (the model
/// finishes the encoder's fc layer before the local MI head laid out after it); final slices that
/// touch are merged, and once `minimumBucketFloats` of them wait they are started as non-blocking
/// allreduces while backward goes on. `finish` starts the rest (announced or not) and waits: only
/// what is still in flight then is exposed time. Every rank runs the same backward, so every rank
/// announces the same slices in the same order and the collectives match.
public final class GradientSync {
    public let comm: Communicator
    public let precision: GradientPrecision
    /// Values per allreduce call (4 M: 16 MB in fp32, large enough to reach full bandwidth, small
    /// enough to bound the temporary buffers MPI allocates).
    public var bucketFloats = 4 << 20
    /// The smallest slice started before `finish` (smaller ones wait for neighbours to join them):
    /// 1 M values (4 MB) on one host, 128 K between hosts. Between hosts the link is what the
    /// overlap must hide, and slices that start as soon as they are final hide it (2 emulated hosts
    /// on 1 Gbit, 512-unit heads: 47.6 ms of the allreduce exposed with 1 M, 14-17 ms with 128 K);
    /// on one host the many small calls only interrupt the GEMMs more (np 2: 1-11% fewer images/s).
    public var minimumBucketFloats: Int
    /// With bf16: tensors smaller than this are reduced in float32.
    public let bf16MinimumTensor: Int
    /// Seconds the last `finish` waited (the exposed part of the reduction).
    public private(set) var exposedSeconds = 0.0

    private var store: ParameterStore?
    /// Final slices not yet handed to the communicator, and slices handed over this step (each
    /// sorted, disjoint, touching slices merged).
    private var waiting: [Range<Int>] = []
    private var started: [Range<Int>] = []
    private var pending: [PendingCollective] = []
    /// bf16: the rounded gradients in flight, and the ranges to copy back.
    private var staging: UnsafeMutablePointer<UInt16>?
    private var stagingCount = 0
    private var stagedRanges: [Range<Int>] = []

    public init(comm: Communicator, precision: GradientPrecision = .fp32, bf16MinimumTensor: Int = 1 << 16) {
        self.comm = comm
        self.precision = precision
        self.bf16MinimumTensor = bf16MinimumTensor
        minimumBucketFloats = comm.hosts > 1 ? 1 << 17 : 1 << 20
    }

    deinit { staging?.deallocate() }

    /// Blocking: sums every gradient of `store` over ranks.
    public func allreduce(_ store: ParameterStore) {
        begin(store)
        finish()
    }

    /// Starts a step's overlapped reduction of `store` (gradients zeroed, nothing final yet).
    /// `summedByBackward`: slices whose gradients backward computes as sums over ranks itself (the
    /// fc weights with gathered factors, FCGradientReduce); they are left out, as if started.
    public func begin(_ store: ParameterStore, summedByBackward: [Range<Int>] = []) {
        precondition(pending.isEmpty, "GradientSync.begin while a reduction is in flight")
        self.store = store
        waiting = []
        started = Self.merged(summedByBackward)
        if precision == .bf16 && stagingCount < store.count {
            staging?.deallocate()
            staging = .allocate(capacity: store.count)
            stagingCount = store.count
        }
    }

    /// Every gradient in `range` of the flat buffer is final: start reducing it once enough final
    /// values have gathered around it. Parts already started are ignored.
    public func gradientsFinal(_ range: Range<Int>) {
        guard comm.size > 1, store != nil else { return }
        for p in pending { _ = p.test() }  // let the library progress what is in flight
        waiting = Self.merged(waiting + Self.subtracting(started, from: range))
        let ready = waiting.filter { $0.count >= minimumBucketFloats }
        waiting.removeAll { $0.count >= minimumBucketFloats }
        for r in ready.reversed() { start(r) }
    }

    /// Starts whatever is left and waits for every bucket.
    public func finish() {
        defer { store = nil; pending = []; stagedRanges = []; waiting = []; started = [] }
        guard comm.size > 1, let store, let g = store.grads else { return }
        for r in Self.subtracting(started, from: 0..<store.count).reversed() { start(r) }
        let t0 = monotonicSeconds()
        for p in pending { p.wait() }
        if let staging {
            for r in stagedRanges { dim_bf16_to_float(staging + r.lowerBound, g + r.lowerBound, r.count) }
        }
        exposedSeconds = monotonicSeconds() - t0
    }

    /// Starts buckets covering `range`, highest first.
    private func start(_ range: Range<Int>) {
        guard let store, let g = store.grads else { return }
        started = Self.merged(started + [range])
        var top = range.upperBound
        while top > range.lowerBound {
            let n = min(bucketFloats, top - range.lowerBound)
            top -= n
            let bucket = top..<(top + n)
            guard precision == .bf16 else {
                pending.append(comm.startAllreduceSum(g + top, count: n))
                continue
            }
            for (piece, inBF16) in segments(of: bucket, in: store) {
                if inBF16 {
                    let s = staging! + piece.lowerBound
                    dim_float_to_bf16(g + piece.lowerBound, s, piece.count)
                    stagedRanges.append(piece)
                    pending.append(comm.startAllreduceSum(bf16: s, count: piece.count))
                } else {
                    pending.append(comm.startAllreduceSum(g + piece.lowerBound, count: piece.count))
                }
            }
        }
    }

    /// Sorted by start, overlapping or touching ranges joined.
    static func merged(_ ranges: [Range<Int>]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        for r in ranges.filter({ !$0.isEmpty }).sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = out.last, r.lowerBound <= last.upperBound {
                out[out.count - 1] = last.lowerBound..<max(last.upperBound, r.upperBound)
            } else {
                out.append(r)
            }
        }
        return out
    }

    /// The parts of `range` outside every range of `taken` (sorted and disjoint), in order.
    static func subtracting(_ taken: [Range<Int>], from range: Range<Int>) -> [Range<Int>] {
        var out: [Range<Int>] = [], from = range.lowerBound
        for t in taken where t.upperBound > from && t.lowerBound < range.upperBound {
            if t.lowerBound > from { out.append(from..<t.lowerBound) }
            from = max(from, t.upperBound)
        }
        if from < range.upperBound { out.append(from..<range.upperBound) }
        return out
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
