import Foundation

/// The collective operations that distributed DIM needs (Horovod-style: the model and the trainer
/// only see this protocol; DIMMPI implements it over MPI, `SingleProcess` is the stand-in that
/// makes every collective the identity for one process).
///
/// Every rank must call the same collectives in the same order with the same counts.
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Machines the ranks run on (ranks on one host share its memory; between hosts, a network).
    var hosts: Int { get }

    /// In-place elementwise sum over ranks.
    func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int)
    func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int)
    /// In-place elementwise max over ranks.
    func allreduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int)
    /// Concatenates `counts[r]` floats from every rank r, in rank order, into `output`
    /// (sum of counts); this rank sends `counts[rank]` from `input`.
    func allgather(_ input: UnsafePointer<Float>, counts: [Int], into output: UnsafeMutablePointer<Float>)
    /// Sums `counts.sum` floats over ranks and leaves block `rank` (`counts[rank]` floats, after
    /// the blocks of the lower ranks) in `output`.
    func reduceScatterSum(_ input: UnsafePointer<Float>, counts: [Int], into output: UnsafeMutablePointer<Float>)
    /// Starts an in-place sum over ranks and returns at once (MPI_Iallreduce); the buffer must not
    /// be touched until the returned collective is complete. Ranks start their non-blocking and
    /// blocking collectives in the same order.
    func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) -> PendingCollective
    /// The same for bfloat16 values (stored as UInt16): pairs are added in float and rounded back
    /// to bf16 (half the bytes of float32 on the wire; used by `--grad-reduce bf16`).
    func startAllreduceSum(bf16 buffer: UnsafeMutablePointer<UInt16>, count: Int) -> PendingCollective
    /// Memory that every rank maps: `floatsPerRank` floats per rank, rank r's at `segments[r]`
    /// (64-byte aligned), zeroed. Nil for one process and unless every rank runs on one host
    /// (MPI: MPI_Win_allocate_shared; nil too when /dev/shm lacks twice the room or MPI has no
    /// shared-memory windows). A collective call. The memory lives until the process ends
    /// (freeing it would be a collective call too, which no deinit may make).
    func hostSharedMemory(floatsPerRank: Int) -> HostSharedMemory?
    /// Copies `count` bytes from `root` to every rank.
    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int)
    func barrier()
    /// Ends the whole job (every rank) with `code` after printing `message` on this rank.
    func abort(_ message: String, code: Int32) -> Never
    /// Seconds spent inside collectives since the last reset (for the communication share of a step).
    var communicationSeconds: Double { get set }
}

/// A non-blocking collective in flight.
public protocol PendingCollective: AnyObject {
    /// Lets the library progress it; true once complete.
    func test() -> Bool
    /// Blocks until complete.
    func wait()
}

/// A collective that completed when it was started (one process, or a blocking stand-in).
public final class CompletedCollective: PendingCollective {
    public init() {}
    public func test() -> Bool { true }
    public func wait() {}
}

/// Memory shared by the ranks of one host (Communicator.hostSharedMemory).
public struct HostSharedMemory {
    /// Every rank's segment, in rank order, as this process sees it.
    public let segments: [UnsafeMutablePointer<Float>]
    public init(segments: [UnsafeMutablePointer<Float>]) { self.segments = segments }
}

/// Told when a collective starts and ends, so that a watchdog can name the collective a stalled
/// step waits in. Called on the thread that runs the collective.
public protocol CollectiveObserver: AnyObject {
    func collectiveBegan(_ name: StaticString, count: Int)
    func collectiveEnded()
}

extension Communicator {
    public var isRoot: Bool { rank == 0 }

    public func broadcast(_ tensor: Tensor, root: Int = 0) {
        broadcast(UnsafeMutableRawPointer(tensor.data), bytes: tensor.count * 4, root: root)
    }

    /// Sum of a scalar over ranks.
    public func sum(_ value: Double) -> Double {
        var v = value
        allreduceSum(&v, count: 1)
        return v
    }

    public func max(_ value: Double) -> Double {
        var v = value
        allreduceMax(&v, count: 1)
        return v
    }

    /// `count` floats from every rank (the common case of the variable-count form).
    public func allgather(_ input: UnsafePointer<Float>, count: Int, into output: UnsafeMutablePointer<Float>) {
        allgather(input, counts: Array(repeating: count, count: size), into: output)
    }

    /// Blocks of `count` floats for every rank.
    public func reduceScatterSum(_ input: UnsafePointer<Float>, count: Int, into output: UnsafeMutablePointer<Float>) {
        reduceScatterSum(input, counts: Array(repeating: count, count: size), into: output)
    }

    /// True on every rank when it is true on any rank (used to make error handling collective).
    public func any(_ flag: Bool) -> Bool { max(flag ? 1 : 0) > 0 }

    /// Rank 0 runs `body` (files, imports); then every rank learns whether it failed and throws
    /// the same error, so no rank runs ahead alone. Rank 0 throws its own error, the others
    /// `DIMError("\(what) failed on rank 0")`.
    public func rootActs(_ what: String, _ body: () throws -> Void) throws {
        var failure: Error? = nil
        if isRoot {
            do { try body() } catch { failure = error }
        }
        if any(failure != nil) { throw failure ?? DIMError("\(what) failed on rank 0") }
    }
}

/// One process: every collective is a copy or nothing.
public final class SingleProcess: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public var hosts: Int { 1 }
    public var communicationSeconds: Double = 0
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {}
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) {}
    public func allreduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int) {}
    public func allgather(_ input: UnsafePointer<Float>, counts: [Int], into output: UnsafeMutablePointer<Float>) {
        if UnsafePointer(output) != input { output.update(from: input, count: counts[0]) }
    }
    public func reduceScatterSum(_ input: UnsafePointer<Float>, counts: [Int],
                                 into output: UnsafeMutablePointer<Float>) {
        if UnsafePointer(output) != input { output.update(from: input, count: counts[0]) }
    }
    public func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) -> PendingCollective {
        CompletedCollective()
    }
    public func startAllreduceSum(bf16 buffer: UnsafeMutablePointer<UInt16>, count: Int) -> PendingCollective {
        CompletedCollective()
    }
    public func hostSharedMemory(floatsPerRank: Int) -> HostSharedMemory? { nil }
    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) {}
    public func barrier() {}
    public func abort(_ message: String, code: Int32) -> Never {
        printError(message)
        exit(code)
    }
}

/// Each rank's share of a global batch. The loss is defined on the global batch, which every
/// rank count must split evenly (docs/design.md §6).
public func localBatchSize(global: Int, ranks: Int) throws -> Int {
    guard ranks > 0, global % ranks == 0 else {
        throw DIMError("--batch-size \(global) does not divide by \(ranks) ranks")
    }
    return global / ranks
}
