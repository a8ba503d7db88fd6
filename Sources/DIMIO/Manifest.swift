import Foundation
import DIMCore

/// The manifest of a sharded dataset directory (`manifest.json`): what a reader needs to know
/// without opening a shard, and the checksums that `data inspect --verify` recomputes.
public struct DatasetManifest: Codable, Equatable {
    public static let formatVersion = "dim-dist-dataset/1"
    public var format = DatasetManifest.formatVersion
    public var name: String
    /// Per image: channels x height x width, stored channel-first (CHW) as uint8.
    public var channels: Int
    public var height: Int
    public var width: Int
    public var channelOrder: String   // e.g. "gray" or "RGB"
    public var classNames: [String]
    public var splits: [String: Split]
    public var source: String

    public struct Split: Codable, Equatable {
        public var count: Int
        public var shards: [Shard]
        public var classCounts: [Int]
        public var mean: [Double]   // per channel, pixels / 255
        public var std: [Double]
        /// Files left out by `data import --format folder --skip-bad` (nil for other imports).
        public var skippedFiles: Int? = nil
    }

    /// False for images imported without labels (a flat folder): classCounts is empty.
    public var labelled: Bool { splits.values.allSatisfy { !$0.classCounts.isEmpty } }

    public struct Shard: Codable, Equatable {
        public var file: String
        public var count: Int
        /// CRC-32 of the shard's image bytes followed by its labels (int64 little-endian).
        public var checksum: String
    }

    public var imageBytes: Int { channels * height * width }

    /// A fingerprint of the dataset for checkpoints: every shard checksum and count.
    public var fingerprint: String {
        var crc = CRC32()
        for key in splits.keys.sorted() {
            for s in splits[key]!.shards { crc.update(Array("\(key):\(s.file):\(s.count):\(s.checksum);".utf8)) }
        }
        return crc.hex
    }

    public static func load(directory: String) throws -> DatasetManifest {
        let path = directory + "/manifest.json"
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw DIMError("\(directory): no such dataset directory")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DIMError("\(path): missing manifest (not a dim-dist dataset; create one with `dim-dist data "
                + "import` or `data synth`)")
        }
        do {
            let m = try JSONDecoder().decode(DatasetManifest.self, from: data)
            guard m.format == formatVersion else { throw DIMError("\(path): unknown dataset format '\(m.format)'") }
            return m
        } catch let e as DIMError {
            throw e
        } catch {
            throw DIMError("\(path): malformed manifest (\(error))")
        }
    }

    public func save(directory: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try enc.encode(self)
        let path = directory + "/manifest.json"
        guard FileManager.default.createFile(atPath: path, contents: data) else {
            throw DIMError("\(path): cannot write manifest")
        }
    }

    public func split(_ name: String) throws -> Split {
        guard let s = splits[name] else {
            throw DIMError("dataset '\(self.name)' has no split '\(name)' (has "
                + "\(splits.keys.sorted().joined(separator: ", ")))")
        }
        return s
    }
}

/// CRC-32 through zlib.
public struct CRC32 {
    public private(set) var value: UInt = 0
    public init() {}
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            let n = min(bytes.count - offset, 1 << 30)
            value = crc32Update(value, base + offset, n)
            offset += n
        }
    }
    public mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }
    public var hex: String {
        let s = String(value, radix: 16)
        return String(repeating: "0", count: max(0, 8 - s.count)) + s
    }
}
