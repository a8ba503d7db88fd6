import Foundation
import XCTest
import DIMTestSupport
@testable import DIMTrain

/// metrics.jsonl: loss records written and read through one Codable record, probe records beside
/// them, bad lines named.
final class MetricsTests: XCTestCase {
    func testLossRecordsRoundTripBesideProbeRecords() throws {
        let path = temporaryDirectory() + "/metrics.jsonl"
        let a = LossRecord(step: 10, epoch: 0, loss: 1.5, local: 1.5, global: 0, prior: nil, discriminator: nil,
                           learningRate: 1e-4, imagesPerSecond: 200, elapsedSeconds: 3, communicationSeconds: 0.1,
                           ranks: 2)
        var b = a
        b.step = 20; b.loss = finite(.nan); b.local = 1.25
        let probe = ProbeRecord(step: 20, ProbeResult(feature: "conv", probe: "linear", dim: 8, trainAccuracy: 0.5,
                                                       testAccuracy: 0.5, validationAccuracy: 0.5, weightDecay: 0,
                                                       epochs: 1))
        try (a.jsonLine() + b.jsonLine()).write(toFile: path, atomically: true, encoding: .utf8)
        try ProbeRecord.append([probe], to: path)
        XCTAssertFalse(try String(contentsOfFile: path, encoding: .utf8).contains("nan"), "JSON has no NaN: left out")
        XCTAssertEqual(try LossRecord.read(path), [a, b])
        XCTAssertEqual(ProbeRecord.read(path), [probe])
        let series = try Plots.readMetrics(path)
        XCTAssertEqual(series["loss"]?.map(\.0), [10], "the NaN loss is not drawn")
        XCTAssertEqual(series["local"]?.map(\.1), [1.5, 1.25])
        XCTAssertNil(series["global"], "a term that is zero throughout is switched off")
    }

    func testABadLineIsNamed() throws {
        let path = temporaryDirectory() + "/metrics.jsonl"
        try "{\"step\":1,\"epoch\":0,\"ranks\":1,\"loss\":2}\nnot json\n".write(toFile: path, atomically: true,
                encoding: .utf8)
        XCTAssertThrowsError(try LossRecord.read(path)) { XCTAssertTrue("\($0)".contains("line 2"), "\($0)") }
    }
}
