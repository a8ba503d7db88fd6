import XCTest
@testable import DIMCore

/// Central finite differences, Richardson-extrapolated ((4 D(eps/2) - D(eps)) / 3 cancels the
/// eps^2 term, which BatchNorm's curvature makes large), against an analytic gradient.
///
/// `loss` recomputes the scalar from scratch; `value` is the tensor being perturbed and `analytic`
/// the gradient the backward pass produced for it. Checks `samples` entries (all when fewer),
/// with an error measure that is relative to the entry but floored by the largest gradient, so
/// float32 rounding in near-zero entries does not fail the test.
func checkGradient(_ label: String, value: UnsafeMutablePointer<Float>, count: Int, analytic: [Float],
                   samples: Int = 40, eps: Float = 1e-3, tolerance: Double = 2e-2, seed: UInt64 = 7,
                   file: StaticString = #filePath, line: UInt = #line, loss: () -> Double) {
    XCTAssertEqual(analytic.count, count, "\(label): gradient size", file: file, line: line)
    var rng = SplitMix64(seed: seed)
    let indices = count <= samples ? Array(0..<count) : (0..<samples).map { _ in rng.nextInt(count) }
    let scale = analytic.map { abs(Double($0)) }.max() ?? 0
    XCTAssertGreaterThan(scale, 0, "\(label): analytic gradient is all zero; the check would be vacuous", file: file,
                         line: line)
    var worst = 0.0, worstIndex = -1, worstPair = (0.0, 0.0)
    for i in indices {
        let saved = value[i]
        func central(_ h: Float) -> Double {
            value[i] = saved + h
            let plus = loss()
            value[i] = saved - h
            let minus = loss()
            value[i] = saved
            return (plus - minus) / (Double(2 * h))
        }
        let numeric = (4 * central(eps / 2) - central(eps)) / 3
        let a = Double(analytic[i])
        let err = abs(a - numeric) / (max(abs(a), abs(numeric)) + 1e-2 * scale)
        if err > worst { worst = err; worstIndex = i; worstPair = (a, numeric) }
    }
    XCTAssertLessThan(worst, tolerance,
                      "\(label): entry \(worstIndex) analytic \(worstPair.0) vs numeric \(worstPair.1)", file: file, line: line)
}

/// A random tensor with entries in [-scale, scale).
func randomTensor(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
    var rng = SplitMix64(seed: seed)
    let t = Tensor(shape)
    for i in 0..<t.count { t.data[i] = rng.uniform(scale) }
    return t
}

/// sum_i r_i * y_i for a fixed random r: a scalar whose gradient with respect to y is r.
struct Projection {
    let r: Tensor
    init(count: Int, seed: UInt64) { r = randomTensor([count], seed: seed) }
    func loss(_ y: Tensor) -> Double {
        var s = 0.0
        for i in 0..<y.count { s += Double(r.data[i]) * Double(y.data[i]) }
        return s
    }
    func gradient(shape: [Int]) -> Tensor {
        let g = Tensor(shape)
        g.data.update(from: r.data, count: g.count)
        return g
    }
}

/// Directional derivative of `loss` along a random direction d over a whole tensor, against
/// <analytic, d>. Summing over every entry makes the signal large next to float32 rounding.
func checkDirectional(_ label: String, value: UnsafeMutablePointer<Float>, count: Int, analytic: [Float],
                      eps: Float = 1e-2, tolerance: Double = 1e-2, seed: UInt64 = 5,
                      file: StaticString = #filePath, line: UInt = #line, loss: () -> Double) {
    var rng = SplitMix64(seed: seed)
    let saved = Array(UnsafeBufferPointer(start: value, count: count))
    let rms = (saved.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(count)).squareRoot()
    let scale = Float(rms > 0 ? rms : 0.1)
    let d = (0..<count).map { _ in rng.uniform(scale) }
    var predicted = 0.0
    for i in 0..<count { predicted += Double(analytic[i]) * Double(d[i]) }
    func central(_ h: Float) -> Double {
        for i in 0..<count { value[i] = saved[i] + h * d[i] }
        let plus = loss()
        for i in 0..<count { value[i] = saved[i] - h * d[i] }
        let minus = loss()
        for i in 0..<count { value[i] = saved[i] }
        return (plus - minus) / Double(2 * h)
    }
    let numeric = (4 * central(eps / 2) - central(eps)) / 3
    let err = abs(predicted - numeric) / max(abs(predicted), abs(numeric), 1e-9)
    XCTAssertLessThan(err, tolerance, "\(label): <grad, d> = \(predicted), numeric \(numeric)", file: file, line: line)
}
