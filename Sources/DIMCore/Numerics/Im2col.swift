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

/// Unfolds a `[C, N, H, W]` batch into the column matrix `[C*k*k, N*Ho*Wo]`, so that the
/// convolution is one GEMM: `out[Cout, N*Ho*Wo] = W[Cout, C*k*k] * col` (Caffe's im2col, over the
/// whole batch at once so the GEMM is wide).
public func im2col(
    _ x: UnsafePointer<Float>, batch: Int, _ g: ConvGeometry, into col: UnsafeMutablePointer<Float>
) {
    let (H, W, k, s, p) = (g.height, g.width, g.kernel, g.stride, g.padding)
    let (Ho, Wo) = (g.outHeight, g.outWidth)
    let cols = batch * Ho * Wo
    for c in 0..<g.inChannels {
        for ky in 0..<k {
            for kx in 0..<k {
                let row = col + ((c * k + ky) * k + kx) * cols
                for n in 0..<batch {
                    let plane = x + (c * batch + n) * H * W
                    let outPlane = row + n * Ho * Wo
                    for oy in 0..<Ho {
                        let iy = oy * s - p + ky
                        let dst = outPlane + oy * Wo
                        if iy < 0 || iy >= H {
                            dst.update(repeating: 0, count: Wo)
                            continue
                        }
                        let src = plane + iy * W
                        var ix = kx - p
                        for ox in 0..<Wo {
                            dst[ox] = (ix >= 0 && ix < W) ? src[ix] : 0
                            ix += s
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of im2col: sums every column entry back into the input position it came from.
/// `dx` is overwritten.
public func col2im(
    _ col: UnsafePointer<Float>, batch: Int, _ g: ConvGeometry, into dx: UnsafeMutablePointer<Float>
) {
    let (H, W, k, s, p) = (g.height, g.width, g.kernel, g.stride, g.padding)
    let (Ho, Wo) = (g.outHeight, g.outWidth)
    let cols = batch * Ho * Wo
    dx.update(repeating: 0, count: g.inChannels * batch * H * W)
    for c in 0..<g.inChannels {
        for ky in 0..<k {
            for kx in 0..<k {
                let row = col + ((c * k + ky) * k + kx) * cols
                for n in 0..<batch {
                    let plane = dx + (c * batch + n) * H * W
                    let inPlane = row + n * Ho * Wo
                    for oy in 0..<Ho {
                        let iy = oy * s - p + ky
                        if iy < 0 || iy >= H { continue }
                        let dst = plane + iy * W
                        let src = inPlane + oy * Wo
                        var ix = kx - p
                        for ox in 0..<Wo {
                            if ix >= 0 && ix < W { dst[ix] += src[ox] }
                            ix += s
                        }
                    }
                }
            }
        }
    }
}
