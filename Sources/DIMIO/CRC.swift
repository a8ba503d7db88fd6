import Foundation
import CZlib

func crc32Update(_ crc: UInt, _ p: UnsafeRawPointer, _ n: Int) -> UInt {
    crc32(crc, p.assumingMemoryBound(to: UInt8.self), UInt32(n))
}
