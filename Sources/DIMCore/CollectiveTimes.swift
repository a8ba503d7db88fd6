import Foundation

/// Seconds inside each kind of collective, by the name the communicator gives it
/// ("MPI_Allreduce (sum, double)", "MPI_Wait (Iallreduce)", ...), while `enabled`: the observer
/// that `dim-dist bench` hands its communicator. A rank that reaches a blocking collective first
/// waits in it for the others, so the same collective costs ranks different times; comparing ranks
/// (`CollectiveTimes.summary`) tells what the collectives cost from how unevenly the ranks ran.
/// The same seconds by call of the step (`sites`, when the caller marks each step's start with
/// `beginStep`) tell where in the step the ranks wait for each other.
public final class CollectiveTimes: CollectiveObserver {
    public struct Total { public var calls = 0, seconds = 0.0 }
    /// One call of the step, by its place among the step's calls, summed over the timed steps:
    /// its seconds, and when it ended (seconds after the step began).
    public struct Site {
        public var name: String, count: Int
        public var seconds = 0.0, endOffset = 0.0
    }
    /// Off outside the steps being timed (warm-up, the reference GEMM, barriers between rounds).
    public var enabled = false
    public private(set) var byName: [String: Total] = [:]
    public private(set) var sites: [Site] = []
    /// False once two steps made different sequences of calls (their sites do not correspond).
    public private(set) var sitesMatch = true
    private var current: StaticString = "", currentCount = 0
    private var began = 0.0
    private var site = 0, stepBegan = 0.0, stepsBegun = 0

    public init() {}

    /// The start of a timed step (while `enabled`): its calls are numbered from here.
    public func beginStep() {
        guard enabled else { return }
        if stepsBegun > 0 && site != sites.count { sitesMatch = false }
        stepsBegun += 1
        site = 0
        stepBegan = monotonicSeconds()
    }

    public func collectiveBegan(_ name: StaticString, count: Int) {
        current = name
        currentCount = count
        began = monotonicSeconds()
    }

    public func collectiveEnded() {
        guard enabled else { return }
        let now = monotonicSeconds(), seconds = now - began
        byName[current.description, default: Total()].calls += 1
        byName[current.description, default: Total()].seconds += seconds
        guard stepsBegun > 0 else { return }
        if site == sites.count {
            if stepsBegun > 1 { sitesMatch = false }
            sites.append(Site(name: current.description, count: currentCount))
        } else if sites[site].name != current.description || sites[site].count != currentCount {
            sitesMatch = false
        }
        sites[site].seconds += seconds
        sites[site].endOffset += now - stepBegan
        site += 1
    }

    public func reset() {
        byName = [:]
        sites = []
        sitesMatch = true
        site = 0
        stepsBegun = 0
    }

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
        let spread = Self.overRanks(names.map { (byName[$0]?.seconds ?? 0) * perStep }, comm: comm)
        return names.indices.map { i in
            Line(name: names[i], calls: Double(byName[names[i]]?.calls ?? 0) * perStep,
                 meanSeconds: spread.mean[i], leastSeconds: spread.least[i], mostSeconds: spread.most[i])
        }.sorted { $0.meanSeconds > $1.meanSeconds }
    }

    /// Each entry of `own` (this rank's value) over the ranks: the mean, the least and the most.
    /// A collective call (three allreduces; none for no entries).
    private static func overRanks(_ own: [Double], comm: Communicator)
        -> (mean: [Double], least: [Double], most: [Double]) {
        var total = own, most = own, negatedLeast = own.map { -$0 }
        if !own.isEmpty {
            comm.allreduceSum(&total, count: own.count)
            comm.allreduceMax(&most, count: own.count)
            comm.allreduceMax(&negatedLeast, count: own.count)
        }
        return (total.map { $0 / Double(comm.size) }, negatedLeast.map { -$0 }, most)
    }

    /// One call of the step over the ranks, per step: its place (0-based) among the step's
    /// calls, the seconds of the mean rank, the least and the most, and when it ended on the
    /// mean rank (seconds into the step).
    public struct SiteLine: Equatable {
        public var index: Int, name: String, count: Int
        public var meanSeconds: Double, leastSeconds: Double, mostSeconds: Double
        public var endOffset: Double
    }

    /// Every rank calls this at once (it runs collectives). The step's calls in order, or none
    /// when the ranks' steps (or one rank's) made different sequences of calls.
    public func sitesSummary(steps: Int, comm: Communicator) -> [SiteLine] {
        let match = sitesMatch && site == sites.count  // the last step too
        var shape = [match ? Double(sites.count) : -1, match ? -Double(sites.count) : -1]
        comm.allreduceMax(&shape, count: 2)
        // Every rank saw the same number of calls per step (max = min), and its steps agreed.
        guard shape[0] > 0, shape[0] == -shape[1] else { return [] }
        let perStep = 1 / Double(max(steps, 1))
        let spread = Self.overRanks(sites.map { $0.seconds * perStep }, comm: comm)
        let ends = Self.overRanks(sites.map { $0.endOffset * perStep }, comm: comm).mean
        return sites.indices.map { i in
            SiteLine(index: i, name: sites[i].name, count: sites[i].count, meanSeconds: spread.mean[i],
                     leastSeconds: spread.least[i], mostSeconds: spread.most[i], endOffset: ends[i])
        }
    }
}
