import Foundation
import DIMCore

/// Converts the two real datasets of ../shared/datasets (and anything in the same IDX layout)
/// into sharded dim-dist datasets.
public enum DatasetImporter {
    /// Reads image files (concatenated in order) and label files, checks they agree, and returns
    /// CHW uint8 images. Files of N x H x W x C images (the CIFAR copy) are transposed per image.
    public static func loadIDX(images: [String], labels: [String]) throws -> (pixels: [UInt8], labels: [Int], c: Int,
            h: Int, w: Int) {
        guard !images.isEmpty, images.count == labels.count else {
            throw DIMError("import: \(images.count) image file(s) and \(labels.count) label file(s); give one label "
                + "file per image file")
        }
        var pixels: [UInt8] = [], allLabels: [Int] = []
        var shape: (Int, Int, Int)? = nil
        for (imgPath, labPath) in zip(images, labels) {
            let img = try readIDX(imgPath)
            let lab = try readIDX(labPath)
            guard lab.dims.count == 1 else { throw DIMError("\(labPath): labels must be 1-D, got dims \(lab.dims)") }
            guard img.dims.count == 3 || img.dims.count == 4 else {
                throw DIMError("\(imgPath): images must be N x H x W or N x H x W x C, got dims \(img.dims)")
            }
            guard img.count == lab.count else {
                throw DIMError("\(imgPath): \(img.count) images but \(labPath) has \(lab.count) labels")
            }
            let (h, w) = (img.dims[1], img.dims[2])
            let c = img.dims.count == 4 ? img.dims[3] : 1
            if let s = shape, s != (c, h, w) {
                throw DIMError("\(imgPath): images are \(c)x\(h)x\(w), earlier files were \(s.0)x\(s.1)x\(s.2)")
            }
            shape = (c, h, w)
            if c == 1 {
                pixels.append(contentsOf: img.data)
            } else {
                // HWC -> CHW per image.
                let per = c * h * w
                var out = [UInt8](repeating: 0, count: img.data.count)
                for i in 0..<img.count { for y in 0..<h { for x in 0..<w { for ch in 0..<c {
                    out[i * per + ch * h * w + y * w + x] = img.data[i * per + (y * w + x) * c + ch]
                } } } }
                pixels.append(contentsOf: out)
            }
            allLabels.append(contentsOf: lab.data.map { Int($0) })
        }
        let s = shape!
        return (pixels, allLabels, s.0, s.1, s.2)
    }

    public struct Files {
        public var train: ([String], [String])
        public var test: ([String], [String])
        public init(train: ([String], [String]), test: ([String], [String])) { self.train = train; self.test = test }
    }

    /// The file names of ../shared/datasets/mnist.
    public static func mnistFiles(_ dir: String) -> Files {
        Files(train: (["\(dir)/train-images-idx3-ubyte.gz"], ["\(dir)/train-labels-idx1-ubyte.gz"]),
              test: (["\(dir)/t10k-images-idx3-ubyte.gz"], ["\(dir)/t10k-labels-idx1-ubyte.gz"]))
    }

    /// The CIFAR-10 copy: whatever train parts are present, in order.
    public static func cifarFiles(_ dir: String) throws -> Files {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        let parts = names.filter { $0.hasPrefix("train-images-part") && $0.hasSuffix("-idx4-ubyte.gz") }.sorted()
        guard !parts.isEmpty else { throw DIMError("\(dir): no train-images-part*-idx4-ubyte.gz files") }
        let labels = parts.map { $0.replacingOccurrences(of: "images", with: "labels").replacingOccurrences(of: "idx4",
                with: "idx1") }
        return Files(train: (parts.map { "\(dir)/\($0)" }, labels.map { "\(dir)/\($0)" }),
                     test: (["\(dir)/test-images-idx4-ubyte.gz"], ["\(dir)/test-labels-idx1-ubyte.gz"]))
    }

    public static let cifarClasses = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                      "truck"]

    @discardableResult
    public static func importDataset(name: String, files: Files, out: String, shards: Int, classNames: [String],
                                     channelOrder: String, source: String,
                                     log: (String) -> Void) throws -> DatasetManifest {
        try prepareDatasetDirectory(out)
        var splits: [String: DatasetManifest.Split] = [:]
        var shape = (0, 0, 0)
        for (split, (imgs, labs)) in [("train", files.train), ("test", files.test)] {
            let d = try loadIDX(images: imgs, labels: labs)
            if split == "test" && (d.c, d.h, d.w) != shape {
                throw DIMError("\(imgs[0]): test images are \(d.c)x\(d.h)x\(d.w), train images "
                    + "\(shape.0)x\(shape.1)x\(shape.2)")
            }
            shape = (d.c, d.h, d.w)
            splits[split] = try writeSplit(directory: out, split: split, images: d.pixels, labels: d.labels,
                                           channels: d.c,
                                           height: d.h, width: d.w, shards: split == "train" ? shards : max(1,
                                                   shards / 2))
            log("  \(split): \(d.labels.count) images \(d.c)x\(d.h)x\(d.w) in \(splits[split]!.shards.count) shard(s)")
        }
        let names = classNames.isEmpty ? (0..<(splits["train"]!.classCounts.count)).map { String($0) } : classNames
        let m = DatasetManifest(name: name, channels: shape.0, height: shape.1, width: shape.2,
                                channelOrder: channelOrder,
                                classNames: names, splits: splits, source: source)
        try m.save(directory: out)
        return m
    }
}
