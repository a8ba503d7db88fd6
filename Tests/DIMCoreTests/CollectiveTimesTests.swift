import XCTest
@testable import DIMCore

/// CollectiveTimes by call of the step (`dim-dist bench`'s "where the ranks waited"): the sites
/// follow a step's calls in order and add up over steps to the times by kind; steps that made
/// different calls leave no sites to compare; calls outside the timed steps count nowhere.
final class CollectiveTimesTests: XCTestCase {
    private func call(_ times: CollectiveTimes, _ name: StaticString, _ count: Int) {
        times.collectiveBegan(name, count: count)
        times.collectiveEnded()
    }

    private func step(_ times: CollectiveTimes, _ calls: [(StaticString, Int)]) {
        times.beginStep()
        for (name, count) in calls { call(times, name, count) }
    }

    private let calls: [(StaticString, Int)] = [("MPI_Allreduce (sum, double)", 128), ("MPI_Barrier", 0),
                                                ("MPI_Allreduce (sum, double)", 2048)]

    func testSitesFollowTheStepsCallsInOrder() {
        let times = CollectiveTimes()
        times.enabled = true
        for _ in 0..<3 { step(times, calls) }
        XCTAssertTrue(times.sitesMatch)
        XCTAssertEqual(times.sites.map(\.name), calls.map { $0.0.description })
        XCTAssertEqual(times.sites.map(\.count), [128, 0, 2048])
        let bySite = times.sites.reduce(0) { $0 + $1.seconds }
        let byKind = times.byName.values.reduce(0) { $0 + $1.seconds }
        XCTAssertEqual(bySite, byKind, accuracy: 1e-12)
        XCTAssertEqual(times.byName["MPI_Allreduce (sum, double)"]?.calls, 6)
        // Each call ends after the one before it, in every step.
        XCTAssertLessThanOrEqual(times.sites[0].endOffset, times.sites[1].endOffset)
        XCTAssertLessThanOrEqual(times.sites[1].endOffset, times.sites[2].endOffset)
        let lines = times.sitesSummary(steps: 3, comm: SingleProcess())
        XCTAssertEqual(lines.map(\.index), [0, 1, 2])
        for (line, site) in zip(lines, times.sites) {
            XCTAssertEqual(line.meanSeconds, site.seconds / 3, accuracy: 1e-15)
            XCTAssertEqual(line.leastSeconds, line.meanSeconds)
            XCTAssertEqual(line.mostSeconds, line.meanSeconds)
            XCTAssertEqual(line.endOffset, site.endOffset / 3, accuracy: 1e-15)
        }
    }

    func testStepsThatMadeDifferentCallsHaveNoSites() {
        let other: [[(StaticString, Int)]] = [
            calls + [("MPI_Allgather", 64)],                 // one call more
            Array(calls.dropLast()),                         // one call fewer
            [calls[0], ("MPI_Barrier", 0), ("MPI_Allreduce (sum, double)", 512)],  // another count
            [calls[0], ("MPI_Allreduce (max)", 0), calls[2]],                      // another collective
        ]
        for (k, second) in other.enumerated() {
            for order in [[calls, second], [second, calls]] {
                let times = CollectiveTimes()
                times.enabled = true
                for c in order { step(times, c) }
                XCTAssertTrue(times.sitesSummary(steps: 2, comm: SingleProcess()).isEmpty, "variant \(k)")
            }
        }
    }

    func testCallsOutsideTimedStepsCountNowhere() {
        let times = CollectiveTimes()
        step(times, calls)  // not enabled: a warm-up step
        XCTAssertTrue(times.byName.isEmpty)
        XCTAssertTrue(times.sites.isEmpty)
        times.enabled = true
        step(times, calls)
        times.enabled = false
        call(times, "MPI_Barrier", 0)  // between rounds
        XCTAssertEqual(times.sites.count, 3)
        XCTAssertEqual(times.sitesSummary(steps: 1, comm: SingleProcess()).count, 3)
        times.reset()
        XCTAssertTrue(times.sites.isEmpty)
        XCTAssertTrue(times.byName.isEmpty)
    }
}
