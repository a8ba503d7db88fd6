import Foundation
import XCTest
import DIMTestSupport
import DIMCore
import DIMIO
@testable import DIMTrain

/// Preemption, time-based checkpoints and checkpoint writes on a full disk (issue: survive faults).
final class FaultTests: XCTestCase {
    /// `dim-dist train > log`: each progress line is in the file as soon as it is printed (with C's
    /// default 4 KB buffer for files, the first ~58 step lines arrived at once), and SIGTERM then
    /// stops the run with a checkpoint (exit status 75).
    func testProgressReachesARedirectedLogAsItIsPrinted() throws {
        let binary = checkoutRoot + "/.build/debug/dim-dist"
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw XCTSkip("\(binary) not built") }
        let dir = temporaryDirectory()
        try TinyRun.makeData(dir + "/data")
        let log = dir + "/log"
        XCTAssertTrue(FileManager.default.createFile(atPath: log, contents: nil), "could not write a test file")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["train", "--data", dir + "/data", "--steps", "1000000", "--batch-size", "8", "--log-every", "1",
                       "--conv-channels", "6,8", "--fc-units", "24", "--global-dim", "8", "--mi-units", "16",
                       "--out", dir + "/run"]
        p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardError = FileHandle.nullDevice
        try p.run()
        // A block-buffered file receives its first 4 KB at once (~58 step lines, the last one cut);
        // line by line, the log holds whole lines only and grows a few at a time (a tiny model's
        // step takes about a millisecond, so the poll is short).
        var firstSeen = 0, firstText = ""
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline && p.isRunning && firstSeen == 0 {
            usleep(2_000)
            firstText = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            firstSeen = firstText.split(separator: "\n").filter { $0.hasPrefix("epoch ") }.count
        }
        XCTAssertTrue(p.isRunning, "the run ended before a step line reached the log")
        XCTAssertGreaterThan(firstSeen, 0, "no step line in the log after two minutes")
        XCTAssertTrue(firstText.hasSuffix("\n"), "the log's first write ended inside a line: \(firstText.suffix(80))")
        XCTAssertLessThan(firstSeen, 40, "step lines arrive in chunks: \(firstSeen) appeared at once")
        p.terminate()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, StopSignals.exitStatus)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        XCTAssertTrue(text.contains("SIGTERM received: stopping after step"), text)
    }

    func testAStopSignalCheckpointsAndTheResumedRunEqualsAnUninterruptedOne() throws {
        let dir = temporaryDirectory()
        try TinyRun.makeData(dir + "/data")
        let run = TinyRun(data: dir + "/data")
        StopSignals.install()
        defer { StopSignals.received = 0 }
        // A real SIGUSR1 while the run is under way (as Slurm's --signal sends it).
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.3) { kill(getpid(), SIGUSR1) }
        let stopped = try run.trainer(out: dir + "/b", steps: 1_000_000)
        XCTAssertEqual(try stopped.run(), .stopped(SIGUSR1))
        let s = stopped.state.step
        XCTAssertGreaterThan(s, 0)
        XCTAssertEqual(stopped.checkpoints.latestName(), CheckpointDirectory.fileName(step: s), "no step lost")
        StopSignals.received = 0
        let resumed = try run.trainer(out: dir + "/b", steps: s + 5, resume: "auto")
        XCTAssertEqual(try resumed.run(), .finished)
        let straight = try run.trainer(out: dir + "/a", steps: s + 5)
        try straight.run()
        XCTAssertEqual(snapshot(resumed.state), snapshot(straight.state))
    }

    func testCheckpointsEveryFewSeconds() throws {
        let (dir, t) = try TinyRun.untilTimeLimit {
            $0.checkpointInterval = 0.2
            $0.timeLimit = 1.1
            $0.keepCheckpoints = 100
        }
        try t.run()
        let files = CheckpointDirectory(path: dir + "/run/checkpoints").all()
        XCTAssertGreaterThanOrEqual(files.count, 4, "about one every 0.2 s over 1.1 s, plus the final one")
    }

    /// A checkpoint directory on a tmpfs with room for one and a half checkpoints: the first
    /// write succeeds, the second runs out of space; the error is clear and the first checkpoint,
    /// with `latest` pointing to it, stays whole. Needs root (mount).
    func testAFullDiskKeepsThePreviousCheckpoint() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root to mount a small tmpfs") }
        let dir = temporaryDirectory()
        try TinyRun.makeData(dir + "/data")
        let run = TinyRun(data: dir + "/data")
        try run.trainer(out: dir + "/probe", steps: 1).run()
        let size = try FileManager.default.attributesOfItem(
            atPath: CheckpointDirectory(path: dir + "/probe/checkpoints").all()[0])[.size] as! Int
        let mountPoint = dir + "/run/checkpoints"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let kib = (size * 3 / 2) / 1024 + 8
        guard shell("mount -t tmpfs -o size=\(kib)k tmpfs \(mountPoint)") == 0 else { throw XCTSkip("mount failed") }
        defer { _ = shell("umount \(mountPoint)") }
        let t = try run.trainer(out: dir + "/run", steps: 6, checkpointEvery: 2)
        XCTAssertThrowsError(try t.run()) { error in
            XCTAssertTrue("\(error)".contains(mountPoint), "the error names the file: \(error)")
        }
        let ckpts = CheckpointDirectory(path: mountPoint)
        XCTAssertEqual(ckpts.latestName(), CheckpointDirectory.fileName(step: 2))
        let f = try HDF5File(ckpts.latest()!)
        let state = TrainingState(config: run.config)
        try CheckpointFile.load(f, model: state.model, adam: state.adam, discAdam: state.discAdam,
                                info: try CheckpointFile.readInfo(f))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: mountPoint).filter { $0.hasPrefix(".") }
        XCTAssertEqual(leftovers, [], "no temporary file is left behind")
    }
}

private func shell(_ command: String) -> Int32 {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", command]
    try? p.run()
    p.waitUntilExit()
    return p.terminationStatus
}
