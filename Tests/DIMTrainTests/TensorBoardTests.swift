import Foundation
import XCTest
import DIMTestSupport
import DIMCore
@testable import DIMTrain

final class TensorBoardTests: XCTestCase {
    func testCRC32CMatchesTheStandardCheckValue() {
        // The CRC-32C of "123456789" is 0xE3069283 (RFC 3720, appendix B.4).
        XCTAssertEqual(crc32c(Array("123456789".utf8)), 0xE306_9283)
    }

    func testEventsReadBackAndACorruptByteIsCaught() throws {
        let dir = temporaryDirectory()
        let writer = try EventFileWriter(directory: dir)
        try writer.scalars([("loss/total", 3.5), ("throughput/images_per_second", 120)], step: 10)
        try writer.scalars([("loss/total", 2.25)], step: 20)
        let events = try readScalarEvents(writer.path)
        XCTAssertEqual(events, [ScalarEvent(step: 10, tag: "loss/total", value: 3.5),
                                ScalarEvent(step: 10, tag: "throughput/images_per_second", value: 120),
                                ScalarEvent(step: 20, tag: "loss/total", value: 2.25)])
        var bytes = [UInt8](FileManager.default.contents(atPath: writer.path)!)
        bytes[bytes.count - 6] ^= 0x40
        let bad = dir + "/corrupt"
        XCTAssertTrue(FileManager.default.createFile(atPath: bad, contents: Data(bytes)), "could not write a test file")
        XCTAssertThrowsError(try readScalarEvents(bad)) { XCTAssertTrue("\($0)".contains("checksum"), "\($0)") }
    }

    /// A training run writes an event file beside metrics.jsonl with every logged step's loss.
    func testTrainingWritesEventsBesideMetrics() throws {
        let dir = temporaryDirectory()
        try TinyRun.makeData(dir + "/data")
        try TinyRun(data: dir + "/data").trainer(out: dir + "/run", steps: 6) { $0.logEvery = 2 }.run()
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/run")
            .filter { $0.hasPrefix("events.out.tfevents.") }
        XCTAssertEqual(files.count, 1)
        let events = try readScalarEvents(dir + "/run/" + files[0])
        XCTAssertEqual(events.filter { $0.tag == "loss/total" }.map(\.step), [2, 4, 6])
        XCTAssertEqual(Set(events.map(\.tag)), ["loss/total", "loss/local", "loss/prior", "loss/discriminator",
                                                 "throughput/images_per_second", "optimizer/learning_rate"])
        XCTAssertTrue(events.allSatisfy { $0.value.isFinite })
        // TensorBoard's own reader, where it is installed (PyPI's tensorboard).
        let python = ProcessInfo.processInfo.environment["TENSORBOARD_PYTHON"] ?? "python3"
        let script = """
        import sys
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        acc = EventAccumulator(sys.argv[1]); acc.Reload()
        print(",".join(str(e.step) for e in acc.Scalars("loss/total")))
        """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [python, "-c", script, dir + "/run"]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = Pipe()
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw XCTSkip("tensorboard is not importable by \(python)") }
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(out.trimmingCharacters(in: .whitespacesAndNewlines), "2,4,6")
    }
}
