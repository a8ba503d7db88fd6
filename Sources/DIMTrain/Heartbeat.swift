import Foundation
import DIMCore

/// Every rank tells rank 0, once a second over UDP, that it is alive and where it is (step and
/// phase). It travels beside MPI on purpose: when a rank stops (a frozen node, SIGSTOP, a dead
/// link) the collectives stall, and only a separate channel can say which rank went silent.
/// Datagrams carry the job's random id, so two jobs on one host do not mix.
final class Heartbeat {
    struct Seen { var time: Double; var step: Int; var phase: Int32 }

    private let rank: Int
    private let job: UInt32
    private var socketFD: Int32 = -1
    private var targets: [sockaddr_in] = []
    /// Rank 0 only: the last heartbeat of every rank.
    private(set) var seen: [Seen]

    /// Collective: rank 0 opens its socket and sends its IPv4 addresses and port to every rank.
    init(comm: Communicator) {
        rank = comm.rank
        seen = Array(repeating: Seen(time: monotonicSeconds(), step: 0, phase: 0), count: comm.size)
        // [job id, port, address count, up to 8 IPv4 addresses] as UInt32s.
        var header = [UInt32](repeating: 0, count: 11)
        var fd: Int32 = -1
        if comm.isRoot {
            fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let ok = fd >= 0 && withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 }
            } && withUnsafeMutablePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) == 0 }
            }
            if ok {
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                let addresses = Self.localIPv4Addresses().prefix(8)
                header[0] = UInt32.random(in: 1...UInt32.max)
                header[1] = UInt32(addr.sin_port)  // network byte order, passed through as is
                header[2] = UInt32(addresses.count)
                for (i, a) in addresses.enumerated() { header[3 + i] = a }
            }
        }
        header.withUnsafeMutableBytes { comm.broadcast($0.baseAddress!, bytes: $0.count, root: 0) }
        job = header[0]
        socketFD = fd
        guard !comm.isRoot, header[2] > 0 else { return }
        socketFD = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        _ = fcntl(socketFD, F_SETFL, fcntl(socketFD, F_GETFL) | O_NONBLOCK)
        targets = (0..<Int(header[2])).map { i in
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = in_port_t(header[1])
            a.sin_addr.s_addr = header[3 + i]
            return a
        }
    }

    deinit { if socketFD >= 0 { close(socketFD) } }

    /// A rank's heartbeat (rank 0 records its own directly).
    func beat(step: Int, phase: Int32) {
        if rank == 0 {
            seen[0] = Seen(time: monotonicSeconds(), step: step, phase: phase)
            return
        }
        var message: [UInt32] = [job, UInt32(rank), UInt32(truncatingIfNeeded: step), UInt32(bitPattern: phase)]
        for var t in targets {
            _ = withUnsafePointer(to: &t) { ptr in
                ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) { a in
                    message.withUnsafeMutableBytes { sendto(socketFD, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT), a,
                                                            socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
            }
        }
    }

    /// Rank 0: reads every datagram that has arrived.
    func receive() {
        guard rank == 0, socketFD >= 0 else { return }
        var message = [UInt32](repeating: 0, count: 4)
        while true {
            let n = message.withUnsafeMutableBytes { recv(socketFD, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            guard n == 16 else { return }
            let r = Int(message[1])
            guard message[0] == job, r > 0, r < seen.count else { continue }
            seen[r] = Seen(time: monotonicSeconds(), step: Int(message[2]), phase: Int32(bitPattern: message[3]))
        }
    }

    /// This host's IPv4 addresses, network byte order, loopback last.
    static func localIPv4Addresses() -> [UInt32] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var out: [UInt32] = [], loopback: [UInt32] = []
        var p = list
        while let ifa = p {
            if let sa = ifa.pointee.ifa_addr, sa.pointee.sa_family == sa_family_t(AF_INET) {
                let addr = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
                if UInt32(bigEndian: addr) >> 24 == 127 { loopback.append(addr) } else { out.append(addr) }
            }
            p = ifa.pointee.ifa_next
        }
        return out + loopback
    }
}
