import XCTest
@testable import DIMCore

/// Every layer's backward pass against central finite differences.
final class LayerGradientTests: XCTestCase {
    let comm = SingleProcess()

    func testLinearWithBias() {
        let store = ParameterStore()
        let layer = Linear(store, "fc", in: 7, out: 5, bias: true)
        store.allocate(seed: 1)
        let x = randomTensor([7, 6], seed: 2)
        let proj = Projection(count: 30, seed: 3)
        store.zeroGrads()
        layer.forward(x)
        let dx = layer.backward(proj.gradient(shape: [5, 6])).array
        let f = { proj.loss(layer.forward(x)) }
        checkGradient("linear dx", value: x.data, count: x.count, analytic: dx, loss: f)
        checkGradient("linear dW", value: layer.weight.value.data, count: 35, analytic: layer.weight.grad.array,
                      loss: f)
        checkGradient("linear db", value: layer.bias!.value.data, count: 5, analytic: layer.bias!.grad.array, loss: f)
    }

    func testConvolutionGeometries() {
        // The kernels of the three encoders: k4 s2 p1 (32x32, 64x64) and k5 s2 p2 (28x28), plus k3 s1 p1.
        for (k, s, p, size) in [(4, 2, 1, 8), (5, 2, 2, 7), (3, 1, 1, 5)] {
            let store = ParameterStore()
            let conv = Conv2D(store, "conv", in: 3, out: 4, kernel: k, stride: s, padding: p)
            store.allocate(seed: 4)
            let x = randomTensor([3, 2, size, size], seed: 5)
            conv.forward(x)
            let outShape = conv.output.shape
            let proj = Projection(count: conv.output.count, seed: 6)
            store.zeroGrads()
            let dx = conv.backward(proj.gradient(shape: outShape)).array
            let f = { proj.loss(conv.forward(x)) }
            checkGradient("conv k\(k)s\(s)p\(p) dx", value: x.data, count: x.count, analytic: dx, loss: f)
            checkGradient("conv k\(k)s\(s)p\(p) dW", value: conv.weight.value.data, count: conv.weight.count,
                          analytic: conv.weight.grad.array, loss: f)
        }
    }

    /// Forward values against a direct convolution written from the definition (the gradient
    /// checks above only show that forward and backward agree with each other).
    func testConvolutionForwardEqualsTheDirectSum() {
        for (k, s, p, size) in [(4, 2, 1, 8), (5, 2, 2, 7), (3, 1, 1, 5)] {
            let store = ParameterStore()
            let (cin, cout, n) = (3, 4, 2)
            let conv = Conv2D(store, "conv", in: cin, out: cout, kernel: k, stride: s, padding: p)
            store.allocate(seed: 14)
            let x = randomTensor([cin, n, size, size], seed: 15)
            let y = conv.forward(x)
            let out = ConvGeometry.outputSize(size, kernel: k, stride: s, padding: p)
            XCTAssertEqual(y.shape, [cout, n, out, out])
            let w = conv.weight.value.data
            var worst: Float = 0
            for o in 0..<cout { for b in 0..<n { for oy in 0..<out { for ox in 0..<out {
                var sum: Float = 0
                for c in 0..<cin { for ky in 0..<k { for kx in 0..<k {
                    let iy = oy * s - p + ky, ix = ox * s - p + kx
                    guard iy >= 0, iy < size, ix >= 0, ix < size else { continue }
                    sum += w[((o * cin + c) * k + ky) * k + kx] * x.data[((c * n + b) * size + iy) * size + ix]
                } } }
                worst = max(worst, abs(sum - y.data[((o * n + b) * out + oy) * out + ox]))
            } } } }
            XCTAssertLessThan(worst, 1e-5, "conv k\(k)s\(s)p\(p)")
        }
    }

    func testIm2colIsTheAdjointOfCol2im() {
        // (height, width, kernel, stride, padding): borders on both sides, none, a kernel that
        // reaches past both edges, stride 3, DIM's k4 s2 p1 (output widths 16, 8 and 4: the vector
        // runs), an odd width, a stride above the kernel; vector runs at stride 1, over 12 = 3 x 4
        // floats, and with padding 3 (masked lanes 3 floats outside a row).
        for (h, w, k, s, p) in [(7, 6, 3, 2, 1), (28, 28, 5, 2, 2), (5, 4, 4, 1, 0), (3, 2, 5, 1, 2), (9, 10, 4, 3, 1),
                                (32, 32, 4, 2, 1), (16, 16, 4, 2, 1), (8, 8, 4, 2, 1), (7, 7, 4, 2, 1), (4, 3, 3, 4, 1),
                                (5, 8, 3, 1, 1), (9, 16, 5, 2, 2), (10, 24, 4, 2, 1), (5, 8, 3, 1, 3)] {
            let g = ConvGeometry(inChannels: 2, height: h, width: w, kernel: k, stride: s, padding: p)
            let x = randomTensor([2, 3, h, w], seed: 8)
            let cols = Tensor([g.patchSize, 3 * g.outHeight * g.outWidth])
            let phases = Tensor([g.phaseCount(batch: 3)])
            // Stale values (a reused buffer) must all be overwritten, the padding's zeros included.
            cols.data.update(repeating: .nan, count: cols.count)
            phases.data.update(repeating: .nan, count: phases.count)
            im2col(x.data, batch: 3, g, into: cols.data, phases: phases.data)
            // Each column entry is the input pixel it names, or 0 in the padding.
            var worst: Float = 0
            for c in 0..<2 { for ky in 0..<k { for kx in 0..<k { for b in 0..<3 {
                for oy in 0..<g.outHeight { for ox in 0..<g.outWidth {
                    let (iy, ix) = (oy * s - p + ky, ox * s - p + kx)
                    let inside = iy >= 0 && iy < h && ix >= 0 && ix < w
                    let expected = inside ? x.data[((c * 3 + b) * h + iy) * w + ix] : 0
                    let row = (c * k + ky) * k + kx, col = (b * g.outHeight + oy) * g.outWidth + ox
                    let error = abs(cols.data[row * cols.shape[1] + col] - expected)
                    if !(error <= worst) { worst = error }  // a NaN (an entry left unwritten) sticks
                } }
            } } } }
            XCTAssertEqual(worst, 0, "im2col h\(h) w\(w) k\(k) s\(s) p\(p)")
            let c = randomTensor(cols.shape, seed: 9)
            let back = Tensor(x.shape)
            back.data.update(repeating: .nan, count: back.count)
            col2im(c.data, batch: 3, g, into: back.data, phases: phases.data)
            // Bit-identical to the direct scatter (same additions in the same order).
            var scattered = [Float](repeating: 0, count: x.count)
            for ch in 0..<2 { for ky in 0..<k { for kx in 0..<k { for b in 0..<3 {
                for oy in 0..<g.outHeight { for ox in 0..<g.outWidth {
                    let (iy, ix) = (oy * s - p + ky, ox * s - p + kx)
                    guard iy >= 0 && iy < h && ix >= 0 && ix < w else { continue }
                    let row = (ch * k + ky) * k + kx, col = (b * g.outHeight + oy) * g.outWidth + ox
                    scattered[((ch * 3 + b) * h + iy) * w + ix] += c.data[row * cols.shape[1] + col]
                } }
            } } } }
            XCTAssertEqual((0..<x.count).map { back.data[$0].bitPattern }, scattered.map(\.bitPattern),
                           "col2im h\(h) w\(w) k\(k) s\(s) p\(p)")
            var lhs = 0.0, rhs = 0.0
            for i in 0..<cols.count { lhs += Double(cols.data[i]) * Double(c.data[i]) }
            for i in 0..<x.count { rhs += Double(x.data[i]) * Double(back.data[i]) }
            XCTAssertEqual(lhs, rhs, accuracy: 1e-4 * abs(lhs), "col2im h\(h) w\(w) k\(k) s\(s) p\(p)")
        }
    }

    func testBatchNormTrainingAndEval() {
        for relu in [false, true] {
            let store = ParameterStore(), buffers = ParameterStore(trainable: false)
            let bn = BatchNorm(store, buffers: buffers, "bn", channels: 3, relu: relu)
            store.allocate(seed: 1); buffers.allocate(seed: 1)
            // Non-trivial affine parameters so their gradients are exercised.
            for c in 0..<3 { bn.weight.value.data[c] = 0.5 + Float(c) * 0.3; bn.bias.value.data[c] = 0.1 * Float(c) - 0.05 }
            let x = randomTensor([3, 4, 2, 2], seed: 11, scale: 2)
            let proj = Projection(count: x.count, seed: 12)
            for training in [true, false] {
                if !training { for c in 0..<3 { bn.runningMean.value.data[c] = 0.2; bn.runningVar.value.data[c] = 1.5 } }
                store.zeroGrads()
                bn.forward(x, training: training, comm: comm)
                let dx = bn.backward(proj.gradient(shape: x.shape), comm: comm).array
                let f = { proj.loss(bn.forward(x, training: training, comm: self.comm)) }
                let label = "bn relu=\(relu) training=\(training)"
                checkGradient("\(label) dx", value: x.data, count: x.count, analytic: dx, loss: f)
                checkGradient("\(label) dgamma", value: bn.weight.value.data, count: 3, analytic: bn.weight.grad.array,
                              loss: f)
                checkGradient("\(label) dbeta", value: bn.bias.value.data, count: 3, analytic: bn.bias.grad.array,
                              loss: f)
            }
        }
    }

    func testBatchNormStatisticsFollowPyTorch() {
        let store = ParameterStore(), buffers = ParameterStore(trainable: false)
        let bn = BatchNorm(store, buffers: buffers, "bn", channels: 1, relu: false)
        store.allocate(seed: 1); buffers.allocate(seed: 1)
        let x = Tensor([1, 4], values: [1, 2, 3, 6])
        let y = bn.forward(x, training: true, comm: comm)
        // mean 3, biased variance 3.5, unbiased 14/3.
        XCTAssertEqual(y[0], Float((1 - 3) / (3.5 + 1e-5).squareRoot()), accuracy: 1e-6)
        XCTAssertEqual(bn.runningMean.value[0], 0.3, accuracy: 1e-6)
        XCTAssertEqual(bn.runningVar.value[0], 0.9 + 0.1 * 14 / 3, accuracy: 1e-6)
        XCTAssertEqual(bn.batchesTracked, 1)
    }

    func testLayerNormOverChannels() {
        let store = ParameterStore()
        let ln = LayerNorm(store, "ln", channels: 5)
        store.allocate(seed: 1)
        for c in 0..<5 { ln.weight.value.data[c] = 1 + 0.2 * Float(c); ln.bias.value.data[c] = 0.1 * Float(c) }
        let x = randomTensor([5, 3, 2, 2], seed: 13, scale: 3)
        for i in 0..<x.count { x.data[i] += 4 }  // an offset, as the heads' residual sums have
        let proj = Projection(count: x.count, seed: 14)
        store.zeroGrads()
        ln.forward(x)
        let dx = ln.backward(proj.gradient(shape: x.shape)).array
        let f = { proj.loss(ln.forward(x)) }
        checkGradient("ln dx", value: x.data, count: x.count, analytic: dx, eps: 1e-2, loss: f)
        checkGradient("ln dw", value: ln.weight.value.data, count: 5, analytic: ln.weight.grad.array, loss: f)
        checkGradient("ln db", value: ln.bias.value.data, count: 5, analytic: ln.bias.grad.array, loss: f)
    }

    /// A composite of the layers above: BN+ReLU kinks and float32 rounding bound how close a finite
    /// difference can get, hence the looser tolerance (the heads are also checked against PyTorch).
    func testMIHead() {
        for conv in [true, false] {
            let store = ParameterStore(), buffers = ParameterStore(trainable: false)
            let head = MIHead(store, buffers: buffers, "head", in: 4, units: 6, convolutional: conv)
            store.allocate(seed: 3); buffers.allocate(seed: 3)
            let x = conv ? randomTensor([4, 3, 2, 2], seed: 15) : randomTensor([4, 5], seed: 15)
            head.forward(x, training: true, comm: comm)
            let proj = Projection(count: head.output.count, seed: 16)
            store.zeroGrads()
            let dx = head.backward(proj.gradient(shape: head.output.shape), comm: comm).array
            let f = { proj.loss(head.forward(x, training: true, comm: self.comm)) }
            checkGradient("head dx", value: x.data, count: x.count, analytic: dx, eps: 1e-2, loss: f)
            for p in store.parameters {
                checkGradient("head \(p.name)", value: p.value.data, count: p.count, analytic: p.grad.array, eps: 1e-3,
                              tolerance: 3e-2, loss: f)
            }
        }
    }

    func testFlattenRoundTrip() {
        let x = randomTensor([3, 2, 2, 2], seed: 17)
        let flat = Tensor([0]), back = Tensor([0])
        flattenMap(x, into: flat)
        XCTAssertEqual(flat.shape, [12, 2])
        // PyTorch order: feature c*HW + p of image n is x[n, c, p].
        XCTAssertEqual(flat.data[(1 * 4 + 3) * 2 + 1], x.data[(1 * 2 + 1) * 4 + 3])
        unflattenMap(flat, channels: 3, height: 2, width: 2, into: back)
        XCTAssertEqual(back.array, x.array)
    }

    func testAdamFollowsPyTorchsRule() {
        let store = ParameterStore()
        let p = store.declare("w", [2], .zeros)
        store.allocate(seed: 0)
        p.value.data[0] = 1; p.value.data[1] = -2
        let adam = Adam(count: 2, lr: 0.1, beta1: 0.5, beta2: 0.999, eps: 1e-8)
        var m = [0.0, 0.0], v = [0.0, 0.0], w = [1.0, -2.0]
        for step in 1...3 {
            let g = [0.3 * Double(step), -1.0 / Double(step)]
            p.grad.data[0] = Float(g[0]); p.grad.data[1] = Float(g[1])
            adam.update(store)
            for i in 0..<2 {
                m[i] = 0.5 * m[i] + 0.5 * g[i]
                v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i]
                let mhat = m[i] / (1 - pow(0.5, Double(step))), vhat = v[i] / (1 - pow(0.999, Double(step)))
                w[i] -= 0.1 * mhat / (vhat.squareRoot() + 1e-8)
                XCTAssertEqual(Double(p.value.data[i]), w[i], accuracy: 1e-6)
            }
        }
    }
}
