import Foundation
import XCTest
import DIMTestSupport
import DIMCore
@testable import DIMIO


final class DatasetTests: XCTestCase {
    @discardableResult
    func makeSynth(_ dir: String, train: Int = 96, size: Int = 28, channels: Int = 1,
                   shards: Int = 3) throws -> DatasetManifest {
        try SyntheticDataset.write(directory: dir, trainCount: train, testCount: 20, classes: 4, channels: channels,
                                   size: size, seed: 5, shards: shards)
    }

    func testGlobalBatchIsTheSameForOneTwoAndFourRanks() throws {
        let dir = temporaryDirectory()
        try makeSynth(dir, train: 100, size: 32, channels: 3)
        let split = try ShardedSplit(directory: dir, split: "train", verify: true)
        for aug in [Augmentation(cropPadding: 2, horizontalFlip: true),
                    Augmentation(horizontalFlip: true, resizedCropMinScale: 0.2, colorJitter: 0.4, grayscale: 0.2)] {
        for epoch in 0..<2 {
            for b in 0..<3 {
                let one = try BatchReader(data: split, globalBatch: 8, rank: 0, ranks: 1, seed: 7, augmentation: aug)
                let whole = try one.batch(epoch: epoch, index: b)
                let wholePixels = whole.images.array, wholeLabels = whole.labels, wholeExamples = whole.examples
                for ranks in [2, 4] {
                    var examples: [Int] = [], labels: [Int] = []
                    var pixels: [[Float]] = []
                    for r in 0..<ranks {
                        let reader = try BatchReader(data: split, globalBatch: 8, rank: r, ranks: ranks, seed: 7,
                                                     augmentation: aug)
                        let part = try reader.batch(epoch: epoch, index: b)
                        examples += part.examples; labels += part.labels
                        pixels.append(channelMajorToNCHW(part.images))
                    }
                    XCTAssertEqual(examples, wholeExamples, "epoch \(epoch) batch \(b) with \(ranks) ranks")
                    XCTAssertEqual(labels, wholeLabels)
                    // Augmented pixels too: a pure function of (seed, epoch, example).
                    XCTAssertEqual(pixels.flatMap { $0 },
                                   channelMajorToNCHW(Tensor(whole.images.shape, values: wholePixels)))
                }
            }
        }
        }
        // Different epochs shuffle differently; different seeds too.
        let r = try BatchReader(data: split, globalBatch: 8, rank: 0, ranks: 1, seed: 7)
        XCTAssertNotEqual(r.order(epoch: 0), r.order(epoch: 1))
        XCTAssertEqual(Set(r.order(epoch: 0)), Set(0..<100))
    }

    func testPrefetchedAndDirectReadsAgree() throws {
        let dir = temporaryDirectory()
        try makeSynth(dir)
        let split = try ShardedSplit(directory: dir, split: "train")
        let a = try BatchReader(data: split, globalBatch: 16, rank: 0, ranks: 1, seed: 3)
        var sequential: [[Float]] = []
        for b in 0..<a.batchesPerEpoch { sequential.append(try a.batch(epoch: 0, index: b).images.array) }
        // Out of order (no prefetch hit) must give the same batches.
        let c = try BatchReader(data: split, globalBatch: 16, rank: 0, ranks: 1, seed: 3)
        for b in stride(from: a.batchesPerEpoch - 1, through: 0, by: -1) {
            XCTAssertEqual(try c.batch(epoch: 0, index: b).images.array, sequential[b])
        }
    }

    func testPixelsAreScaledToMinusOneOne() throws {
        let dir = temporaryDirectory()
        try makeSynth(dir)
        let split = try ShardedSplit(directory: dir, split: "train")
        let reader = try BatchReader(data: split, globalBatch: 16, rank: 0, ranks: 1, seed: 0, shuffle: false)
        let batch = try reader.batch(epoch: 0, index: 0)
        var raw = [UInt8](repeating: 0, count: 16 * 784), labels = [Int](repeating: 0, count: 16)
        try split.read(indices: Array(0..<16), images: &raw, labels: &labels)
        XCTAssertEqual(batch.labels, labels)
        XCTAssertEqual(batch.images.data[5 * 784 + 300], 2 * Float(raw[5 * 784 + 300]) / 255 - 1, accuracy: 1e-6)
    }

    func testEmbeddedMNISTGzipFilesParse() throws {
        let labels = try readIDX(checkoutRoot + "/datasets/mnist/t10k-labels-idx1-ubyte.gz")
        XCTAssertEqual(labels.dims, [10000])
        XCTAssertEqual(Array(labels.data.prefix(5)), [7, 2, 1, 0, 4])
        let images = try readIDX(checkoutRoot + "/datasets/mnist/t10k-images-idx3-ubyte.gz")
        XCTAssertEqual(images.dims, [10000, 28, 28])
    }

    func testImportKeepsSplitsApartAndRecordsStatistics() throws {
        let dir = temporaryDirectory()
        let img = dir + "/img.idx", lab = dir + "/lab.idx"
        // 6 RGB images 2x2 in HWC order; pixel value = channel index * 10 + image index.
        var bytes: [UInt8] = [0, 0, 8, 4, 0, 0, 0, 6, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3]
        for i in 0..<6 { for _ in 0..<4 { for c in 0..<3 { bytes.append(UInt8(c * 10 + i)) } } }
        XCTAssertTrue(FileManager.default.createFile(atPath: img, contents: Data(bytes)), "could not write a test file")
        XCTAssertTrue(FileManager.default.createFile(atPath: lab, contents: Data([0, 0, 8, 1, 0, 0, 0, 6, 0, 1, 2, 0, 1, 2])),
                      "could not write a test file")
        let out = dir + "/ds"
        let m = try DatasetImporter.importDataset(name: "t", files: .init(train: ([img], [lab]), test: ([img], [lab])),
                                                  out: out, shards: 2, classNames: [], channelOrder: "RGB",
                                                  source: "test", log: { _ in })
        XCTAssertEqual(m.channels, 3)
        XCTAssertEqual(m.splits["train"]!.count, 6)
        XCTAssertEqual(m.splits["train"]!.shards.count, 2)
        XCTAssertEqual(m.splits["train"]!.classCounts, [2, 2, 2])
        XCTAssertEqual(m.splits["train"]!.mean[1] * 255, 10 + 2.5, accuracy: 1e-9)
        // HWC -> CHW: channel 2 of image 4 is all 24.
        let split = try ShardedSplit(directory: out, split: "train", verify: true)
        var raw = [UInt8](repeating: 0, count: 12), l = [0]
        try split.read(indices: [4], images: &raw, labels: &l)
        XCTAssertEqual(Array(raw[8..<12]), [24, 24, 24, 24])
        XCTAssertEqual(l, [1])
    }
}

/// Bad input: one clear error naming the file, never a crash or a hang.
final class BadInputTests: XCTestCase {
    func assertError(_ contains: [String], _ body: () throws -> Void, file: StaticString = #filePath,
                     line: UInt = #line) {
        do {
            try body()
            XCTFail("expected an error mentioning \(contains)", file: file, line: line)
        } catch {
            let text = "\(error)"
            for c in contains { XCTAssertTrue(text.contains(c), "error '\(text)' should mention '\(c)'", file: file,
                                              line: line) }
            XCTAssertFalse(text.contains("\n"), "one line: \(text)", file: file, line: line)
        }
    }

    func testTruncatedIDX() throws {
        let dir = temporaryDirectory()
        let labels = checkoutRoot + "/datasets/mnist/t10k-labels-idx1-ubyte.gz"
        let good = try Data(contentsOf: URL(fileURLWithPath: labels))
        let truncatedGz = dir + "/trunc.gz"
        XCTAssertTrue(FileManager.default.createFile(atPath: truncatedGz, contents: good.prefix(good.count / 2)),
                      "could not write a test file")
        assertError(["trunc.gz", "truncated"]) { _ = try readIDX(truncatedGz) }
        let raw = dir + "/raw.idx"
        XCTAssertTrue(FileManager.default.createFile(atPath: raw, contents: Data([0, 0, 8, 1, 0, 0, 0, 10, 1, 2, 3])),
                      "could not write a test file")
        assertError(["raw.idx", "truncated"]) { _ = try readIDX(raw) }
    }

    func testMistypedIDX() throws {
        let dir = temporaryDirectory()
        let f = dir + "/float.idx"
        XCTAssertTrue(FileManager.default.createFile(atPath: f, contents: Data([0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0])),
                      "could not write a test file")
        assertError(["float.idx", "unsigned byte"]) { _ = try readIDX(f) }
        let g = dir + "/text.idx"
        XCTAssertTrue(FileManager.default.createFile(atPath: g, contents: Data("hello world".utf8)),
                      "could not write a test file")
        assertError(["text.idx", "not an IDX"]) { _ = try readIDX(g) }
    }

    func testImagesAndLabelsOfDifferentCounts() throws {
        let dir = temporaryDirectory()
        let img = dir + "/img.idx", lab = dir + "/lab.idx"
        XCTAssertTrue(FileManager.default.createFile(atPath: img,
                                                     contents: Data([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 5, 6])),
                      "could not write a test file")
        XCTAssertTrue(FileManager.default.createFile(atPath: lab, contents: Data([0, 0, 8, 1, 0, 0, 0, 3, 0, 1, 2])),
                      "could not write a test file")
        assertError(["img.idx", "2 images", "3 labels"]) { _ = try DatasetImporter.loadIDX(images: [img],
                labels: [lab]) }
    }

    func testMissingShard() throws {
        let dir = temporaryDirectory()
        try SyntheticDataset.write(directory: dir, trainCount: 30, testCount: 5, classes: 2, channels: 1, size: 28,
                                   seed: 1, shards: 3)
        try FileManager.default.removeItem(atPath: dir + "/train-01.h5")
        assertError(["train-01.h5", "missing shard"]) { _ = try ShardedSplit(directory: dir, split: "train") }
    }

    func testShardWhoseChecksumNoLongerMatches() throws {
        let dir = temporaryDirectory()
        try SyntheticDataset.write(directory: dir, trainCount: 30, testCount: 5, classes: 2, channels: 1, size: 28,
                                   seed: 1, shards: 2)
        // Rewrite one shard's pixels with other values, keeping its layout valid.
        let path = dir + "/train-00.h5"
        var pixels: [UInt8] = [], shape: [Int] = [], labels: [Int64] = []
        do {
            let f = try HDF5File(path)
            (pixels, shape) = try f.read("images")
            labels = try f.read("labels", as: Int64.self).values
        }
        let g = try HDF5File(path, mode: .create)
        try g.write("images", pixels.map { $0 ^ 1 }, shape: shape)
        try g.write("labels", labels, shape: [labels.count])
        assertError(["train-00.h5", "checksum"]) { _ = try ShardedSplit(directory: dir, split: "train", verify: true) }
    }

    func testHDF5FileThatIsNotADataset() throws {
        let dir = temporaryDirectory()
        try SyntheticDataset.write(directory: dir, trainCount: 30, testCount: 5, classes: 2, channels: 1, size: 28,
                                   seed: 1, shards: 2)
        let f = try HDF5File(dir + "/train-01.h5", mode: .create)
        try f.write("something_else", [Float(1), 2, 3])
        assertError(["train-01.h5", "images"]) { _ = try ShardedSplit(directory: dir, split: "train") }
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/train-01.h5", contents: Data("not hdf5".utf8)),
                      "could not write a test file")
        assertError(["train-01.h5", "not an HDF5 file"]) { _ = try ShardedSplit(directory: dir, split: "train") }
    }

    func testDirectoryWithoutManifest() throws {
        let dir = temporaryDirectory()
        assertError([dir, "missing manifest"]) { _ = try DatasetManifest.load(directory: dir) }
        assertError(["/nonexistent/x",
                     "no such dataset directory"]) { _ = try DatasetManifest.load(directory: "/nonexistent/x") }
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/manifest.json", contents: Data("{".utf8)),
                      "could not write a test file")
        assertError([dir, "malformed manifest"]) { _ = try DatasetManifest.load(directory: dir) }
    }
}
