import Foundation

/// Scalar functions used by the estimators, written to be stable for large |x|.

/// softplus(x) = log(1 + e^x)
@inline(__always)
public func softplus(_ x: Double) -> Double { max(x, 0) + log1p(exp(-abs(x))) }

@inline(__always)
public func sigmoid(_ x: Double) -> Double {
    x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x))
}

@inline(__always)
public func sigmoid(_ x: Float) -> Float {
    x >= 0 ? 1 / (1 + expf(-x)) : expf(x) / (1 + expf(x))
}

/// Transposes a row-major [rows, cols] matrix into [cols, rows].
public func transpose(_ src: UnsafePointer<Float>, rows: Int, cols: Int, into dst: UnsafeMutablePointer<Float>) {
    // Blocked so that both sides stay in cache.
    let bs = 32
    var i0 = 0
    while i0 < rows {
        let i1 = min(i0 + bs, rows)
        var j0 = 0
        while j0 < cols {
            let j1 = min(j0 + bs, cols)
            for i in i0..<i1 { for j in j0..<j1 { dst[j * rows + i] = src[i * cols + j] } }
            j0 = j1
        }
        i0 = i1
    }
}

/// Flattens a channel-major map `[C, N, H, W]` into per-image vectors in PyTorch's NCHW order,
/// channel-major `[C*H*W, N]`: out[c*HW + p, n] = x[c, n, p].
public func flattenMap(_ x: Tensor, into out: Tensor) {
    let (C, N, HW) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
    out.resize([C * HW, N])
    for c in 0..<C {
        for n in 0..<N {
            let src = x.data + (c * N + n) * HW
            for p in 0..<HW { out.data[(c * HW + p) * N + n] = src[p] }
        }
    }
}

/// The inverse of flattenMap: dx[c, n, p] = dout[c*HW + p, n].
public func unflattenMap(_ d: Tensor, channels C: Int, height H: Int, width W: Int, into out: Tensor) {
    let N = d.shape[1], HW = H * W
    out.resize([C, N, H, W])
    for c in 0..<C {
        for n in 0..<N {
            let dst = out.data + (c * N + n) * HW
            for p in 0..<HW { dst[p] = d.data[(c * HW + p) * N + n] }
        }
    }
}

/// Converts an image batch from PyTorch's `[N, C, H, W]` to the channel-major `[C, N, H, W]`.
public func nchwToChannelMajor(_ x: UnsafePointer<Float>, n: Int, c: Int, h: Int, w: Int, into out: Tensor) {
    out.resize([c, n, h, w])
    let hw = h * w
    for i in 0..<n { for ch in 0..<c {
        (out.data + (ch * n + i) * hw).update(from: x + (i * c + ch) * hw, count: hw)
    } }
}

/// Converts a channel-major `[C, N, ...]` tensor to `[N, C, ...]` (for comparisons and export).
public func channelMajorToNCHW(_ x: Tensor) -> [Float] {
    let c = x.shape[0], n = x.shape.count > 1 ? x.shape[1] : 1
    let rest = x.count / max(c * n, 1)
    var out = [Float](repeating: 0, count: x.count)
    for i in 0..<n { for ch in 0..<c { for p in 0..<rest {
        out[(i * c + ch) * rest + p] = x.data[(ch * n + i) * rest + p]
    } } }
    return out
}
