import Foundation
import DIMCore

/// Preemption: Slurm (`--signal=B:USR1@120`, or SIGTERM at a time limit) and other schedulers
/// warn a job before they kill it. SIGTERM and SIGUSR1 only set a flag here; the trainer checks it
/// after every step (all ranks together), writes a checkpoint and exits with `exitStatus`, so a
/// requeued job resumes with `--resume auto` and loses no step.
public enum StopSignals {
    /// EX_TEMPFAIL from sysexits.h: stopped on request, resumable.
    public static let exitStatus: Int32 = 75
    nonisolated(unsafe) static var received: Int32 = 0

    /// Installs the handlers (idempotent).
    public static func install() {
        received = 0  // touch the global before a handler can run
        for sig in [SIGTERM, SIGUSR1] {
            signal(sig) { s in StopSignals.received = s }
        }
    }

    /// The signal received, if any.
    public static var pending: Int32? { received == 0 ? nil : received }

    /// For tests: behave as if `signal` had arrived.

    public static func name(_ s: Int32) -> String {
        switch s {
        case SIGTERM: return "SIGTERM"
        case SIGUSR1: return "SIGUSR1"
        default: return "signal \(s)"
        }
    }
}
