import Foundation
import DIMIO

/// Helpers shared by the test targets.

/// A new empty directory under the system's temporary directory, named after the calling test.
public func temporaryDirectory(_ name: String = #function) -> String {
    let tag = "\(getpid())-\(name.filter { $0.isLetter })-\(UInt32.random(in: 0...UInt32.max))"
    let dir = NSTemporaryDirectory() + "dim-dist-test-" + tag
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// The checkout root (for the embedded MNIST files and the built binary).
public let checkoutRoot: String = {
    var parts = String(#filePath).split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)  // Tests/DIMTestSupport/TestSupport.swift
    return parts.joined(separator: "/")
}()

/// Makes an ImageFolder tree with libjpeg-turbo and libpng: `train/{cat,dog}` and `test/{cat,dog}`,
/// cats as JPEG, dogs as PNG, of several sizes and aspect ratios; each image a solid colour of its
/// class plus a little gradient. Returns the tree's root.
public func makeImageFolder(_ root: String, perClass: Int = 5, testPerClass: Int = 2) throws -> String {
    let sizes = [(40, 30), (30, 50), (32, 32), (64, 48), (20, 20)]
    for (split, n) in [("train", perClass), ("test", testPerClass)] {
        for (c, cls) in ["cat", "dog"].enumerated() {
            let dir = "\(root)/\(split)/\(cls)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for i in 0..<n {
                let (w, h) = sizes[i % sizes.count]
                var px = [UInt8](repeating: 0, count: w * h * 3)
                for y in 0..<h { for x in 0..<w {
                    px[(y * w + x) * 3] = c == 0 ? 200 : 20
                    px[(y * w + x) * 3 + 1] = UInt8(60 + (x * 40) / w)
                    px[(y * w + x) * 3 + 2] = c == 0 ? 30 : 220
                } }
                let format: ImageFileFormat = c == 0 ? .jpeg(quality: 95) : .png
                try writeImage(path: "\(dir)/\(String(format: "%04d", i)).\(c == 0 ? "jpg" : "png")", pixels: px,
                               width: w, height: h, channels: 3, format: format)
            }
        }
    }
    return root
}

