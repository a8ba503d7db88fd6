import Foundation
import CKernels

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
    /// Floats of the phase-split scratch of a `[C, N, H, W]` batch that im2col and col2im work
    /// through (CKernels/conv_kernels.c says why phases).
    public func phaseCount(batch: Int) -> Int {
        dim_conv_phase_count(inChannels, batch, height, width, stride)
    }
}

/// Unfolds a `[C, N, H, W]` batch into the column matrix `[C*k*k, N*Ho*Wo]`, so that the
/// convolution is one GEMM: `out[Cout, N*Ho*Wo] = W[Cout, C*k*k] * col` (Caffe's im2col, over the
/// whole batch at once so the GEMM is wide). `phases` is scratch of `g.phaseCount(batch:)` floats.
/// Input channels are independent (their own rows of x, col and phases): several threads take
/// ranges of them.
public func im2col(
    _ x: UnsafePointer<Float>, batch: Int, _ g: ConvGeometry, into col: UnsafeMutablePointer<Float>,
    phases: UnsafeMutablePointer<Float>
) {
    let parts = ChannelParts(g, batch: batch)
    parallelRanges(g.inChannels, grain: parts.grain) { c in
        dim_im2col(x + c.lowerBound * parts.input, c.count, batch, g.height, g.width, g.kernel, g.stride, g.padding,
                   col + c.lowerBound * parts.columns, phases + c.lowerBound * parts.phases)
    }
}

/// The adjoint of im2col: sums every column entry back into the input position it came from.
/// `dx` is overwritten; `phases` is scratch of `g.phaseCount(batch:)` floats.
public func col2im(
    _ col: UnsafePointer<Float>, batch: Int, _ g: ConvGeometry, into dx: UnsafeMutablePointer<Float>,
    phases: UnsafeMutablePointer<Float>
) {
    let parts = ChannelParts(g, batch: batch)
    parallelRanges(g.inChannels, grain: parts.grain) { c in
        dim_col2im(col + c.lowerBound * parts.columns, c.count, batch, g.height, g.width, g.kernel, g.stride,
                   g.padding, dx + c.lowerBound * parts.input, phases + c.lowerBound * parts.phases)
    }
}

/// Floats per input channel in the input, the column matrix and the phase scratch.
private struct ChannelParts {
    let input: Int, columns: Int, phases: Int
    var grain: Int { parallelGrain(floatsPerItem: columns) }
    init(_ g: ConvGeometry, batch: Int) {
        input = batch * g.height * g.width
        columns = g.kernel * g.kernel * batch * g.outHeight * g.outWidth
        phases = dim_conv_phase_count(1, batch, g.height, g.width, g.stride)
    }
}
