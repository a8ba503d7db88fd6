import Foundation

/// How long OpenBLAS's idle threads spin before they sleep.
///
/// When a GEMM ends, OpenBLAS's pthread server (Debian's 0.3.21) keeps its threads spinning on
/// sched_yield for 2^28 TSC cycles, about 0.1 s, so that the next GEMM starts without waking
/// anyone. A training step has a pass between almost every two GEMMs (BatchNorm, ReLU, im2col,
/// LayerNorm, Adam), and those passes run on the rank's own threads (`parallelRanges`). So
/// during every pass a rank with T BLAS threads has T - 1 spinning threads next to its T working
/// ones, on T cores.
///
/// Measured on a Zen 3 with 2 threads per rank, 512 units (docs/results.md, 2026-12-07, twelfth
/// session):
/// - `perf sched` over a 10-step bench: the main thread waited 253 ms for a core with the library's
///   spin, 16-18 ms with a short one.
/// - Rounds of steps alternating the two settings in one process: the median of the pairwise step
///   ratios was 0.895-0.959 in four runs (an A/A run gave 1.031). A spin of 2^16 cycles gave 0.955,
///   2^20 cycles 1.007.
/// - A rank with one thread has no idle threads; nothing changes there.
///
/// dim-dist therefore sets OPENBLAS_THREAD_TIMEOUT to 12 (2^12 cycles, about 2 µs), unless the
/// user set the variable.
///
/// The library reads the variable only when it loads, before main. So dim-dist has the library
/// read its environment again (`openblas_read_env`) and stops its thread pool
/// (`blas_thread_shutdown_`, which OpenBLAS itself calls at fork); the next GEMM starts the pool
/// with the new setting. Both functions are exported by OpenBLAS's pthread builds but are not in
/// cblas.h, so they are looked up at run time. Without them (another BLAS build), nothing changes.
public enum BLASIdleThreads {
    /// dim-dist's setting: idle threads spin 2^12 cycles, then sleep.
    public static let defaultExponent = 12

    /// What the log header says about idle threads.
    nonisolated(unsafe) public private(set) static var setting = "OpenBLAS's default spin"

    /// Call in main, after `BLASKernels.chooseThreads` and before any other thread uses BLAS:
    /// it restarts the library's thread pool.
    public static func letIdleThreadsSleep() {
        if let v = environment("OPENBLAS_THREAD_TIMEOUT") {
            setting = "idle threads spin 2^\(v) cycles (OPENBLAS_THREAD_TIMEOUT=\(v))"
            return
        }
        setting = apply(exponent: defaultExponent)
            ? "idle threads sleep after 2^\(defaultExponent) cycles (set by dim-dist)"
            : "idle threads spin (this BLAS library cannot be told otherwise at run time)"
    }

    /// Sets the spin to 2^exponent cycles for the threads the pool starts next, and stops the pool
    /// so that the next GEMM starts it. False when the library lacks the two functions. No
    /// other thread may be inside BLAS meanwhile. The variable is set only for the library to read
    /// it: the environment is left as it was.
    @discardableResult
    static func apply(exponent: Int) -> Bool {
        typealias ReadEnvironment = @convention(c) () -> Void
        typealias ShutDown = @convention(c) () -> Int32
        let everyLibrary = UnsafeMutableRawPointer(bitPattern: 0)  // RTLD_DEFAULT
        guard let read = dlsym(everyLibrary, "openblas_read_env"),
              let shutDown = dlsym(everyLibrary, "blas_thread_shutdown_") else { return false }
        let before = environment("OPENBLAS_THREAD_TIMEOUT")
        setenv("OPENBLAS_THREAD_TIMEOUT", String(exponent), 1)
        unsafeBitCast(read, to: ReadEnvironment.self)()
        if let before { setenv("OPENBLAS_THREAD_TIMEOUT", before, 1) } else { unsetenv("OPENBLAS_THREAD_TIMEOUT") }
        _ = unsafeBitCast(shutDown, to: ShutDown.self)()
        return true
    }
}
