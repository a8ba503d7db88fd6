import Foundation
import CBLAS
import CCPU

/// OpenBLAS picks its kernels ("core") once, when the library loads, from the CPU models it knows.
/// Debian's 0.3.21 does not know CPUs newer than itself and falls back to an older core: on an
/// Intel Xeon (family 6 model 207) it chose the SSE3 `Prescott` kernels, 4-10x slower than
/// `Cooperlake`. And the newest instructions are not always the fastest: on AMD Zen 4 it picks
/// `Cooperlake`, whose AVX-512 kernels lose to its AVX2 ones there. The library reads
/// OPENBLAS_CORETYPE only at load time, so dim-dist compares the core in use with the fastest for
/// this CPU and, when they differ in kind, runs itself again once with the variable set (before
/// MPI is initialised, so it works under mpirun and srun). A value the user set is always respected.
public enum BLASKernels {
    /// Set by dim-dist before it re-executes itself: the core the library had picked.
    static let pickedVariable = "DIM_DIST_BLAS_PICKED"

    /// The OpenBLAS core in use, e.g. "Cooperlake", "SkylakeX", "Haswell", "Prescott".
    public static var core: String { String(cString: openblas_get_corename()) }

    /// Kernel generations: 3 = AVX-512 with BF16, 2 = AVX-512, 1 = AVX2+FMA, 0 = older or generic.
    public static func tier(ofCore name: String) -> Int {
        switch name.lowercased() {
        case "cooperlake", "sapphirerapids": return 3
        case "skylakex": return 2
        case "haswell", "zen": return 1
        default: return 0
        }
    }

    /// The core with the fastest fp32 GEMMs on this CPU (nil: nothing better than generic kernels):
    /// the newest instruction set it runs, except on Zen 4. Zen 4 executes a 512-bit instruction as
    /// two 256-bit halves, so AVX-512 doubles no FMA rate there, and OpenBLAS's AVX2 kernels win:
    /// on an EPYC of family 25 model 17, sgemm 2048x2048x4096 ran 108-112 GFLOP/s with `Haswell`
    /// against 102-106 with `Cooperlake`, and the training step gave 4-10% more images/s at 512,
    /// 1024 and 2048 MI units, on 1 and 2 ranks (docs/results.md, 2026-12-07). Zen 5 and Intel's AVX-512 cores have full-width units: `Cooperlake` ran 2x
    /// `Haswell` on a Zen 5 EPYC (2026-11-30).
    public static func bestCore(for cpu: CPUInfo) -> String? {
        if cpu.isAMDZen4 { return "Haswell" }
        if cpu.avx512 && cpu.avx512BF16 { return "Cooperlake" }
        if cpu.avx512 { return "SkylakeX" }
        if cpu.avx2FMA { return "Haswell" }
        return nil
    }

    /// The core to switch to, or nil to keep the library's choice (the same kind of kernels as the
    /// best: `Zen` for `Haswell`, `SapphireRapids` for `Cooperlake`).
    public static func preferredCore(current: String, cpu: CPUInfo) -> String? {
        guard let best = bestCore(for: cpu), tier(ofCore: best) != tier(ofCore: current) else { return nil }
        return best
    }

    /// Call first in main. Re-executes this program with OPENBLAS_CORETYPE set when the library
    /// chose another kind of core than the CPU's fastest and the user did not set one; returns otherwise.
    public static func ensureBestCore() {
        guard environment("OPENBLAS_CORETYPE") == nil, environment(pickedVariable) == nil,
              let better = preferredCore(current: core, cpu: .current) else { return }
        setenv("OPENBLAS_CORETYPE", better, 1)
        setenv(pickedVariable, core, 1)
        // The program's own path, not /proc/self/exe: the kernel names a process after the file it
        // executes, and `ps`, `pkill dim-dist` and the fault suite look for "dim-dist", not "exe".
        var path = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        if readlink("/proc/self/exe", &path, Int(PATH_MAX)) > 0 { execv(path, CommandLine.unsafeArgv) }
        execv("/proc/self/exe", CommandLine.unsafeArgv)  // e.g. the file was replaced since it started
        // Only reached when exec failed: go on with the library's kernels.
        printError("dim-dist: could not re-run with OPENBLAS_CORETYPE=\(better) (errno \(errno)); using \(core)")
        unsetenv("OPENBLAS_CORETYPE")
    }

    /// BLAS threads per rank, unless OPENBLAS_NUM_THREADS says: the CPUs this process may run on
    /// (its affinity mask: srun -c, mpirun's binding and taskset all set it), and no more than
    /// this node's cores shared among the ranks on it (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE,
    /// Slurm's SLURM_NTASKS_PER_NODE / SLURM_TASKS_PER_NODE): OpenBLAS would start one thread per
    /// core in every rank, and 8 unbound ranks on 2 cores would run 16 threads that fight.
    public static func chooseThreads() {
        let (threads, source) = threadChoice(
            variable: environment("OPENBLAS_NUM_THREADS"), allowedCPUs: Int(dim_allowed_cpu_count()),
            onlineCores: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), localRanks: localRanks)
        threadSource = source
        if let threads { setBLASThreads(threads) }
    }

    /// Where the thread count came from, for the log header.
    nonisolated(unsafe) public private(set) static var threadSource = "OpenBLAS's default"

    /// The policy of `chooseThreads`, as a function (tested): nil keeps the library's setting.
    static func threadChoice(variable: String?, allowedCPUs: Int, onlineCores: Int,
                             localRanks: Int?) -> (Int?, String) {
        if let v = variable { return (nil, "OPENBLAS_NUM_THREADS=\(v)") }
        let allowed = allowedCPUs > 0 ? allowedCPUs : onlineCores
        var threads = allowed, source = allowed < onlineCores
            ? "the \(allowed) CPU(s) this process may run on" : "this node's \(onlineCores) cores"
        if let ranks = localRanks, ranks > 1, onlineCores / ranks < threads {
            threads = max(1, onlineCores / ranks)
            source = "\(onlineCores) cores shared by \(ranks) ranks on this node"
        }
        return (threads, source)
    }

    /// Ranks on this node, as Open MPI or Slurm tell it.
    static var localRanks: Int? {
        if let n = environment("OMPI_COMM_WORLD_LOCAL_SIZE").flatMap({ Int($0) }) { return n }
        if let n = environment("SLURM_NTASKS_PER_NODE").flatMap({ Int($0) }) { return n }
        // "4(x2),3": this node's count is the first (a good enough bound for sharing cores).
        if let s = environment("SLURM_TASKS_PER_NODE"), let n = Int(s.prefix { $0.isNumber }) { return n }
        return nil
    }

    /// How the core was chosen, for the log header.
    public static var choice: String {
        let cpu = CPUInfo.current
        if let picked = environment(pickedVariable), environment("OPENBLAS_CORETYPE") == core {
            return "\(core) (chosen by dim-dist for this CPU; OpenBLAS picked \(picked))"
        }
        if environment("OPENBLAS_CORETYPE") != nil {
            if let better = preferredCore(current: core, cpu: cpu) {
                return "\(core) (set by OPENBLAS_CORETYPE; \(better) is faster on this CPU: "
                    + "unset the variable for faster GEMMs)"
            }
            return "\(core) (set by OPENBLAS_CORETYPE)"
        }
        return "\(core) (detected by OpenBLAS)"
    }

    /// GFLOP/s of an m x n x k GEMM on this thread's BLAS threads (after a warm-up call; the
    /// best of `repeats` calls), so that a slow node shows in the first lines of a log. Leaves the
    /// FLOP counter as it was.
    public static func measureGEMM(_ precision: Precision = .fp32, m: Int = 2048, n: Int = 2048,
                                   k: Int = 4096, repeats: Int = 1) -> Double {
        let shape = GEMMShape(transA: false, transB: false, m: m, n: n, k: k, accumulate: false)
        return shape.flops / timeGEMM(shape, precision, repeats: repeats, minimumSeconds: 0) / 1e9
    }

    /// Seconds of one `shape` GEMM alone, on operands allocated for it: after a small warm-up, the
    /// best of `repeats` rounds, each repeating the call for at least `minimumSeconds` (small
    /// shapes take microseconds). Leaves the FLOP counter as it was.
    public static func timeGEMM(_ shape: GEMMShape, _ precision: Precision = .fp32, repeats: Int = 3,
                                minimumSeconds: Double = 0.02) -> Double {
        let (m, n, k) = (shape.m, shape.n, shape.k)
        let a = Tensor([m, k]), b = Tensor([k, n]), c = Tensor([m, n])
        for i in 0..<a.count { a.data[i] = Float(i % 7) * 0.01 }
        for i in 0..<b.count { b.data[i] = Float(i % 5) * 0.01 }
        let saved = (FlopCounter.gemmFlops, FlopCounter.gemmSeconds, FlopCounter.shapes)
        defer { (FlopCounter.gemmFlops, FlopCounter.gemmSeconds, FlopCounter.shapes) = saved }
        FlopCounter.shapes = nil
        func call() {
            gemm(precision, transA: shape.transA, transB: shape.transB, m: m, n: n, k: k,
                 a: a.data, lda: shape.transA ? m : k, b: b.data, ldb: shape.transB ? k : n,
                 beta: shape.accumulate ? 1 : 0, c: c.data, ldc: n)
        }
        // A small warm-up call (at most 256 x 256 x 256, within the operands): the library's buffers.
        let (wm, wn, wk) = (min(m, 256), min(n, 256), min(k, 256))
        gemm(precision, m: wm, n: wn, k: wk, a: a.data, lda: wk, b: b.data, ldb: wn, c: c.data, ldc: wn)
        var best = Double.infinity
        for _ in 0..<max(repeats, 1) {
            var calls = 0
            let t0 = monotonicSeconds()
            repeat { call(); calls += 1 } while monotonicSeconds() - t0 < minimumSeconds
            best = min(best, (monotonicSeconds() - t0) / Double(calls))
        }
        return best
    }
}

/// An environment variable's value; nil when unset or empty.
public func environment(_ name: String) -> String? {
    guard let v = getenv(name) else { return nil }
    let s = String(cString: v)
    return s.isEmpty ? nil : s
}
