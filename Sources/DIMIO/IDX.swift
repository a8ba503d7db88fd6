import Foundation
import CZlib
import DIMCore

/// An IDX array (the MNIST / CIFAR-copy format): big-endian dims, uint8 data, row-major.
public struct IDXArray {
    public var dims: [Int]
    public var data: [UInt8]
    public var count: Int { dims.first ?? 0 }
}

/// Reads a whole file, gunzipping it when it starts with the gzip magic.
public func readMaybeGzip(_ path: String) throws -> [UInt8] {
    guard let f = fopen(path,
                        "rb") else { throw DIMError("\(path): cannot open (\(String(cString: strerror(errno))))") }
    defer { fclose(f) }
    var raw: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = fread(&chunk, 1, chunk.count, f)
        if n > 0 { raw.append(contentsOf: chunk[0..<n]) }
        if n < chunk.count { break }
    }
    guard raw.count >= 2, raw[0] == 0x1f, raw[1] == 0x8b else { return raw }
    return try gunzip(raw, path: path)
}

func gunzip(_ input: [UInt8], path: String) throws -> [UInt8] {
    var stream = z_stream()
    guard dim_inflateInit2(&stream, 15 + 32) == Z_OK else { throw DIMError("\(path): zlib init failed") }
    defer { inflateEnd(&stream) }
    var out: [UInt8] = []
    out.reserveCapacity(input.count * 4)
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    var status: Int32 = Z_OK
    try input.withUnsafeBufferPointer { inp in
        stream.next_in = UnsafeMutablePointer(mutating: inp.baseAddress!)
        stream.avail_in = UInt32(inp.count)
        repeat {
            let produced: Int = buffer.withUnsafeMutableBufferPointer { b in
                stream.next_out = b.baseAddress!
                stream.avail_out = UInt32(b.count)
                status = inflate(&stream, Z_NO_FLUSH)
                return b.count - Int(stream.avail_out)
            }
            if status != Z_OK && status != Z_STREAM_END {
                throw DIMError("\(path): corrupt or truncated gzip data (zlib error \(status))")
            }
            out.append(contentsOf: buffer[0..<produced])
            if status == Z_OK && stream.avail_in == 0 && produced == 0 {
                throw DIMError("\(path): truncated gzip stream")
            }
        } while status != Z_STREAM_END
    }
    return out
}

/// Parses an IDX file (gzip or raw), checking magic, type and size.
public func readIDX(_ path: String) throws -> IDXArray {
    let bytes = try readMaybeGzip(path)
    guard bytes.count >= 4, bytes[0] == 0, bytes[1] == 0 else { throw DIMError("\(path): not an IDX file (bad magic)") }
    guard bytes[2] == 0x08 else { throw DIMError("\(path): IDX element type 0x\(String(bytes[2], radix: 16)) is not "
        + "unsigned byte (0x08)") }
    let ndim = Int(bytes[3])
    guard ndim >= 1, bytes.count >= 4 + 4 * ndim else { throw DIMError("\(path): truncated IDX header") }
    var dims: [Int] = []
    for d in 0..<ndim {
        let o = 4 + 4 * d
        dims.append(Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3]))
    }
    let header = 4 + 4 * ndim
    let expected = dims.reduce(1, *)
    guard bytes.count - header == expected else {
        throw DIMError("\(path): IDX data has \(bytes.count - header) bytes, dims \(dims) need \(expected) "
            + "(truncated or padded)")
    }
    return IDXArray(dims: dims, data: Array(bytes[header...]))
}
