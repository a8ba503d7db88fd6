/// float32 SIMD kernels for the estimators: exp, softplus with its sigmoid, max and sum-of-exp over
/// contiguous spans of a score row. They run at memory speed (a few instructions per score instead
/// of a libm call in Double) and are accurate to a few float32 ulps; each span's sum is accumulated
/// in float32 vectors for at most 128 scores and then in Double, so a long row does not lose the
/// small terms.

public typealias FloatVector = SIMD8<Float>
private let lanes = FloatVector.scalarCount
/// Scores summed in float32 before the partial sum moves to Double.
private let floatBlock = 128

/// e^x for every lane (Cephes' expf: x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial for e^r,
/// 2^n put into the exponent bits). Relative error below 2e-7. Inputs are clamped to
/// [-87.3, 88.7], so the result is never subnormal, infinite or NaN for finite x. Written with
/// the operations that compile to single vector instructions (no per-lane rounding calls): n is
/// rounded with the 1.5 x 2^23 trick, whose bit pattern then holds n in its low bits.
@inline(__always)
public func exp(_ x: FloatVector) -> FloatVector {
    let (low, high) = (FloatVector(repeating: -87.3), FloatVector(repeating: 88.7))
    let x = whereNegative(high - x, high, else: whereNegative(x - low, low, else: x))
    let magic = FloatVector(repeating: 12_582_912)  // 1.5 * 2^23
    let shifted = x * 1.442_695_04 + magic
    let n = shifted - magic
    let r = x - n * 0.693_359_375 + n * 2.121_944_4e-4  // ln2 in two parts: exact n * hi
    var p = FloatVector(repeating: 1.987_569_15e-4)
    p = p * r + 1.398_199_95e-3
    p = p * r + 8.333_451_9e-3
    p = p * r + 4.166_579_59e-2
    p = p * r + 1.666_666_55e-1
    p = p * r + 5.000_000_12e-1
    p = p * (r * r) + r + 1
    // bits(shifted) = bits(magic) + n, so 2^n = (bits(shifted) - bits(magic) + 127) << 23.
    let bits = unsafeBitCast(shifted, to: SIMD8<UInt32>.self) &- 0x4B40_0000 &+ 127
    return p * unsafeBitCast(bits &<< 23, to: FloatVector.self)
}

// Lane selection, minimum and maximum from sign bits: Swift's pointwiseMin/Max, comparisons and
// `replacing(with:where:)` are per-lane loops (calls, branches) in release builds, while bitwise
// and arithmetic SIMD operators are single vector instructions.
private typealias Bits = SIMD8<UInt32>

@inline(__always)
private func bits(_ x: FloatVector) -> Bits { unsafeBitCast(x, to: Bits.self) }

/// All ones in the lanes where x's sign bit is set.
@inline(__always)
private func negativeMask(_ x: FloatVector) -> Bits { Bits(repeating: 0) &- (bits(x) &>> 31) }

/// Lanes of `a` where x is negative, of `b` elsewhere.
@inline(__always)
func whereNegative(_ x: FloatVector, _ a: FloatVector, else b: FloatVector) -> FloatVector {
    let mask = negativeMask(x)
    return unsafeBitCast((bits(a) & mask) | (bits(b) & ~mask), to: FloatVector.self)
}

/// -|x|: the sign bit set.
@inline(__always)
private func negativeAbs(_ x: FloatVector) -> FloatVector {
    unsafeBitCast(bits(x) | Bits(repeating: 0x8000_0000), to: FloatVector.self)
}

/// max(x, 0): negative lanes cleared.
@inline(__always)
private func positivePart(_ x: FloatVector) -> FloatVector {
    unsafeBitCast(bits(x) & ~negativeMask(x), to: FloatVector.self)
}

/// softplus(x) = log(1 + e^x) and sigmoid(x) for every lane, from one exp: with e = e^-|x|,
/// softplus = max(x, 0) + log1p(e) and sigmoid = 1/(1+e) (x >= 0) or e/(1+e). log1p(e) for
/// e in [0, 1] is 2 atanh(s) with s = e/(2+e) <= 1/3, a series in s^2 (relative error < 2e-8).
@inline(__always)
public func softplusAndSigmoid(_ x: FloatVector) -> (softplus: FloatVector, sigmoid: FloatVector) {
    let e = exp(negativeAbs(x))
    // One division for both quotients: s = e/(2+e) and 1/(1+e) share 1/((2+e)(1+e)).
    let onePlusE = 1 + e, twoPlusE = 2 + e
    let reciprocal = 1 / (twoPlusE * onePlusE)
    let s = e * onePlusE * reciprocal, s2 = s * s
    var q = FloatVector(repeating: 1 / 13)
    q = q * s2 + 1 / 11
    q = q * s2 + 1 / 9
    q = q * s2 + 1 / 7
    q = q * s2 + 1 / 5
    q = q * s2 + 1 / 3
    q = q * s2 + 1
    let softplus = positivePart(x) + 2 * s * q
    let inverse = twoPlusE * reciprocal
    return (softplus, whereNegative(x, e * inverse, else: inverse))
}

/// Over `x[0..<count]`: writes `gradScale * sigmoid(sign * x)` into `grad` and returns the sum of
/// softplus(sign * x). sign = +1 is JSD's negative term, -1 its positive term.
public func softplusSum(_ x: UnsafePointer<Float>, count: Int, sign: Float, gradScale: Float,
                        grad: UnsafeMutablePointer<Float>) -> Double {
    var total = 0.0
    var i = 0
    let (sgn, scale) = (FloatVector(repeating: sign), FloatVector(repeating: gradScale))
    while i + lanes <= count {
        var acc = FloatVector()
        let end = min(count - (count - i) % lanes, i + floatBlock)
        while i < end {
            let v = sgn * load(x + i)
            let (sp, sig) = softplusAndSigmoid(v)
            acc += sp
            store(sig * scale, to: grad + i)
            i += lanes
        }
        total += Double(acc.sum())
    }
    while i < count {
        let v = Double(sign * x[i])
        total += softplus(v)
        grad[i] = gradScale * Float(sigmoid(v))
        i += 1
    }
    return total
}

/// The largest of `x[0..<count]` (at least `initial`).
public func maximum(_ x: UnsafePointer<Float>, count: Int, initial: Float) -> Float {
    var m = FloatVector(repeating: initial)
    var i = 0
    while i + lanes <= count {
        let v = load(x + i)
        m = whereNegative(m - v, v, else: m)
        i += lanes
    }
    var result = initial
    for k in 0..<lanes { result = max(result, m[k]) }
    while i < count { result = max(result, x[i]); i += 1 }
    return result
}

/// Sum of e^(x - shift) over `x[0..<count]`; with `grad`, also writes gradScale * e^(x - shift)
/// there (the softmax weights, when shift is the log-sum-exp).
public func expSum(_ x: UnsafePointer<Float>, count: Int, shift: Float, gradScale: Float = 1,
                   grad: UnsafeMutablePointer<Float>? = nil) -> Double {
    var total = 0.0
    var i = 0
    let (c, scale) = (FloatVector(repeating: shift), FloatVector(repeating: gradScale))
    while i + lanes <= count {
        var acc = FloatVector()
        let end = min(count - (count - i) % lanes, i + floatBlock)
        while i < end {
            let e = exp(load(x + i) - c)
            acc += e
            if let grad { store(e * scale, to: grad + i) }
            i += lanes
        }
        total += Double(acc.sum())
    }
    while i < count {
        let e = Float(Foundation.exp(Double(x[i] - shift)))
        total += Double(e)
        grad?[i] = e * gradScale
        i += 1
    }
    return total
}

@inline(__always)
private func load(_ p: UnsafePointer<Float>) -> FloatVector {
    UnsafeRawPointer(p).loadUnaligned(as: FloatVector.self)
}

@inline(__always)
private func store(_ v: FloatVector, to p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: FloatVector.self)
}

import Foundation
