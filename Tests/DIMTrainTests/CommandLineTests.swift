import Foundation
import XCTest
import DIMTestSupport
import DIMIO

/// What a user sees from `dim-dist` itself for input it cannot train on.
final class CommandLineTests: XCTestCase {
    /// Runs the built binary; returns its exit status and everything it printed.
    func dimDist(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let binary = checkoutRoot + "/.build/debug/dim-dist"
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw XCTSkip("\(binary) not built") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = arguments
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, output)
    }

    /// 96x96 images (STL-10 imported at its own size): a one-line error naming the data and what
    /// to do, a non-zero exit, no usage dump; the same when --model names an encoder of another size.
    func testImagesNoEncoderTakesAreRefusedWithWhatToDo() throws {
        let dir = temporaryDirectory()
        try SyntheticDataset.write(directory: dir + "/d96", trainCount: 8, testCount: 2, classes: 2, channels: 3,
                                   size: 96, seed: 1, shards: 1)
        for extra in [[], ["--model", "basic64x64"]] {
            let (status, output) = try dimDist(["train", "--data", dir + "/d96", "--steps", "1"] + extra)
            XCTAssertNotEqual(status, 0, output)
            XCTAssertTrue(output.contains(dir + "/d96: images are 96x96"), output)
            XCTAssertTrue(output.contains("--size 64"), output)
            XCTAssertFalse(output.contains("Usage:"), output)
        }
    }
}
