import Foundation

/// Geometry of a 2-D convolution over a channel-major batch `[C, N, H, W]`.
public struct ConvGeometry: Equatable {
    public var inChannels: Int, height: Int, width: Int
    public var kernel: Int, stride: Int, padding: Int
    public var outHeight: Int { Self.outputSize(height, kernel: kernel, stride: stride, padding: padding) }
    public var outWidth: Int { Self.outputSize(width, kernel: kernel, stride: stride, padding: padding) }

    /// Output length of a convolution along one axis.
    public static func outputSize(_ size: Int, kernel: Int, stride: Int, padding: Int) -> Int {
        (size + 2 * padding - kernel) / stride + 1
    }
    /// Rows of the column matrix: one per (input channel, kernel row, kernel column).
    public var patchSize: Int { inChannels * kernel * kernel }

    public init(inChannels: Int, height: Int, width: Int, kernel: Int, stride: Int, padding: Int) {
        self.inChannels = inChannels; self.height = height; self.width = width
        self.kernel = kernel; self.stride = stride; self.padding = padding
    }
}

extension ConvGeometry {
    /// Positions of one input row in each column phase: phase f holds columns f, f + stride, ...
    var phaseLength: Int { (width + stride - 1) / stride }

    /// Floats of the phase-split copy of a `[C, N, H, W]` batch that im2col and col2im work through.
    public func phaseCount(batch: Int) -> Int { inChannels * batch * height * stride * phaseLength }

    /// Kernel column kx reads input column ix = ox * stride - padding + kx: phase `phase`, position
    /// ox + `shift` in it; `valid` is the range of ox for which that position exists (outside it,
    /// the padding: zeros).
    func phaseRun(kx: Int) -> (phase: Int, shift: Int, valid: Range<Int>) {
        let offset = kx - padding
        let phase = ((offset % stride) + stride) % stride
        let shift = (offset - phase) / stride
        let length = (width - phase + stride - 1) / stride  // columns of this phase
        let lo = max(0, -shift), hi = min(outWidth, length - shift)
        return (phase, shift, lo..<max(lo, hi))
    }
}

// Why phases: with stride s, one row of the column matrix takes every s-th pixel of an input row.
// Splitting each input row once into its s column phases (x[f], x[f+s], ...) turns every row of the
// column matrix into a contiguous run of one phase: a copy (and in col2im a vectorised add) instead
// of a strided gather with a bounds test per element. Each input pixel is read k*k/s^2 times by
// im2col (4 for DIM's k4 s2), so the split pays for itself. Pure copies, and col2im adds the same
// values in the same order as a direct scatter: bit-identical to it.

/// Splits every input row into its column phases (`phases`: `[C*N*H, stride, phaseLength]`).
private func splitPhases(_ x: UnsafePointer<Float>, rows: Int, _ g: ConvGeometry, into phases: UnsafeMutablePointer<Float>) {
    let (W, s, P) = (g.width, g.stride, g.phaseLength)
    for r in 0..<rows {
        let src = x + r * W, dst = phases + r * s * P
        for f in 0..<s {
            let d = dst + f * P
            var i = f, j = 0
            while i < W { d[j] = src[i]; i += s; j += 1 }
        }
    }
}

/// Unfolds a `[C, N, H, W]` batch into the column matrix `[C*k*k, N*Ho*Wo]`, so that the
/// convolution is one GEMM: `out[Cout, N*Ho*Wo] = W[Cout, C*k*k] * col` (Caffe's im2col, over the
/// whole batch at once so the GEMM is wide). `phases` is scratch of `g.phaseCount(batch:)` floats.
public func im2col(
    _ x: UnsafePointer<Float>, batch: Int, _ g: ConvGeometry, into col: UnsafeMutablePointer<Float>,
    phases: UnsafeMutablePointer<Float>
) {
    let (H, k, s, p, P) = (g.height, g.kernel, g.stride, g.padding, g.phaseLength)
    let (Ho, Wo) = (g.outHeight, g.outWidth)
    let cols = batch * Ho * Wo
    splitPhases(x, rows: g.inChannels * batch * H, g, into: phases)
    for c in 0..<g.inChannels {
        for ky in 0..<k {
            for kx in 0..<k {
                let row = col + ((c * k + ky) * k + kx) * cols
                let (phase, shift, valid) = g.phaseRun(kx: kx)
                for n in 0..<batch {
                    for oy in 0..<Ho {
                        let iy = oy * s - p + ky
                        let dst = row + (n * Ho + oy) * Wo
                        guard iy >= 0 && iy < H, !valid.isEmpty else {
                            dst.update(repeating: 0, count: Wo)
                            continue
                        }
                        let src = phases + (((c * batch + n) * H + iy) * s + phase) * P + shift
                        dst.update(repeating: 0, count: valid.lowerBound)
                        (dst + valid.lowerBound).update(from: src + valid.lowerBound, count: valid.count)
                        (dst + valid.upperBound).update(repeating: 0, count: Wo - valid.upperBound)
                    }
                }
            }
        }
    }
}

/// The adjoint of im2col: sums every column entry back into the input position it came from.
/// `dx` is overwritten; `phases` is scratch of `g.phaseCount(batch:)` floats.
public func col2im(
    _ col: UnsafePointer<Float>, batch: Int, _ g: ConvGeometry, into dx: UnsafeMutablePointer<Float>,
    phases: UnsafeMutablePointer<Float>
) {
    let (H, W, k, s, p, P) = (g.height, g.width, g.kernel, g.stride, g.padding, g.phaseLength)
    let (Ho, Wo) = (g.outHeight, g.outWidth)
    let cols = batch * Ho * Wo
    let rows = g.inChannels * batch * H
    phases.update(repeating: 0, count: g.phaseCount(batch: batch))
    for c in 0..<g.inChannels {
        for ky in 0..<k {
            for kx in 0..<k {
                let row = col + ((c * k + ky) * k + kx) * cols
                let (phase, shift, valid) = g.phaseRun(kx: kx)
                if valid.isEmpty { continue }
                for n in 0..<batch {
                    for oy in 0..<Ho {
                        let iy = oy * s - p + ky
                        if iy < 0 || iy >= H { continue }
                        let dst = phases + (((c * batch + n) * H + iy) * s + phase) * P + shift
                        let src = row + (n * Ho + oy) * Wo
                        for ox in valid { dst[ox] += src[ox] }
                    }
                }
            }
        }
    }
    // Interleave the phases back into rows.
    for r in 0..<rows {
        let src = phases + r * s * P, dst = dx + r * W
        for f in 0..<s {
            let q = src + f * P
            var i = f, j = 0
            while i < W { dst[i] = q[j]; i += s; j += 1 }
        }
    }
}
