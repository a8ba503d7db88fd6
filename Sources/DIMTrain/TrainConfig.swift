import Foundation
import DIMCore
import DIMIO

/// Everything that decides what a training run computes. Stored in every checkpoint; a resume
/// must ask for the same values (steps, output and checkpoint settings may change).
public struct TrainConfig: Codable, Equatable {
    public var model: ModelConfig
    public var loss: LossConfig
    public var globalBatch: Int
    public var learningRate: Float = 1e-4
    /// nil: constant `learningRate` (also what checkpoints written before schedules existed hold).
    public var schedule: LearningRateSchedule? = nil
    public var beta1: Float = 0.5
    public var beta2: Float = 0.999
    public var seed: UInt64 = 0
    public var augmentation = Augmentation()
    /// Bounded negatives: global vectors scored per step, sampled from the global batch (nil: all).
    public var maxNegatives: Int? = nil
    /// The rows every step scores (RowSelection), from `maxNegatives` and the seed.
    public var scoredRows: RowSelection { RowSelection(limit: maxNegatives, seed: seed) }
    /// The learning rate for step `step` (0-based).
    public func learningRate(step: Int) -> Float { schedule?.rate(step: step) ?? learningRate }

    public init(model: ModelConfig, loss: LossConfig, globalBatch: Int) {
        self.model = model; self.loss = loss; self.globalBatch = globalBatch
    }

    /// The configuration stored in a checkpoint (`path` names the file in the error).
    public init(checkpoint info: CheckpointFile.Info, path: String) throws {
        guard let c = try? JSONDecoder().decode(TrainConfig.self, from: Data(info.configJSON.utf8)) else {
            throw DIMError("\(path): unreadable training configuration")
        }
        self = c
    }

    /// Human-readable differences from another configuration (for resume errors).
    public func differences(from other: TrainConfig) -> [String] {
        var d: [String] = []
        if model != other.model { d.append("model \(other.model.architecture.rawValue) "
            + "conv=\(other.model.convChannels) fc=\(other.model.fcUnits) y=\(other.model.globalDim) mi=\(other.model.miUnits) disc=\(other.model.discUnits) vs \(model.architecture.rawValue) conv=\(model.convChannels) fc=\(model.fcUnits) y=\(model.globalDim) mi=\(model.miUnits) disc=\(model.discUnits)") }
        if loss.estimator != other.loss.estimator { d.append("estimator \(other.loss.estimator.rawValue) vs "
            + "\(loss.estimator.rawValue)") }
        if loss.alpha != other.loss.alpha || loss.beta != other.loss.beta || loss.gamma != other.loss.gamma {
            d.append("loss weights alpha/beta/gamma \(other.loss.alpha)/\(other.loss.beta)/\(other.loss.gamma) vs "
                + "\(loss.alpha)/\(loss.beta)/\(loss.gamma)")
        }
        if globalBatch != other.globalBatch { d.append("global batch \(other.globalBatch) vs \(globalBatch)") }
        if learningRate != other.learningRate || beta1 != other.beta1 || beta2 != other.beta2 { d.append("Adam "
            + "settings lr \(other.learningRate) vs \(learningRate)") }
        if schedule != other.schedule {
            d.append("learning-rate schedule \(other.schedule?.description ?? "constant") vs "
                + "\(schedule?.description ?? "constant")")
        }
        if seed != other.seed { d.append("seed \(other.seed) vs \(seed)") }
        if maxNegatives != other.maxNegatives { d.append("max negatives "
            + "\(other.maxNegatives.map(String.init) ?? "all") vs \(maxNegatives.map(String.init) ?? "all")") }
        if augmentation != other.augmentation { d.append("augmentation \(other.augmentation) vs \(augmentation)") }
        return d
    }
}
