import Foundation
import CKernels

/// Writes one line to standard error.
public func printError(_ message: String) {
    var line = message
    if !line.hasSuffix("\n") { line += "\n" }
    fputs(line, stderr)
}

/// Wall-clock seconds from a monotonic clock (for throughput and timing splits).
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// An error whose text is the whole message shown to the user (file and cause).
public struct DIMError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Fixed-point formatting (`String(format:)` is slow and locale-dependent).
public func fmt(_ x: Double, _ digits: Int = 3) -> String {
    if x.isNaN { return "nan" }
    if x.isInfinite { return x > 0 ? "inf" : "-inf" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let r = (abs(x) * scale).rounded()
    let ip = Int(r / scale)
    var frac = String(Int(r - Double(ip) * scale))
    while frac.count < digits { frac = "0" + frac }
    let sign = (x < 0 && r != 0) ? "-" : ""
    return digits > 0 ? "\(sign)\(ip).\(frac)" : "\(sign)\(ip)"
}

/// Scientific notation with `digits` significant decimals, e.g. 3.21e-07.
public func sci(_ x: Double, _ digits: Int = 2) -> String {
    if x == 0 { return "0" }
    if !x.isFinite { return fmt(x) }
    var e = Int(floor(log10(abs(x))))
    var m = x / pow(10, Double(e))
    if abs((abs(m) * pow(10, Double(digits))).rounded()) >= 10 * pow(10, Double(digits)) { m /= 10; e += 1 }
    let es = e < 0 ? "-" + (abs(e) < 10 ? "0" : "") + String(abs(e)) : "+" + (e < 10 ? "0" : "") + String(e)
    return fmt(m, digits) + "e" + es
}

/// Pads on the left to `width`.
public func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
}

/// Pads on the right to `width`.
public func padRight(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
}

/// ||reference - other|| / ||reference|| (floored at 1e-30): one number for how far a tensor is
/// from a reference, used by every equivalence check (tests, `checkpoint diff`).
public func relativeDifference<C: Collection>(_ reference: C, _ other: C) -> Double
    where C.Element: BinaryFloatingPoint {
    precondition(reference.count == other.count, "relativeDifference: \(reference.count) vs \(other.count) values")
    var d = 0.0, r = 0.0
    for (a, b) in zip(reference, other) {
        let (x, y) = (Double(a), Double(b))
        d += (x - y) * (x - y)
        r += x * x
    }
    return d.squareRoot() / max(r.squareRoot(), 1e-30)
}

/// relativeDifference over every entry (`every`) and with the `fraction` of entries that differ
/// most left out of the numerator (`trimmed`; at least one entry when fraction > 0), in C
/// (checkpoint diff's tensors have 4M entries, and the checks run debug builds). The trimmed
/// number is what `checkpoint diff --trim` compares: a result that depends on rounding at a few
/// points of a non-smooth function (a ReLU input within rounding of zero, a gradient entry at
/// rounding level that Adam turns into a +-lr step) moves a few entries of a tensor by a lot; an
/// error in what is computed moves most of them.
public func relativeDifferences(_ reference: [Double], _ other: [Double], trim fraction: Double)
    -> (every: Double, trimmed: Double) {
    precondition(reference.count == other.count, "relativeDifferences: \(reference.count) vs \(other.count) values")
    guard !reference.isEmpty else { return (0, 0) }
    var squares = [Double](repeating: 0, count: reference.count)
    var sums = [0.0, 0.0]
    squares.withUnsafeMutableBufferPointer { dim_squared_differences(reference, other, reference.count, $0.baseAddress!, &sums) }
    let norm = max(sums[1].squareRoot(), 1e-30)
    let every = sums[0].squareRoot() / norm
    guard fraction > 0, !every.isNaN else { return (every, every) }
    let left = min(reference.count - 1, Int((fraction * Double(reference.count)).rounded(.up)))
    let d = squares.withUnsafeMutableBufferPointer {
        dim_sum_of_smallest($0.baseAddress!, $0.count, $0.count - left)
    }
    return (every, d.squareRoot() / norm)
}

/// One JSON object on one line, keys sorted (so equal values give equal text): every record the
/// program prints or appends (metrics, probe results, benchmark records, the stored configuration).
public func jsonLine<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
