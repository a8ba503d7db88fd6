import Foundation
import DIMCore

/// Augmentation applied while reading, a pure function of (seed, epoch, example index), i.e. of
/// the seed, the step and the image, so that it is the same with any number of ranks and after a
/// resume. Geometry first (a padded random crop, or a random-resized crop), then a horizontal
/// flip, colour jitter and grey scale. The options left nil are off, and a configuration stored
/// before they existed reads as off.
///
/// Settings in the literature (CIFAR-sized images): the DIM authors used crop+flip (`--crop-padding
/// 4 --flip` here); SimCLR's CIFAR-10 recipe is a random-resized crop (scale 0.08-1), flip, colour
/// jitter of strength 0.5 (brightness, contrast, saturation 0.4, hue 0.1, with probability 0.8) and
/// grey scale with probability 0.2; AMDIM's CIFAR setting, a random-resized crop (scale 0.3-1),
/// colour jitter 0.4 with probability 0.8 and grey scale 0.25. Hue is not jittered here.
public struct Augmentation: Equatable, Codable {
    public var cropPadding = 0
    public var horizontalFlip = false
    /// Random-resized crop: the crop covers a fraction of the image's area uniform in [this, 1],
    /// with an aspect ratio log-uniform in [3/4, 4/3], and is resized (bilinear) to the image size.
    /// Replaces the padded crop. nil: off.
    public var resizedCropMinScale: Float? = nil
    /// Colour jitter: brightness, contrast and saturation each scaled by a factor uniform in
    /// [1 - s, 1 + s], for 80% of the images. nil: off.
    public var colorJitter: Float? = nil
    /// The probability that an image is turned grey. nil: off.
    public var grayscale: Float? = nil

    public init(cropPadding: Int = 0, horizontalFlip: Bool = false, resizedCropMinScale: Float? = nil,
                colorJitter: Float? = nil, grayscale: Float? = nil) {
        self.cropPadding = cropPadding; self.horizontalFlip = horizontalFlip
        self.resizedCropMinScale = resizedCropMinScale; self.colorJitter = colorJitter; self.grayscale = grayscale
    }

    /// Why these settings cannot be used, or nil.
    public var problem: String? {
        if cropPadding < 0 { return "--crop-padding must not be negative" }
        if let s = resizedCropMinScale, !(s > 0 && s <= 1) { return "--resized-crop-min-scale must be in (0, 1]" }
        if resizedCropMinScale != nil && cropPadding > 0 { return "choose --crop-padding or --resized-crop-min-scale" }
        if let s = colorJitter, !(s >= 0 && s < 1) { return "--color-jitter must be in [0, 1)" }
        if let p = grayscale, !(p >= 0 && p <= 1) { return "--grayscale must be a probability" }
        return nil
    }

    /// One image `src` (uint8, C x H x W) into channel planes `planeStride` apart at `dst`, as
    /// model pixels in [-1, 1]. `scratch` holds C x H x W floats.
    func apply(_ src: UnsafePointer<UInt8>, channels C: Int, height H: Int, width W: Int, rng: inout SplitMix64,
               scratch: Tensor, into dst: UnsafeMutablePointer<Float>, planeStride: Int) {
        if resizedCropMinScale == nil && colorJitter == nil && grayscale == nil {
            paddedCropAndFlip(src, C, H, W, rng: &rng, dst: dst, planeStride: planeStride)
            return
        }
        let v = scratch.data, hw = H * W
        if let minScale = resizedCropMinScale {
            let box = resizedCropBox(H, W, minScale: minScale, rng: &rng)
            let flip = horizontalFlip && rng.nextInt(2) == 1
            for c in 0..<C { resize(src + c * hw, H, W, box: box, flip: flip, into: v + c * hw) }
        } else {
            // The padded crop and flip, back in [0, 255] (padding 0).
            paddedCropAndFlip(src, C, H, W, rng: &rng, dst: v, planeStride: hw)
            for i in 0..<(C * hw) { v[i] = (v[i] + 1) * 127.5 }
        }
        if let s = colorJitter {
            let apply = rng.nextFloat() < 0.8
            let b = 1 + s * (2 * rng.nextFloat() - 1), k = 1 + s * (2 * rng.nextFloat() - 1)
            let sat = 1 + s * (2 * rng.nextFloat() - 1)
            if apply { jitter(v, C, hw, brightness: b, contrast: k, saturation: sat) }
        }
        if let p = grayscale, rng.nextFloat() < p, C == 3 {
            for i in 0..<hw {
                let g = 0.299 * v[i] + 0.587 * v[hw + i] + 0.114 * v[2 * hw + i]
                v[i] = g; v[hw + i] = g; v[2 * hw + i] = g
            }
        }
        for c in 0..<C {
            let out = dst + c * planeStride, plane = v + c * hw
            for i in 0..<hw { out[i] = plane[i] * (2 / 255) - 1 }
        }
    }

    /// The padded random crop and the flip (the DIM authors' augmentation), straight to model pixels.
    private func paddedCropAndFlip(_ src: UnsafePointer<UInt8>, _ C: Int, _ H: Int, _ W: Int, rng: inout SplitMix64,
                                   dst: UnsafeMutablePointer<Float>, planeStride: Int) {
        let pad = cropPadding
        let ox = pad > 0 ? rng.nextInt(2 * pad + 1) - pad : 0
        let oy = pad > 0 ? rng.nextInt(2 * pad + 1) - pad : 0
        let flip = horizontalFlip && rng.nextInt(2) == 1
        for c in 0..<C {
            let out = dst + c * planeStride
            let plane = src + c * H * W
            if ox == 0 && oy == 0 && !flip {
                for i in 0..<(H * W) { out[i] = modelPixel(plane[i]) }
                continue
            }
            for y in 0..<H {
                let sy = y + oy
                for x in 0..<W {
                    let sx = (flip ? W - 1 - x : x) + ox
                    // Padding is black (pixel 0 -> -1).
                    let inside = sy >= 0 && sy < H && sx >= 0 && sx < W
                    out[y * W + x] = inside ? modelPixel(plane[sy * W + sx]) : -1
                }
            }
        }
    }

    /// (x0, y0, width, height) of a random-resized crop, as torchvision draws it: up to ten tries
    /// for a box that fits, else the whole image.
    private func resizedCropBox(_ H: Int, _ W: Int, minScale: Float,
                                rng: inout SplitMix64) -> (Float, Float, Float, Float) {
        let area = Float(H * W), logRatio = (log(Float(3) / 4), log(Float(4) / 3))
        for _ in 0..<10 {
            let target = area * (minScale + (1 - minScale) * rng.nextFloat())
            let ratio = exp(logRatio.0 + (logRatio.1 - logRatio.0) * rng.nextFloat())
            let w = (target * ratio).squareRoot(), h = (target / ratio).squareRoot()
            if w <= Float(W) && h <= Float(H) {
                let x0 = (Float(W) - w) * rng.nextFloat(), y0 = (Float(H) - h) * rng.nextFloat()
                return (x0, y0, w, h)
            }
        }
        return (0, 0, Float(W), Float(H))
    }

    /// Bilinear resize of the box of one plane to H x W (pixel centres; edges clamped).
    private func resize(_ plane: UnsafePointer<UInt8>, _ H: Int, _ W: Int, box: (Float, Float, Float, Float),
                        flip: Bool, into out: UnsafeMutablePointer<Float>) {
        let (x0, y0, bw, bh) = box
        let sxScale = bw / Float(W), syScale = bh / Float(H)
        for y in 0..<H {
            let sy = min(max(y0 + (Float(y) + 0.5) * syScale - 0.5, 0), Float(H - 1))
            let iy = Int(sy), fy = sy - Float(iy), iy1 = min(iy + 1, H - 1)
            for x in 0..<W {
                let sx = min(max(x0 + (Float(flip ? W - 1 - x : x) + 0.5) * sxScale - 0.5, 0), Float(W - 1))
                let ix = Int(sx), fx = sx - Float(ix), ix1 = min(ix + 1, W - 1)
                let top = Float(plane[iy * W + ix]) * (1 - fx) + Float(plane[iy * W + ix1]) * fx
                let bottom = Float(plane[iy1 * W + ix]) * (1 - fx) + Float(plane[iy1 * W + ix1]) * fx
                out[y * W + x] = top * (1 - fy) + bottom * fy
            }
        }
    }

    /// Brightness, contrast and saturation (torchvision's definitions), clamped to [0, 255].
    private func jitter(_ v: UnsafeMutablePointer<Float>, _ C: Int, _ hw: Int, brightness: Float, contrast: Float,
                        saturation: Float) {
        func grey(_ i: Int) -> Float { C == 3 ? 0.299 * v[i] + 0.587 * v[hw + i] + 0.114 * v[2 * hw + i] : v[i] }
        for i in 0..<(C * hw) { v[i] = min(max(v[i] * brightness, 0), 255) }
        var mean: Float = 0
        for i in 0..<hw { mean += grey(i) }
        mean /= Float(hw)
        for i in 0..<(C * hw) { v[i] = min(max((v[i] - mean) * contrast + mean, 0), 255) }
        guard C == 3 else { return }
        for i in 0..<hw {
            let g = grey(i)
            for c in 0..<3 { v[c * hw + i] = min(max(g + (v[c * hw + i] - g) * saturation, 0), 255) }
        }
    }
}
