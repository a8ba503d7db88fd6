import CKernels

/// Whether the ranks of one host share the optimizer's work (`--optimizer-sharding`).
public enum OptimizerSharding: String, CaseIterable, Codable, Sendable {
    /// `host` when there are several ranks, all on one host, and gradients are summed in fp32;
    /// otherwise `off`.
    case auto
    /// Every rank allreduces all gradients (GradientSync) and runs Adam over all parameters.
    case off
    /// HostShardedUpdate: each rank sums and updates its share of the parameters in memory the
    /// host's ranks share.
    case host

    /// Whether a run over `comm` shards its update; `host` asked where it cannot run is an error.
    public func shards(comm: Communicator, gradientPrecision: GradientPrecision) throws -> Bool {
        let possible = comm.size > 1 && comm.hosts == 1
        switch self {
        case .off: return false
        case .auto: return possible && gradientPrecision == .fp32
        case .host:
            guard comm.hosts == 1 else {
                throw DIMError("--optimizer-sharding host needs every rank on one host (\(comm.hosts) hosts)")
            }
            guard gradientPrecision == .fp32 else {
                throw DIMError("--optimizer-sharding host sums gradients in fp32; it cannot run with --grad-reduce bf16")
            }
            return possible
        }
    }
}

/// ZeRO stage 1 within one host (Rajbhandari et al. 2020, without the sharded memory): the
/// gradient allreduce and the Adam update, each over all parameters on every rank, become
/// 1. every rank's backward writes its gradients into its own segment of memory that all the
///    host's ranks map (the store's gradient buffer is moved there);
/// 2. rank r sums shard r (1/k of the parameters) over the k segments, in rank order;
/// 3. rank r runs the update on shard r alone (Adam's moments outside it go stale on this rank);
/// 4. rank r publishes its updated shard in the shared memory, and copies the others' shards
///    from there into its own parameters.
/// A rank thus reads k shards and writes 3 where the allreduce made MPI copy and sum the whole
/// buffer, and runs 1/k of Adam's 28 bytes per parameter. On a 2-vCPU Zen 3 that gave 1.04-1.05x
/// the images/s at 2 ranks and 1.3x at 8 (docs/results.md, nineteenth session). The collectives
/// around it are two barriers and the finiteness verdict's max allreduce.
///
/// Nothing overlaps backward (GradientSync's buckets do): on one host that overlap measured as
/// nothing (eleventh session), between hosts it is most of the allreduce, so this runs on one
/// host only (OptimizerSharding).
public final class HostShardedUpdate {
    public let comm: Communicator
    public let store: ParameterStore
    /// This rank's share of the parameters, and every rank's.
    public let shard: Range<Int>
    public let shards: [Range<Int>]
    /// Slices whose gradients backward already summed over ranks (FCGradientReduce's factors):
    /// every rank holds the same sum, so the shard's owner takes its own.
    private let summedByBackward: [Range<Int>]
    /// Rank r's segment: its gradients (`store.count` floats), then from `publishedOffset` its
    /// published shard.
    private let segments: [UnsafeMutablePointer<Float>]
    private let publishedOffset: Int

    /// Moves `store`'s gradients into host-shared memory; nil where there is none (one process,
    /// several hosts). A collective call.
    public init?(comm: Communicator, store: ParameterStore, summedByBackward: [Range<Int>] = []) {
        let shards = Self.split(store.count, parts: comm.size)
        let gradientFloats = (store.count + 15) / 16 * 16
        let largest = shards.map(\.count).max() ?? 0
        guard let shared = comm.hostSharedMemory(floatsPerRank: gradientFloats + largest) else { return nil }
        self.comm = comm
        self.store = store
        self.shards = shards
        shard = shards[comm.rank]
        publishedOffset = gradientFloats
        self.summedByBackward = GradientSync.merged(summedByBackward)
        segments = shared.segments
        store.moveGradients(to: segments[comm.rank])
    }

    /// `count` split into `parts` contiguous shards of whole 64-byte lines (16 floats), the
    /// remainder in the last.
    static func split(_ count: Int, parts: Int) -> [Range<Int>] {
        let lines = (count + 15) / 16
        return (0..<parts).map { r in
            let lo = min(count, lines * r / parts * 16), hi = min(count, lines * (r + 1) / parts * 16)
            return lo..<hi
        }
    }

    /// Steps 1-2: waits for every rank's backward, then leaves the sum over ranks of this rank's
    /// shard in its gradient buffer. Returns whether the shard's sums are all finite, agreed
    /// over ranks (false on every rank when any rank's are not).
    public func sumShard() -> Bool {
        comm.barrier()
        let own = segments[comm.rank], segments = segments
        // On the rank's threads, each summing a range of the piece (every value is its own sum).
        for piece in GradientSync.subtracting(summedByBackward, from: shard) {
            parallelRanges(piece.count, grain: parallelGrain(floatsPerItem: segments.count + 1)) { r in
                let first = piece.lowerBound + r.lowerBound
                let sources: [UnsafePointer<Float>?] = segments.map { UnsafePointer($0 + first) }
                sources.withUnsafeBufferPointer { dim_sum_sources(own + first, $0.baseAddress, $0.count, r.count) }
            }
        }
        let finite = shard.isEmpty || dim_all_finite(own + shard.lowerBound, shard.count) != 0
        return !comm.any(!finite)
    }

    /// Step 4, after this rank updated its shard of `store.values`: every rank's shard into
    /// every rank's parameters.
    public func shareParameters() {
        guard let p = store.values else { return }
        (segments[comm.rank] + publishedOffset).update(from: p + shard.lowerBound, count: shard.count)
        comm.barrier()
        for (r, s) in shards.enumerated() where r != comm.rank {
            (p + s.lowerBound).update(from: segments[r] + publishedOffset, count: s.count)
        }
        // The next step's sumShard waits at a barrier before any rank publishes again, so a
        // slower rank still copying here reads the shards of this step.
    }

    /// Gives every rank Adam's moments of every shard (each rank kept only its own current):
    /// before a checkpoint is written. A collective call.
    public func gatherMoments(_ adam: Adam) {
        let counts = shards.map(\.count)
        for moments in [adam.m, adam.v] {
            // A copy of this rank's shard: MPI's input may not lie inside its output.
            let own = Array(UnsafeBufferPointer(start: moments + shard.lowerBound, count: shard.count))
            own.withUnsafeBufferPointer { comm.allgather($0.baseAddress ?? UnsafePointer(moments), counts: counts, into: moments) }
        }
    }
}
