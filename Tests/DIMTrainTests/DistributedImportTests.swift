import Foundation
import XCTest
import DIMCore
import DIMIO
import DIMMPI
import DIMTestSupport

/// `data import --format folder` under mpirun: each rank decodes a share of the files, and the
/// dataset must be byte-identical to a single-process import (same shard checksums).
final class DistributedImportTests: XCTestCase {
    func testAFolderImportIsTheSameOnAnyNumberOfRanks() throws {
        let comm = DistributedEquivalenceTests.comm
        guard comm.size > 1 else { throw XCTSkip("multi-rank test: run under mpirun (.ci/run does)") }
        // Rank 0 makes the tree; every rank learns its path.
        var path = [UInt8](repeating: 0, count: 512)
        if comm.isRoot {
            let root = try makeImageFolder(temporaryDirectory() + "/src", perClass: 7, testPerClass: 3)
            path.replaceSubrange(0..<root.utf8.count, with: Array(root.utf8))
        }
        path.withUnsafeMutableBytes { comm.broadcast($0.baseAddress!, bytes: 512, root: 0) }
        let source = String(decoding: path.prefix { $0 != 0 }, as: UTF8.self)
        var importer = FolderImport()
        importer.block = 2   // several rounds, and ranks with no file in the last one
        let together = try importer.run(source: source, out: source + "-together", comm: comm, log: { _ in })
        if comm.isRoot {
            let alone = try importer.run(source: source, out: source + "-alone", comm: SingleProcess(), log: { _ in })
            XCTAssertEqual(together.fingerprint, alone.fingerprint, "np=\(comm.size) vs one process")
            XCTAssertEqual(together.splits["train"]?.count, 14)
            XCTAssertEqual(together.splits["train"]?.mean, alone.splits["train"]?.mean)
        }
        comm.barrier()
    }
}
