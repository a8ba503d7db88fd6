import Foundation
import CImageCodecs
import DIMCore

/// `dim-dist data import --format folder`: a directory with `train/` and optionally `test/`, each
/// either an ImageFolder tree (`<class>/.../*.jpg|png`, labels from the sorted sub-folder names)
/// or images directly (unlabelled: labels -1, no class names). Every image is decoded (JPEG with
/// libjpeg-turbo, PNG with libpng), converted to grey or RGB, resized so its shorter side is
/// `size` and centre-cropped to size x size.
///
/// Under mpirun the sorted file list is cut into rounds of `ranks x block` files; in each round
/// rank r decodes the r-th block and the blocks are all-gathered in rank order, so the images keep
/// the list's order and the dataset is byte-identical for any number of ranks. Rank 0 writes the
/// shards. A file that is not a readable JPEG or PNG stops the import with its name, or with
/// `skipBad` is left out and counted in the manifest.
public struct FolderImport {
    public var size = 32
    public var channels = 3
    public var skipBad = false
    public var shards = 4
    /// Files each rank decodes per round (bounds the memory of a round).
    public var block = 512

    public init() {}

    /// The files of one split, sorted, with their labels (-1 when unlabelled).
    public struct Listing {
        public var classNames: [String]
        public var files: [String]
        public var labels: [Int]
    }

    /// Hidden files and folders (.DS_Store, .git) are ignored; every other file must be an image.
    public static func list(_ directory: String) throws -> Listing {
        let fm = FileManager.default
        func visible(_ dir: String) throws -> [String] {
            do {
                return try fm.contentsOfDirectory(atPath: dir).filter { !$0.hasPrefix(".") }.sorted()
            } catch {
                throw DIMError("\(dir): cannot list (\(error.localizedDescription))")
            }
        }
        func isDirectory(_ p: String) -> Bool {
            var d: ObjCBool = false
            return fm.fileExists(atPath: p, isDirectory: &d) && d.boolValue
        }
        func filesBelow(_ dir: String) throws -> [String] {
            try visible(dir).flatMap { name -> [String] in
                let p = dir + "/" + name
                return isDirectory(p) ? try filesBelow(p) : [p]
            }
        }
        let entries = try visible(directory)
        let dirs = entries.filter { isDirectory(directory + "/" + $0) }
        if dirs.isEmpty {
            let files = entries.map { directory + "/" + $0 }
            return Listing(classNames: [], files: files, labels: Array(repeating: -1, count: files.count))
        }
        let loose = entries.filter { !isDirectory(directory + "/" + $0) }
        guard loose.isEmpty else {
            let examples = loose.prefix(3).joined(separator: ", ")
            throw DIMError("\(directory): has class folders and loose files (\(examples)): "
                           + "use one layout, <class>/<image> or images directly")
        }
        var listing = Listing(classNames: dirs, files: [], labels: [])
        for (label, name) in dirs.enumerated() {
            let files = try filesBelow(directory + "/" + name)
            listing.files += files
            listing.labels += Array(repeating: label, count: files.count)
        }
        return listing
    }

    /// Decodes one file into `size x size` CHW bytes.
    public func decode(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else { throw DIMError("\(path): cannot read") }
        var err = [CChar](repeating: 0, count: 256)
        var kind: Int32 = 0, w: Int32 = 0, h: Int32 = 0
        let pixels: [UInt8] = try data.withUnsafeBytes { raw in
            let buf = raw.bindMemory(to: UInt8.self)
            guard let base = buf.baseAddress,
                  dim_image_header(base, buf.count, &kind, &w, &h, &err, err.count) == 0 else {
                throw DIMError("\(path): \(buf.isEmpty ? "empty file" : String(cString: err))")
            }
            guard w > 0, h > 0, Int(w) * Int(h) <= 1 << 28 else {
                throw DIMError("\(path): image size \(w)x\(h) not supported")
            }
            var out = [UInt8](repeating: 0, count: Int(w) * Int(h) * channels)
            guard dim_image_decode(base, buf.count, Int32(channels), &out, &err, err.count) == 0 else {
                throw DIMError("\(path): \(String(cString: err))")
            }
            return out
        }
        return resizeShorterSideAndCrop(pixels, width: Int(w), height: Int(h), channels: channels, size: size)
    }

    /// Imports `source/train` (and `source/test` when present) into the dataset `out`.
    public func run(source: String, out: String, comm: Communicator, log: (String) -> Void) throws -> DatasetManifest {
        guard channels == 1 || channels == 3 else { throw DIMError("--channels must be 1 or 3") }
        guard size >= 8 else { throw DIMError("--size must be at least 8") }
        var splits: [String: Listing] = [:]
        for split in ["train", "test"] where FileManager.default.fileExists(atPath: "\(source)/\(split)") {
            splits[split] = try Self.list("\(source)/\(split)")
        }
        guard let train = splits["train"] else {
            throw DIMError("\(source): no train/ folder (expected train/ and optionally test/)")
        }
        if let test = splits["test"], test.classNames != train.classNames {
            throw DIMError("\(source): test/ has classes \(test.classNames) but train/ has \(train.classNames)")
        }
        if comm.isRoot { try prepareDatasetDirectory(out) }
        comm.barrier()
        var manifest = DatasetManifest(name: (source as NSString).lastPathComponent, channels: channels, height: size,
                                       width: size, channelOrder: channels == 1 ? "gray" : "RGB",
                                       classNames: train.classNames, splits: [:], source: source)
        for (name, listing) in splits.sorted(by: { $0.key > $1.key }) {  // train first
            guard !listing.files.isEmpty else { throw DIMError("\(source)/\(name): no image files") }
            let (images, labels, skipped) = try decodeAll(listing, split: name, comm: comm, log: log)
            guard !labels.isEmpty else {
                throw DIMError("\(source)/\(name): no readable images (\(skipped.count) bad files)")
            }
            if comm.isRoot {
                var s = try writeSplit(directory: out, split: name, images: images, labels: labels, channels: channels,
                                       height: size, width: size, shards: name == "train" ? shards : max(1, shards / 2))
                s.skippedFiles = skipped.count
                manifest.splits[name] = s
            }
        }
        if comm.isRoot { try manifest.save(directory: out) }
        comm.barrier()
        return manifest
    }

    /// Decodes a split in rounds (see the type's comment); returns images in list order.
    private func decodeAll(_ listing: Listing, split: String, comm: Communicator,
                           log: (String) -> Void) throws -> (images: [UInt8], labels: [Int], skipped: [String]) {
        let per = channels * size * size, n = listing.files.count
        // One slot per file: a status value, then the pixels (as floats, which the collectives carry).
        let slot = 1 + per
        let mine = Tensor([block * slot]), all = Tensor([comm.size * block * slot])
        var images: [UInt8] = [], labels: [Int] = [], skipped: [String] = []
        if comm.isRoot { images.reserveCapacity(n * per) }
        let t0 = monotonicSeconds()
        var start = 0
        while start < n {
            for j in 0..<block {
                let i = start + comm.rank * block + j
                let base = mine.data + j * slot
                base[0] = i < n ? 1 : 0     // 1: decoded, 0: no file, -1: bad
                guard i < n else { continue }
                if let px = try? decode(listing.files[i]) {
                    for k in 0..<per { base[1 + k] = Float(px[k]) }
                } else {
                    base[0] = -1
                }
            }
            comm.allgather(mine.data, count: block * slot, into: all.data)
            for s in 0..<(comm.size * block) where start + s < n {
                let i = start + s, base = all.data + s * slot
                if base[0] < 0 {
                    // Every rank sees the same bad slot; decoding it again gives the reason.
                    guard skipBad else {
                        _ = try decode(listing.files[i])
                        throw DIMError("\(listing.files[i]): could not be decoded")
                    }
                    skipped.append(listing.files[i])
                    continue
                }
                guard comm.isRoot else { continue }
                for k in 0..<per { images.append(UInt8(base[1 + k])) }
                labels.append(listing.labels[i])
            }
            start += comm.size * block
            let done = min(start, n), seconds = monotonicSeconds() - t0
            log("  \(split): \(done)/\(n) files, \(fmt(Double(done) / max(seconds, 1e-9), 0)) files/s "
                + "(\(fmt(Double(done) / max(seconds, 1e-9) / Double(comm.size), 0)) per rank)"
                + (skipped.isEmpty ? "" : ", \(skipped.count) skipped"))
        }
        if !comm.isRoot { labels = Array(repeating: 0, count: n - skipped.count) }
        return (images, labels, skipped)
    }
}

/// Resizes so that the shorter side is `size` (area averaging when shrinking, bilinear when
/// enlarging) and keeps the centre size x size; HWC bytes in, CHW bytes out.
func resizeShorterSideAndCrop(_ src: [UInt8], width: Int, height: Int, channels: Int, size: Int) -> [UInt8] {
    let scale = Double(min(width, height)) / Double(size)   // source pixels per output pixel
    let xTaps = resampleTaps(source: width, scale: scale, size: size)
    let yTaps = resampleTaps(source: height, scale: scale, size: size)
    // Horizontal pass: height x size x channels.
    var rows = [Float](repeating: 0, count: height * size * channels)
    for y in 0..<height {
        for (ox, taps) in xTaps.enumerated() {
            for c in 0..<channels {
                var v: Float = 0
                for (x, w) in taps { v += w * Float(src[(y * width + x) * channels + c]) }
                rows[(y * size + ox) * channels + c] = v
            }
        }
    }
    var out = [UInt8](repeating: 0, count: channels * size * size)
    for (oy, taps) in yTaps.enumerated() {
        for ox in 0..<size {
            for c in 0..<channels {
                var v: Float = 0
                for (y, w) in taps { v += w * rows[(y * size + ox) * channels + c] }
                out[(c * size + oy) * size + ox] = UInt8(max(0, min(255, v.rounded())))
            }
        }
    }
    return out
}

/// For each of the `size` centre-cropped output pixels along one axis: the source pixels and
/// weights (summing to 1) that make it.
func resampleTaps(source n: Int, scale: Double, size: Int) -> [[(Int, Float)]] {
    let resized = max(size, Int((Double(n) / scale).rounded()))
    let offset = Double(resized - size) / 2
    return (0..<size).map { o in
        let lo = (Double(o) + offset) * scale, hi = lo + scale
        var taps: [(Int, Float)] = []
        if scale > 1 {
            // Area: each source pixel weighted by how much of it the output pixel covers.
            for i in max(0, Int(lo.rounded(.down)))..<min(n, Int(hi.rounded(.up))) {
                let cover = min(hi, Double(i + 1)) - max(lo, Double(i))
                if cover > 1e-9 { taps.append((i, Float(cover / scale))) }
            }
        } else {
            // Bilinear at the output pixel's centre.
            let c = min(max((lo + hi) / 2 - 0.5, 0), Double(n - 1))
            let i = Int(c.rounded(.down)), f = c - Double(i)
            taps.append((i, Float(1 - f)))
            if f > 1e-9 && i + 1 < n { taps.append((i + 1, Float(f))) }
        }
        let total = taps.reduce(Float(0)) { $0 + $1.1 }
        return taps.map { ($0.0, $0.1 / total) }
    }
}
