import XCTest
@testable import DIMCore

/// `checkpoint diff --trim`'s number (quickselect in C) against its definition: sort the squared
/// differences, drop the largest `fraction`, sum the rest.
final class TrimmedDifferenceTests: XCTestCase {
    private func bySorting(_ a: [Double], _ b: [Double], fraction: Double) -> Double {
        let left = min(a.count - 1, Int((fraction * Double(a.count)).rounded(.up)))
        let squares = zip(a, b).map { ($0 - $1) * ($0 - $1) }.sorted()
        let d = squares[..<(squares.count - left)].reduce(0, +)
        return d.squareRoot() / max(a.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-30)
    }

    func testMatchesSortingAtEverySizeAndFraction() {
        var rng = SplitMix64(seed: 3)
        for count in [1, 2, 3, 5, 16, 17, 100, 1_000, 20_011] {
            let a = (0..<count).map { _ in Double(rng.nextFloat()) - 0.5 }
            // Few distinct differences (ties at the boundary) and continuous ones.
            let tied = a.map { $0 + Double(Int(rng.nextFloat() * 4)) * 1e-3 }
            let smooth = a.map { $0 + Double(rng.nextFloat()) * 1e-3 }
            for b in [tied, smooth, a] {
                for fraction in [0.0, 0.001, 0.02, 0.3, 0.49] {
                    let want = bySorting(a, b, fraction: fraction)
                    let got = relativeDifferences(a, b, trim: fraction).trimmed
                    XCTAssertEqual(got, want, accuracy: 1e-12 * max(want, 1e-30),
                                   "count \(count) fraction \(fraction)")
                    XCTAssertEqual(relativeDifferences(a, b, trim: fraction).every, relativeDifference(a, b))
                }
            }
        }
    }

    func testTrimmingLeavesOutTheLargestDifferences() {
        let a = [Double](repeating: 1, count: 100)
        var b = a
        b[37] = 5  // one entry far off: trimmed at 1%, counted at 0
        XCTAssertEqual(relativeDifferences(a, b, trim: 0.01).trimmed, 0)
        XCTAssertEqual(relativeDifferences(a, b, trim: 0).trimmed, 0.4, accuracy: 1e-12)
        b[3] = .nan
        XCTAssertTrue(relativeDifferences(a, b, trim: 0.01).trimmed.isNaN)
    }
}
