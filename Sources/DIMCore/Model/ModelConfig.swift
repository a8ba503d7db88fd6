import Foundation

/// The encoder families of docs/design.md §1.
public enum Architecture: String, CaseIterable, Codable {
    case basic28x28, basic32x32, basic64x64

    public var imageSize: Int {
        switch self { case .basic28x28: return 28; case .basic32x32: return 32; case .basic64x64: return 64 }
    }
    /// (kernel, stride, padding) of every conv.
    public var convGeometry: (kernel: Int, stride: Int, padding: Int) {
        self == .basic28x28 ? (5, 2, 2) : (4, 2, 1)
    }
    public var defaultConvChannels: [Int] {
        switch self {
        case .basic28x28: return [64, 128]
        case .basic32x32: return [64, 128, 256]
        case .basic64x64: return [64, 128, 256, 512]
        }
    }
    /// Index of the conv whose output is the local map C.
    public var localMapIndex: Int { self == .basic64x64 ? 2 : 1 }

    /// The architecture for a given image size, as `train` picks it by default.
    public static func forImageSize(_ size: Int) -> Architecture? {
        allCases.first { $0.imageSize == size }
    }
}

/// Every width of a DIM model. The defaults are the paper's; tests use small widths.
public struct ModelConfig: Equatable, Codable {
    public var architecture: Architecture
    public var inChannels: Int
    public var convChannels: [Int]
    public var fcUnits: Int
    public var globalDim: Int
    public var miUnits: Int
    public var discUnits: [Int]

    public init(architecture: Architecture, inChannels: Int, convChannels: [Int]? = nil,
                fcUnits: Int = 1024, globalDim: Int = 64, miUnits: Int = 2048, discUnits: [Int] = [1000, 200]) {
        self.architecture = architecture
        self.inChannels = inChannels
        self.convChannels = convChannels ?? architecture.defaultConvChannels
        self.fcUnits = fcUnits; self.globalDim = globalDim; self.miUnits = miUnits; self.discUnits = discUnits
    }

    public var imageSize: Int { architecture.imageSize }
    public var convCount: Int { convChannels.count }
    public var localMapIndex: Int { architecture.localMapIndex }

    /// Spatial size after conv i.
    public func mapSize(after i: Int) -> Int {
        let g = architecture.convGeometry
        var s = imageSize
        for _ in 0...i { s = ConvGeometry.outputSize(s, kernel: g.kernel, stride: g.stride, padding: g.padding) }
        return s
    }
    public var localChannels: Int { convChannels[localMapIndex] }
    /// Positions P of the local map (64 for basic32x32).
    public var localPositions: Int { let s = mapSize(after: localMapIndex); return s * s }
    public var lastMapSize: Int { mapSize(after: convCount - 1) }
    public var flatFeatures: Int { convChannels[convCount - 1] * lastMapSize * lastMapSize }

    /// Checks that the configuration can be built; the message names the offending field.
    public func validate() throws {
        if convChannels.count != architecture.defaultConvChannels.count {
            throw DIMError("\(architecture.rawValue) needs \(architecture.defaultConvChannels.count) conv widths, "
                + "got \(convChannels.count)")
        }
        for (name, v) in [("fc units", fcUnits), ("global dim", globalDim), ("mi units", miUnits),
                          ("in channels", inChannels)] where v < 1 {
            throw DIMError("\(name) must be positive, got \(v)")
        }
        if convChannels.contains(where: { $0 < 1 }) || discUnits.contains(where: { $0 < 1 }) {
            throw DIMError("layer widths must be positive")
        }
    }
}

/// The three lower bounds on mutual information (docs/design.md §3).
public enum Estimator: String, CaseIterable, Codable {
    case jsd, nce, dv
}

/// The weights of the loss terms and the estimator settings.
public struct LossConfig: Equatable, Codable {
    public var estimator: Estimator = .jsd
    /// Local DIM weight.
    public var beta: Double = 1
    /// Global DIM weight.
    public var alpha: Double = 0
    /// Prior matching weight.
    public var gamma: Double = 0
    public var gradientPenaltyWeight: Double = 1
    public var nceMaskValue: Double = -10
    public init(estimator: Estimator = .jsd, beta: Double = 1, alpha: Double = 0, gamma: Double = 0) {
        self.estimator = estimator; self.beta = beta; self.alpha = alpha; self.gamma = gamma
    }

    /// Prior matching is on: the discriminator exists, trains, and each step needs a prior sample.
    public var priorMatching: Bool { gamma != 0 }
    /// Global DIM is on: the global-DIM critic exists and trains.
    public var globalDIM: Bool { alpha != 0 }

    /// Parameters whose true gradient is exactly zero under this loss, so they only move by
    /// rounding noise (which Adam scales up to +-lr steps): an equivalence check leaves them out.
    /// Under infoNCE, adding a constant vector to every local encoding (the local head's LayerNorm
    /// bias) shifts each row of scores by a constant, which the per-row softmax ignores; the
    /// global-DIM critic's `gdim.out.bias` (the bias of its local side) is zero the same way.
    public var zeroGradientParameters: Set<String> {
        estimator == .nce ? ["local_mi.ln.bias", "gdim.out.bias"] : []
    }
}
