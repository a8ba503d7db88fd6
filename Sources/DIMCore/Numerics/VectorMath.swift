import CKernels
import CBLAS

/// The estimators' elementwise work over contiguous spans of a score row: softplus with its
/// sigmoid, max, sum of exp. The kernels are C (Sources/CKernels): float32 vectors of 8, compiled
/// for AVX-512, AVX2+FMA and baseline x86-64, the best one picked when the library loads. (Swift's
/// SIMD types compile only for the baseline target, SSE2 without FMA: 2.4-2.6 ns per score here,
/// where the AVX2/AVX-512 clones need a fraction of that.) Accurate to a few float32 ulps; sums run
/// in float32 vectors for at most 128 values, then in Double, so long rows keep their small terms.
/// They never produce a subnormal (e^x below e^-87.3 is 0).

/// The instruction set of the kernels in use: "AVX-512", "AVX2+FMA" or "baseline x86-64".
public var estimatorKernelISA: String { String(cString: dim_kernels_isa()) }

/// Over `x[0..<count]`: writes `gradScale * sigmoid(sign * x)` into `grad` and returns the sum of
/// softplus(sign * x). sign is +1 (JSD's negative term) or -1 (its positive term). `grad` may be
/// `x` itself (each block of values is read before its results are written).
@inline(__always)
public func softplusSum(_ x: UnsafePointer<Float>, count: Int, sign: Float, gradScale: Float,
                        grad: UnsafeMutablePointer<Float>) -> Double {
    precondition(sign == 1 || sign == -1, "softplusSum: sign \(sign), expected +1 or -1")
    return dim_softplus_sum(x, count, sign, gradScale, grad)
}

/// The largest of `x[0..<count]` (at least `initial`).
@inline(__always)
public func maximum(_ x: UnsafePointer<Float>, count: Int, initial: Float) -> Float {
    dim_maximum(x, count, initial)
}

/// Sum of e^(x - shift) over `x[0..<count]` (every x - shift <= 0: shift is their maximum or a
/// log-sum-exp over them); with `grad`, also writes gradScale * e^(x - shift) there (the softmax
/// weights, when shift is the log-sum-exp).
@inline(__always)
public func expSum(_ x: UnsafePointer<Float>, count: Int, shift: Float, gradScale: Float = 1,
                   grad: UnsafeMutablePointer<Float>? = nil) -> Double {
    dim_exp_sum(x, count, shift, gradScale, grad)
}

/// x[0..<count] *= a.
@inline(__always)
public func scale(_ x: UnsafeMutablePointer<Float>, count: Int, by a: Float) {
    cblas_sscal(Int32(count), a, x, 1)
}
