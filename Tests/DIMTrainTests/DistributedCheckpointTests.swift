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

    func paramsRelativeError(_ a: TrainingState, _ b: TrainingState) -> (Double, String) {
        var worst = (0.0, "")
        for (p, q) in zip(a.model.params.parameters + a.model.discParams.parameters,
                          b.model.params.parameters + b.model.discParams.parameters) {
            let e = relativeDifference(p.value.array, q.value.array)
            if e > worst.0 { worst = (e, p.name) }
        }
        return worst
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
    }

    func testResumeOnADifferentNumberOfRanks() throws {
        let (dir, run, straight) = try straightAndHalfway()
        // Saved by np ranks, resumed by one process.
        if comm.isRoot {
            let single = try run.trainer(out: dir + "/c", steps: 10, comm: SingleProcess(),
                                         resume: dir + "/b/checkpoints/ckpt-00000005.h5")
            try single.run()
            let (err, name) = paramsRelativeError(straight.state, single.state)
            print("resume np=\(comm.size) -> np=1: worst relative difference \(sci(err)) (\(name))")
            XCTAssertLessThan(err, 1e-4, "saved at np=\(comm.size), resumed at np=1: \(name)")
        }
        // Saved by one process, resumed by np ranks.
        if comm.isRoot { try run.trainer(out: dir + "/d", steps: 5, comm: SingleProcess()).run() }
        comm.barrier()
        let resumed = try run.trainer(out: dir + "/d", steps: 10, comm: comm,
                                      resume: dir + "/d/checkpoints/ckpt-00000005.h5")
        try resumed.run()
        let (err, name) = paramsRelativeError(straight.state, resumed.state)
        if comm.isRoot { print("resume np=1 -> np=\(comm.size): worst relative difference \(sci(err)) (\(name))") }
        XCTAssertLessThan(err, 1e-4, "saved at np=1, resumed at np=\(comm.size): \(name)")
        comm.barrier()
    }
}
