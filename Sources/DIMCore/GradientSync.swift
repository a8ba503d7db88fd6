/// Sums parameter gradients over ranks in a few large buckets (not one call per tensor): the
/// gradients already live in one flat buffer, so a bucket is a contiguous slice of it.
public final class GradientSync {
    public let comm: Communicator
    /// Floats per allreduce call (16 MB by default: large enough to reach full bandwidth, small
    /// enough to bound the temporary buffers MPI allocates).
    public var bucketFloats = 4 << 20

    public init(comm: Communicator) { self.comm = comm }

    public func allreduce(_ store: ParameterStore) {
        guard comm.size > 1, let g = store.grads else { return }
        var offset = 0
        while offset < store.count {
            let n = min(bucketFloats, store.count - offset)
            comm.allreduceSum(g + offset, count: n)
            offset += n
        }
    }
}
