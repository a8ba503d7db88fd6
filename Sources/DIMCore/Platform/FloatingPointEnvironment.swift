import Foundation
import CCPU

/// Subnormal (denormal) floats take a microcode assist per operand on Intel cores: the estimator's
/// tiny sigmoid/exp values made the score phase 7-10x slower on a Xeon. Flush-to-zero (results)
/// and denormals-are-zero (inputs) make them plain zeros; DIM's losses and gradients do not depend
/// on values below 1e-38. The bits live in each thread's MXCSR and are inherited by threads
/// created afterwards; Debian's OpenBLAS also copies the caller's MXCSR to its worker threads for
/// every call (tested in PlatformTests).
public enum FloatingPointEnvironment {
    static let flushToZero: UInt32 = 1 << 15
    static let denormalsAreZero: UInt32 = 1 << 6

    /// Sets FTZ and DAZ on the calling thread (call it first in main, before threads start).
    public static func flushSubnormalsToZero() {
        dim_set_mxcsr(dim_get_mxcsr() | flushToZero | denormalsAreZero)
    }

    /// Restores IEEE subnormals on the calling thread (tests use it to show the difference).
    public static func keepSubnormals() {
        dim_set_mxcsr(dim_get_mxcsr() & ~(flushToZero | denormalsAreZero))
    }

    /// True when both bits are set on the calling thread.
    public static var subnormalsFlushed: Bool {
        let bits = flushToZero | denormalsAreZero
        return dim_is_x86() != 0 && dim_get_mxcsr() & bits == bits
    }
}

/// Counts the nonzero values below the smallest normal float (subnormals) in a buffer.
public func subnormalCount(_ x: UnsafePointer<Float>, count: Int) -> Int {
    var k = 0
    for i in 0..<count where x[i] != 0 && abs(x[i]) < Float.leastNormalMagnitude { k += 1 }
    return k
}
