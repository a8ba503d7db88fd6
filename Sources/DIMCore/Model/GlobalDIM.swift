import Foundation

/// The global-DIM critic (docs/design.md §2b): scores (Y of image i, local map of image j) with one
/// score per pair. The map side runs fresh copies of the encoder's layers *after* the local map
/// (own weights), then `out`: linear(fc -> units); the Y side is `y`: linear(globalDim -> units).
/// Scores and estimators are the local ones with P = 1, distributed the same way.
public final class GlobalDIMCritic {
    public let convs: [Conv2D]
    public let convNorms: [BatchNorm]
    public let fc: Linear
    public let fcNorm: BatchNorm
    public let out: Linear
    public let yLayer: Linear
    public let scorer = Scorer()
    private let flat = Tensor([0])
    private let gradMap = Tensor([0])
    public let gradLocalMap = Tensor([0])
    private var mapInput: Tensor?

    public init(_ config: ModelConfig, params: ParameterStore, buffers: ParameterStore, prefix: String = "gdim",
                precision: Precision = .fp32) {
        (convs, convNorms) = Encoder.convBlocks(config, layers: (config.localMapIndex + 1)..<config.convCount,
                                                params: params, buffers: buffers, prefix: prefix, precision: precision)
        let n = config.convCount
        fc = Linear(params, "\(prefix).fc\(n + 1)", in: config.flatFeatures, out: config.fcUnits, bias: false,
                    precision: precision)
        fcNorm = BatchNorm(params, buffers: buffers, "\(prefix).bn\(n + 1)", channels: config.fcUnits, relu: true)
        out = Linear(params, "\(prefix).out", in: config.fcUnits, out: config.miUnits, bias: true, precision: precision)
        yLayer = Linear(params, "\(prefix).y", in: config.globalDim, out: config.miUnits, bias: true,
                        precision: precision)
    }

    /// Returns the global-DIM loss (unweighted), keeping the gradient of weight x the loss.
    public func forward(localMap: Tensor, Y: Tensor, estimator: Estimator, rows: RowSelection, step: Int,
                        weight: Double, maskValue: Double, training: Bool, comm: Communicator) -> Double {
        mapInput = localMap
        var h = localMap
        for i in convs.indices { h = convNorms[i].forward(convs[i].forward(h), training: training, comm: comm) }
        flattenMap(h, into: flat)
        let mapSide = out.forward(fcNorm.forward(fc.forward(flat), training: training, comm: comm))
        let ySide = yLayer.forward(Y)
        return scorer.forward(G: ySide, L: mapSide, positions: 1, estimator: estimator, rows: rows, step: step,
                              weight: weight, maskValue: maskValue, comm: comm)
    }

    /// Returns (dL/dC, dL/dY): gradLocalMap and the y layer's gradInput.
    public func backward(comm: Communicator) -> (gradLocalMap: Tensor, gradY: Tensor) {
        scorer.backward(comm: comm)
        let dY = yLayer.backward(scorer.gradG)
        let dflat = fc.backward(fcNorm.backward(out.backward(scorer.gradL), comm: comm))
        let lastShape = convNorms.last?.output.shape ?? mapInput!.shape
        unflattenMap(dflat, channels: lastShape[0], height: lastShape[2], width: lastShape[3], into: gradMap)
        var d = gradMap
        for i in stride(from: convs.count - 1, through: 0, by: -1) {
            d = convs[i].backward(convNorms[i].backward(d, comm: comm))
        }
        gradLocalMap.copy(from: d)
        return (gradLocalMap, dY)
    }
}
