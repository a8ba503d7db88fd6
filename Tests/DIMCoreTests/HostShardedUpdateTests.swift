import XCTest
import DIMTestSupport
@testable import DIMCore

/// HostShardedUpdate on in-process ranks (threads sharing one buffer, as the ranks of a host
/// share an MPI window): each rank's shard is the sum over ranks, the shards cover the store
/// once, a non-finite sum on any shard stops every rank, and every rank ends with every rank's
/// shard of the parameters.
final class HostShardedUpdateTests: XCTestCase {
    /// A store of odd-sized tensors (1945 values: the shards do not divide evenly).
    func makeStore() -> ParameterStore {
        let store = ParameterStore()
        for (k, n) in [300, 40, 700, 5, 900].enumerated() { _ = store.declare("p\(k)", [n], .zeros) }
        store.allocate(seed: 0)
        return store
    }

    func testShardsCoverTheStoreOnceInWholeLines() {
        for (count, parts) in [(1945, 3), (1945, 2), (16, 4), (0, 2), (5_650_000, 8)] {
            let shards = HostShardedUpdate.split(count, parts: parts)
            XCTAssertEqual(shards.count, parts)
            XCTAssertEqual(shards.first?.lowerBound, 0)
            XCTAssertEqual(shards.last?.upperBound, count)
            for (a, b) in zip(shards, shards.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound) }
            for s in shards.dropLast() { XCTAssertEqual(s.upperBound % 16, 0, "\(count)/\(parts): \(shards)") }
        }
    }

    /// Gradient i on rank r is (r + 1) * (i % 5 + 1): the sum over 3 ranks is 6 * (i % 5 + 1); in
    /// the slices summed by backward each rank keeps its own value. Parameters: rank r sets its
    /// shard to r + 1 (others to -1); after shareParameters every rank holds owner + 1 everywhere.
    func testEachRankSumsItsShardAndGetsEveryShardsParameters() {
        let summed = [340..<1040, 1500..<1600]
        let results = InProcessGroup.run(ranks: 3) { comm -> (shard: Range<Int>, grads: [Float], params: [Float], finite: Bool) in
            let store = self.makeStore()
            for i in 0..<store.count { store.grads![i] = Float((comm.rank + 1) * (i % 5 + 1)) }
            let update = HostShardedUpdate(comm: comm, store: store, summedByBackward: summed)!
            XCTAssertEqual(store.parameters[2].grad.data, store.grads! + store.parameters[2].offset)
            let finite = update.sumShard()
            for i in 0..<store.count { store.values![i] = update.shard.contains(i) ? Float(comm.rank + 1) : -1 }
            update.shareParameters()
            return (update.shard, Array(UnsafeBufferPointer(start: store.grads!, count: store.count)),
                    Array(UnsafeBufferPointer(start: store.values!, count: store.count)), finite)
        }
        XCTAssertEqual(results.map(\.shard.count).reduce(0, +), 1945)
        for (r, result) in results.enumerated() {
            XCTAssertTrue(result.finite)
            for i in result.shard {
                let expected = Float((summed.contains { $0.contains(i) } ? r + 1 : 6) * (i % 5 + 1))
                XCTAssertEqual(result.grads[i], expected, "rank \(r), gradient \(i)")
                if result.grads[i] != expected { break }
            }
            let owners = (0..<1945).map { i in results.firstIndex { $0.shard.contains(i) }! }
            XCTAssertEqual(result.params, owners.map { Float($0 + 1) }, "rank \(r)'s parameters")
        }
    }

    /// An infinite gradient on one rank, in another rank's shard: every rank learns of it.
    func testANonFiniteSumStopsEveryRank() {
        for bad in [Float.infinity, .nan] {
            let verdicts = InProcessGroup.run(ranks: 2) { comm -> Bool in
                let store = self.makeStore()
                let update = HostShardedUpdate(comm: comm, store: store)!
                if comm.rank == 0 { store.grads![1900] = bad }  // rank 1's shard
                return update.sumShard()
            }
            XCTAssertEqual(verdicts, [false, false], "\(bad)")
        }
    }

    /// Adam's moments: each rank updates its own shard's; gatherMoments gives every rank all.
    func testGatherMomentsCompletesEveryRanksAdam() {
        let moments = InProcessGroup.run(ranks: 3) { comm -> [Float] in
            let store = self.makeStore()
            for i in 0..<store.count { store.grads![i] = Float(i % 7 + 1) }
            let update = HostShardedUpdate(comm: comm, store: store)!
            let adam = Adam(count: store.count)
            adam.update(store, range: update.shard)
            update.gatherMoments(adam)
            return Array(UnsafeBufferPointer(start: adam.m, count: store.count))
                + Array(UnsafeBufferPointer(start: adam.v, count: store.count))
        }
        let g: [Float] = (0..<1945).map { Float($0 % 7 + 1) }
        let c2: Float = 1 - 0.999
        let expected: [Float] = g.map { 0.5 * $0 } + g.map { c2 * $0 * $0 }
        for (r, m) in moments.enumerated() { XCTAssertEqual(m, expected, "rank \(r)") }
    }

    /// Where it runs: several ranks on one host, gradients in fp32.
    func testShardingRunsOnlyOnOneHostInFP32() throws {
        let answers = try InProcessGroup.run(ranks: 2, hosts: 2) { comm -> [Bool] in
            XCTAssertThrowsError(try OptimizerSharding.host.shards(comm: comm, gradientPrecision: .fp32))
            return [try OptimizerSharding.auto.shards(comm: comm, gradientPrecision: .fp32)]
        }
        XCTAssertEqual(answers, [[false], [false]])
        let oneHost = try InProcessGroup.run(ranks: 2) { comm -> [Bool] in
            XCTAssertThrowsError(try OptimizerSharding.host.shards(comm: comm, gradientPrecision: .bf16))
            return [try OptimizerSharding.auto.shards(comm: comm, gradientPrecision: .fp32),
                    try OptimizerSharding.auto.shards(comm: comm, gradientPrecision: .bf16),
                    try OptimizerSharding.off.shards(comm: comm, gradientPrecision: .fp32),
                    try OptimizerSharding.host.shards(comm: comm, gradientPrecision: .fp32)]
        }
        XCTAssertEqual(oneHost, [[true, false, false, true], [true, false, false, true]])
        XCTAssertFalse(try OptimizerSharding.host.shards(comm: SingleProcess(), gradientPrecision: .fp32))
        XCTAssertNil(HostShardedUpdate(comm: SingleProcess(), store: makeStore()))
    }
}
