import Foundation

/// SplitMix64: a small, fast, fully deterministic generator. dim-dist derives every random stream
/// (initial weights, data order, augmentation, prior samples) from the run's seed and a purpose, so
/// a run is a pure function of its seed whatever the number of ranks.
public struct SplitMix64 {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// A generator for one purpose of one run, e.g. `SplitMix64(seed: s, stream: 3, index: epoch)`.
    public init(seed: UInt64, stream: UInt64, index: UInt64 = 0) {
        var g = SplitMix64(seed: seed ^ 0x9E37_79B9_7F4A_7C15)
        state = g.next() ^ (stream &* 0xD1B5_4A32_D192_ED03)
        state = next() ^ (index &* 0x94D0_49BB_1331_11EB)
        _ = next()
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 24 random bits (exactly representable in Float).
    @inline(__always)
    public mutating func nextFloat() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

    /// Uniform in [-bound, bound).
    @inline(__always)
    public mutating func uniform(_ bound: Float) -> Float { (nextFloat() * 2 - 1) * bound }

    /// Uniform integer in 0..<n.
    @inline(__always)
    public mutating func nextInt(_ n: Int) -> Int { Int((next() >> 11) % UInt64(n)) }

    /// A standard normal sample (Box-Muller).
    public mutating func normal() -> Float {
        let u1 = max(Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0), 1e-300)
        let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }

    /// Fisher-Yates permutation of 0..<n.
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        if n < 2 { return p }
        for i in stride(from: n - 1, to: 0, by: -1) {
            let j = nextInt(i + 1)
            p.swapAt(i, j)
        }
        return p
    }
}

/// Every random stream of dim-dist, in one place: a generator is `SplitMix64(seed:stream:index:)`
/// with one of these, so no two purposes share numbers by accident and a run stays a pure function
/// of its seed.
public enum RandomStream {
    /// Initial weights (ParameterStore.allocate).
    public static let parameters: UInt64 = 1
    /// The order of the training examples, per epoch (BatchReader).
    public static let dataOrder: UInt64 = 2
    /// Crops and flips, per (epoch, example) (BatchReader).
    public static let augmentation: UInt64 = 3
    /// The probes' validation split (ProbeSelection); shares the number with augmentation, but
    /// draws from the probe's own seed.
    public static let probeValidationSplit: UInt64 = 3
    /// The prior sample of prior matching, per step (Trainer).
    public static let priorSample: UInt64 = 4
    /// The sampled rows of bounded negatives, per step (RowSelection).
    public static let scoredRows: UInt64 = 5
    /// The sampled patch of each sampled row's image, per step (RowSelection.patches).
    public static let scoredPatches: UInt64 = 12
    /// The probe's example order, per fit (Probe).
    public static let probeOrder: UInt64 = 7
    /// The probe's dropout masks (Probe).
    public static let probeDropout: UInt64 = 8
    /// The test images whose neighbours `plot neighbours` draws.
    public static let neighbourQueries: UInt64 = 11
    /// Benchmark input images, one stream per rank (from 1000: clear of every other purpose).
    public static func benchmarkImages(rank: Int) -> UInt64 { 1000 + UInt64(rank) }
    /// Synthetic datasets (tests, benchmarks): one stream per split.
    public static func synthetic(split: UInt64) -> UInt64 { 100 + split }
}
