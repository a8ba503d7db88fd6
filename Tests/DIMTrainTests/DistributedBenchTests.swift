import XCTest
import DIMTestSupport
import DIMCore
import DIMMPI
@testable import DIMTrain

/// `dim-dist bench` under mpirun (.ci/run runs it with 2 and 4 ranks): what it says about the
/// collectives. Single-process, it checks that one rank reports none.
final class DistributedBenchTests: XCTestCase {
    /// The step's "(of which in collectives)" covers the timed steps only (not the barriers
    /// between rounds, which wait for the slowest rank's warm-up and reference GEMM), and the
    /// breakdown by kind, timed by the communicator's observer, adds up to it on every rank; each
    /// rank's own time per kind lies between the least and the most over the ranks; the same
    /// by call of the step.
    /// Under mpirun on one host (CI), the step shards the update (OptimizerSharding.auto).
    func testCollectivesAreTimedByKindOverTheTimedStepsOnly() throws {
        let times = CollectiveTimes()
        let comm: Communicator = MPICommunicator.launchedWithSeveralRanks ? MPICommunicator(observer: times)
            : SingleProcess()
        let config = EquivalenceFixture().trainConfig(LossConfig(estimator: .jsd, beta: 1, alpha: 0.5, gamma: 0.1))
        let r = try runBenchmark(config, steps: 2, warmup: 1, rounds: 2, comm: comm, collectiveTimes: times,
                                 log: { _ in })
        guard comm.size > 1 else {
            XCTAssertTrue(r.collectives.isEmpty)
            XCTAssertTrue(r.collectiveSites.isEmpty)
            return
        }
        let inCollectives = try XCTUnwrap(r.phases.first { $0.0 == "(of which in collectives)" }).1
        let byKind = times.byName.values.reduce(0) { $0 + $1.seconds } / Double(r.steps)
        // The observer's clock starts just before the communicator's and stops just after it (a
        // rank descheduled between the two, with 4 ranks on 2 cores, adds up to a time slice).
        XCTAssertGreaterThanOrEqual(byKind, inCollectives, "rank \(comm.rank)")
        XCTAssertLessThan(byKind - inCollectives, 1e-3 + 0.05 * inCollectives, "rank \(comm.rank)")
        // The only barriers timed are the step's own: two with the update sharded over the host's
        // ranks (before the shard sums, before taking the others' shards), none without.
        XCTAssertEqual(times.byName["MPI_Barrier"]?.calls ?? 0, (r.shardedUpdate ? 2 : 0) * r.steps,
                       "rank \(comm.rank)")
        // BatchNorm's moments are summed over ranks in every step; so are the losses.
        let moments = try XCTUnwrap(r.collectives.first { $0.name == "MPI_Allreduce (sum, double)" })
        XCTAssertGreaterThanOrEqual(moments.calls, 2)
        // The same time by call of the step: every timed step made the same calls, and each
        // call's time lies between the least and the most over the ranks.
        let calls = times.byName.values.reduce(0) { $0 + $1.calls }
        XCTAssertEqual(r.collectiveSites.count * r.steps, calls, "rank \(comm.rank)")
        XCTAssertEqual(r.collectiveSites.map(\.index), Array(0..<r.collectiveSites.count))
        XCTAssertEqual(times.sites.reduce(0) { $0 + $1.seconds }, times.byName.values.reduce(0) { $0 + $1.seconds },
                       accuracy: 1e-9)
        for (line, next) in zip(r.collectiveSites, r.collectiveSites.dropFirst()) {
            XCTAssertLessThanOrEqual(line.endOffset, next.endOffset * (1 + 1e-12), "calls \(line.index) and \(next.index)")
        }
        for line in r.collectiveSites {
            let own = times.sites[line.index].seconds / Double(r.steps)
            XCTAssertLessThanOrEqual(line.leastSeconds, own * (1 + 1e-12), "call \(line.index), rank \(comm.rank)")
            XCTAssertGreaterThanOrEqual(line.mostSeconds, own * (1 - 1e-12), "call \(line.index), rank \(comm.rank)")
        }
        for line in r.collectives {
            let own = (times.byName[line.name]?.seconds ?? 0) / Double(r.steps)
            XCTAssertLessThanOrEqual(line.leastSeconds, own * (1 + 1e-12), "\(line.name), rank \(comm.rank)")
            XCTAssertGreaterThanOrEqual(line.mostSeconds, own * (1 - 1e-12), "\(line.name), rank \(comm.rank)")
            XCTAssertLessThanOrEqual(line.leastSeconds, line.meanSeconds * (1 + 1e-12), line.name)
            XCTAssertLessThanOrEqual(line.meanSeconds, line.mostSeconds * (1 + 1e-12), line.name)
        }
    }
}
