import Foundation
import DIMCore
import DIMIO

/// What a training run tells its user and its files, on rank 0 (the other ranks stay quiet): the
/// progress line and messages on stdout, one `metrics.jsonl` record and the same scalars as
/// TensorBoard events per logging step.
final class RunLog {
    private(set) var config: TrainConfig
    let run: RunDirectory
    private(set) var totalSteps: Int
    let batchesPerEpoch: Int
    let comm: Communicator
    /// No stdout (tests); the files are still written.
    let quiet: Bool
    private var metrics: UnsafeMutablePointer<FILE>?
    private var events: EventFileWriter?

    init(config: TrainConfig, run: RunDirectory, totalSteps: Int, batchesPerEpoch: Int, comm: Communicator,
         quiet: Bool) {
        self.config = config; self.run = run; self.totalSteps = totalSteps; self.batchesPerEpoch = batchesPerEpoch
        self.comm = comm; self.quiet = quiet
    }

    deinit { close() }

    /// The run's steps after a --time-budget re-plan (Trainer.replan).
    func replan(config: TrainConfig, totalSteps: Int) { self.config = config; self.totalSteps = totalSteps }

    /// Opens rank 0's metrics.jsonl (append mode) and TensorBoard event file for a run that starts
    /// at `step`. After a resume the records past the checkpoint's step are dropped, so that the
    /// file stays one record per step however often the run was interrupted.
    func open(atStep step: Int) throws {
        guard comm.isRoot else { return }
        try FileManager.default.createDirectory(atPath: run.path, withIntermediateDirectories: true)
        let path = run.metrics
        if step > 0 { try truncateMetrics(after: step) } else { fclose(fopen(path, "w")) }
        // Append mode (O_APPEND): `eval --every-checkpoint` may add probe records to the same
        // file while training runs; a plain write offset would overwrite them.
        metrics = fopen(path, "a")
        guard metrics != nil else { throw DIMError("\(path): cannot write") }
        events = try EventFileWriter(directory: run.path)
    }

    func close() {
        if let m = metrics { fclose(m) }
        metrics = nil
    }

    /// A line for the user (rank 0).
    func message(_ s: String) {
        guard comm.isRoot && !quiet else { return }
        if liveLine { print("\r\u{1B}[K", terminator: "") }
        print(s)
        fflush(stdout)
    }

    /// Probe results measured at `step` (the kNN monitor): records in metrics.jsonl (`plot probes`
    /// draws them), scalars `probe/<probe>/<feature>`, and a line.
    func probes(step: Int, _ results: [ProbeResult], seconds: Double) throws {
        guard comm.isRoot else { return }
        if let m = metrics {
            for r in results { fputs(try jsonLine(ProbeRecord(step: step, r)) + "\n", m) }
            fflush(m)
        }
        try events?.scalars(results.map { ("probe/\($0.probe)/\($0.feature)", $0.testAccuracy) }, step: step)
        message("  step \(step): " + results.map { "\($0.probe) \($0.feature) \(fmt(100 * $0.testAccuracy, 2))%" }
            .joined(separator: ", ") + " (\(fmt(seconds, 1)) s)")
    }

    /// The logging step's record, scalars and progress line, after step `step` completed.
    func record(step: Int, losses l: DIMModel.Losses, imagesPerSecond: Double, elapsed: Double, eta: Double,
                final: Bool) throws {
        guard comm.isRoot else { return }
        let rate = Double(config.learningRate(step: max(step - 1, 0)))
        if let m = metrics {
            let record = LossRecord(
                step: step, epoch: step / batchesPerEpoch, loss: finite(l.total), local: finite(l.local),
                global: finite(l.global), prior: finite(l.prior), discriminator: finite(l.discriminator),
                learningRate: rate, imagesPerSecond: finite(imagesPerSecond), elapsedSeconds: finite(elapsed),
                communicationSeconds: finite(comm.communicationSeconds), ranks: comm.size)
            fputs(try record.jsonLine(), m)
            fflush(m)
        }
        if let events {
            // Terms that are switched off are left out.
            let lc = config.loss
            var values: [(tag: String, value: Double)] = [("loss/total", l.total)]
            if lc.beta != 0 { values.append(("loss/local", l.local)) }
            if lc.globalDIM { values.append(("loss/global", l.global)) }
            if lc.priorMatching { values += [("loss/prior", l.prior), ("loss/discriminator", l.discriminator)] }
            values += [("throughput/images_per_second", imagesPerSecond), ("optimizer/learning_rate", rate)]
            try events.scalars(values, step: step)
        }
        if !quiet { progress(step: step, l, imagesPerSecond: imagesPerSecond, eta: eta, final: final) }
    }

    private func progress(step: Int, _ l: DIMModel.Losses, imagesPerSecond: Double, eta: Double, final: Bool) {
        var terms = "loss \(fmt(l.total, 4))"
        let lc = config.loss
        if lc.globalDIM || lc.priorMatching {
            terms += " (local \(fmt(l.local, 4))" + (lc.globalDIM ? " global \(fmt(l.global, 4))" : "")
                + (lc.priorMatching ? " prior \(fmt(l.prior, 4)) disc \(fmt(l.discriminator, 4))" : "") + ")"
        }
        let line = "epoch \(step / batchesPerEpoch) step \(step)/\(totalSteps) \(terms) | "
            + "\(fmt(imagesPerSecond, 1)) img/s | ETA \(duration(eta))"
            + (config.timeBudget.map { " (time budget \(duration($0.seconds)))" } ?? "")
        if liveLine {
            print("\r\u{1B}[K" + line, terminator: final ? "\n" : "")
        } else {
            print(line)
        }
        fflush(stdout)
    }

    /// A live, rewritten progress line on a terminal; plain lines in logs and under mpirun
    /// (which forwards rank 0's output line by line).
    private var liveLine: Bool {
        isatty(STDOUT_FILENO) != 0 && comm.size == 1 && getenv("OMPI_COMM_WORLD_SIZE") == nil
    }

    /// Keeps the metrics records (loss and probe) of steps up to `step`, atomically.
    private func truncateMetrics(after step: Int) throws {
        let path = run.metrics
        guard let data = FileManager.default.contents(atPath: path),
              let text = String(data: data, encoding: .utf8) else { return }
        let kept = text.split(separator: "\n").filter { LossRecord.step(ofLine: $0).map { $0 <= step } ?? false }
        let tmp = path + ".tmp-\(getpid())"
        let contents = Data((kept.joined(separator: "\n") + (kept.isEmpty ? "" : "\n")).utf8)
        guard FileManager.default.createFile(atPath: tmp, contents: contents), rename(tmp, path) == 0 else {
            throw DIMError("\(path): cannot rewrite")
        }
    }
}

/// A duration for people: 45s, 3m07s, 2h05m.
public func duration(_ s: Double) -> String {
    guard s.isFinite else { return "?" }
    let t = Int(s.rounded())
    if t >= 3600 { return "\(t / 3600)h\(String(format: "%02d", (t % 3600) / 60))m" }
    if t >= 60 { return "\(t / 60)m\(String(format: "%02d", t % 60))s" }
    return "\(t)s"
}
