import XCTest
import DIMCore
import CHDF5
import DIMTestSupport
@testable import DIMIO
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

    /// The check must be able to fail: the real ReferenceCheck on a copy of a reference file whose
    /// conv1 weight has one entry 50% off (the file's initial parameters are what dim-dist loads).
    func testAPerturbedParameterIsCaught() throws {
        let src = Self.oracleDirectory + "/basic32x32-tiny-b6.h5"
        guard access(src, R_OK) == 0 else { throw XCTSkip("reference files not found") }
        let copy = temporaryDirectory() + "/perturbed.h5"
        try FileManager.default.copyItem(atPath: src, toPath: copy)
        do {
            let name = "params/encoder.conv1.weight"
            let f = try HDF5File(copy, mode: .readWrite)
            var (w, shape): ([Float], [Int]) = try f.read(name)
            w[0] *= 1.5
            XCTAssertGreaterThanOrEqual(H5Ldelete(f.id, name, dim_H5P_DEFAULT()), 0)
            try f.write(name, w, shape: shape)
        }
        var check = ReferenceCheck(path: copy)
        try check.run(log: { _ in })
        XCTAssertFalse(check.passed)
        let failed = Set(check.lines.filter { !$0.passed }.map(\.name))
        for name in ["loss/jsd", "activations/C", "grads/jsd/encoder.conv0.weight"] {
            XCTAssertTrue(failed.contains(name), "\(name) should fail; failed: \(failed.sorted().prefix(8))")
        }
        XCTAssertFalse(failed.contains("activations/Y") && failed.count == check.lines.count, "not everything fails")
    }
}
