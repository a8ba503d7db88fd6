import Foundation
import DIMCore
import DIMIO

/// `dim-dist eval`: probes on frozen features, trained encoder vs the untrained one.
public enum Evaluation {
    /// The encoder of a checkpoint (or, with `untrained`, the same configuration at its initial
    /// weights, the baseline every result is compared with).
    public static func loadModel(checkpoint: String, untrained: Bool) throws -> (DIMModel, TrainConfig,
            CheckpointFile.Info) {
        let f = try HDF5File(checkpoint)
        let info = try CheckpointFile.readInfo(f)
        let cfg = try TrainConfig(checkpoint: info, path: checkpoint)
        let state = TrainingState(config: cfg)
        if !untrained {
            try CheckpointFile.load(f, model: state.model, adam: state.adam, discAdam: state.discAdam, info: info)
        }
        return (state.model, cfg, info)
    }

    /// Sets BatchNorm running statistics of an untrained encoder from data (training-mode
    /// forwards, no updates), so that its eval-mode features are normalised like a trained one's.
    public static func calibrateBatchNorm(model: DIMModel, data: ShardedSplit, batches: Int = 100,
                                          batch: Int = 128) throws {
        let reader = try BatchReader(data: data, globalBatch: min(batch, data.count), rank: 0, ranks: 1, seed: 12345)
        let single = SingleProcess()
        for b in 0..<min(batches, max(reader.batchesPerEpoch, 1) * 4) {
            let x = try reader.batch(epoch: b / reader.batchesPerEpoch, index: b % reader.batchesPerEpoch)
            model.encode(x.images, training: true, comm: single)
        }
        reader.drain()
    }

    /// Probes `probes` and, when given, the kNN monitor on each feature set of the frozen encoder.
    /// `mirror`: the probes also train on the mirror image of every training image (a second view,
    /// as an encoder trained with flips saw them); validation, test and kNN use the images as stored.
    public static func run(model: DIMModel, data directory: String, features: [FeatureKind], probes: [ProbeConfig],
                           knn: KNNClassifier? = nil, mirror: Bool = false,
                           selection: ProbeSelection = ProbeSelection(),
                           comm: Communicator, log: (String) -> Void) throws -> [ProbeResult] {
        let train = try ShardedSplit(directory: directory, split: "train")
        guard train.manifest.labelled else {
            throw DIMError("\(directory): the images have no labels (imported from a folder without class "
                + "sub-folders); "
                           + "probes need labelled train/ and test/ splits")
        }
        let test = try ShardedSplit(directory: directory, split: "test")
        let m = train.manifest
        guard m.channels == model.config.inChannels, m.height == model.config.imageSize else {
            throw DIMError("\(directory): images are \(m.channels)x\(m.height)x\(m.width), the encoder takes "
                + "\(model.config.inChannels)x\(model.config.imageSize)x\(model.config.imageSize)")
        }
        let t0 = monotonicSeconds()
        let trainFeatures = try encodeSplit(model: model, data: train, kinds: features, comm: comm)
        let testFeatures = try encodeSplit(model: model, data: test, kinds: features, comm: comm)
        var probeTrain = trainFeatures
        let mirrored = mirror && !probes.isEmpty  // kNN alone never uses the mirror images
        if mirrored {
            let views = try encodeSplit(model: model, data: train, kinds: features, mirrored: true, comm: comm)
            for k in features { probeTrain[k] = trainFeatures[k]!.addingView(views[k]!) }
        }
        log("  encoded \(train.count) train\(mirrored ? " (and their mirror images)" : "") + "
            + "\(test.count) test images in \(fmt(monotonicSeconds() - t0, 1)) s")
        let classes = max((trainFeatures.values.first?.labels.max() ?? 0) + 1, m.classNames.count)
        var results: [ProbeResult] = []
        if let knn {
            results += knn.results(train: trainFeatures, test: testFeatures, features: features, classes: classes,
                                   comm: comm) { k, accuracy, seconds in
                log("  kNN (k = \(knn.k), cosine, T = \(knn.temperature)) on \(padRight(k.rawValue, 4)) "
                    + "(\(trainFeatures[k]!.dim)-d): test \(fmt(100 * accuracy, 2))%  (\(fmt(seconds, 1)) s)")
            }
        }
        // Probes are cheap next to encoding: rank 0 trains them and sends the numbers to all.
        for p in probes {
            for k in features {
                var v = [0.0, 0.0, 0.0, 0.0, 0.0]
                if comm.isRoot {
                    let t1 = monotonicSeconds()
                    let r = selection.run(p, train: probeTrain[k]!, test: testFeatures[k]!, classes: classes)
                    v = [r.trainAccuracy, r.testAccuracy, r.validationAccuracy, Double(r.weightDecay), Double(r.epochs)]
                    log("  \(padRight(p.kind.rawValue, 6)) probe on \(padRight(k.rawValue, 4)) "
                        + "(\(trainFeatures[k]!.dim)-d): "
                        + "test \(fmt(100 * r.testAccuracy, 2))%  validation \(fmt(100 * r.validationAccuracy, 2))% "
                        + "(chosen: weight decay \(r.weightDecay), \(r.epochs) epochs)  "
                        + "train \(fmt(100 * r.trainAccuracy, 2))%  "
                        + "(\(fmt(monotonicSeconds() - t1, 1)) s)")
                }
                comm.broadcast(&v, bytes: 40, root: 0)
                results.append(ProbeResult(feature: k.rawValue, probe: p.kind.rawValue, dim: trainFeatures[k]!.dim,
                                           trainAccuracy: v[0], testAccuracy: v[1], validationAccuracy: v[2],
                                           weightDecay: Float(v[3]), epochs: Int(v[4])))
            }
        }
        return results
    }
}
