import Foundation
import XCTest
import DIMTestSupport
import DIMCore
import DIMIO
@testable import DIMTrain


/// A small but complete training setup on a synthetic dataset (prior matching and augmentation on,
/// so the discriminator's state and the augmentation stream are covered too).
struct TinyRun {
    let data: String
    var config = TrainConfig(
        model: ModelConfig(architecture: .basic28x28, inChannels: 1, convChannels: [6, 8], fcUnits: 24, globalDim: 8,
                           miUnits: 16, discUnits: [12, 6]),
        loss: LossConfig(estimator: .jsd, beta: 1, alpha: 0, gamma: 0.1), globalBatch: 8)

    init(data: String) {
        self.data = data
        config.augmentation = Augmentation(cropPadding: 2, horizontalFlip: true)
        config.learningRate = 1e-3
        config.seed = 4
    }

    /// A fresh dataset in a temporary directory and a trainer on it with (practically) no step
    /// limit: `options` sets the time limit and whatever else the test needs.
    static func untilTimeLimit(_ options: (inout Trainer.Options) -> Void) throws -> (dir: String, trainer: Trainer) {
        let dir = temporaryDirectory()
        try makeData(dir + "/data")
        return (dir, try TinyRun(data: dir + "/data").trainer(out: dir + "/run", steps: 1_000_000, options: options))
    }

    static func makeData(_ dir: String, count: Int = 40, seed: UInt64 = 2) throws {
        try SyntheticDataset.write(directory: dir, trainCount: count, testCount: 8, classes: 4, channels: 1, size: 28,
                                   seed: seed, shards: 2)
    }

    func trainer(out: String, steps: Int, comm: Communicator = SingleProcess(), resume: String? = nil,
                 checkpointEvery: Int = 0, options: (inout Trainer.Options) -> Void = { _ in }) throws -> Trainer {
        var o = Trainer.Options(dataDirectory: data, outDirectory: out, totalSteps: steps)
        o.resume = resume
        o.quiet = true
        o.checkpointEvery = checkpointEvery
        options(&o)
        return try Trainer(config: config, options: o, comm: comm)
    }
}

/// Every tensor of the training state, flattened, for exact comparisons.
func snapshot(_ s: TrainingState) -> [Float] {
    func buf(_ p: UnsafeMutablePointer<Float>?,
             _ n: Int) -> [Float] { p.map { Array(UnsafeBufferPointer(start: $0, count: n)) } ?? [] }
    let m = s.model
    return buf(m.params.values, m.params.count) + buf(m.discParams.values, m.discParams.count) + buf(m.buffers.values,
            m.buffers.count)
        + buf(s.adam.m, s.adam.count) + buf(s.adam.v, s.adam.count) + buf(s.discAdam.m,
                s.discAdam.count) + buf(s.discAdam.v, s.discAdam.count)
        + m.batchNorms.map { Float($0.batchesTracked) } + [Float(s.adam.step), Float(s.discAdam.step)]
}

final class CheckpointTests: XCTestCase {
    func testTimeLimitStopsAndCheckpoints() throws {
        let (dir, t) = try TinyRun.untilTimeLimit { $0.timeLimit = 0.5 }
        try t.run()
        XCTAssertGreaterThan(t.state.step, 0)
        XCTAssertLessThan(t.state.step, 1_000_000)
        XCTAssertEqual(CheckpointDirectory(path: dir + "/run/checkpoints").latestName(),
                       CheckpointDirectory.fileName(step: t.state.step))
    }

    /// `eval --every-checkpoint` may append probe records while training writes metrics: both survive.
    func testProbeRecordsAppendedDuringTrainingSurvive() throws {
        let (dir, t) = try TinyRun.untilTimeLimit {
            $0.timeLimit = 0.6
            $0.logEvery = 1
        }
        let record = ProbeRecord(step: 1, ProbeResult(feature: "conv", probe: "linear", dim: 4, trainAccuracy: 0.5,
                                                       testAccuracy: 0.5, validationAccuracy: 0.5, weightDecay: 0, epochs: 1))
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.3) {
            try? ProbeRecord.append([record], to: dir + "/run/metrics.jsonl")
        }
        try t.run()
        XCTAssertEqual(ProbeRecord.read(dir + "/run/metrics.jsonl"), [record])
        XCTAssertGreaterThan(try Plots.readMetrics(dir + "/run/metrics.jsonl")["loss"]?.count ?? 0, 5)
    }

    func testResumeIsBitIdentical() throws {
        // Constant rate, and a cosine schedule (the rate is a function of the step, so it must
        // continue where it stopped).
        for schedule in [nil, LearningRateSchedule(warmupSteps: 3, decaySteps: 12)] {
            let dir = temporaryDirectory()
            try TinyRun.makeData(dir + "/data")
            var run = TinyRun(data: dir + "/data")
            run.config.schedule = schedule
            // 40 images / batch 8 = 5 steps per epoch: 12 steps cross two epoch boundaries.
            let straight = try run.trainer(out: dir + "/a", steps: 12)
            try straight.run()
            let first = try run.trainer(out: dir + "/b", steps: 7)
            try first.run()
            let resumed = try run.trainer(out: dir + "/b", steps: 12, resume: "auto")
            try resumed.run()
            XCTAssertEqual(resumed.state.step, 12)
            XCTAssertEqual(snapshot(resumed.state), snapshot(straight.state),
                           "k steps + resume + N-k steps must equal N steps exactly (schedule \(String(describing: schedule)))")
            // Metrics continue where they stopped.
            let lines = try String(contentsOfFile: dir + "/b/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            XCTAssertTrue(lines.last!.contains("\"step\":12"))
            if schedule != nil {
                // The last update (step 11 of a decay ending at 12) used 1e-3 x (1 + cos(8/9 pi)) / 2.
                let record = try JSONSerialization.jsonObject(with: Data(lines.last!.utf8)) as? [String: Any]
                let last = record?["lr"] as? Double ?? .nan
                XCTAssertEqual(last, 1e-3 * (1 + cos(8.0 / 9 * .pi)) / 2, accuracy: 1e-9)
                // Resuming with another schedule is refused, naming it.
                var other = run
                other.config.schedule = nil
                XCTAssertThrowsError(try other.trainer(out: dir + "/b", steps: 14, resume: "auto").run()) { e in
                    XCTAssertTrue("\(e)".contains("schedule.decaySteps 12 vs unset"), "\(e)")
                }
            }
        }
    }

    /// A checkpoint argument: a file, a run directory or its checkpoints directory; anything else
    /// is an error naming the path.
    func testCheckpointArgumentsResolve() throws {
        let dir = temporaryDirectory()
        try TinyRun.makeData(dir + "/data")
        try TinyRun(data: dir + "/data").trainer(out: dir + "/run", steps: 2, checkpointEvery: 1).run()
        let last = dir + "/run/checkpoints/" + CheckpointDirectory.fileName(step: 2)
        XCTAssertEqual(try RunDirectory.checkpoint(dir + "/run"), last)
        XCTAssertEqual(try RunDirectory.checkpoint(dir + "/run/checkpoints"), last)
        let first = dir + "/run/checkpoints/" + CheckpointDirectory.fileName(step: 1)
        XCTAssertEqual(try RunDirectory.checkpoint(first), first)
        XCTAssertThrowsError(try RunDirectory.checkpoint(dir + "/nothing")) {
            XCTAssertTrue("\($0)".contains("nothing") && "\($0)".contains("no such checkpoint"), "\($0)")
        }
        XCTAssertThrowsError(try RunDirectory.checkpoint(dir + "/data")) {
            XCTAssertTrue("\($0)".contains("no checkpoint 'latest'"), "\($0)")
        }
        // The run, from whatever in it a user names.
        for argument in [dir + "/run", dir + "/run/", dir + "/run/checkpoints", first, dir + "/run/metrics.jsonl"] {
            XCTAssertEqual(RunDirectory(resolving: argument).path, dir + "/run", argument)
        }
        XCTAssertEqual(RunDirectory.metrics(dir + "/run/checkpoints"), dir + "/run/metrics.jsonl")
    }

    /// `checkpoint diff`: the same checkpoint is bit-identical to itself in every group; two steps
    /// apart, the parameters differ and the worst tensor is named, and so do the step attributes.
    func testCheckpointComparison() throws {
        let dir = temporaryDirectory()
        try TinyRun.makeData(dir + "/data")
        try TinyRun(data: dir + "/data").trainer(out: dir + "/run", steps: 3, checkpointEvery: 1).run()
        let c = { (step: Int) in dir + "/run/checkpoints/" + CheckpointDirectory.fileName(step: step) }
        let same = try CheckpointComparison.compare(c(3), c(3))
        XCTAssertEqual(same.groups.map(\.name), CheckpointFile.tensorGroups)
        XCTAssertTrue(same.groups.allSatisfy { $0.identical && $0.worst == 0 })
        XCTAssertTrue(same.fields.isEmpty)
        XCTAssertFalse(same.differ(tolerance: 0))
        let apart = try CheckpointComparison.compare(c(1), c(3))
        for name in CheckpointFile.tensorGroups where name != "buffers" {
            let g = apart.groups.first { $0.name == name }!
            XCTAssertFalse(g.identical, name)
            XCTAssertGreaterThan(g.worst, 0, name)
            XCTAssertFalse(g.worstTensor.isEmpty, name)
        }
        XCTAssertEqual(Set(apart.fields.filter { $0.role == .state }.map(\.name)),
                       ["step", "batch_in_epoch", "adam_step", "prior_disc_adam_step"])
        XCTAssertTrue(apart.differ(tolerance: 1))  // the state attributes differ whatever the tolerance
    }

    /// `compare(trim:)` leaves out a tensor's few most different entries (one weight far off passes
    /// with 2% trimmed, and the untrimmed difference still shows it), while a change to every entry
    /// is seen with or without trimming; `ignoring` leaves a named tensor out of every group.
    func testTrimmingAndIgnoring() throws {
        let dir = temporaryDirectory()
        try TinyRun.makeData(dir + "/data")
        let run = try TinyRun(data: dir + "/data").trainer(out: dir + "/run", steps: 1)
        try run.run()
        let info = run.checkpointInfo(loss: 1)
        let state = run.state
        let write = { (path: String) in
            try CheckpointFile.write(path: path, model: state.model, adam: state.adam, discAdam: state.discAdam, info: info)
        }
        let fc = state.model.params.parameters.max { $0.count < $1.count }!
        let values = state.model.params.values! + fc.offset
        try write(dir + "/a.h5")
        let saved = values[7]
        values[7] += 10
        try write(dir + "/one.h5")
        values[7] = saved
        for i in 0..<fc.count { values[i] *= 1 + 1e-3 }
        try write(dir + "/all.h5")
        let one = try CheckpointComparison.compare(dir + "/a.h5", dir + "/one.h5", trim: 0.02)
        let params = one.groups.first { $0.name == "params" }!
        XCTAssertEqual(params.worstUntrimmedTensor, fc.name)
        XCTAssertGreaterThan(params.worstUntrimmed, 1e-3)
        XCTAssertEqual(params.worst, 0)
        XCTAssertFalse(one.differ(tolerance: 1e-6))
        XCTAssertTrue(try CheckpointComparison.compare(dir + "/a.h5", dir + "/one.h5").differ(tolerance: 1e-6))
        let all = try CheckpointComparison.compare(dir + "/a.h5", dir + "/all.h5", trim: 0.02)
        XCTAssertEqual(all.groups.first { $0.name == "params" }!.worstTensor, fc.name)
        XCTAssertTrue(all.differ(tolerance: 1e-4))
        let ignored = try CheckpointComparison.compare(dir + "/a.h5", dir + "/all.h5", ignoring: [fc.name])
        XCTAssertEqual(ignored.groups.first { $0.name == "params" }!.ignored, [fc.name])
        XCTAssertFalse(ignored.differ(tolerance: 0))
    }

    /// Two checkpoints that differ only in one value of the discriminator's Adam moment: the
    /// comparison names that group, and `dim-dist checkpoint diff` exits 1.
    func testDiffSeesTheDiscriminatorsAdamMoment() throws {
        let dir = temporaryDirectory()
        try TinyRun.makeData(dir + "/data")
        let run = try TinyRun(data: dir + "/data").trainer(out: dir + "/run", steps: 2)
        try run.run()
        let info = run.checkpointInfo(loss: 1)
        let state = run.state
        let (a, b) = (dir + "/a.h5", dir + "/b.h5")
        try CheckpointFile.write(path: a, model: state.model, adam: state.adam, discAdam: state.discAdam, info: info)
        state.discAdam.m[3] += 1e-3
        try CheckpointFile.write(path: b, model: state.model, adam: state.adam, discAdam: state.discAdam, info: info)
        let c = try CheckpointComparison.compare(a, b)
        XCTAssertEqual(c.groups.filter { !$0.identical }.map(\.name), ["prior_disc_adam/m"])
        XCTAssertTrue(c.differ(tolerance: 0))
        XCTAssertTrue(c.differ(tolerance: 1e-6))
        XCTAssertTrue(c.fields.isEmpty)
        let binary = checkoutRoot + "/.build/debug/dim-dist"
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw XCTSkip("\(binary) not built") }
        for (other, status) in [(a, Int32(0)), (b, 1)] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: binary)
            p.arguments = ["checkpoint", "diff", a, other, "--tolerance", "1e-6"]
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            try p.run()
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, status, text)
            XCTAssertTrue(text.contains("prior_disc_adam/m"), text)
        }
    }

    /// `--scored-rows` was `--max-negatives`: checkpoints written before the rename still read, and
    /// the old flag still trains (through the binary, as a user's old script would call it).
    func testScoredRowsWasMaxNegatives() throws {
        var config = TinyRun(data: "").config
        config.scoredRows = 3
        let old = config.json.replacingOccurrences(of: "\"scoredRows\"", with: "\"maxNegatives\"")
        XCTAssertTrue(old.contains("maxNegatives"))
        XCTAssertEqual(try TrainConfig(json: old), config)
        let binary = checkoutRoot + "/.build/debug/dim-dist"
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw XCTSkip("\(binary) not built") }
        let dir = temporaryDirectory()
        try TinyRun.makeData(dir + "/data")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["train", "--data", dir + "/data", "--steps", "1", "--batch-size", "8", "--max-negatives", "3",
                       "--conv-channels", "6,8", "--fc-units", "24", "--global-dim", "8", "--mi-units", "16",
                       "--out", dir + "/run"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        let info = try CheckpointFile.readInfo(try HDF5File(try RunDirectory.checkpoint(dir + "/run")))
        XCTAssertEqual(try TrainConfig(json: info.configJSON).scoredRows, 3)
    }

    /// The resume refusal names every setting that differs, Adam's betas included.
    func testResumeNamesEveryDifferentSetting() {
        let base = TinyRun(data: "").config
        var other = base
        other.beta2 = 0.99
        other.model.miUnits = 32
        let d = base.differences(from: other)
        XCTAssertEqual(d, ["beta2 0.99 vs 0.999", "model.miUnits 32 vs 16"])
    }

    func testCheckpointKeepsLastKAndLatest() throws {
        let dir = temporaryDirectory()
        try TinyRun.makeData(dir + "/data")
        let t = try TinyRun(data: dir + "/data").trainer(out: dir + "/run", steps: 6, checkpointEvery: 1)
        try t.run()
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/run/checkpoints")
            .filter { $0.hasSuffix(".h5") }.sorted()
        XCTAssertEqual(files, ["ckpt-00000004.h5", "ckpt-00000005.h5", "ckpt-00000006.h5"])
        XCTAssertEqual(t.checkpoints.latestName(), "ckpt-00000006.h5")
    }

    func testDivergenceStopsWithTheStepAndLeavesTheCheckpoint() throws {
        let dir = temporaryDirectory()
        try TinyRun.makeData(dir + "/data")
        let run = TinyRun(data: dir + "/data")
        let t = try run.trainer(out: dir + "/run", steps: 2)
        try t.run()
        let good = try Data(contentsOf: URL(fileURLWithPath: t.checkpoints.latest()!))
        let w = t.state.model.params["local_mi.conv_b.weight"]!
        w.value.data[3] = .nan
        XCTAssertThrowsError(try t.trainStep()) { e in
            XCTAssertTrue("\(e)".contains("step 3"), "\(e)")
            XCTAssertTrue("\(e)".contains("nan") || "\(e)".contains("NaN"), "\(e)")
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: t.checkpoints.latest()!)), good)
        // The last good checkpoint still resumes.
        let r = try run.trainer(out: dir + "/run", steps: 3, resume: "auto")
        try r.run()
        XCTAssertEqual(r.state.step, 3)
    }

    /// A checkpoint that cannot be used is a one-line error naming the file, never a fresh start.
    func testBadCheckpoints() throws {
        let dir = temporaryDirectory()
        try TinyRun.makeData(dir + "/data")
        let run = TinyRun(data: dir + "/data")
        try run.trainer(out: dir + "/run", steps: 2).run()
        let ckpt = dir + "/run/checkpoints/ckpt-00000002.h5"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: ckpt))
        func expectError(_ path: String, _ words: [String], run r: TinyRun? = nil, file: StaticString = #filePath,
                         line: UInt = #line) {
            do {
                let t = try (r ?? run).trainer(out: dir + "/other", steps: 4, resume: path)
                try t.run()
                XCTFail("resume from \(path) should fail", file: file, line: line)
            } catch {
                let text = "\(error)"
                XCTAssertFalse(text.contains("\n"), text, file: file, line: line)
                for w in words { XCTAssertTrue(text.contains(w), "'\(text)' should mention '\(w)'", file: file,
                                               line: line) }
            }
        }
        expectError(dir + "/nope.h5", ["nope.h5", "no such file"])
        let truncated = dir + "/truncated.h5"
        XCTAssertTrue(FileManager.default.createFile(atPath: truncated, contents: bytes.prefix(bytes.count / 2)),
                      "could not write a test file")
        expectError(truncated, ["truncated.h5"])
        // Corrupt tensor bytes: flip a run of bytes in the params data area.
        var corrupt = bytes
        let f = try HDF5File(ckpt)
        let (w, _): ([Float], [Int]) = try f.read("params/local_mi.conv_b.weight")
        let needle = w.withUnsafeBytes { Data($0.prefix(16)) }
        let at = corrupt.range(of: needle)!.lowerBound
        for i in at..<(at + 16) { corrupt[i] ^= 0x5A }
        let corruptPath = dir + "/corrupt.h5"
        XCTAssertTrue(FileManager.default.createFile(atPath: corruptPath, contents: corrupt),
                      "could not write a test file")
        expectError(corruptPath, ["corrupt.h5", "corrupted"])
        // A different model width.
        var wider = run
        wider.config.model.miUnits = 20
        expectError(ckpt, ["ckpt-00000002.h5", "different configuration", "model.miUnits 16 vs"], run: wider)
        // A different dataset.
        try TinyRun.makeData(dir + "/data2", seed: 9)
        expectError(ckpt, ["ckpt-00000002.h5", "different dataset"], run: TinyRun(data: dir + "/data2"))
        // An unknown format version, and an interrupted write.
        let future = dir + "/future.h5"
        XCTAssertTrue(FileManager.default.createFile(atPath: future, contents: bytes), "could not write a test file")
        try HDF5File(future, mode: .readWrite).setAttribute("format", "dim-dist-checkpoint/9")
        expectError(future, ["future.h5", "unknown checkpoint format"])
        let partial = dir + "/partial.h5"
        try CheckpointFile.write(path: partial, model: DIMModel(config: run.config.model), adam: Adam(count: 1),
                                 discAdam: Adam(count: 1), info: .init())
        try HDF5File(partial, mode: .readWrite).deleteAttribute("complete")
        expectError(partial, ["partial.h5", "incomplete"])
        // Not a checkpoint at all.
        expectError(dir + "/data/train-00.h5", ["train-00.h5", "not a dim-dist checkpoint"])
    }

    func testKilledWhileWritingLeavesThePreviousCheckpoint() throws {
        let binary = checkoutRoot + "/.build/debug/dim-dist"
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw XCTSkip("\(binary) not built") }
        let dir = temporaryDirectory()
        try TinyRun.makeData(dir + "/data", count: 64)
        // A model large enough that each checkpoint takes a while to write, one every step.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["train", "--data", dir + "/data", "--batch-size", "8", "--steps", "1000",
                       "--checkpoint-every", "1",
                       "--mi-units", "1024", "--fc-units", "1024", "--conv-channels", "64,128", "--out", dir + "/run",
                       "--log-every", "1000"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        // Told by the kernel (inotify) when a file appears in the checkpoint directory: the kill
        // lands while a temporary checkpoint is being written, once an earlier one exists.
        let ckdir = dir + "/run/checkpoints"
        try FileManager.default.createDirectory(atPath: ckdir, withIntermediateDirectories: true)
        let watch = inotify_init1(Int32(IN_CLOEXEC))
        XCTAssertGreaterThanOrEqual(watch, 0)
        defer { close(watch) }
        XCTAssertGreaterThanOrEqual(inotify_add_watch(watch, ckdir, UInt32(IN_CREATE)), 0)
        try p.run()
        var killedDuringWrite = false
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = Date().addingTimeInterval(120)
        waiting: while Date() < deadline && p.isRunning {
            var ready = pollfd(fd: watch, events: Int16(POLLIN), revents: 0)
            guard poll(&ready, 1, 1000) > 0 else { continue }
            let n = read(watch, &buffer, buffer.count)
            var offset = 0
            while offset + 16 <= n {  // struct inotify_event: wd, mask, cookie, len, then the name
                let nameLength = buffer.withUnsafeBytes { Int($0.load(fromByteOffset: offset + 12, as: UInt32.self)) }
                let name = String(decoding: buffer[(offset + 16)..<(offset + 16 + nameLength)].prefix { $0 != 0 },
                                  as: UTF8.self)
                offset += 16 + nameLength
                let latestExists = FileManager.default.fileExists(atPath: ckdir + "/latest")
                if name.hasPrefix(".ckpt") && name.contains(".tmp-") && latestExists {
                    kill(p.processIdentifier, SIGKILL)
                    killedDuringWrite = true
                    break waiting
                }
            }
        }
        p.waitUntilExit()
        XCTAssertTrue(killedDuringWrite, "the writer was not caught mid-write")
        let names = try FileManager.default.contentsOfDirectory(atPath: ckdir)
        XCTAssertTrue(names.contains(where: { $0.contains(".tmp-") }),
                      "the interrupted temporary file should be left behind, unnamed")
        let latest = CheckpointDirectory(path: ckdir).latest()!
        let f = try HDF5File(latest)
        let info = try CheckpointFile.readInfo(f)
        let cfg = try JSONDecoder().decode(TrainConfig.self, from: Data(info.configJSON.utf8))
        let state = TrainingState(config: cfg)
        try CheckpointFile.load(f, model: state.model, adam: state.adam, discAdam: state.discAdam, info: info)
        XCTAssertGreaterThan(info.step, 0)
    }
}
