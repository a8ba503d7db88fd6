import Foundation
import DIMCore
import DIMIO

/// The fine-tuning protocol of Newell & Deng, "How Useful is Self-Supervised Pretraining for
/// Visual Tasks?" (CVPR 2020; princeton-vl/selfstudy): the whole network trained with Adam, the
/// rate warmed up linearly over 5 epochs to 0.01 and decayed (half a cosine) to 1e-6 over 25
/// epochs, batch 512, the usual crop-and-flip augmentation; the epoch with the best validation
/// accuracy is the one scored on test.
public struct FineTuneConfig: Codable, Equatable {
    public var epochs = 25
    public var warmupEpochs = 5
    public var peakRate: Float = 0.01
    public var finalRate: Float = 1e-6
    /// The global batch (smaller when there are fewer labelled images; rounded down to a multiple
    /// of the number of ranks).
    public var batch = 512
    /// Steps per epoch at least: with few labels an epoch goes through them several times (250
    /// labels at batch 250 would otherwise make 25 steps in all, too few to train anything).
    public var minimumStepsPerEpoch = 20
    /// The features the linear classifier reads (`fc`: the whole encoder up to its fc block).
    public var feature = FeatureKind.fc
    public var augmentation = Augmentation(cropPadding: 4, horizontalFlip: true)
    public init() {}

    /// The global batch for `labels` labelled images on `ranks` ranks.
    public func globalBatch(labels: Int, ranks: Int) -> Int { min(batch, labels) / ranks * ranks }
}

/// The protocol's split of a labelled dataset: the last `validationFraction` of the training split
/// is the validation set (CIFAR-10: 45,000 / 5,000), the labelled subset of size N is the first N
/// images before it (fixed, as in the paper), and the test split is the test set.
public struct LabelledSplits {
    public let directory: String
    public let train: ShardedSplit
    public let test: ShardedSplit
    /// Training images that may be labelled (`0..<pool`).
    public let pool: Int
    public let validation: Range<Int>
    public let classes: Int

    public init(directory: String, validationFraction: Double = 0.1) throws {
        self.directory = directory
        train = try ShardedSplit(directory: directory, split: "train")
        guard train.manifest.labelled else {
            throw DIMError("\(directory): the images have no labels (imported from a folder without class "
                + "sub-folders); fine-tuning and probes need labelled train/ and test/ splits")
        }
        test = try ShardedSplit(directory: directory, split: "test")
        let v = Int((Double(train.count) * validationFraction).rounded())
        guard v >= 1, train.count - v >= 2 else {
            throw DIMError("\(directory): \(train.count) training images are too few for a validation split")
        }
        pool = train.count - v
        validation = pool..<train.count
        classes = max(train.manifest.classNames.count, 2)
    }

    /// The labelled subset of N images (nil: all of the pool).
    public func labelled(_ n: Int?) throws -> Range<Int> {
        let n = n ?? pool
        guard n >= 2, n <= pool else {
            throw DIMError("\(directory): \(n) labels asked for, but the training split has \(pool) labelled images "
                + "outside its validation split (\(validation.count)); use --labels up to \(pool) or 'all'")
        }
        return 0..<n
    }
}

/// One fine-tuning (or from-scratch) run of a Classifier on N labels, data-parallel over `comm`:
/// synchronised BatchNorm, the gradient allreduce overlapped with backward (GradientSync), Adam
/// on the summed gradient of the global batch's mean loss, so np = k computes what np = 1 does.
public final class FineTuning {
    public struct Result: Codable, Equatable {
        public var validationAccuracy: Double
        public var testAccuracy: Double
        /// The epoch (from 1) whose weights were scored on test.
        public var epoch: Int
        public var steps: Int
        public var seconds: Double
    }

    /// After each epoch: (epoch, epochs, mean training loss, training accuracy, validation accuracy,
    /// training images per second).
    public struct Progress {
        public var epoch: Int, epochs: Int
        public var loss: Double, trainAccuracy: Double, validationAccuracy: Double, imagesPerSecond: Double
    }

    public let classifier: Classifier
    public let config: FineTuneConfig
    public let comm: Communicator
    public let sync: GradientSync
    public let adam: Adam
    public var watchdog: Watchdog?
    private var stepCount = 0

    public init(classifier: Classifier, config: FineTuneConfig, comm: Communicator) {
        self.classifier = classifier; self.config = config; self.comm = comm
        sync = GradientSync(comm: comm)
        adam = Adam(count: classifier.params.count, lr: config.peakRate, beta1: 0.9, beta2: 0.999)
    }

    /// Trains on `examples` of `splits.train` with the run's `seed` (data order, augmentation),
    /// keeps the weights of the epoch with the best validation accuracy, and scores them on test.
    public func run(splits: LabelledSplits, examples: Range<Int>, seed: UInt64,
                    progress: (Progress) -> Void = { _ in }) throws -> Result {
        let t0 = monotonicSeconds()
        let batch = config.globalBatch(labels: examples.count, ranks: comm.size)
        guard batch >= 1 else {
            throw DIMError("\(examples.count) labelled images cannot be shared by \(comm.size) ranks")
        }
        let reader = try BatchReader(data: splits.train, globalBatch: batch, rank: comm.rank, ranks: comm.size,
                                     seed: seed, augmentation: config.augmentation, subset: Array(examples))
        defer { reader.drain() }
        // Step s reads batch s of the reader's sequence of passes over the labelled images.
        let passes = reader.batchesPerEpoch
        let perEpoch = max(passes, config.minimumStepsPerEpoch), total = perEpoch * config.epochs
        let schedule = LearningRateSchedule(warmupSteps: perEpoch * config.warmupEpochs, decaySteps: total,
                                            finalFraction: config.finalRate / config.peakRate)
        var best: (accuracy: Double, epoch: Int, snapshot: Snapshot)?
        for epoch in 0..<config.epochs {
            let start = monotonicSeconds()
            var loss = 0.0, correct = 0.0
            for index in 0..<perEpoch {
                let step = epoch * perEpoch + index, stepStart = monotonicSeconds()
                watchdog?.begin(step: stepCount, phase: .data)
                let b = try reader.batch(epoch: step / passes, index: step % passes)
                let r = try trainStep(images: b.images, labels: b.labels, globalBatch: batch,
                                      rate: schedule.rate(step: step, peak: config.peakRate), step: step)
                loss += r.loss; correct += r.correct
                watchdog?.finished(stepSeconds: monotonicSeconds() - stepStart)
                stepCount += 1
            }
            let seconds = monotonicSeconds() - start
            let validation = try Self.accuracy(classifier, data: splits.train, examples: splits.validation, comm: comm)
            if best == nil || validation > best!.accuracy {
                best = (validation, epoch + 1, Snapshot(classifier))
            }
            let seen = Double(perEpoch * batch)
            progress(Progress(epoch: epoch + 1, epochs: config.epochs, loss: loss / seen, trainAccuracy: correct / seen,
                              validationAccuracy: validation, imagesPerSecond: seen / max(seconds, 1e-9)))
        }
        guard let best else { throw DIMError("fine-tuning: --epochs must be at least 1") }
        best.snapshot.restore(classifier)
        let test = try Self.accuracy(classifier, data: splits.test, examples: 0..<splits.test.count, comm: comm)
        return Result(validationAccuracy: best.accuracy, testAccuracy: test, epoch: best.epoch, steps: total,
                      seconds: monotonicSeconds() - t0)
    }

    /// One step on this rank's share of a global batch: forward/backward with the allreduce
    /// overlapped, the divergence guard, Adam at `rate`. Returns the global batch's summed loss
    /// and correct count.
    func trainStep(images: Tensor, labels: [Int], globalBatch: Int, rate: Float,
                   step: Int) throws -> (loss: Double, correct: Double) {
        watchdog?.enter(.forwardBackward)
        sync.begin(classifier.params)
        let local = classifier.forwardBackward(images, labels: labels, globalBatch: globalBatch, comm: comm,
                                               gradientsFinal: sync.gradientsFinal)
        watchdog?.enter(.gradientAllreduce)
        sync.finish()
        var sums = [local.loss, Double(local.correct)]
        comm.allreduceSum(&sums, count: 2)
        watchdog?.enter(.optimizer)
        guard sums[0].isFinite, classifier.params.gradientsAreFinite() else {
            throw DIMError("fine-tuning step \(step + 1): the loss or a gradient is not finite (rate \(rate)); "
                + "stopping")
        }
        adam.lr = rate
        adam.update(classifier.params)
        return (sums[0], sums[1])
    }

    /// Accuracy of the classifier (BatchNorm in eval mode) on `examples` of a split; each rank
    /// classifies a contiguous share and the counts are summed.
    public static func accuracy(_ classifier: Classifier, data: ShardedSplit, examples: Range<Int>,
                                comm: Communicator, batch: Int = 500) throws -> Double {
        let per = (examples.count + comm.size - 1) / comm.size
        let first = examples.lowerBound + min(comm.rank * per, examples.count)
        let end = min(first + per, examples.upperBound)
        let m = data.manifest
        var raw = [UInt8](repeating: 0, count: batch * m.imageBytes), labels = [Int](repeating: 0, count: batch)
        let x = Tensor([0]), single = SingleProcess()
        var correct = 0.0, i = first
        while i < end {
            let n = min(batch, end - i)
            try data.read(indices: Array(i..<(i + n)), images: &raw, labels: &labels)
            modelInput(raw, count: n, m, into: x)
            for (j, c) in predictedClasses(classifier.forward(x, training: false, comm: single)).enumerated()
            where c == labels[j] { correct += 1 }
            i += n
        }
        return comm.sum(correct) / Double(max(examples.count, 1))
    }

    /// The classifier's parameters and buffers at one epoch (the best one so far).
    struct Snapshot {
        let params: [Float], buffers: [Float], tracked: [Int]
        init(_ c: Classifier) {
            params = Array(UnsafeBufferPointer(start: c.params.values, count: c.params.count))
            buffers = Array(UnsafeBufferPointer(start: c.buffers.values, count: c.buffers.count))
            tracked = c.encoder.batchNorms.map(\.batchesTracked)
        }
        func restore(_ c: Classifier) {
            params.withUnsafeBufferPointer { c.params.values!.update(from: $0.baseAddress!, count: $0.count) }
            buffers.withUnsafeBufferPointer { c.buffers.values!.update(from: $0.baseAddress!, count: $0.count) }
            for (bn, t) in zip(c.encoder.batchNorms, tracked) { bn.batchesTracked = t }
        }
    }
}
