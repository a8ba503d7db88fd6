import Foundation
import DIMCore
import DIMIO

/// `train --knn-every N`: the kNN classifier (KNNClassifier) on the frozen encoder's fc and y
/// features during training: the first 10,000 training images are the memory bank, the first
/// 2,000 test images are classified. A learning curve for a few seconds per point, without a
/// probe to train; `eval --probe knn` measures the same on whole splits.
public final class KNNMonitor {
    public let train: ShardedSplit, test: ShardedSplit
    public var bankImages = 10_000, testImages = 2_000
    public var features: [FeatureKind] = [.fc, .y]
    public let classifier = KNNClassifier()
    let classes: Int

    public init(directory: String) throws {
        train = try ShardedSplit(directory: directory, split: "train")
        guard train.manifest.labelled, train.manifest.splits["test"] != nil else {
            throw DIMError("\(directory): --knn-every needs labelled train/ and test/ splits (this dataset has "
                + (train.manifest.labelled ? "no test split)" : "no labels)"))
        }
        test = try ShardedSplit(directory: directory, split: "test")
        classes = max(train.manifest.classNames.count, 2)
    }

    /// The kNN test accuracy of each feature set (BatchNorm in eval mode; the encoding is shared
    /// among the ranks, the vote runs on rank 0 and its numbers go to all).
    public func measure(model: DIMModel, comm: Communicator) throws -> [ProbeResult] {
        let bank = try encodeSplit(model: model, data: train, kinds: features, limit: bankImages, comm: comm)
        let queries = try encodeSplit(model: model, data: test, kinds: features, limit: testImages, comm: comm)
        return classifier.results(train: bank, test: queries, features: features, classes: classes, comm: comm)
    }
}
