import Foundation
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A plain TCP receiver on 127.0.0.1 for the syslog sink's connection-failure tests. It keeps the bytes of every
/// connection it accepts, closes its side when the peer half-closes (so a graceful close is confirmed), and can
/// reset a connection: `SO_LINGER` 0 then close sends an RST, and the peer's next write fails at once with
/// ECONNRESET. Each connection is served by its own thread polling every 10 ms; ``stop()`` ends them all.
final class ResettingTCPReceiver: @unchecked Sendable {
    // @unchecked: the mutable state is `state`, guarded by its lock; the fds belong to the threads.
    private struct State {
        var connections: [[UInt8]] = []
        var resetRequested: Set<Int> = []
        var reset: Set<Int> = []
        var stopping = false
        var threads = 0
    }

    let port: Int
    private let listener: Int32
    private let state = NIOLockedValueBox(State())

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw Failure("bind/listen: errno \(errno)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.port = Int(UInt16(bigEndian: address.sin_port))
        self.listener = fd
        self.startThread { self.acceptLoop() }
    }

    /// The bytes received on each connection, in the order they were accepted.
    var connections: [[UInt8]] { self.state.withLockedValue { $0.connections } }

    /// The `hash` of every complete octet-counted frame received, over all connections.
    var hashes: Set<String> {
        var found = Set<String>()
        for bytes in self.connections {
            for frame in Self.frames(bytes) {
                if let hash = Self.hash(inFrame: frame) { found.insert(hash) }
            }
        }
        return found
    }

    func waitForHashes(timeout: Double, until done: (Set<String>) -> Bool) async throws -> Set<String> {
        let deadline = Date(timeIntervalSinceNow: timeout)
        while true {
            let hashes = self.hashes
            if done(hashes) || Date() >= deadline { return hashes }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Resets connection `index` (RST) and waits until its thread did.
    func resetConnection(_ index: Int, timeout: Double = 2) throws {
        self.state.withLockedValue { _ = $0.resetRequested.insert(index) }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while !self.state.withLockedValue({ $0.reset.contains(index) }) {
            guard Date() < deadline else { throw Failure("connection \(index) was not reset") }
            usleep(5_000)
        }
    }

    func stop() {
        self.state.withLockedValue { $0.stopping = true }
        let deadline = Date(timeIntervalSinceNow: 2)
        while self.state.withLockedValue({ $0.threads }) > 0, Date() < deadline { usleep(5_000) }
    }

    // MARK: -

    private func startThread(_ body: @escaping @Sendable () -> Void) {
        self.state.withLockedValue { $0.threads += 1 }
        let thread = Thread {
            body()
            self.state.withLockedValue { $0.threads -= 1 }
        }
        thread.start()
    }

    private var stopping: Bool { self.state.withLockedValue { $0.stopping } }

    private func acceptLoop() {
        defer { close(self.listener) }
        while !self.stopping {
            guard Self.readable(self.listener) else { continue }
            let fd = accept(self.listener, nil, nil)
            guard fd >= 0 else { continue }
            let index = self.state.withLockedValue { state -> Int in
                state.connections.append([])
                return state.connections.count - 1
            }
            self.startThread { self.serve(fd, index: index) }
        }
    }

    private func serve(_ fd: Int32, index: Int) {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let (stop, reset) = self.state.withLockedValue { ($0.stopping, $0.resetRequested.contains(index)) }
            if reset {
                var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
                _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
                close(fd)
                self.state.withLockedValue { _ = $0.reset.insert(index) }
                return
            }
            if stop { break }
            guard Self.readable(fd) else { continue }
            let count = read(fd, &buffer, buffer.count)
            if count <= 0 { break }  // EOF (the peer's half-close) or an error: close our side
            self.state.withLockedValue { $0.connections[index].append(contentsOf: buffer[0..<count]) }
        }
        close(fd)
    }

    private static func readable(_ fd: Int32) -> Bool {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&poller, 1, 10) > 0
    }

    /// RFC 5425 frames (`MSG-LEN SP SYSLOG-MSG`); an incomplete last frame is left out.
    static func frames(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        var frames: [ArraySlice<UInt8>] = []
        var index = 0
        while index < bytes.count {
            var length = 0
            var cursor = index
            while cursor < bytes.count, (48...57).contains(bytes[cursor]) {
                length = length * 10 + Int(bytes[cursor] - 48)
                cursor += 1
            }
            guard cursor < bytes.count, bytes[cursor] == UInt8(ascii: " "), cursor > index else { break }
            let start = cursor + 1
            guard start + length <= bytes.count else { break }
            frames.append(bytes[start..<(start + length)])
            index = start + length
        }
        return frames
    }

    private static let hashMarker = Array(#""hash":""#.utf8)

    static func hash(inFrame frame: ArraySlice<UInt8>) -> String? {
        let bytes = Array(frame)
        guard bytes.count >= Self.hashMarker.count + 64 else { return nil }
        for start in 0...(bytes.count - Self.hashMarker.count - 64)
        where bytes[start..<(start + Self.hashMarker.count)].elementsEqual(Self.hashMarker) {
            let hash = bytes[(start + Self.hashMarker.count)..<(start + Self.hashMarker.count + 64)]
            return String(decoding: hash, as: UTF8.self)
        }
        return nil
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }
}
