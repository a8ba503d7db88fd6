import Foundation
import XCTest
import DIMTestSupport
import DIMCore
import DIMIO
@testable import DIMTrain

/// Checkpoints under mpirun (.ci/run runs these with 2 and 4 ranks): exact resume at the same
/// number of ranks, and resume on a different number of ranks.
final class DistributedCheckpointTests: XCTestCase {
    var comm: Communicator { DistributedEquivalenceTests.comm }

    /// A directory every rank sees (rank 0 creates it and sends the path), with a dataset in it.
    func sharedDirectory() throws -> String {
        var buffer = [UInt8](repeating: 0, count: 512)
        if comm.isRoot {
            let dir = temporaryDirectory()
            try TinyRun.makeData(dir + "/data")
            buffer.replaceSubrange(0..<dir.utf8.count, with: Array(dir.utf8))
        }
        comm.broadcast(&buffer, bytes: buffer.count, root: 0)
        return String(decoding: buffer.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// The final checkpoint of a run directory.
    func checkpoint(_ out: String, step: Int = 10) -> String {
        out + "/checkpoints/" + CheckpointDirectory.fileName(step: step)
    }

    /// Under mpirun: `Trainer.run` on np ranks against one process (rank 0, on its own), for every
    /// estimator with the global term and prior matching on, all rows and K = 3 of 8; the
    /// checkpoints compared whole (TrainerEquivalenceTests does the same with in-process ranks).
    func testTrainerUnderMPIMatchesOneProcess() throws {
        guard comm.size > 1 else { throw XCTSkip("multi-rank test: run under mpirun (.ci/run does)") }
        let dir = try sharedDirectory()
        for (estimator, rows) in TrainerEquivalenceTests.cases {
            var run = TinyRun(data: dir + "/data")
            run.config = TrainerEquivalenceTests.config(estimator, scoredRows: rows, data: dir + "/data")
            let tag = "\(dir)/\(estimator.rawValue)-\(rows.map(String.init) ?? "all")"
            try run.trainer(out: tag + "-np", steps: 4, comm: comm).run()
            if comm.isRoot {
                try run.trainer(out: tag + "-1", steps: 4, comm: SingleProcess()).run()
                let (err, name) = try TrainerEquivalenceTests.worst(checkpoint(tag + "-1", step: 4),
                                                                    checkpoint(tag + "-np", step: 4),
                                                                    estimator: estimator)
                print("trainer under mpirun np=\(comm.size) \(tag.split(separator: "/").last!): worst relative "
                      + "difference \(sci(err)) (\(name))")
                XCTAssertLessThan(err, TrainerEquivalenceTests.fp32Bound, "\(tag) np=\(comm.size): \(name)")
            }
            comm.barrier()
        }
    }

    /// On np ranks: 10 steps straight into dir/a, and 5 steps into dir/b (the checkpoint to resume).
    func straightAndHalfway() throws -> (dir: String, run: TinyRun, straight: Trainer) {
        guard comm.size > 1 else { throw XCTSkip("multi-rank test: run under mpirun (.ci/run does)") }
        let dir = try sharedDirectory()
        let run = TinyRun(data: dir + "/data")
        let straight = try run.trainer(out: dir + "/a", steps: 10, comm: comm)
        try straight.run()
        try run.trainer(out: dir + "/b", steps: 5, comm: comm).run()
        return (dir, run, straight)
    }

    func testResumeAtTheSameRanksIsBitIdentical() throws {
        let (dir, run, straight) = try straightAndHalfway()
        let resumed = try run.trainer(out: dir + "/b", steps: 10, comm: comm, resume: "auto")
        try resumed.run()
        XCTAssertEqual(snapshot(resumed.state), snapshot(straight.state), "rank \(comm.rank): resume must be exact")
        comm.barrier()
        if comm.isRoot {  // the files too: every tensor group and state attribute
            let c = try CheckpointComparison.compare(checkpoint(dir + "/a"), checkpoint(dir + "/b"))
            XCTAssertFalse(c.differ(tolerance: 0), "\(c.groups.filter { !$0.identical }.map(\.name)) "
                           + "\(c.fields.map(\.name))")
        }
        comm.barrier()
    }

    func testResumeOnADifferentNumberOfRanks() throws {
        let (dir, run, _) = try straightAndHalfway()
        // Saved by np ranks, resumed by one process.
        if comm.isRoot {
            let single = try run.trainer(out: dir + "/c", steps: 10, comm: SingleProcess(),
                                         resume: dir + "/b/checkpoints/ckpt-00000005.h5")
            try single.run()
            let (err, name) = try TrainerEquivalenceTests.worst(checkpoint(dir + "/a"), checkpoint(dir + "/c"),
                                                                estimator: run.config.loss.estimator)
            print("resume np=\(comm.size) -> np=1: worst relative difference \(sci(err)) (\(name))")
            XCTAssertLessThan(err, TrainerEquivalenceTests.fp32Bound,
                              "saved at np=\(comm.size), resumed at np=1: \(name)")
        }
        // Saved by one process, resumed by np ranks.
        if comm.isRoot { try run.trainer(out: dir + "/d", steps: 5, comm: SingleProcess()).run() }
        comm.barrier()
        let resumed = try run.trainer(out: dir + "/d", steps: 10, comm: comm,
                                      resume: dir + "/d/checkpoints/ckpt-00000005.h5")
        try resumed.run()
        comm.barrier()
        if comm.isRoot {
            let (err, name) = try TrainerEquivalenceTests.worst(checkpoint(dir + "/a"), checkpoint(dir + "/d"),
                                                                estimator: run.config.loss.estimator)
            print("resume np=1 -> np=\(comm.size): worst relative difference \(sci(err)) (\(name))")
            XCTAssertLessThan(err, TrainerEquivalenceTests.fp32Bound,
                              "saved at np=1, resumed at np=\(comm.size): \(name)")
        }
        comm.barrier()
    }
}
