import Foundation
import DIMCore

/// One split of a sharded dataset, opened for reading: checks every shard against the manifest
/// on open (existence, HDF5 layout, counts, and with `verify` the checksums).
public final class ShardedSplit {
    public let directory: String
    public let manifest: DatasetManifest
    public let split: DatasetManifest.Split
    public let splitName: String
    private let files: [HDF5File]
    private let shardStart: [Int]

    public var count: Int { split.count }

    public init(directory: String, split name: String, verify: Bool = false) throws {
        self.directory = directory
        manifest = try DatasetManifest.load(directory: directory)
        split = try manifest.split(name)
        splitName = name
        var files: [HDF5File] = [], starts: [Int] = []
        var start = 0
        for shard in split.shards {
            let path = directory + "/" + shard.file
            guard access(path, F_OK) == 0 else { throw DIMError("\(path): missing shard listed in the manifest") }
            let f = try HDF5File(path)
            let shape = try f.shape("images")
            let expected = [shard.count, manifest.channels, manifest.height, manifest.width]
            guard shape == expected else { throw DIMError("\(path): images have shape \(shape), manifest says "
                + "\(expected)") }
            guard try f.shape("labels") == [shard.count] else { throw DIMError("\(path): labels do not match the "
                + "manifest count \(shard.count)") }
            files.append(f)
            starts.append(start)
            start += shard.count
        }
        guard start == split.count else { throw DIMError("\(directory)/manifest.json: shard counts add to \(start), "
            + "split says \(split.count)") }
        self.files = files
        shardStart = starts
        if verify { try verifyChecksums() }
    }

    /// Recomputes every shard's checksum; throws naming the first shard that does not match.
    public func verifyChecksums() throws {
        for (shard, file) in zip(split.shards, files) {
            let (img, _): ([UInt8], [Int]) = try file.read("images")
            let (lab, _): ([Int64], [Int]) = try file.read("labels")
            var crc = CRC32()
            img.withUnsafeBytes { crc.update($0) }
            lab.withUnsafeBytes { crc.update($0) }
            guard crc.hex == shard.checksum else {
                throw DIMError("\(directory)/\(shard.file): checksum \(crc.hex) does not match the manifest's "
                    + "\(shard.checksum) (file changed or damaged)")
            }
        }
    }

    /// Reads the given examples (global indices, any order) as uint8 CHW images and labels.
    public func read(indices: [Int], images: UnsafeMutablePointer<UInt8>, labels: UnsafeMutablePointer<Int>) throws {
        let per = manifest.imageBytes
        // Group by shard, sorted, one H5Dread per shard; then put each row where it belongs.
        let order = indices.indices.sorted { indices[$0] < indices[$1] }
        var pos = 0
        var scratch = [UInt8]()
        var labelScratch = [Int64]()
        while pos < order.count {
            let first = indices[order[pos]]
            guard first >= 0 && first < split.count else { throw DIMError("\(directory): example \(first) out of "
                + "range") }
            let s = shardIndex(first)
            let end = shardStart[s] + split.shards[s].count
            var rows: [Int] = []
            var slots: [Int] = []
            while pos < order.count && indices[order[pos]] < end {
                let row = indices[order[pos]] - shardStart[s]
                if rows.last != row { rows.append(row) }
                slots.append(order[pos])
                pos += 1
            }
            scratch = [UInt8](repeating: 0, count: rows.count * per)
            labelScratch = [Int64](repeating: 0, count: rows.count)
            try scratch.withUnsafeMutableBufferPointer { try files[s].readRowSet("images", rows: rows,
                    into: $0.baseAddress!) }
            try labelScratch.withUnsafeMutableBufferPointer { try files[s].readRowSet("labels", rows: rows,
                    into: $0.baseAddress!) }
            var r = 0
            for slot in slots {
                let row = indices[slot] - shardStart[s]
                while rows[r] != row { r += 1 }
                scratch.withUnsafeBufferPointer { (images + slot * per).update(from: $0.baseAddress! + r * per,
                        count: per) }
                labels[slot] = Int(labelScratch[r])
            }
        }
    }

    private func shardIndex(_ i: Int) -> Int {
        var s = 0
        while s + 1 < shardStart.count && shardStart[s + 1] <= i { s += 1 }
        return s
    }

    /// All labels of the split, in order.
    public func allLabels() throws -> [Int] {
        var out: [Int] = []
        for f in files { out += try f.read("labels", as: Int64.self).values.map { Int($0) } }
        return out
    }
}

/// A stored pixel (0...255) as the model sees it: scaled to [-1, 1] (docs/design.md §1).
@inline(__always)
public func modelPixel(_ p: UInt8) -> Float { Float(p) * (2 / 255) - 1 }
