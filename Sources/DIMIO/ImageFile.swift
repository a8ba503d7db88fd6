import Foundation
import CImageCodecs
import DIMCore

/// Writes 8-bit pixels (HWC: rows of width x channels bytes, channels 1 = grey or 3 = RGB) as a
/// PNG file, or a JPEG of the given quality, through libpng / libjpeg-turbo (the libraries the
/// folder import decodes with). Used for pictures (`plot neighbours`) and by tests that make
/// image folders.
public enum ImageFileFormat { case png, jpeg(quality: Int) }

public func writeImage(path: String, pixels: [UInt8], width: Int, height: Int, channels: Int,
                       format: ImageFileFormat = .png) throws {
    guard channels == 1 || channels == 3, pixels.count == width * height * channels else {
        throw DIMError("\(path): \(pixels.count) bytes for a \(width)x\(height)x\(channels) image")
    }
    var err = [CChar](repeating: 0, count: 256)
    let (jpeg, quality): (Int32, Int32)
    switch format {
    case .png: (jpeg, quality) = (0, 0)
    case .jpeg(let q): (jpeg, quality) = (1, Int32(q))
    }
    let rc = dim_image_write(path, pixels, Int32(width), Int32(height), Int32(channels), jpeg, quality, &err, err.count)
    guard rc == 0 else {
        throw DIMError("\(path): cannot write image (\(String(cString: err)))")
    }
}

/// An RGB PNG (the pictures of `plot`).
public func writePNG(path: String, width: Int, height: Int, rgb: [UInt8]) throws {
    try writeImage(path: path, pixels: rgb, width: width, height: height, channels: 3)
}
