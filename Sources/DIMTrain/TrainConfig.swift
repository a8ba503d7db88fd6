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
    /// The decay of the rate from `learningRate`; nil: the constant `learningRate`.
    public var schedule: LearningRateSchedule? = nil
    public var beta1: Float = 0.5
    public var beta2: Float = 0.999
    public var seed: UInt64 = 0
    public var augmentation = Augmentation()
    /// Bounded rows (`--scored-rows K`): global vectors scored per step, sampled from the global
    /// batch (nil: all). Stored as "scoredRows"; checkpoints written before the rename say
    /// "maxNegatives" (read by `init(json:)`).
    public var scoredRows: Int? = nil
    /// `--time-budget`: the budget and the steps decided from it (nil: steps as given).
    public var timeBudget: TimeBudget? = nil
    /// The rows every step scores, from `scoredRows` and the seed.
    public var rowSelection: RowSelection { RowSelection(scoredRows: scoredRows, seed: seed) }
    /// The learning rate for step `step` (0-based).
    public func learningRate(step: Int) -> Float { schedule?.rate(step: step, peak: learningRate) ?? learningRate }

    public init(model: ModelConfig, loss: LossConfig, globalBatch: Int) {
        self.model = model; self.loss = loss; self.globalBatch = globalBatch
    }

    /// The batch of each of `ranks` ranks, or why this configuration cannot train (train and bench
    /// both ask before building anything): the model's widths, a global batch of at least 2 (DIM
    /// needs negatives) that divides by the ranks, and at least 2 scored rows.
    public func localBatch(ranks: Int) throws -> Int {
        try model.validate()
        guard globalBatch >= 2 else { throw DIMError("--batch-size must be at least 2 (DIM needs negatives)") }
        if let k = scoredRows, k < 2 { throw DIMError("--scored-rows must be at least 2") }
        return try localBatchSize(global: globalBatch, ranks: ranks)
    }

    /// The configuration stored in a checkpoint (`path` names the file in the error).
    public init(checkpoint info: CheckpointFile.Info, path: String) throws {
        do { self = try TrainConfig(json: info.configJSON) } catch {
            throw DIMError("\(path): unreadable training configuration")
        }
    }

    public init(json: String) throws {
        var data = Data(json.utf8)
        // The one renamed key (--max-negatives became --scored-rows).
        if var object = try JSONSerialization.jsonObject(with: data) as? [String: Any],
           let old = object.removeValue(forKey: "maxNegatives") {
            object["scoredRows"] = old
            data = try JSONSerialization.data(withJSONObject: object)
        }
        self = try JSONDecoder().decode(TrainConfig.self, from: data)
    }

    /// The JSON a checkpoint stores (keys sorted, so equal configurations give equal text).
    public var json: String { try! jsonLine(self) }

    /// Every setting that differs from `other` (a checkpoint's), as "name: other's vs this one's",
    /// read off the encoded form, so that no field can be left out of the message.
    public func differences(from other: TrainConfig) -> [String] {
        let (mine, theirs) = (Self.flattened(self), Self.flattened(other))
        return Set(mine.keys).union(theirs.keys).sorted().compactMap { key in
            mine[key] == theirs[key] ? nil : "\(key) \(theirs[key] ?? "unset") vs \(mine[key] ?? "unset")"
        }
    }

    /// "model.miUnits" -> "16", ... (arrays and scalars as their JSON text).
    static func flattened(_ c: TrainConfig) -> [String: String] {
        var out: [String: String] = [:]
        func walk(_ value: Any, _ path: String) {
            if let d = value as? [String: Any] {
                for (k, v) in d { walk(v, path.isEmpty ? k : path + "." + k) }
            } else if let data = try? JSONSerialization.data(withJSONObject: value,
                                                              options: [.fragmentsAllowed, .sortedKeys]) {
                out[path] = String(decoding: data, as: UTF8.self)
            }
        }
        walk((try? JSONSerialization.jsonObject(with: Data(c.json.utf8))) ?? [:], "")
        return out
    }
}
