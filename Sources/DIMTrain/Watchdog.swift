import Foundation
import DIMCore

/// Ends a job whose step has stalled. Without it a stopped rank (SIGSTOP, a frozen node, a dead
/// link) leaves the others spinning inside a collective until the allocation runs out.
///
/// A thread on every rank wakes once a second, sends the heartbeat (Heartbeat.swift) and checks
/// how long the current step has run. Past the deadline it ends the whole job with one line
/// naming the step, the phase, the collective it waits in and (from rank 0's heartbeats) the ranks
/// that went silent. Rank 0 reports first; the others wait a little longer, so that the line
/// that names the silent ranks is the one printed. The last complete checkpoint is not touched.
///
/// Start-up counts as step 0's time, from this object's creation: before `start` (MPI_Init,
/// reading the data, building the model, the heartbeat's set-up) `guardStartup` watches it with
/// a thread of its own that ends only this process, since there may be no communicator yet; the
/// launcher then ends the others.
public final class Watchdog: CollectiveObserver {
    public enum Phase: Int32 {
        case startup = 0, data, forwardBackward, gradientAllreduce, optimizer, control, checkpoint
        var name: String {
            switch self {
            case .startup: return "start-up"
            case .data: return "reading data"
            case .forwardBackward: return "forward/backward"
            case .gradientAllreduce: return "gradient allreduce"
            case .optimizer: return "optimizer"
            case .control: return "stop/checkpoint decision"
            case .checkpoint: return "checkpoint"
            }
        }
    }

    /// Exit status of a job ended by the watchdog (as timeout(1) uses).
    public static let exitStatus: Int32 = 124

    private var comm: Communicator = SingleProcess()
    private let fixedTimeout: Double?
    private let floor: Double
    private let lock = NSLock()
    private var step = 0, phase = Phase.startup, stepStart = monotonicSeconds()
    private var collective: (name: StaticString, count: Int)?
    private var durations: [Double] = []
    private var heartbeat: Heartbeat?
    private var running = false
    private var started = false
    private var startupStage = "start-up"

    /// `timeout`: the deadline for one step in seconds; nil derives it as max(`floor`, 20 x the
    /// median of the recent step times).
    public init(timeout: Double?, floor: Double = 600) {
        self.fixedTimeout = timeout; self.floor = floor
    }

    /// Until `start` has set up the heartbeat: past the deadline, prints one line naming the rank
    /// (from the launcher's environment) and the stage (`startupStage`), and exits with
    /// `exitStatus`. A rank stopped or cut off during start-up otherwise leaves the others waiting
    /// in MPI_Init or the first collective for ever. For jobs of several ranks only.
    public func guardStartup() {
        let environment = ProcessInfo.processInfo.environment
        let rank = ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"]
            .compactMap { environment[$0] }.first ?? "?"
        let thread = Thread { [weak self] in
            while let self {
                let limit = self.deadline
                self.lock.lock()
                let (done, stage, began, inCollective) = (self.started, self.startupStage, self.stepStart, self.collective)
                self.lock.unlock()
                if done { return }
                let waited = monotonicSeconds() - began
                if waited > limit {
                    var line = "dim-dist: watchdog on rank \(rank): start-up has made no progress for \(Int(waited)) s "
                        + "(deadline \(Int(limit)) s), in \(stage)"
                    if let c = inCollective { line += ", inside \(c.name) of \(c.count)" }
                    printError(line + "; ending this rank (the launcher ends the others)")
                    fflush(stdout)
                    _exit(Self.exitStatus)
                }
                usleep(250_000)
            }
        }
        thread.name = "dim-dist start-up watchdog"
        thread.start()
    }

    /// What start-up is doing, for `guardStartup`'s line ("MPI_Init", "reading the data", ...).
    public func startup(_ stage: String) { lock.lock(); startupStage = stage; lock.unlock() }

    /// Collective (the heartbeat's set-up). Starts the thread; a single process needs none.
    public func start(comm: Communicator) {
        defer { lock.lock(); started = true; lock.unlock() }
        guard comm.size > 1, !running else { return }
        self.comm = comm
        startup("the heartbeat's set-up")
        heartbeat = Heartbeat(comm: comm)
        running = true
        let thread = Thread { [weak self] in
            while let self, self.isRunning {
                self.check()
                usleep(1_000_000)
            }
        }
        thread.name = "dim-dist watchdog"
        thread.start()
    }

    public func stop() { lock.lock(); running = false; lock.unlock() }
    private var isRunning: Bool { lock.lock(); defer { lock.unlock() }; return running }

    /// A new step (or a new stretch of work, such as the final checkpoint) begins: the clock restarts.
    public func begin(step: Int, phase: Phase) {
        lock.lock()
        self.step = step; self.phase = phase; stepStart = monotonicSeconds(); collective = nil
        lock.unlock()
    }

    public func enter(_ phase: Phase) { lock.lock(); self.phase = phase; lock.unlock() }

    /// Records a finished step's duration (for the derived deadline).
    public func finished(stepSeconds: Double) {
        lock.lock()
        durations.append(stepSeconds)
        if durations.count > 50 { durations.removeFirst() }
        lock.unlock()
    }

    public func collectiveBegan(_ name: StaticString, count: Int) {
        lock.lock(); collective = (name, count); lock.unlock()
    }
    public func collectiveEnded() { lock.lock(); collective = nil; lock.unlock() }

    /// The deadline for one step now.
    public var deadline: Double {
        lock.lock(); defer { lock.unlock() }
        if let t = fixedTimeout { return t }
        guard !durations.isEmpty else { return floor }
        return max(floor, 20 * durations.sorted()[durations.count / 2])
    }

    private func check() {
        let limit = deadline
        lock.lock()
        let (s, p, started, inCollective) = (step, phase, stepStart, collective)
        lock.unlock()
        heartbeat?.beat(step: s, phase: p.rawValue)
        heartbeat?.receive()
        let waited = monotonicSeconds() - started
        // Rank 0 speaks first; the others give it a few seconds to name the silent ranks.
        guard waited > limit + (comm.isRoot ? 0 : 5) else { return }
        var line = "dim-dist: watchdog on rank \(comm.rank): step \(s) has made no progress for \(Int(waited)) s "
            + "(deadline \(Int(limit)) s), in \(p.name)"
        if let c = inCollective { line += ", inside \(c.name) of \(c.count)" }
        if comm.isRoot, let hb = heartbeat {
            let now = monotonicSeconds()
            let silent = hb.seen.enumerated().filter { $0.offset > 0 && now - $0.element.time > 5 }
            if silent.isEmpty {
                line += "; every rank still sends heartbeats"
            } else {
                line += "; no heartbeat from " + silent.map { r, seen in
                    let phase = Phase(rawValue: seen.phase)?.name ?? "?"
                    return "rank \(r) for \(Int(now - seen.time)) s (last: step \(seen.step), \(phase))"
                }.joined(separator: ", ")
            }
        }
        comm.abort(line + "; ending the job (the last complete checkpoint is kept)", code: Self.exitStatus)
    }
}
