import Foundation
import DIMCore

/// The training reader. The order of an epoch is a permutation that depends on (seed, epoch)
/// only; global batch b of epoch e is examples order[b*B ..< (b+1)*B], and rank r reads its
/// contiguous slice of it. A background thread prepares the next batch while the current one
/// trains. Pixels become floats in [-1, 1], channel-major `[C, n, H, W]`.
public final class BatchReader {
    /// One of the two buffers the reader alternates between (a class, so the prefetch thread
    /// fills one while the trainer holds the other, without sharing any Swift array).
    public final class Batch {
        public let images: Tensor
        public internal(set) var labels: [Int]
        public internal(set) var epoch = 0, index = 0
        /// Global example indices of this rank's slice.
        public internal(set) var examples: [Int] = []
        init(images: Tensor, labels: [Int]) { self.images = images; self.labels = labels }
    }

    public let data: ShardedSplit
    public let globalBatch: Int, rank: Int, ranks: Int, seed: UInt64
    public let shuffle: Bool
    public let augmentation: Augmentation
    /// The examples an epoch goes through (nil: the whole split): fine-tuning reads the first N
    /// labelled images of a split.
    public let subset: [Int]?
    /// How many examples an epoch goes through.
    public var exampleCount: Int { subset?.count ?? data.count }
    public var localBatch: Int { globalBatch / ranks }
    /// Full global batches per epoch (the remainder is dropped so every batch has the same size).
    public var batchesPerEpoch: Int { exampleCount / globalBatch }

    private let buffers: [Batch]
    private var next = 0
    private let queue = DispatchQueue(label: "dim-dist.prefetch")
    private var pending: (epoch: Int, index: Int, slot: Int, group: DispatchGroup)?
    private var pendingError: Error?
    private var cachedOrder: (epoch: Int, order: [Int])?
    private let orderLock = NSLock()
    private let pixelScratch: [Tensor8]
    private let floatScratch: [Tensor]

    public init(data: ShardedSplit, globalBatch: Int, rank: Int, ranks: Int, seed: UInt64, shuffle: Bool = true,
                augmentation: Augmentation = Augmentation(), subset: [Int]? = nil) throws {
        _ = try localBatchSize(global: globalBatch, ranks: ranks)
        let count = subset?.count ?? data.count
        guard globalBatch <= count else {
            throw DIMError("batch size \(globalBatch) is larger than the \(count) examples of "
                + "\(data.directory) (\(data.splitName)\(subset == nil ? "" : ", the labelled subset"))")
        }
        if let subset, let bad = subset.first(where: { $0 < 0 || $0 >= data.count }) {
            throw DIMError("\(data.directory) (\(data.splitName)): example \(bad) of the subset is out of range")
        }
        self.data = data; self.globalBatch = globalBatch; self.rank = rank; self.ranks = ranks
        self.seed = seed; self.shuffle = shuffle; self.augmentation = augmentation; self.subset = subset
        let m = data.manifest
        let n = globalBatch / ranks
        buffers = (0..<2).map { _ in Batch(images: Tensor([m.channels, n, m.height, m.width]),
                                           labels: Array(repeating: 0, count: n)) }
        pixelScratch = (0..<2).map { _ in Tensor8(count: n * m.imageBytes) }
        floatScratch = (0..<2).map { _ in Tensor([m.imageBytes]) }
    }

    /// The permutation of epoch e (identity without shuffle), as example indices of the split.
    public func order(epoch: Int) -> [Int] {
        orderLock.lock(); defer { orderLock.unlock() }
        if let c = cachedOrder, c.epoch == epoch { return c.order }
        var rng = SplitMix64(seed: seed, stream: RandomStream.dataOrder, index: UInt64(epoch))
        var o = shuffle ? rng.permutation(exampleCount) : Array(0..<exampleCount)
        if let subset { o = o.map { subset[$0] } }
        cachedOrder = (epoch, o)
        return o
    }

    /// This rank's examples of global batch `index` of `epoch`.
    public func examples(epoch: Int, index: Int) -> [Int] {
        let o = order(epoch: epoch)
        let start = index * globalBatch + rank * localBatch
        return Array(o[start..<(start + localBatch)])
    }

    /// Returns batch (epoch, index), waiting for the prefetch if it was requested, and starts
    /// preparing the following one. The returned tensor stays valid until the next call.
    public func batch(epoch: Int, index: Int) throws -> Batch {
        var slot: Int
        if let p = pending, p.epoch == epoch, p.index == index {
            p.group.wait()
            pending = nil
            if let e = pendingError { pendingError = nil; throw e }
            slot = p.slot
        } else {
            if let p = pending { p.group.wait(); pending = nil; pendingError = nil }
            slot = next
            try fill(slot: slot, epoch: epoch, index: index)
        }
        next = 1 - slot
        // Prefetch the batch after this one.
        let wraps = index + 1 >= batchesPerEpoch
        let (e2, i2) = wraps ? (epoch + 1, 0) : (epoch, index + 1)
        let group = DispatchGroup()
        let target = next
        pending = (e2, i2, target, group)
        group.enter()
        queue.async { [self] in
            do { try fill(slot: target, epoch: e2, index: i2) } catch { pendingError = error }
            group.leave()
        }
        return buffers[slot]
    }

    private func fill(slot: Int, epoch: Int, index: Int) throws {
        let ex = examples(epoch: epoch, index: index)
        let m = data.manifest
        let per = m.imageBytes
        let batch = buffers[slot]
        let px = pixelScratch[slot].data
        do {
            try batch.labels.withUnsafeMutableBufferPointer { lb in
                try data.read(indices: ex, images: px, labels: lb.baseAddress!)
            }
            let out = batch.images
            let (C, H, W, n) = (m.channels, m.height, m.width, ex.count)
            for (j, example) in ex.enumerated() {
                var rng = SplitMix64(seed: seed, stream: RandomStream.augmentation,
                                     index: UInt64(epoch) &* 1_000_003 &+ UInt64(example))
                augmentation.apply(px + j * per, channels: C, height: H, width: W, rng: &rng,
                                   scratch: floatScratch[slot], into: out.data + j * H * W, planeStride: n * H * W)
            }
        }
        batch.epoch = epoch
        batch.index = index
        batch.examples = ex
    }

    /// Waits for any prefetch in flight (call before the reader goes away).
    public func drain() {
        pending?.group.wait()
        pending = nil
    }

    deinit { drain() }
}

/// A raw uint8 buffer owned by the reader.
final class Tensor8 {
    let data: UnsafeMutablePointer<UInt8>
    init(count: Int) { data = .allocate(capacity: max(count, 1)); data.initialize(repeating: 0, count: max(count, 1)) }
    deinit { data.deallocate() }
}
