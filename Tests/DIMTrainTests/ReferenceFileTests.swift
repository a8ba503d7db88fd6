import XCTest
import DIMCore
import DIMIO
@testable import DIMTrain

/// The whole model against PyTorch's float64 reference files (../shared/oracle), when present.
final class ReferenceFileTests: XCTestCase {
    /// ../shared/oracle beside the checkout, or DIM_ORACLE_DIR.
    static var oracleDirectory: String {
        if let d = getenv("DIM_ORACLE_DIR") { return String(cString: d) }
        var parts = String(#filePath).split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)  // Tests/DIMTrainTests/ReferenceFileTests.swift
        return parts.joined(separator: "/") + "/../shared/oracle"
    }

    func testEveryReferenceFileMatches() throws {
        try checkEveryFile(precision: .fp32)
    }

    /// bf16 GEMMs within the looser, documented bf16 tolerance (ReferenceCheck.Tolerance).
    func testEveryReferenceFileMatchesInBF16() throws {
        if let why = Precision.bf16.unsupportedReason() { throw XCTSkip(why) }
        try checkEveryFile(precision: .bf16)
    }

    func checkEveryFile(precision: Precision) throws {
        let dir = Self.oracleDirectory
        let files = ["basic28x28-tiny-b5.h5", "basic32x32-tiny-b6.h5", "basic64x64-tiny-b3.h5"].map { "\(dir)/\($0)" }
        guard files.allSatisfy({ access($0, R_OK) == 0 }) else {
            throw XCTSkip("reference files not found in \(dir): skipping the PyTorch comparison (set DIM_ORACLE_DIR)")
        }
        for path in files {
            var check = ReferenceCheck(path: path, precision: precision)
            try check.run(log: { _ in })
            // bf16 does not compare Adam's first update per tensor (see ReferenceCheck.Tolerance).
            XCTAssertGreaterThan(check.lines.count, precision == .fp32 ? 200 : 150, path)
            for line in check.lines where !line.passed {
                XCTFail("\(path): \(line.name) error \(line.error) > \(line.tolerance)")
            }
        }
    }

    func testAPerturbedParameterIsCaught() throws {
        // The check must be able to fail: a reference file with one weight changed does not match.
        let src = Self.oracleDirectory + "/basic32x32-tiny-b6.h5"
        guard access(src, R_OK) == 0 else { throw XCTSkip("reference files not found") }
        let (model, batch) = try ReferenceCheck.model(from: try HDF5File(src))
        XCTAssertEqual(batch, 6)
        let file = try HDF5File(src)
        try file.loadParameters(model.params, group: "params")
        // A model whose conv1 weight has one entry 50% off.
        let comm = SingleProcess()
        let (xs, _): ([Float], [Int]) = try file.read("input/x")
        let x = Tensor([0])
        xs.withUnsafeBufferPointer { nchwToChannelMajor($0.baseAddress!, n: 6, c: 3, h: 32, w: 32, into: x) }
        let w = model.params["encoder.conv1.weight"]!
        w.value.data[0] *= 1.5
        let loss = model.forwardBackward(x, comm: comm).local
        let (ref, _): ([Double], [Int]) = try file.read("loss/jsd")
        XCTAssertGreaterThan(abs(loss - ref[0]) / ref[0], ReferenceCheck.Tolerance.float32.loss,
                             "a perturbed weight must move the loss past the tolerance")
    }
}
