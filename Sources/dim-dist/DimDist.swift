import Foundation
import ArgumentParser
import DIMCore

@main
struct DimDist: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dim-dist",
        abstract: "Deep InfoMax self-supervised representation learning, data-parallel over MPI.",
        subcommands: [Train.self, Eval.self, Encode.self, Plot.self, DataCommand.self, CheckpointCommand.self,
                      CheckReference.self, Bench.self])

    /// Prepares the process before anything computes or MPI starts: stdout line-buffered, so every
    /// line reaches a log file or pipe when it is printed (C's default for a file is a 4 KB
    /// buffer: under mpirun, srun, `> log` or nohup, progress arrived ~66 lines at a time);
    /// subnormals flushed on this thread (and so on every thread started later), and the best
    /// BLAS kernels for this CPU (which may run the program again, once, with OPENBLAS_CORETYPE
    /// set), BLAS threads for the CPUs this rank was given, and idle BLAS threads that sleep
    /// instead of spinning beside the passes between GEMMs (BLASIdleThreads).
    static func main() {
        setvbuf(stdout, nil, _IOLBF, 0)
        FloatingPointEnvironment.flushSubnormalsToZero()
        BLASKernels.ensureBestCore()
        BLASKernels.chooseThreads()
        BLASIdleThreads.letIdleThreadsSleep()
        main(nil)
    }
}
