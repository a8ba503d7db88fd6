import Foundation
import XCTest
import DIMTestSupport
import DIMCore
@testable import DIMIO

final class FolderImportTests: XCTestCase {
    func testAnImageFolderBecomesALabelledDataset() throws {
        let src = try makeImageFolder(temporaryDirectory() + "/src"), out = temporaryDirectory() + "/ds"
        var importer = FolderImport()
        importer.shards = 2
        let m = try importer.run(source: src, out: out, comm: SingleProcess(), log: { _ in })
        XCTAssertEqual(m.classNames, ["cat", "dog"])
        XCTAssertEqual(m.splits["train"]?.count, 10)
        XCTAssertEqual(m.splits["test"]?.count, 4)
        XCTAssertEqual(m.splits["train"]?.classCounts, [5, 5])
        XCTAssertEqual(m.splits["train"]?.skippedFiles, 0)
        XCTAssertTrue(m.labelled)
        XCTAssertEqual([m.channels, m.height, m.width], [3, 32, 32])
        // The pixels survive decoding, resizing and cropping: red channel 200 (cat, JPEG) and 20 (dog, PNG).
        let split = try ShardedSplit(directory: out, split: "train")
        let reader = try BatchReader(data: split, globalBatch: 10, rank: 0, ranks: 1, seed: 1)
        let batch = try reader.batch(epoch: 0, index: 0)
        reader.drain()
        let x = batch.images, n = 10, hw = 32 * 32
        for j in 0..<n {
            let red = (0..<hw).map { (x.data[(0 * n + j) * hw + $0] + 1) * 127.5 }
            let mean = red.reduce(0, +) / Float(hw)
            XCTAssertEqual(mean, batch.labels[j] == 0 ? 200 : 20, accuracy: 3, "image \(j), label \(batch.labels[j])")
        }
    }

    func testResizeAveragesWhenShrinkingAndCropsTheCentre() {
        // A 4x2 checkerboard of 0/255 columns halves to grey; a 2:1 image keeps its centre square.
        var src = [UInt8](repeating: 0, count: 4 * 2)
        for y in 0..<2 { for x in 0..<4 where x % 2 == 1 { src[y * 4 + x] = 255 } }
        let out = resizeShorterSideAndCrop(src, width: 4, height: 2, channels: 1, size: 1)
        XCTAssertEqual(out, [128])
        var wide = [UInt8](repeating: 0, count: 6 * 2)   // left and right thirds 255, centre 0
        for y in 0..<2 { for x in [0, 1, 4, 5] { wide[y * 6 + x] = 255 } }
        XCTAssertEqual(resizeShorterSideAndCrop(wide, width: 6, height: 2, channels: 1, size: 2), [0, 0, 0, 0])
        // Enlarging a solid image keeps it solid.
        let solid = [UInt8](repeating: 77, count: 3 * 3 * 3)
        XCTAssertTrue(resizeShorterSideAndCrop(solid, width: 3, height: 3, channels: 3,
                                               size: 8).allSatisfy { $0 == 77 })
    }

    func testBadFilesStopTheImportByNameOrAreSkippedAndCounted() throws {
        let src = try makeImageFolder(temporaryDirectory() + "/src")
        // A truncated JPEG and a text file posing as an image.
        let good = try Data(contentsOf: URL(fileURLWithPath: "\(src)/train/cat/0003.jpg"))
        try good.prefix(good.count / 2).write(to: URL(fileURLWithPath: "\(src)/train/cat/truncated.jpg"))
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: "\(src)/train/dog/notes.png"))
        var importer = FolderImport()
        do {
            _ = try importer.run(source: src, out: temporaryDirectory() + "/a", comm: SingleProcess(), log: { _ in })
            XCTFail("a truncated JPEG must stop the import")
        } catch {
            XCTAssertTrue("\(error)".contains("train/cat/truncated.jpg"), "\(error)")
            XCTAssertTrue("\(error)".contains("JPEG"), "\(error)")
        }
        try FileManager.default.removeItem(atPath: "\(src)/train/cat/truncated.jpg")
        do {
            _ = try importer.run(source: src, out: temporaryDirectory() + "/b", comm: SingleProcess(), log: { _ in })
            XCTFail("a text file must stop the import")
        } catch {
            XCTAssertTrue("\(error)".contains("train/dog/notes.png: not a JPEG or PNG file"), "\(error)")
        }
        importer.skipBad = true
        try good.prefix(good.count / 2).write(to: URL(fileURLWithPath: "\(src)/train/cat/truncated.jpg"))
        let m = try importer.run(source: src, out: temporaryDirectory() + "/c", comm: SingleProcess(), log: { _ in })
        XCTAssertEqual(m.splits["train"]?.count, 10)
        XCTAssertEqual(m.splits["train"]?.skippedFiles, 2)
    }

    func testAFlatFolderIsUnlabelled() throws {
        let src = try makeImageFolder(temporaryDirectory() + "/src")
        let flat = temporaryDirectory() + "/flat"
        try FileManager.default.createDirectory(atPath: flat + "/train", withIntermediateDirectories: true)
        for f in try FileManager.default.contentsOfDirectory(atPath: src + "/train/dog") {
            try FileManager.default.copyItem(atPath: "\(src)/train/dog/\(f)", toPath: "\(flat)/train/\(f)")
        }
        var importer = FolderImport()
        importer.channels = 1
        importer.size = 16
        let m = try importer.run(source: flat, out: temporaryDirectory() + "/ds", comm: SingleProcess(), log: { _ in })
        XCTAssertEqual(m.classNames, [])
        XCTAssertFalse(m.labelled)
        XCTAssertEqual(m.splits["train"]?.count, 5)
        XCTAssertEqual([m.channels, m.height], [1, 16])
        XCTAssertNil(m.splits["test"])
    }

    func testMixedLayoutsAndMissingTrainAreRefused() throws {
        let src = try makeImageFolder(temporaryDirectory() + "/src")
        try FileManager.default.copyItem(atPath: "\(src)/train/cat/0000.jpg", toPath: "\(src)/train/loose.jpg")
        XCTAssertThrowsError(try FolderImport().run(source: src, out: temporaryDirectory() + "/x",
                                                    comm: SingleProcess(),
                                                    log: { _ in })) { XCTAssertTrue("\($0)".contains("loose"),
                                                            "\($0)") }
        let empty = temporaryDirectory()
        XCTAssertThrowsError(try FolderImport().run(source: empty, out: temporaryDirectory() + "/y",
                                                    comm: SingleProcess(),
                                                    log: { _ in })) { XCTAssertTrue("\($0)".contains("no train/"),
                                                            "\($0)") }
    }
}
