import Foundation
import DIMCore
import DIMIO

/// Features of a frozen encoder (BatchNorm in eval mode) for the probes: `conv` (the last conv
/// block, flattened in PyTorch order), `fc` (the fc block) and `y` (the global vector).
public enum FeatureKind: String, CaseIterable, Codable {
    case conv, fc, y
}

public struct FeatureSet {
    public var kind: FeatureKind
    public var dim: Int
    public var count: Int
    /// Row-major [count, dim].
    public var values: [Float]
    public var labels: [Int]
    /// Views per image: rows `v * images + i` are view v of image i (view 1: the mirror image).
    public var views = 1
    public var images: Int { count / views }

    public init(kind: FeatureKind, dim: Int, count: Int, values: [Float], labels: [Int]) {
        self.kind = kind; self.dim = dim; self.count = count; self.values = values; self.labels = labels
    }

    /// The feature set of some of the rows, in the order given (one view per row).
    public func rows<S: Collection>(_ rows: S) -> FeatureSet where S.Element == Int {
        var out = [Float](); out.reserveCapacity(rows.count * dim)
        for r in rows { out.append(contentsOf: values[(r * dim)..<((r + 1) * dim)]) }
        return FeatureSet(kind: kind, dim: dim, count: rows.count, values: out, labels: rows.map { labels[$0] })
    }

    /// These features with another view of the same images (in the same order) added.
    public func addingView(_ other: FeatureSet) -> FeatureSet {
        precondition(other.kind == kind && other.dim == dim && other.count == images && other.views == 1)
        var f = self
        f.values += other.values; f.labels += other.labels
        f.count += other.count; f.views += 1
        return f
    }

    /// All views of the given images.
    public func allViews<S: Collection>(ofImages images: S) -> FeatureSet where S.Element == Int {
        var f = rows(images)
        for v in 1..<views { f = f.addingView(rows(images.map { $0 + v * self.images })) }
        return f
    }
}

/// Mirrors every image row of `x` (`[..., W]`) in place: the horizontal flip of a whole batch.
func mirrorRows(_ x: Tensor, width w: Int) {
    for r in 0..<(x.count / w) {
        let row = x.data + r * w
        for c in 0..<(w / 2) { let t = row[c]; row[c] = row[w - 1 - c]; row[w - 1 - c] = t }
    }
}

/// n stored images (CHW bytes, one after another) as the model's input `[C, n, H, W]`, scaled to [-1, 1].
func modelInput(_ raw: [UInt8], count n: Int, _ m: DatasetManifest, into x: Tensor) {
    x.resize([m.channels, n, m.height, m.width])
    let hw = m.height * m.width
    for j in 0..<n { for c in 0..<m.channels {
        let dst = x.data + (c * n + j) * hw
        for p in 0..<hw { dst[p] = modelPixel(raw[j * m.imageBytes + c * hw + p]) }
    } }
}

/// The `kinds` features of the encoder's last forward as image rows (`out[(row0 + j) * d + f]`).
private func copyFeatures(_ model: DIMModel, kinds: [FeatureKind], dims: [FeatureKind: Int], count n: Int, row0: Int,
                          scratch flat: Tensor, into local: inout [FeatureKind: [Float]]) {
    for k in kinds {
        let d = dims[k]!
        let src: Tensor
        switch k {
        case .conv: flattenMap(model.encoder.convFeatures, into: flat); src = flat
        case .fc: src = model.encoder.fcFeatures
        case .y: src = model.encoder.globalVector
        }
        // src is [d, n]; rows of the output are images.
        local[k]!.withUnsafeMutableBufferPointer { out in
            for j in 0..<n { for f in 0..<d { out[(row0 + j) * d + f] = src.data[f * n + j] } }
        }
    }
}

/// Encodes a whole split. Under mpirun each rank encodes a contiguous share and the features are
/// all-gathered, so every rank ends with all of them.
/// `limit`: only the first images of the split; `mirrored`: the images flipped left to right.
public func encodeSplit(model: DIMModel, data: ShardedSplit, kinds: [FeatureKind], batch: Int = 256, limit: Int? = nil,
                        mirrored: Bool = false,
                        comm: Communicator, progress: ((Int, Int) -> Void)? = nil) throws -> [FeatureKind: FeatureSet] {
    let m = data.manifest
    let N = min(data.count, limit ?? data.count)
    let per = (N + comm.size - 1) / comm.size
    let start = min(comm.rank * per, N), end = min(start + per, N)
    let dims: [FeatureKind: Int] = [.conv: model.config.flatFeatures, .fc: model.config.fcUnits,
                                    .y: model.config.globalDim]
    var local: [FeatureKind: [Float]] = [:]
    for k in kinds { local[k] = [Float](repeating: 0, count: per * dims[k]!) }
    var localLabels = [Float](repeating: -1, count: per)
    let x = Tensor([0]), flat = Tensor([0])
    var raw = [UInt8](repeating: 0, count: batch * m.imageBytes)
    var labels = [Int](repeating: 0, count: batch)
    var i = start
    let single = SingleProcess()  // eval-mode BatchNorm needs no collective
    while i < end {
        let n = min(batch, end - i)
        try data.read(indices: Array(i..<(i + n)), images: &raw, labels: &labels)
        modelInput(raw, count: n, m, into: x)
        if mirrored { mirrorRows(x, width: m.width) }
        model.encode(x, training: false, comm: single)
        copyFeatures(model, kinds: kinds, dims: dims, count: n, row0: i - start, scratch: flat, into: &local)
        for j in 0..<n { localLabels[i - start + j] = Float(labels[j]) }
        i += n
        if comm.isRoot { progress?(i - start, end - start) }
    }
    var result: [FeatureKind: FeatureSet] = [:]
    var allLabels = [Float](repeating: 0, count: per * comm.size)
    comm.allgather(localLabels, count: per, into: &allLabels)
    let labelsOut = allLabels.prefix(N).map { Int($0) }
    for k in kinds {
        let d = dims[k]!
        var all = [Float](repeating: 0, count: per * comm.size * d)
        comm.allgather(local[k]!, count: per * d, into: &all)
        result[k] = FeatureSet(kind: k, dim: d, count: N, values: Array(all.prefix(N * d)), labels: labelsOut)
    }
    return result
}
