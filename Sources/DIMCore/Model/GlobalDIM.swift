import Foundation

/// The global-DIM critic (docs/design.md §2b): scores (Y of image i, local map of image j) with one
/// score per pair. The map side runs fresh copies of the encoder's layers *after* the local map
/// (own weights), then `out`: linear(fc -> units); the Y side is `y`: linear(globalDim -> units).
/// Scores and estimators are the local ones with P = 1, distributed the same way.
public final class GlobalDIMCritic {
    public let convStack: ConvStack
    public let fcBlock: FCBlock
    public let out: Linear
    public let yLayer: Linear
    public let scorer = Scorer()
    public let gradLocalMap = Tensor([0])

    public init(_ config: ModelConfig, params: ParameterStore, buffers: ParameterStore, prefix: String = "gdim",
                precision: Precision = .fp32) {
        convStack = ConvStack(config, layers: (config.localMapIndex + 1)..<config.convCount, params: params,
                              buffers: buffers, prefix: prefix, precision: precision)
        fcBlock = FCBlock(config, params: params, buffers: buffers, prefix: prefix, precision: precision)
        out = Linear(params, "\(prefix).out", in: config.fcUnits, out: config.miUnits, bias: true, precision: precision)
        yLayer = Linear(params, "\(prefix).y", in: config.globalDim, out: config.miUnits, bias: true,
                        precision: precision)
    }

    public var batchNorms: [BatchNorm] { convStack.norms + [fcBlock.norm] }

    /// Returns the global-DIM loss (unweighted), keeping the gradient of weight x the loss.
    public func forward(localMap: Tensor, Y: Tensor, estimator: Estimator, rows: RowSelection, step: Int,
                        weight: Double, maskValue: Double, training: Bool, comm: Communicator) -> Double {
        let map = convStack.forward(localMap, training: training, comm: comm)
        let mapSide = out.forward(fcBlock.forward(map, training: training, comm: comm))
        let ySide = yLayer.forward(Y)
        return scorer.forward(G: ySide, L: mapSide, positions: 1, estimator: estimator, rows: rows, step: step,
                              weight: weight, maskValue: maskValue, comm: comm)
    }

    /// Returns (dL/dC, dL/dY): gradLocalMap and the y layer's gradInput. `gatherFCFactors`: as FCBlock.
    public func backward(comm: Communicator, gatherFCFactors: Bool = false) -> (gradLocalMap: Tensor, gradY: Tensor) {
        scorer.backward(comm: comm)
        let dY = yLayer.backward(scorer.gradG)
        let dMap = fcBlock.backward(out.backward(scorer.gradL), comm: comm, gatherFactors: gatherFCFactors)
        gradLocalMap.copy(from: convStack.backward(dMap, inputGrad: true, comm: comm))
        return (gradLocalMap, dY)
    }
}
