import Foundation
import XCTest
import DIMTestSupport
import DIMCore
@testable import DIMIO

/// The augmentations on one image: what each does at its neutral setting, grey scale, the range,
/// and that a configuration stored before they existed reads as "off".
final class AugmentationTests: XCTestCase {
    let (C, H, W) = (3, 12, 10)

    func image() -> [UInt8] {
        var rng = SplitMix64(seed: 1)
        return (0..<(C * H * W)).map { _ in UInt8(rng.nextInt(256)) }
    }

    func run(_ aug: Augmentation, _ src: [UInt8], index: UInt64 = 0) -> [Float] {
        let out = Tensor([C * H * W]), scratch = Tensor([C * H * W])
        var rng = SplitMix64(seed: 9, stream: RandomStream.augmentation, index: index)
        src.withUnsafeBufferPointer { s in
            aug.apply(s.baseAddress!, channels: C, height: H, width: W, rng: &rng, scratch: scratch,
                      into: out.data, planeStride: H * W)
        }
        return out.array
    }

    func testNeutralSettingsLeaveTheImage() {
        let src = image(), plain = src.map(modelPixel)
        XCTAssertEqual(run(Augmentation(), src), plain)
        // A resized crop that must cover the whole image at aspect ratio 1 (any other ratio does
        // not fit, so the draw falls back to the whole image): a bilinear resize at scale 1.
        for i in 0..<5 {
            let r = run(Augmentation(resizedCropMinScale: 1), src, index: UInt64(i))
            XCTAssertLessThan(zip(r, plain).map { abs($0 - $1) }.max()!, 1e-5)
        }
        let jitterZero = run(Augmentation(colorJitter: 0), src)
        XCTAssertLessThan(zip(jitterZero, plain).map { abs($0 - $1) }.max()!, 1e-5)
        let greyNever = run(Augmentation(grayscale: 0), src)
        XCTAssertLessThan(zip(greyNever, plain).map { abs($0 - $1) }.max()!, 1e-5)
    }

    func testGreyScaleAndRange() {
        let src = image(), hw = H * W
        let grey = run(Augmentation(grayscale: 1), src)
        for i in 0..<hw { XCTAssertEqual(grey[i], grey[hw + i]); XCTAssertEqual(grey[i], grey[2 * hw + i]) }
        let strong = Augmentation(horizontalFlip: true, resizedCropMinScale: 0.08, colorJitter: 0.8, grayscale: 0.5)
        var changed = 0
        for i in 0..<20 {
            let r = run(strong, src, index: UInt64(i))
            XCTAssertTrue(r.allSatisfy { $0 >= -1 && $0 <= 1 })
            if r != src.map(modelPixel) { changed += 1 }
        }
        XCTAssertEqual(changed, 20)
        XCTAssertNotNil(Augmentation(cropPadding: 4, resizedCropMinScale: 0.2).problem)
        XCTAssertNotNil(Augmentation(colorJitter: 1.5).problem)
        XCTAssertNil(strong.problem)
    }

    func testStoredConfigurationsWithoutTheNewKeysReadAsOff() throws {
        let old = try JSONDecoder().decode(Augmentation.self, from: Data(#"{"cropPadding":4,"horizontalFlip":true}"#.utf8))
        XCTAssertEqual(old, Augmentation(cropPadding: 4, horizontalFlip: true))
    }
}
