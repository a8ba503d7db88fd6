import CZlib
import DIMCore
import Foundation

/// Writes an 8-bit RGB PNG (IHDR, one zlib-compressed IDAT of filter-0 scanlines, IEND).
public func writePNG(path: String, width: Int, height: Int, rgb: [UInt8]) throws {
    precondition(rgb.count == width * height * 3)
    var raw = [UInt8]()
    raw.reserveCapacity((width * 3 + 1) * height)
    for y in 0..<height {
        raw.append(0)
        raw.append(contentsOf: rgb[(y * width * 3)..<((y + 1) * width * 3)])
    }
    var destLen = compressBound(uLong(raw.count))
    var compressed = [UInt8](repeating: 0, count: Int(destLen))
    guard compress2(&compressed, &destLen, raw, uLong(raw.count), 9) == Z_OK else { throw DIMError("\(path): zlib compression failed") }
    compressed.removeSubrange(Int(destLen)...)
    var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 255), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255)] }
    func chunk(_ type: String, _ data: [UInt8]) {
        let body = Array(type.utf8) + data
        png += be32(data.count) + body
        let crc = body.withUnsafeBufferPointer { crc32(0, $0.baseAddress, uInt($0.count)) }
        png += be32(Int(crc))
    }
    chunk("IHDR", be32(width) + be32(height) + [8, 2, 0, 0, 0])
    chunk("IDAT", compressed)
    chunk("IEND", [])
    guard FileManager.default.createFile(atPath: path, contents: Data(png)) else { throw DIMError("\(path): cannot write") }
}
