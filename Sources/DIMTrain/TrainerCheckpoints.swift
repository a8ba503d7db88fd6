import Foundation
import DIMCore
import DIMIO

/// The trainer's checkpoints: what a checkpoint says about the run, writing one (rank 0, every
/// rank waits), and resuming from one (rank 0 reads and checks it, everyone takes its state).
extension Trainer {
    public func checkpointInfo(loss: Double) -> CheckpointFile.Info {
        var info = CheckpointFile.Info()
        info.step = state.step
        info.epoch = state.step / reader.batchesPerEpoch
        info.batchInEpoch = state.step % reader.batchesPerEpoch
        info.seed = config.seed
        info.globalBatch = config.globalBatch
        info.ranks = comm.size
        info.adamStep = state.adam.step
        info.discAdamStep = state.discAdam.step
        info.loss = loss
        info.configJSON = config.json
        info.datasetFingerprint = data.manifest.fingerprint
        info.datasetCount = data.count
        info.created = ISO8601DateFormatter().string(from: Date())
        return info
    }

    /// Rank 0 writes; every rank waits so no rank runs ahead of a checkpoint it may need.
    public func saveCheckpoint() throws {
        step.gatherOptimizerState()
        try comm.rootActs("checkpoint") {
            let path = try checkpoints.save(step: state.step) { tmp in
                try CheckpointFile.write(path: tmp, model: state.model, adam: state.adam, discAdam: state.discAdam,
                                         info: checkpointInfo(loss: state.lastLosses.total))
            }
            runLog.message("checkpoint: \(path)")
        }
        savedStep = state.step
    }

    /// Loads a checkpoint on rank 0, checks it against this run, and broadcasts it.
    public func resume(from spec: String) throws {
        var path: String? = spec
        if spec == "auto" { path = checkpoints.latest() }
        try comm.rootActs("resume") {
            guard let p = path else { return }
            let f = try HDF5File(p)
            let info = try CheckpointFile.readInfo(f)
            let diffs = config.differences(from: try TrainConfig(checkpoint: info, path: p))
            if !diffs.isEmpty {
                throw DIMError("\(p): made with a different configuration (the checkpoint's vs this run's): "
                              + diffs.joined(separator: "; "))
            }
            if info.datasetFingerprint != data.manifest.fingerprint || info.datasetCount != data.count {
                throw DIMError("\(p): made on a different dataset (fingerprint \(info.datasetFingerprint), "
                               + "\(info.datasetCount) examples; \(options.dataDirectory) has "
                               + "\(data.manifest.fingerprint), \(data.count))")
            }
            try CheckpointFile.load(f, model: state.model, adam: state.adam, discAdam: state.discAdam, info: info)
            state.step = info.step
            runLog.message("resumed from \(p): step \(info.step), epoch \(info.epoch), saved by \(info.ranks) rank(s), "
                + "loss \(fmt(info.loss, 4))")
        }
        if spec != "auto" && path == nil { throw DIMError("\(spec): no checkpoint") }
        // Everyone takes rank 0's state (the file need not be visible on every host).
        var counters = [Double(state.step), Double(state.adam.step),
                        Double(state.discAdam.step)] + state.model.batchNorms.map { Double($0.batchesTracked) }
        comm.broadcast(&counters, bytes: counters.count * 8, root: 0)
        state.step = Int(counters[0])
        if path != nil { savedStep = state.step }
        state.adam.restore(step: Int(counters[1]))
        state.discAdam.restore(step: Int(counters[2]))
        for (bn, c) in zip(state.model.batchNorms, counters.dropFirst(3)) { bn.batchesTracked = Int(c) }
        state.broadcast(comm: comm)
        for (adam, n) in [(state.adam, state.model.params.count),
                          (state.discAdam, state.model.discParams.count)] where n > 0 {
            comm.broadcast(UnsafeMutableRawPointer(adam.m), bytes: n * 4, root: 0)
            comm.broadcast(UnsafeMutableRawPointer(adam.v), bytes: n * 4, root: 0)
        }
    }
}
