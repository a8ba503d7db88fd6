import Foundation
import CMPI

/// Moves started non-blocking collectives forward while the training thread computes.
///
/// Open MPI advances a non-blocking collective (MPI_Iallreduce) only inside MPI calls. During a
/// step's long GEMMs the training thread makes none, so a gradient bucket started early in
/// backward would sit still until the next blocking collective or the final wait: the overlap
/// would only move the wait elsewhere (measured on the emulated cluster: the encoder's synchronised
/// BatchNorm absorbed it). This thread calls MPI_Test on the requests in flight every
/// `intervalMicroseconds` and sleeps while there are none. It needs MPI_THREAD_MULTIPLE, since the
/// training thread keeps making its own MPI calls meanwhile; every MPI_Test and MPI_Wait on a
/// request, from either thread, happens under `lock`.
final class ProgressThread {
    /// One per process, started with MPI when the library provides MPI_THREAD_MULTIPLE.
    nonisolated(unsafe) static var shared: ProgressThread?

    let lock = NSCondition()
    private var inFlight: [MPICommunicator.MPIRequest] = []
    private var stopped = false
    private let intervalMicroseconds: useconds_t = 200

    init() {
        let thread = Thread { [self] in run() }
        thread.name = "dim-dist MPI progress"
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Tests `request` from now on until it completes.
    func watch(_ request: MPICommunicator.MPIRequest) {
        lock.lock()
        inFlight.append(request)
        lock.signal()
        lock.unlock()
    }

    /// No MPI calls after this (called before MPI_Finalize).
    func stop() {
        lock.lock()
        stopped = true
        inFlight = []
        lock.signal()
        lock.unlock()
    }

    private func run() {
        while true {
            lock.lock()
            while inFlight.isEmpty && !stopped { lock.wait() }
            if stopped { lock.unlock(); return }
            inFlight.removeAll { $0.progressLocked() }
            lock.unlock()
            usleep(intervalMicroseconds)
        }
    }
}
