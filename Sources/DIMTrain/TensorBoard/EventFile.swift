import Foundation
import SwiftProtobuf
import DIMCore

/// TensorBoard event files (`events.out.tfevents.<time>.<host>.<pid>`): TFRecord framing, that is
/// for each record its length (uint64 little-endian), the masked CRC-32C of those 8 bytes, the
/// record, and its masked CRC-32C; each record a serialised `tensorflow.Event` (event.proto).
/// `tensorboard --logdir runs/` finds them in every run directory.
public final class EventFileWriter {
    public let path: String
    private let file: UnsafeMutablePointer<FILE>

    /// Creates a new event file in `directory` and writes its file-version event.
    public init(directory: String) throws {
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count - 1)
        let seconds = Int(Date().timeIntervalSince1970)
        path = "\(directory)/events.out.tfevents.\(seconds).\(String(cString: host)).\(getpid())"
        guard let f = fopen(path, "wb") else { throw DIMError("\(path): cannot create the TensorBoard event file") }
        file = f
        var first = Tensorflow_Event()
        first.wallTime = Date().timeIntervalSince1970
        first.fileVersion = "brain.Event:2"
        try write(first)
    }

    deinit { fclose(file) }

    /// One event holding a scalar summary per (tag, value).
    public func scalars(_ values: [(tag: String, value: Double)], step: Int) throws {
        var event = Tensorflow_Event()
        event.wallTime = Date().timeIntervalSince1970
        event.step = Int64(step)
        event.summary.value = values.map { tag, value in
            var v = Tensorflow_Summary.Value()
            v.tag = tag
            v.simpleValue = Float(value)
            return v
        }
        try write(event)
    }

    private func write(_ event: Tensorflow_Event) throws {
        let data: [UInt8] = try event.serializedBytes()
        var length = UInt64(data.count).littleEndian
        let lengthBytes = withUnsafeBytes(of: &length) { Array($0) }
        var record = lengthBytes
        record += littleEndianBytes(maskedCRC32C(lengthBytes))
        record += data
        record += littleEndianBytes(maskedCRC32C(data))
        guard fwrite(record, 1, record.count, file) == record.count, fflush(file) == 0 else {
            throw DIMError("\(path): cannot write (\(String(cString: strerror(errno))))")
        }
    }
}

/// A scalar read back from an event file.
public struct ScalarEvent: Equatable {
    public var step: Int
    public var tag: String
    public var value: Float
}

/// Reads the scalars of an event file, checking both CRCs of every record.
public func readScalarEvents(_ path: String) throws -> [ScalarEvent] {
    guard let data = FileManager.default.contents(atPath: path) else { throw DIMError("\(path): cannot read") }
    let bytes = [UInt8](data)
    var out: [ScalarEvent] = [], offset = 0, index = 0
    func le<T: FixedWidthInteger>(_ at: Int, _: T.Type) -> T {
        var v: T = 0
        for i in 0..<MemoryLayout<T>.size { v |= T(bytes[at + i]) << (8 * i) }
        return v
    }
    while offset < bytes.count {
        guard offset + 12 <= bytes.count else { throw DIMError("\(path): record \(index) is truncated") }
        let length = Int(le(offset, UInt64.self))
        guard le(offset + 8, UInt32.self) == maskedCRC32C(Array(bytes[offset..<(offset + 8)])) else {
            throw DIMError("\(path): record \(index): length checksum mismatch")
        }
        let start = offset + 12, end = start + length
        guard end + 4 <= bytes.count else { throw DIMError("\(path): record \(index) is truncated") }
        let payload = Array(bytes[start..<end])
        guard le(end, UInt32.self) == maskedCRC32C(payload) else {
            throw DIMError("\(path): record \(index): data checksum mismatch")
        }
        let event = try Tensorflow_Event(serializedBytes: payload)
        for v in event.summary.value {
            out.append(ScalarEvent(step: Int(event.step), tag: v.tag, value: v.simpleValue))
        }
        offset = end + 4
        index += 1
    }
    return out
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), masked as TFRecord does: rotate right
/// by 15 and add 0xa282ead8, so that a CRC of data holding CRCs stays well distributed.
func maskedCRC32C(_ bytes: [UInt8]) -> UInt32 {
    let crc = crc32c(bytes)
    return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
}

func crc32c(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for b in bytes { crc = crc32cTable[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
    return crc ^ 0xFFFF_FFFF
}

private let crc32cTable: [UInt32] = (0..<256).map { i -> UInt32 in
    var c = UInt32(i)
    for _ in 0..<8 { c = c & 1 != 0 ? 0x82F6_3B78 ^ (c >> 1) : c >> 1 }
    return c
}

private func littleEndianBytes(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
