import Foundation

/// Conv -> BatchNorm -> ReLU blocks `layers` of a model's conv stack, named prefix.conv{i} and
/// prefix.bn{i}: the encoder's blocks, and the global-DIM critic's copies of the blocks after the
/// local map (docs/design.md §1 and §2). Tensors are channel-major `[C, N, H, W]`.
public final class ConvStack {
    public let convs: [Conv2D]
    public let norms: [BatchNorm]
    /// The stack's first block index in the model's numbering (the critic's starts after the local map).
    public let first: Int

    public init(_ config: ModelConfig, layers: Range<Int>, params: ParameterStore, buffers: ParameterStore,
                prefix: String, precision: Precision) {
        let g = config.architecture.convGeometry
        var convs: [Conv2D] = [], norms: [BatchNorm] = []
        for i in layers {
            let cin = i == 0 ? config.inChannels : config.convChannels[i - 1], cout = config.convChannels[i]
            convs.append(Conv2D(params, "\(prefix).conv\(i)", in: cin, out: cout, kernel: g.kernel, stride: g.stride,
                                padding: g.padding, precision: precision))
            norms.append(BatchNorm(params, buffers: buffers, "\(prefix).bn\(i)", channels: cout, relu: true))
        }
        self.convs = convs; self.norms = norms; first = layers.lowerBound
    }

    /// The output of block `i` (model numbering), valid after forward.
    public func output(ofBlock i: Int) -> Tensor { norms[i - first].output }

    /// Runs every block on x; returns the last block's output (x itself for an empty stack).
    @discardableResult
    public func forward(_ x: Tensor, training: Bool, comm: Communicator) -> Tensor {
        var h = x
        for i in convs.indices { h = norms[i].forward(convs[i].forward(h), training: training, comm: comm) }
        return h
    }

    /// Backward from `dOut` (the gradient at the last block's output), adding `extra.gradient` to the
    /// gradient at the output of block `extra.block` on the way (the encoder's local map, which the
    /// MI terms also read). Announces each block's parameters final as it goes; returns dL/dx
    /// unless `inputGrad` is false (images need none).
    @discardableResult
    public func backward(_ dOut: Tensor, adding extra: (block: Int, gradient: Tensor)? = nil, inputGrad: Bool,
                         comm: Communicator, gradientsFinal: (Range<Int>) -> Void = { _ in }) -> Tensor {
        var d = dOut
        for i in stride(from: convs.count - 1, through: 0, by: -1) {
            if let extra, extra.block == first + i {
                precondition(extra.gradient.count == d.count, "ConvStack: gradient added at block \(extra.block)")
                for j in 0..<d.count { d.data[j] += extra.gradient.data[j] }
            }
            d = convs[i].backward(norms[i].backward(d, comm: comm), inputGrad: i > 0 || inputGrad)
            gradientsFinal(parameterRange(from: convs[i].weight, through: norms[i].bias))
        }
        return d
    }
}

/// Flatten -> linear (no bias) -> BatchNorm -> ReLU: the fc block after the conv stack, in the
/// encoder (prefix.fc{n+1}, prefix.bn{n+1}) and in the global-DIM critic.
public final class FCBlock {
    public let fc: Linear
    public let norm: BatchNorm
    private let flat = Tensor([0])
    private let gradMap = Tensor([0])
    /// With gathered factors: this rank's samples as rows, and every rank's (global batch order).
    private let localRows = Tensor([0]), gradientRows = Tensor([0]), inputRows = Tensor([0])
    private var mapShape: [Int] = []

    public init(_ config: ModelConfig, params: ParameterStore, buffers: ParameterStore, prefix: String,
                precision: Precision) {
        let n = config.convCount
        fc = Linear(params, "\(prefix).fc\(n + 1)", in: config.flatFeatures, out: config.fcUnits, bias: false,
                    precision: precision)
        norm = BatchNorm(params, buffers: buffers, "\(prefix).bn\(n + 1)", channels: config.fcUnits, relu: true)
    }

    /// map `[C, N, H, W]` -> `[fc, N]`.
    @discardableResult
    public func forward(_ map: Tensor, training: Bool, comm: Communicator) -> Tensor {
        mapShape = map.shape
        flattenMap(map, into: flat)
        return norm.forward(fc.forward(flat), training: training, comm: comm)
    }

    public var output: Tensor { norm.output }

    /// From dL/d(output) to dL/d(map), `[C, N, H, W]`. The weight gradient is computed, and
    /// announced final, before the input gradient, so its allreduce overlaps the rest. With
    /// `gatherFactors` (FCGradientReduce) the weight gradient is the global batch's, from the
    /// factors of every rank: the caller leaves it out of the allreduce.
    public func backward(_ dOut: Tensor, comm: Communicator, gatherFactors: Bool = false,
                         gradientsFinal: (Range<Int>) -> Void = { _ in }) -> Tensor {
        let dh = norm.backward(dOut, comm: comm)
        if gatherFactors && comm.size > 1 {
            gatherRows(dh, into: gradientRows, comm: comm)
            gatherRows(flat, into: inputRows, comm: comm)
            fc.backwardParameters(outputGradientRows: gradientRows, inputRows: inputRows)
            // The other ranks' samples are work this rank repeats (the benchmark does not count it as the step's).
            let others = Double(gradientRows.shape[0] - dh.shape[1])
            FlopCounter.repeatedFlops += 2 * Double(fc.outFeatures * fc.inFeatures) * others
        } else {
            fc.backwardParameters(dh)
        }
        gradientsFinal(parameterRange(from: fc.weight, through: norm.bias))
        let dflat = fc.backwardInput(dh)
        unflattenMap(dflat, channels: mapShape[0], height: mapShape[2], width: mapShape[3], into: gradMap)
        return gradMap
    }

    /// `x` `[features, n]` on every rank -> `out` `[n * ranks, features]`: one row per sample, the
    /// ranks' samples in rank order (the global batch's order).
    private func gatherRows(_ x: Tensor, into out: Tensor, comm: Communicator) {
        let features = x.shape[0], n = x.count / features
        localRows.resize([n, features])
        transpose(x.data, rows: features, cols: n, into: localRows.data)
        out.resize([n * comm.size, features])
        comm.allgather(localRows.data, count: n * features, into: out.data)
    }
}
