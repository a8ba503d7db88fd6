import Foundation
import DIMCore

/// The first lines of a `train` or `bench` log: the CPU, the BLAS kernels and threads, the
/// floating-point mode, and the sgemm rate every rank measured (all ranks at once, so the rate is
/// what a rank gets while its neighbours work too). A node with slow kernels or a busy CPU shows
/// here before the first step. Collective: every rank must call it.
public func machineReport(comm: Communicator) -> [String] {
    let gflops = BLASKernels.measureGEMM()
    let mine: [Float] = [Float(gflops), Float(BLASKernels.tier(ofCore: BLASKernels.core))]
    var all = [Float](repeating: 0, count: 2 * comm.size)
    mine.withUnsafeBufferPointer { src in
        all.withUnsafeMutableBufferPointer { comm.allgather(src.baseAddress!, count: 2, into: $0.baseAddress!) }
    }
    var lines = [
        "cpu: \(CPUInfo.current.summary)",
        "blas: OpenBLAS core \(BLASKernels.choice), \(blasThreads()) thread(s) per rank "
            + "(from \(BLASKernels.threadSource); \(BLASIdleThreads.setting)); "
            + "subnormals \(FloatingPointEnvironment.subnormalsFlushed ? "flushed to zero" : "kept (slow on Intel)")",
    ]
    let rates = (0..<comm.size).map { Double(all[2 * $0]) }
    if comm.size == 1 {
        lines.append("sgemm 2048x2048x4096: \(fmt(rates[0], 1)) GFLOP/s")
    } else {
        let sorted = rates.sorted()
        let slowest = rates.firstIndex(of: sorted[0])!
        let median = fmt(sorted[sorted.count / 2], 1)
        lines.append("sgemm 2048x2048x4096, all ranks at once: median \(median) GFLOP/s per rank, "
                     + "slowest \(fmt(sorted[0], 1)) on rank \(slowest), fastest \(fmt(sorted.last!, 1))")
        let otherCores = (0..<comm.size).filter { all[2 * $0 + 1] != mine[1] }
        if comm.isRoot && !otherCores.isEmpty {
            let list = otherCores.map(String.init).joined(separator: ",")
            lines.append("warning: rank(s) \(list) run another class of BLAS kernels than rank 0")
        }
    }
    return lines
}
