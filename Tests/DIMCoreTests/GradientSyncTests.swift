import XCTest
import DIMTestSupport
@testable import DIMCore

/// GradientSync's bookkeeping: slices announced final in any order, repeated or never, are each
/// summed over ranks exactly once; and the model announces every gradient once, the large ones
/// early.
final class GradientSyncTests: XCTestCase {
    /// A store of a few tensors whose gradient i on rank r is (r + 1) * (i % 5 + 1), so the sum over
    /// 3 ranks is 6 * (i % 5 + 1) (exact in bf16 too), and summing twice would show.
    func reduce(precision: GradientPrecision, announce: [Range<Int>], summedByBackward: [Range<Int>] = []) -> [[Float]] {
        InProcessGroup.run(ranks: 3) { comm in
            let store = ParameterStore()
            for (k, n) in [300, 40, 700, 5, 900].enumerated() { _ = store.declare("p\(k)", [n], .zeros) }
            store.allocate(seed: 0)
            for i in 0..<store.count { store.grads![i] = Float((comm.rank + 1) * (i % 5 + 1)) }
            let sync = GradientSync(comm: comm, precision: precision, bf16MinimumTensor: 100)
            sync.bucketFloats = 256
            sync.minimumBucketFloats = 200
            sync.begin(store, summedByBackward: summedByBackward)
            for r in announce { sync.gradientsFinal(r) }
            sync.finish()
            return Array(UnsafeBufferPointer(start: store.grads!, count: store.count))
        }
    }

    func testEverySliceIsSummedExactlyOnce() {
        let expected = (0..<1945).map { Float(6 * ($0 % 5 + 1)) }
        let orders: [[Range<Int>]] = [
            [],                                              // nothing announced: finish does it all
            [1045..<1945, 340..<1040, 300..<340, 0..<300],   // backward order
            [340..<1040, 1045..<1945, 0..<300],              // out of order, 300..<340 and 1040..<1045 never
            [100..<150, 120..<400, 0..<1945, 1500..<1600],   // overlapping and repeated
            [1040..<1045, 300..<340, 150..<160],             // all below the minimum until finish
        ]
        for precision in GradientPrecision.allCases {
            for announce in orders {
                let ranks = reduce(precision: precision, announce: announce)
                for r in ranks.indices {
                    // The first wrong value, not two 1945-value arrays.
                    let wrong = ranks[r].indices.first { ranks[r][$0] != expected[$0] }
                    XCTAssertNil(wrong, "\(precision), announced \(announce), rank \(r): value \(wrong ?? 0) is "
                                 + "\(wrong.map { ranks[r][$0] } ?? 0), expected \(wrong.map { expected[$0] } ?? 0)")
                }
            }
        }
    }

    /// Slices backward summed itself (FCGradientReduce.factors) keep this rank's values; the rest
    /// is summed once, whatever is announced.
    func testSlicesSummedByBackwardAreLeftOut() {
        let summed = [340..<1040, 1500..<1600]
        for precision in GradientPrecision.allCases {
            for announce in [[], [1045..<1945, 340..<1040, 300..<340, 0..<300], [0..<1945]] {
                let ranks = reduce(precision: precision, announce: announce, summedByBackward: summed)
                for r in ranks.indices {
                    let expected = (0..<1945).map { i in
                        Float((summed.contains { $0.contains(i) } ? r + 1 : 6) * (i % 5 + 1))
                    }
                    let wrong = ranks[r].indices.first { ranks[r][$0] != expected[$0] }
                    XCTAssertNil(wrong, "\(precision), announced \(announce), rank \(r): value \(wrong ?? 0) is "
                                 + "\(wrong.map { ranks[r][$0] } ?? 0), expected \(wrong.map { expected[$0] } ?? 0)")
                }
            }
        }
    }

    func testRangeHelpers() {
        XCTAssertEqual(GradientSync.merged([5..<7, 0..<2, 2..<3, 6..<9, 4..<4]), [0..<3, 5..<9])
        XCTAssertEqual(GradientSync.subtracting([2..<4, 6..<8], from: 0..<10), [0..<2, 4..<6, 8..<10])
        XCTAssertEqual(GradientSync.subtracting([0..<10], from: 3..<5), [])
        XCTAssertEqual(GradientSync.subtracting([], from: 3..<5), [3..<5])
    }

    /// One forward/backward of the model, for every term: the announced slices are disjoint and
    /// cover every parameter, and the encoder's fc weight and the local head's layer b (the large
    /// tensors) are final before the local head's layer a, i.e. before its long backward ends.
    func testModelAnnouncesEveryGradientOnceLargeOnesEarly() {
        let config = ModelConfig(architecture: .basic28x28, inChannels: 1, convChannels: [6, 8], fcUnits: 24,
                                 globalDim: 8, miUnits: 16, discUnits: [12, 6])
        for loss in [LossConfig(estimator: .jsd), LossConfig(estimator: .nce, beta: 1, alpha: 0.5, gamma: 0.1)] {
            let model = DIMModel(config: config, loss: loss, seed: 1)
            let x = Tensor([1, 4, 28, 28], values: (0..<(4 * 784)).map { Float($0 % 13) / 6.5 - 1 })
            let z = Tensor([config.globalDim, 4], values: (0..<(4 * config.globalDim)).map { Float($0 % 3) / 3 })
            var announced: [Range<Int>] = []
            model.forwardBackward(x, priorSample: z, comm: SingleProcess(), gradientsFinal: { announced.append($0) })
            var covered = [Int](repeating: 0, count: model.params.count)
            for r in announced { for i in r { covered[i] += 1 } }
            XCTAssertEqual(covered, [Int](repeating: 1, count: model.params.count), "alpha \(loss.alpha)")
            func when(_ name: String) -> Int {
                let p = model.params[name]!
                return announced.firstIndex { $0.contains(p.offset) }!
            }
            XCTAssertLessThan(when("encoder.fc3.weight"), when("local_mi.conv_a.weight"))
            XCTAssertLessThan(when("local_mi.conv_b.weight"), when("local_mi.conv_a.weight"))
            XCTAssertLessThan(when("global_mi.fc_b.weight"), when("encoder.fc3.weight"))
        }
    }
}
