import Foundation
import DIMCore

/// The DIM encoder with a linear classifier on one of its feature sets (`conv`, `fc` or `y`),
/// trained end to end: what `eval utility` fine-tunes from a checkpoint, and trains from scratch
/// to compare with. The encoder's parameters keep their checkpoint names (`encoder.*`), declared
/// first and initialised from the seed exactly as DIMModel's, so "from scratch" is the untrained
/// encoder of the same run; the classifier is `classifier.fc.{weight,bias}`.
public final class Classifier {
    public let config: ModelConfig
    public let feature: FeatureKind
    public let classes: Int
    public let params = ParameterStore()
    public let buffers = ParameterStore(trainable: false)
    public let encoder: Encoder
    public let head: Linear
    private let flat = Tensor([0]), dlogits = Tensor([0]), gradMap = Tensor([0])

    public init(config: ModelConfig, feature: FeatureKind, classes: Int, seed: UInt64, precision: Precision = .fp32) {
        self.config = config; self.feature = feature; self.classes = classes
        encoder = Encoder(config, params: params, buffers: buffers, precision: precision)
        head = Linear(params, "classifier.fc", in: Self.inputs(config, feature), out: classes, bias: true,
                      precision: precision)
        params.allocate(seed: seed)
        buffers.allocate(seed: seed)
    }

    /// The width of a feature set.
    public static func inputs(_ config: ModelConfig, _ feature: FeatureKind) -> Int {
        switch feature {
        case .conv: return config.flatFeatures
        case .fc: return config.fcUnits
        case .y: return config.globalDim
        }
    }

    /// Copies the encoder's parameters and BatchNorm buffers (running statistics, batch counts)
    /// from a DIM model, by name.
    public func loadEncoder(from model: DIMModel) {
        for (mine, theirs) in [(params, model.params), (buffers, model.buffers)] {
            for p in mine.parameters where p.name.hasPrefix("encoder.") {
                guard let q = theirs[p.name] else { preconditionFailure("Classifier: \(p.name) not in the model") }
                p.value.data.update(from: q.value.data, count: p.count)
            }
        }
        for (a, b) in zip(encoder.batchNorms, model.encoder.batchNorms) { a.batchesTracked = b.batchesTracked }
    }

    /// Copies this encoder's parameters and buffers into a DIM model (to write it as a checkpoint
    /// that `encode`, `eval` and the PyTorch export read).
    public func storeEncoder(into model: DIMModel) {
        for (mine, theirs) in [(params, model.params), (buffers, model.buffers)] {
            for p in mine.parameters where p.name.hasPrefix("encoder.") {
                theirs[p.name]!.value.data.update(from: p.value.data, count: p.count)
            }
        }
        for (a, b) in zip(encoder.batchNorms, model.encoder.batchNorms) { b.batchesTracked = a.batchesTracked }
    }

    /// Logits `[classes, n]` of images `[Cin, n, H, W]` (training: BatchNorm on the batch,
    /// synchronised over `comm`; otherwise its running statistics).
    @discardableResult
    public func forward(_ x: Tensor, training: Bool, comm: Communicator) -> Tensor {
        encoder.forward(x, training: training, comm: comm)
        switch feature {
        case .conv: flattenMap(encoder.convFeatures, into: flat); return head.forward(flat)
        case .fc: return head.forward(encoder.fcFeatures)
        case .y: return head.forward(encoder.globalVector)
        }
    }

    /// Forward and backward on this rank's images and labels: the gradient of the cross-entropy
    /// averaged over the global batch `globalBatch` (so the ranks' gradients sum to the global
    /// one), left in `params.grads`; `gradientsFinal` is told layer by layer which slices are final
    /// (GradientSync). Returns this rank's summed loss and correct count.
    public func forwardBackward(_ x: Tensor, labels: [Int], globalBatch: Int, comm: Communicator,
                                gradientsFinal: (Range<Int>) -> Void = { _ in }) -> (loss: Double, correct: Int) {
        params.zeroGrads()
        let logits = forward(x, training: true, comm: comm)
        let result = softmaxCrossEntropy(logits, labels: labels, normaliser: globalBatch, gradient: dlogits)
        let dFeature = head.backward(dlogits)
        gradientsFinal(parameterRange(from: head.weight, through: head.bias!))
        let stack = encoder.convStack
        switch feature {
        case .y:
            encoder.backwardTop(gradY: dFeature, comm: comm, gradientsFinal: gradientsFinal)
            encoder.backwardConvs(gradLocalMap: nil, comm: comm, gradientsFinal: gradientsFinal)
        case .fc:
            let dMap = encoder.fcBlock.backward(dFeature, comm: comm, gradientsFinal: gradientsFinal)
            stack.backward(dMap, inputGrad: false, comm: comm, gradientsFinal: gradientsFinal)
        case .conv:
            let map = encoder.convFeatures
            unflattenMap(dFeature, channels: map.shape[0], height: map.shape[2], width: map.shape[3], into: gradMap)
            stack.backward(gradMap, inputGrad: false, comm: comm, gradientsFinal: gradientsFinal)
        }
        return result
    }
}
