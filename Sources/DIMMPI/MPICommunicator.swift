import Foundation
import CMPI
import DIMCore

/// The Communicator over MPI_COMM_WORLD. MPI is initialised once per process and finalised at
/// exit, so that mpirun sees a clean shutdown. The training thread makes every collective call;
/// with MPI_THREAD_MULTIPLE (Open MPI provides it) a ProgressThread also tests the non-blocking
/// gradient allreduces so that they move while backward computes.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    public private(set) var hosts = 1
    public var communicationSeconds: Double = 0
    private let world: MPI_Comm
    /// Told about every collective (the training watchdog).
    private let observer: CollectiveObserver?

    public init(observer: CollectiveObserver? = nil) {
        self.observer = observer
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        if initialized == 0 {
            for (key, value) in Self.openMPIDefaults { setenv(key, value, 0) }
            var provided: Int32 = 0
            MPI_Init_thread(nil, nil, Int32(MPI_THREAD_MULTIPLE), &provided)
            if provided >= Int32(MPI_THREAD_MULTIPLE) { ProgressThread.shared = ProgressThread() }
            atexit {
                ProgressThread.shared?.stop()
                var finalized: Int32 = 0
                MPI_Finalized(&finalized)
                if finalized == 0 { MPI_Finalize() }
            }
        }
        world = dim_MPI_COMM_WORLD()
        // Failed calls return an error code (instead of Open MPI's default abort without
        // context), so `timed` can name the call before ending the job.
        MPI_Comm_set_errhandler(world, dim_MPI_ERRORS_RETURN())
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(world, &r)
        MPI_Comm_size(world, &s)
        rank = Int(r); size = Int(s)
        hosts = countHosts()
    }

    /// The ranks that are first in their shared-memory group (MPI_COMM_TYPE_SHARED: one per
    /// host), counted over all ranks.
    private func countHosts() -> Int {
        guard size > 1 else { return 1 }
        var local: MPI_Comm? = nil
        var localRank: Int32 = 0
        timed("MPI_Comm_split_type (shared memory)", 0) {
            MPI_Comm_split_type(world, dim_MPI_COMM_TYPE_SHARED(), Int32(rank), dim_MPI_INFO_NULL(), &local)
        }
        MPI_Comm_rank(local, &localRank)
        MPI_Comm_free(&local)
        return Swift.max(1, Int(sum(localRank == 0 ? 1 : 0)))
    }

    /// Open MPI settings this program starts with unless the environment already has them (mpirun
    /// --mca passes its settings to the ranks as these same variables, so the user's win; other MPI
    /// libraries ignore them). Open MPI's defaults cost 1.6-4x on TCP links, measured on the
    /// emulated cluster's 1 Gbit links (README, "Multi-node"): one TCP connection per pair of ranks
    /// carried 48-55% of the link in a large allreduce, two carry 94%; MPI_Reduce_scatter_block's
    /// default (a reduce, then a scatter) reached 19%, recursive halving 78%; the gradients'
    /// non-blocking allreduce (libnbc) took 798 ms for 56.5 MB on 2 hosts with its default
    /// algorithm and 488 ms with Rabenseifner's (reduce-scatter + all-gather, log2(p) latency).
    static let openMPIDefaults = [
        ("OMPI_MCA_btl_tcp_links", "2"),
        ("OMPI_MCA_coll_tuned_use_dynamic_rules", "1"),  // lets the next line choose; others keep their defaults
        ("OMPI_MCA_coll_tuned_reduce_scatter_block_algorithm", "3"),
        ("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "3"),
    ]

    /// MPI's text for an error code.
    static func errorString(_ code: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: 512)  // >= MPI_MAX_ERROR_STRING (a macro)
        var length: Int32 = 0
        MPI_Error_string(code, &buffer, &length)
        return "\(String(cString: buffer)) (error \(code))"
    }

    /// True when this process was started by mpirun (or another PMI launcher) with more than one rank.
    public static var launchedWithSeveralRanks: Bool {
        for key in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_NTASKS"] {
            if let v = getenv(key), let n = Int(String(cString: v)), n > 1 { return true }
        }
        return false
    }

    @inline(__always)
    fileprivate func timed(_ name: StaticString, _ count: Int, _ body: () -> Int32) {
        observer?.collectiveBegan(name, count: count)
        let t0 = monotonicSeconds()
        let rc = body()
        communicationSeconds += monotonicSeconds() - t0
        observer?.collectiveEnded()
        if rc != 0 { abort("rank \(rank): \(name) failed: \(Self.errorString(rc))", code: 3) }
    }

    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        timed("MPI_Allreduce (sum, float)",
              count) { MPI_Allreduce(dim_MPI_IN_PLACE(), buffer, Int32(count), dim_MPI_FLOAT(), dim_MPI_SUM(), world) }
    }

    public func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) {
        timed("MPI_Allreduce (sum, double)",
              count) { MPI_Allreduce(dim_MPI_IN_PLACE(), buffer, Int32(count), dim_MPI_DOUBLE(), dim_MPI_SUM(), world) }
    }

    public func allreduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int) {
        timed("MPI_Allreduce (max)",
              count) { MPI_Allreduce(dim_MPI_IN_PLACE(), buffer, Int32(count), dim_MPI_DOUBLE(), dim_MPI_MAX(), world) }
    }

    /// MPI_Allgather when every rank sends the same count (its algorithms are tuned for that case),
    /// MPI_Allgatherv otherwise.
    public func allgather(_ input: UnsafePointer<Float>, counts: [Int], into output: UnsafeMutablePointer<Float>) {
        let mine = Int32(counts[rank])
        if counts.allSatisfy({ $0 == counts[0] }) {
            timed("MPI_Allgather", counts[0]) {
                MPI_Allgather(input, mine, dim_MPI_FLOAT(), output, mine, dim_MPI_FLOAT(), world)
            }
            return
        }
        let (sizes, offsets) = Self.layout(counts)
        timed("MPI_Allgatherv", counts[rank]) {
            MPI_Allgatherv(input, mine, dim_MPI_FLOAT(), output, sizes, offsets, dim_MPI_FLOAT(), world)
        }
    }

    public func reduceScatterSum(_ input: UnsafePointer<Float>, counts: [Int],
                                 into output: UnsafeMutablePointer<Float>) {
        if counts.allSatisfy({ $0 == counts[0] }) {
            timed("MPI_Reduce_scatter_block", counts[0]) {
                MPI_Reduce_scatter_block(input, output, Int32(counts[0]), dim_MPI_FLOAT(), dim_MPI_SUM(), world)
            }
            return
        }
        let (sizes, _) = Self.layout(counts)
        timed("MPI_Reduce_scatter", counts[rank]) {
            MPI_Reduce_scatter(input, output, sizes, dim_MPI_FLOAT(), dim_MPI_SUM(), world)
        }
    }

    /// MPI's per-rank counts and displacements (32-bit, as the C interface takes them).
    private static func layout(_ counts: [Int]) -> (sizes: [Int32], offsets: [Int32]) {
        var offsets: [Int32] = [], at = 0
        for c in counts { offsets.append(Int32(at)); at += c }
        precondition(at <= Int(Int32.max), "collective of \(at) floats exceeds MPI's 32-bit counts")
        return (counts.map { Int32($0) }, offsets)
    }

    public func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) -> PendingCollective {
        let pending = MPIRequest(communicator: self, count: count)
        timed("MPI_Iallreduce (start)", count) {
            MPI_Iallreduce(dim_MPI_IN_PLACE(), buffer, Int32(count), dim_MPI_FLOAT(), dim_MPI_SUM(), world,
                           &pending.request)
        }
        ProgressThread.shared?.watch(pending)
        return pending
    }

    public func startAllreduceSum(bf16 buffer: UnsafeMutablePointer<UInt16>, count: Int) -> PendingCollective {
        let pending = MPIRequest(communicator: self, count: count)
        let op = dim_bf16_sum_op()
        timed("MPI_Iallreduce (start, bf16)", count) {
            MPI_Iallreduce(dim_MPI_IN_PLACE(), buffer, Int32(count), dim_MPI_UINT16(), op, world, &pending.request)
        }
        ProgressThread.shared?.watch(pending)
        return pending
    }

    /// A started MPI_Iallreduce. Open MPI progresses it inside MPI calls: the ProgressThread's
    /// MPI_Test calls (when there is one), MPI_Test here, and the blocking collectives the step
    /// makes meanwhile.
    final class MPIRequest: PendingCollective {
        unowned let communicator: MPICommunicator
        let count: Int
        var request: MPI_Request? = nil
        var done = false
        init(communicator: MPICommunicator, count: Int) { self.communicator = communicator; self.count = count }

        func test() -> Bool {
            let progress = ProgressThread.shared
            progress?.lock.lock()
            defer { progress?.lock.unlock() }
            if done { return true }
            var flag: Int32 = 0
            communicator.timed("MPI_Test", count) { MPI_Test(&request, &flag, dim_MPI_STATUS_IGNORE()) }
            done = flag != 0
            return done
        }

        func wait() {
            let progress = ProgressThread.shared
            progress?.lock.lock()
            defer { progress?.lock.unlock() }
            if done { return }
            communicator.timed("MPI_Wait (Iallreduce)", count) { MPI_Wait(&request, dim_MPI_STATUS_IGNORE()) }
            done = true
        }

        /// The ProgressThread's test (its lock held): no observer, no timing (both belong to the
        /// training thread); true once complete, or on an error, which is left for `wait` to report.
        func progressLocked() -> Bool {
            if done { return true }
            var flag: Int32 = 0
            if MPI_Test(&request, &flag, dim_MPI_STATUS_IGNORE()) != 0 { return true }
            done = flag != 0
            return done
        }
    }

    /// One MPI_Win_allocate_shared window over all ranks (they share one host), never freed:
    /// MPI_Finalize releases it. Open MPI places segments 8-byte aligned, so each gets a line
    /// more and starts at its first 64-byte boundary (the same offset in every process: the
    /// window is mapped page-aligned).
    public func hostSharedMemory(floatsPerRank: Int) -> HostSharedMemory? {
        guard size > 1, hosts == 1 else { return nil }
        let floats = (Swift.max(floatsPerRank, 1) + 15) / 16 * 16, allocated = (floats + 16) * 4
        // Open MPI backs the window with a file in /dev/shm (osc_sm_backing_directory); a
        // container's is often 64 MB, and touching a page past a full tmpfs is SIGBUS, not an error.
        let directory = getenv("OMPI_MCA_osc_sm_backing_directory").map { String(cString: $0) } ?? "/dev/shm"
        var fs = statvfs()
        let free = statvfs(directory, &fs) == 0 ? Int(fs.f_bavail) * Int(fs.f_frsize) : Int.max
        if any(free < 2 * size * allocated) { return nil }
        var base: UnsafeMutableRawPointer? = nil
        var window: MPI_Win? = nil
        // An MPI without shared-memory windows (Open MPI with `--mca osc ^sm`, say) refuses the
        // call: then every rank learns it and the caller keeps the allreduce.
        let t0 = monotonicSeconds()
        let rc = MPI_Win_allocate_shared(MPI_Aint(allocated), 4, dim_MPI_INFO_NULL(), world, &base, &window)
        communicationSeconds += monotonicSeconds() - t0
        if rc != 0 {
            printError("rank \(rank): MPI_Win_allocate_shared: \(Self.errorString(rc)): no memory shared between the ranks")
        }
        if any(rc != 0) { return nil }  // (a window some ranks got stays: freeing it is collective)
        var segments: [UnsafeMutablePointer<Float>] = []
        for r in 0..<size {
            var bytes: MPI_Aint = 0, unit: Int32 = 0
            var segment: UnsafeMutableRawPointer? = nil
            timed("MPI_Win_shared_query", 0) { MPI_Win_shared_query(window, Int32(r), &bytes, &unit, &segment) }
            guard let segment, Int(bytes) >= allocated, Int(bitPattern: segment) % 4 == 0 else {
                abort("rank \(rank): MPI_Win_shared_query gave rank \(r)'s segment as \(bytes) bytes at "
                      + "\(String(describing: segment)); expected \(allocated), float-aligned", code: 3)
            }
            let aligned = segment + (64 - Int(bitPattern: segment) % 64) % 64
            segments.append(aligned.bindMemory(to: Float.self, capacity: floats))
        }
        segments[rank].initialize(repeating: 0, count: floats)
        barrier()
        return HostSharedMemory(segments: segments)
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) {
        timed("MPI_Bcast", bytes) { MPI_Bcast(buffer, Int32(bytes), dim_MPI_BYTE(), Int32(root), world) }
    }

    public func barrier() { timed("MPI_Barrier", 0) { MPI_Barrier(world) } }

    public func abort(_ message: String, code: Int32) -> Never {
        printError(message)
        fflush(stdout)
        MPI_Abort(world, code)
        exit(code)
    }
}
