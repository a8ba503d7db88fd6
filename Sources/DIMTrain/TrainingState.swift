import Foundation
import DIMCore

/// The model plus everything the optimiser carries between steps: what a checkpoint holds.
public final class TrainingState {
    /// The run's configuration (a --time-budget re-plan changes its steps: Trainer.replan).
    public internal(set) var config: TrainConfig
    public let model: DIMModel
    public let adam: Adam
    public let discAdam: Adam
    /// Steps completed (the next step to run).
    public var step = 0
    /// Loss terms of the last completed step.
    public var lastLosses = DIMModel.Losses()

    /// `precision` is not part of the configuration: a bf16 run may resume in fp32 (on a CPU
    /// without bf16) like a run may resume on another number of ranks.
    public init(config: TrainConfig, precision: Precision = .fp32) {
        self.config = config
        model = DIMModel(config: config.model, loss: config.loss, seed: config.seed, precision: precision)
        adam = Adam(count: model.params.count, lr: config.learningRate, beta1: config.beta1, beta2: config.beta2)
        discAdam = Adam(count: model.discParams.count, lr: config.learningRate, beta1: config.beta1,
                        beta2: config.beta2)
    }

    /// Makes every rank start from rank 0's parameters and buffers.
    public func broadcast(from root: Int = 0, comm: Communicator) {
        for store in [model.params, model.buffers, model.discParams] where store.count > 0 {
            comm.broadcast(UnsafeMutableRawPointer(store.values!), bytes: store.count * 4, root: root)
        }
    }
}
