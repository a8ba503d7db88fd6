import Foundation
import CDNNL

/// Row-major GEMM with bfloat16 inputs and float32 accumulation and output, through oneDNN's
/// matmul primitive (Debian's OpenBLAS 0.3.21 exports no sbgemm). Weights stay float32 (the
/// "master" copy that Adam updates); each call rounds its two operands to bf16 (nearest even)
/// into scratch buffers, so the caller sees the same interface as `sgemm`.
///
/// Worth it only where the CPU's bf16 dot product beats its fp32 FMAs: measured 1.8-1.9x on AMD
/// Zen 4 and Zen 5, 0.5x on an Intel Xeon without AMX; `dim-dist bench` prints both rates.
/// Primitives are created once per shape (a training step reuses a handful) and cached.
final class BF16GEMM {
    static let shared = BF16GEMM()

    private struct Shape: Hashable {
        var transA: Bool, transB: Bool, m: Int, n: Int, k: Int, ldc: Int, accumulate: Bool
    }
    private struct Primitive {
        var primitive: dnnl_primitive_t
        var a: dnnl_memory_t, b: dnnl_memory_t, c: dnnl_memory_t
    }

    private var engine: dnnl_engine_t?
    private var stream: dnnl_stream_t?
    private var cache: [Shape: Primitive] = [:]
    private var scratchA = UnsafeMutablePointer<UInt16>.allocate(capacity: 1), capacityA = 1
    private var scratchB = UnsafeMutablePointer<UInt16>.allocate(capacity: 1), capacityB = 1
    /// One process-wide instance with shared scratch buffers: calls from several threads (ranks
    /// as threads in the tests) take turns.
    private let lock = NSLock()

    private init() {
        check(dnnl_engine_create(&engine, dnnl_cpu, 0), "engine")
        check(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags.rawValue), "stream")
    }

    /// C = op(A) op(B) (+ C when `accumulate`); op(A) is m x k, op(B) k x n, as in `sgemm`.
    func multiply(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                  b: UnsafePointer<Float>, ldb: Int, accumulate: Bool, c: UnsafeMutablePointer<Float>, ldc: Int) {
        lock.lock()
        defer { lock.unlock() }
        omp_set_num_threads(Int32(blasThreads()))
        // The stored blocks: A is m x k (k x m when transposed), B is k x n (n x k).
        let (aRows, aCols) = transA ? (k, m) : (m, k)
        let (bRows, bCols) = transB ? (n, k) : (k, n)
        ensure(&scratchA, &capacityA, aRows * aCols)
        ensure(&scratchB, &capacityB, bRows * bCols)
        roundToBF16(a, rows: aRows, cols: aCols, ld: lda, into: scratchA)
        roundToBF16(b, rows: bRows, cols: bCols, ld: ldb, into: scratchB)
        let shape = Shape(transA: transA, transB: transB, m: m, n: n, k: k, ldc: ldc, accumulate: accumulate)
        let p = cache[shape] ?? makePrimitive(shape)
        cache[shape] = p
        check(dnnl_memory_set_data_handle(p.a, scratchA), "A handle")
        check(dnnl_memory_set_data_handle(p.b, scratchB), "B handle")
        check(dnnl_memory_set_data_handle(p.c, c), "C handle")
        var args = [dnnl_exec_arg_t(arg: DNNL_ARG_SRC, memory: p.a),
                    dnnl_exec_arg_t(arg: DNNL_ARG_WEIGHTS, memory: p.b),
                    dnnl_exec_arg_t(arg: DNNL_ARG_DST, memory: p.c)]
        check(dnnl_primitive_execute(p.primitive, stream, 3, &args), "execute")
        check(dnnl_stream_wait(stream), "wait")
    }

    private func makePrimitive(_ s: Shape) -> Primitive {
        // Dense scratch operands: a transposed operand is expressed by its strides.
        var aDesc = dnnl_memory_desc_t(), bDesc = dnnl_memory_desc_t(), cDesc = dnnl_memory_desc_t()
        var aDims: [Int64] = [Int64(s.m), Int64(s.k)], bDims: [Int64] = [Int64(s.k), Int64(s.n)]
        var cDims: [Int64] = [Int64(s.m), Int64(s.n)]
        var aStrides: [Int64] = s.transA ? [1, Int64(s.m)] : [Int64(s.k), 1]
        var bStrides: [Int64] = s.transB ? [1, Int64(s.k)] : [Int64(s.n), 1]
        var cStrides: [Int64] = [Int64(s.ldc), 1]
        check(dnnl_memory_desc_init_by_strides(&aDesc, 2, &aDims, dnnl_bf16, &aStrides), "A desc")
        check(dnnl_memory_desc_init_by_strides(&bDesc, 2, &bDims, dnnl_bf16, &bStrides), "B desc")
        check(dnnl_memory_desc_init_by_strides(&cDesc, 2, &cDims, dnnl_f32, &cStrides), "C desc")
        var desc = dnnl_matmul_desc_t()
        check(dnnl_matmul_desc_init(&desc, &aDesc, &bDesc, nil, &cDesc), "matmul desc")
        var attr: dnnl_primitive_attr_t?
        check(dnnl_primitive_attr_create(&attr), "attr")
        defer { dnnl_primitive_attr_destroy(attr) }
        if s.accumulate {
            var ops: dnnl_post_ops_t?
            check(dnnl_post_ops_create(&ops), "post-ops")
            check(dnnl_post_ops_append_sum(ops, 1), "sum post-op")
            check(dnnl_primitive_attr_set_post_ops(attr, ops), "set post-ops")
            dnnl_post_ops_destroy(ops)
        }
        var pd: dnnl_primitive_desc_t?
        check(dnnl_primitive_desc_create(&pd, &desc, attr, engine, nil), "primitive desc \(s)")
        defer { dnnl_primitive_desc_destroy(pd) }
        var prim: dnnl_primitive_t?, am: dnnl_memory_t?, bm: dnnl_memory_t?, cm: dnnl_memory_t?
        check(dnnl_primitive_create(&prim, pd), "primitive")
        check(dnnl_memory_create(&am, &aDesc, engine, nil), "A memory")
        check(dnnl_memory_create(&bm, &bDesc, engine, nil), "B memory")
        check(dnnl_memory_create(&cm, &cDesc, engine, nil), "C memory")
        return Primitive(primitive: prim!, a: am!, b: bm!, c: cm!)
    }

    private func ensure(_ buf: inout UnsafeMutablePointer<UInt16>, _ capacity: inout Int, _ count: Int) {
        guard count > capacity else { return }
        buf.deallocate()
        buf = .allocate(capacity: count)
        capacity = count
    }

    private func check(_ status: dnnl_status_t, _ what: String) {
        precondition(status == dnnl_success, "oneDNN: \(what) failed (status \(status.rawValue))")
    }
}

/// Rounds a rows x cols block (leading dimension `ld`) to bfloat16, round-to-nearest-even,
/// into a dense buffer, with AVX512_BF16 (the shim's dim_round_to_bf16).
func roundToBF16(_ x: UnsafePointer<Float>, rows: Int, cols: Int, ld: Int, into out: UnsafeMutablePointer<UInt16>) {
    if ld == cols {
        dim_round_to_bf16(x, out, rows * cols)
        return
    }
    for r in 0..<rows { dim_round_to_bf16(x + r * ld, out + r * cols, cols) }
}

/// The value a float takes after rounding to bfloat16 (for tests and error estimates).
public func bf16Rounded(_ x: Float) -> Float {
    let bits = x.bitPattern
    return Float(bitPattern: ((bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16) << 16)
}
