import Foundation
import XCTest
@testable import DIMCore

/// The elementwise passes between GEMMs run on the rank's BLAS threads (`parallelRanges`); each
/// must give the same bits on 2 threads as on 1.
final class ParallelPassTests: XCTestCase {
    override func tearDown() { setBLASThreads(1) }

    /// Runs `body` on 1 thread and on 2; returns both results.
    private func onOneAndTwoThreads(_ body: () -> [Float]) -> (one: [Float], two: [Float]) {
        setBLASThreads(1)
        let one = body()
        setBLASThreads(2)
        let two = body()
        setBLASThreads(1)
        return (one, two)
    }

    private func assertSameBits(_ r: (one: [Float], two: [Float]), _ what: String,
                                file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.one.count, r.two.count, what, file: file, line: line)
        let differing = zip(r.one, r.two).filter { $0.bitPattern != $1.bitPattern }.count
        XCTAssertEqual(differing, 0, "\(what): \(differing) of \(r.one.count) values differ", file: file, line: line)
    }

    func testRangesCoverEverythingOnceAndSplitOnSeveralThreads() {
        let lock = NSLock()
        for threads in [1, 2] {
            setBLASThreads(threads)
            XCTAssertEqual(blasThreads(), threads, "the tests below would not run the passes on two threads")
            var seen: [Range<Int>] = []
            parallelRanges(1000, grain: 100) { r in lock.lock(); seen.append(r); lock.unlock() }
            XCTAssertEqual(seen.count, threads)
            XCTAssertEqual(seen.sorted { $0.lowerBound < $1.lowerBound }.flatMap { Array($0) }, Array(0..<1000))
            seen = []
            parallelRanges(150, grain: 100) { r in lock.lock(); seen.append(r); lock.unlock() }
            XCTAssertEqual(seen, [0..<150], "too little work for a second thread")
        }
    }

    func testBatchNormGivesTheSameBitsOnTwoThreads() {
        let x = randomTensor([8, 65536], seed: 3), dy = randomTensor([8, 65536], seed: 4)
        let r = onOneAndTwoThreads {
            let store = ParameterStore(), buffers = ParameterStore(trainable: false)
            let bn = BatchNorm(store, buffers: buffers, "bn", channels: 8, relu: true)
            store.allocate(seed: 1); buffers.allocate(seed: 1)
            store.zeroGrads()
            let y = bn.forward(x, training: true, comm: SingleProcess()).array
            let dx = bn.backward(dy, comm: SingleProcess()).array
            return y + dx + Array(UnsafeBufferPointer(start: store.grads!, count: store.count))
        }
        assertSameBits(r, "BatchNorm")
    }

    func testLayerNormGivesTheSameBitsOnTwoThreads() {
        let x = randomTensor([16, 8191], seed: 5), dy = randomTensor([16, 8191], seed: 6)
        let r = onOneAndTwoThreads {
            let store = ParameterStore()
            let ln = LayerNorm(store, "ln", channels: 16)
            store.allocate(seed: 2)
            store.zeroGrads()
            let y = ln.forward(x).array
            let dx = ln.backward(dy).array
            return y + dx + Array(UnsafeBufferPointer(start: store.grads!, count: store.count))
        }
        assertSameBits(r, "LayerNorm")
    }

    func testIm2colAndCol2imGiveTheSameBitsOnTwoThreads() {
        let g = ConvGeometry(inChannels: 4, height: 32, width: 32, kernel: 4, stride: 2, padding: 1)
        let x = randomTensor([4, 8, 32, 32], seed: 7)
        let c = randomTensor([g.patchSize, 8 * g.outHeight * g.outWidth], seed: 8)
        let r = onOneAndTwoThreads {
            let cols = Tensor(c.shape), back = Tensor(x.shape), phases = Tensor([g.phaseCount(batch: 8)])
            im2col(x.data, batch: 8, g, into: cols.data, phases: phases.data)
            col2im(c.data, batch: 8, g, into: back.data, phases: phases.data)
            return cols.array + back.array
        }
        assertSameBits(r, "im2col/col2im")
    }

    func testAdamAndBiasSumsGiveTheSameBitsOnTwoThreads() {
        let r = onOneAndTwoThreads {
            let store = ParameterStore()
            let linear = Linear(store, "fc", in: 32, out: 64, bias: true)
            _ = store.declare("big", [600_001], .uniform(1))
            store.allocate(seed: 3)
            store.zeroGrads()
            linear.forward(randomTensor([32, 4096], seed: 9))
            linear.backward(randomTensor([64, 4096], seed: 10), inputGrad: false)
            // The bias gradient (row sums, threaded here); the weight's comes from OpenBLAS, whose
            // threaded GEMM may split its sums: replaced, like the rest, by random gradients.
            let bias = linear.bias!, g = store.grads!
            let biasGradient = Array(UnsafeBufferPointer(start: g + bias.offset, count: bias.count))
            var rng = SplitMix64(seed: 11)
            for i in 0..<store.count where !(bias.offset..<(bias.offset + bias.count)).contains(i) {
                g[i] = rng.uniform(1)
            }
            let adam = Adam(count: store.count, lr: 1e-3)
            for _ in 0..<2 { adam.update(store) }
            return biasGradient + Array(UnsafeBufferPointer(start: store.values!, count: store.count))
                + Array(UnsafeBufferPointer(start: adam.m, count: store.count))
                + Array(UnsafeBufferPointer(start: adam.v, count: store.count))
        }
        assertSameBits(r, "Adam and the bias gradient")
    }
}
