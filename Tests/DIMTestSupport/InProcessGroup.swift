import Foundation
import DIMCore

/// A multi-rank Communicator inside one process: one thread per rank, collectives through shared
/// memory. It lets plain `swift test` run the distributed code paths (rank offsets, the gather of
/// global vectors, reduce-scatters, per-row allreduces) at np = 2, 3, 4 without mpirun.
/// Reductions add the ranks' values in rank order, so results are deterministic.
public final class InProcessGroup {
    public let size: Int
    public let hosts: Int
    private let condition = NSCondition()
    private var arrived = 0, generation = 0
    fileprivate var slots: [UnsafeRawPointer?]
    /// hostSharedMemory's buffers, freed with the group.
    fileprivate var sharedBuffers: [UnsafeMutablePointer<Float>] = []

    private init(size: Int, hosts: Int) {
        self.size = size
        self.hosts = hosts
        slots = Array(repeating: nil, count: size)
    }

    /// Runs `body` on `ranks` threads, each with its rank's communicator; returns the results in
    /// rank order once every rank has finished. `hosts`: what the communicators report.
    public static func run<T>(ranks: Int, hosts: Int = 1, _ body: @escaping (Communicator) -> T) -> [T] {
        let group = InProcessGroup(size: ranks, hosts: hosts)
        let results = ResultSlots<T>(count: ranks)
        let done = DispatchGroup()
        for r in 0..<ranks {
            done.enter()
            let thread = Thread {
                results.set(r, body(InProcessCommunicator(rank: r, group: group)))
                done.leave()
            }
            thread.stackSize = 16 << 20
            thread.start()
        }
        done.wait()
        return results.values()
    }

    /// The same for a body that throws: the first rank's error (in rank order) is rethrown. The
    /// body must fail the same way on every rank (as DIM's collective errors do), or the others wait.
    public static func run<T>(ranks: Int, hosts: Int = 1, _ body: @escaping (Communicator) throws -> T) throws -> [T] {
        try run(ranks: ranks, hosts: hosts) { comm in Result { try body(comm) } }.map { try $0.get() }
    }

    deinit { for b in sharedBuffers { b.deallocate() } }

    fileprivate func barrier() {
        condition.lock()
        let mine = generation
        arrived += 1
        if arrived == size {
            arrived = 0
            generation += 1
            condition.broadcast()
        } else {
            while generation == mine { condition.wait() }
        }
        condition.unlock()
    }
}

private final class ResultSlots<T>: @unchecked Sendable {
    private var slots: [T?]
    private let lock = NSLock()
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ v: T) { lock.lock(); slots[i] = v; lock.unlock() }
    func values() -> [T] { slots.map { $0! } }
}

public final class InProcessCommunicator: Communicator {
    public let rank: Int
    public var size: Int { group.size }
    /// As `InProcessGroup.run` was told (the ranks pretend to be spread over that many machines).
    public var hosts: Int { group.hosts }
    public var communicationSeconds: Double = 0
    private let group: InProcessGroup

    fileprivate init(rank: Int, group: InProcessGroup) { self.rank = rank; self.group = group }

    /// Publishes `input`, lets `compute` read every rank's (after all have published), then waits
    /// until every rank has finished reading before anyone may change its buffer.
    private func exchange(_ input: UnsafeRawPointer, _ compute: ([UnsafeRawPointer]) -> Void) {
        group.slots[rank] = input
        group.barrier()
        compute(group.slots.map { $0! })
        group.barrier()
    }

    private func reduce<T>(_ buffer: UnsafeMutablePointer<T>, count: Int, _ combine: (T, T) -> T) {
        var result = [T]()
        exchange(UnsafeRawPointer(buffer)) { all in
            let first = all[0].assumingMemoryBound(to: T.self)
            result = Array(UnsafeBufferPointer(start: first, count: count))
            for r in 1..<all.count {
                let p = all[r].assumingMemoryBound(to: T.self)
                for i in 0..<count { result[i] = combine(result[i], p[i]) }
            }
        }
        buffer.update(from: result, count: count)
        group.barrier()  // nobody reads this buffer again before everyone has written theirs
    }

    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) { reduce(buffer, count: count, +) }
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) { reduce(buffer, count: count, +) }
    public func allreduceMax(_ buffer: UnsafeMutablePointer<Double>,
                             count: Int) { reduce(buffer, count: count, Swift.max) }

    public func allgather(_ input: UnsafePointer<Float>, counts: [Int], into output: UnsafeMutablePointer<Float>) {
        var gathered = [Float]()
        exchange(UnsafeRawPointer(input)) { all in
            for r in all.indices {
                gathered += UnsafeBufferPointer(start: all[r].assumingMemoryBound(to: Float.self), count: counts[r])
            }
        }
        output.update(from: gathered, count: gathered.count)
        group.barrier()
    }

    public func reduceScatterSum(_ input: UnsafePointer<Float>, counts: [Int],
                                 into output: UnsafeMutablePointer<Float>) {
        let start = counts[..<rank].reduce(0, +), count = counts[rank]
        var mine = [Float](repeating: 0, count: count)
        exchange(UnsafeRawPointer(input)) { all in
            for r in all.indices {
                let p = all[r].assumingMemoryBound(to: Float.self) + start
                for i in 0..<count { mine[i] += p[i] }
            }
        }
        output.update(from: mine, count: count)
        group.barrier()
    }

    /// Blocking here (every rank starts it at the same point of its program).
    public func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) -> PendingCollective {
        allreduceSum(buffer, count: count)
        return CompletedCollective()
    }

    /// Blocking here; bf16 pairs added in float and rounded back, in rank order.
    public func startAllreduceSum(bf16 buffer: UnsafeMutablePointer<UInt16>, count: Int) -> PendingCollective {
        reduce(buffer, count: count) { a, b in
            var s = (Float(bitPattern: UInt32(a) << 16) + Float(bitPattern: UInt32(b) << 16)).bitPattern
            s &+= 0x7FFF &+ ((s >> 16) & 1)
            return UInt16(s >> 16)
        }
        return CompletedCollective()
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) {
        var copy = [UInt8]()
        exchange(UnsafeRawPointer(buffer)) { all in
            copy = Array(UnsafeRawBufferPointer(start: all[root], count: bytes))
        }
        copy.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: bytes) }
        group.barrier()
    }

    public func barrier() { group.barrier() }

    /// One zeroed buffer for all ranks (threads of one process), allocated by rank 0; `hosts` as
    /// the group was told (several pretend hosts share no memory).
    public func hostSharedMemory(floatsPerRank: Int) -> HostSharedMemory? {
        guard size > 1, hosts == 1 else { return nil }
        let floats = (Swift.max(floatsPerRank, 1) + 15) / 16 * 16
        if rank == 0 {
            let raw = UnsafeMutableRawPointer.allocate(byteCount: size * floats * 4, alignment: 64)
            let buffer = raw.bindMemory(to: Float.self, capacity: size * floats)
            buffer.initialize(repeating: 0, count: size * floats)
            group.sharedBuffers.append(buffer)
        }
        group.barrier()
        let base = group.sharedBuffers.last!
        group.barrier()
        return HostSharedMemory(segments: (0..<size).map { base + $0 * floats })
    }

    public func abort(_ message: String, code: Int32) -> Never {
        fatalError("rank \(rank): \(message) (exit \(code))")
    }
}
