import Foundation

/// Seconds inside each kind of collective, by the name the communicator gives it
/// ("MPI_Allreduce (sum, double)", "MPI_Wait (Iallreduce)", ...), while `enabled`: the observer
/// that `dim-dist bench` hands its communicator. A rank that reaches a blocking collective first
/// waits in it for the others, so the same collective costs ranks different times; comparing ranks
/// (`CollectiveTimes.summary`) tells what the collectives cost from how unevenly the ranks ran.
public final class CollectiveTimes: CollectiveObserver {
    public struct Total { public var calls = 0, seconds = 0.0 }
    /// Off outside the steps being timed (warm-up, the reference GEMM, barriers between rounds).
    public var enabled = false
    public private(set) var byName: [String: Total] = [:]
    private var current: StaticString = ""
    private var began = 0.0

    public init() {}

    public func collectiveBegan(_ name: StaticString, count: Int) {
        current = name
        began = monotonicSeconds()
    }

    public func collectiveEnded() {
        guard enabled else { return }
        let seconds = monotonicSeconds() - began
        byName[current.description, default: Total()].calls += 1
        byName[current.description, default: Total()].seconds += seconds
    }

    public func reset() { byName = [:] }

    /// One kind of collective over the ranks, per step: this rank's calls, and the seconds of the
    /// mean rank, the rank that spent least and the one that spent most.
    public struct Line: Equatable {
        public var name: String
        public var calls: Double
        public var meanSeconds: Double, leastSeconds: Double, mostSeconds: Double
    }

    /// Every rank calls this at once (it runs collectives). Rank 0's names, most time first;
    /// a rank that never made one of them counts 0 s for it.
    public func summary(steps: Int, comm: Communicator) -> [Line] {
        // Rank 0 says which names to compare: the byte count, then the names joined by newlines.
        var names = comm.isRoot ? byName.keys.sorted() : []
        var bytes = Array(names.joined(separator: "\n").utf8)
        var length = Int64(bytes.count)
        comm.broadcast(&length, bytes: 8, root: 0)
        if !comm.isRoot { bytes = [UInt8](repeating: 0, count: Int(length)) }
        if length > 0 { comm.broadcast(&bytes, bytes: bytes.count, root: 0) }
        names = length == 0 ? [] : String(decoding: bytes, as: UTF8.self).split(separator: "\n").map(String.init)
        let perStep = 1 / Double(max(steps, 1))
        let own = names.map { (byName[$0]?.seconds ?? 0) * perStep }
        var total = own, most = own, negatedLeast = own.map { -$0 }
        if !names.isEmpty {
            comm.allreduceSum(&total, count: names.count)
            comm.allreduceMax(&most, count: names.count)
            comm.allreduceMax(&negatedLeast, count: names.count)
        }
        return names.indices.map { i in
            Line(name: names[i], calls: Double(byName[names[i]]?.calls ?? 0) * perStep,
                 meanSeconds: total[i] / Double(comm.size), leastSeconds: -negatedLeast[i], mostSeconds: most[i])
        }.sorted { $0.meanSeconds > $1.meanSeconds }
    }
}
