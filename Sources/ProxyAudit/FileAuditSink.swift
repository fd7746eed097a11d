public import AuditCore
import Foundation
public import Logging
public import ProxyConfig

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// JSON lines in a file, one sealed event per line, rotated by size and age with keep-N, fsync'ed every
/// `fsync_interval`. Rotated files are named `<stem>-<counter>-<UTC time>.jsonl` next to the active file, so
/// that `audit*.jsonl` lists them oldest first and the active file last (what `audit verify` wants).
///
/// What a crash loses: SIGKILL loses nothing written here (the kernel has it); a host crash loses at most
/// what was written since the last fsync.
public final class FileAuditSink: AuditSink, @unchecked Sendable {
    // @unchecked: used only from the audit writer thread (the AuditSink contract).
    public let name: String
    let config: AuditFileSinkConfig
    private let logger: Logger
    private var fd: Int32 = -1
    private var size: Int64 = 0
    private var openedAt = AuditTime(microseconds: 0)
    private var lastSync = AuditTime(microseconds: 0)
    private var unsynced = false
    private var buffer: [UInt8] = []

    public init(config: AuditFileSinkConfig, logger: Logger) throws {
        self.config = config
        self.name = "file \(config.path)"
        self.logger = logger
        try self.open(now: AuditClock.now())
    }

    public func write(_ batch: [SealedAuditEvent]) throws {
        guard !batch.isEmpty else { return }
        self.buffer.removeAll(keepingCapacity: true)
        for event in batch {
            let length = Int64(event.line.count + 1)
            let pending = self.size + Int64(self.buffer.count)
            if pending > 0 && pending + length > self.config.maxSize {
                try self.flushBuffer()
                try self.rotate(now: event.time)
            }
            self.buffer.append(contentsOf: event.line)
            self.buffer.append(UInt8(ascii: "\n"))
        }
        try self.flushBuffer()
        if self.config.fsyncInterval == .zero { try self.sync(now: AuditClock.now()) }
    }

    public func tick(now: AuditTime) throws {
        if self.unsynced && now.microseconds - self.lastSync.microseconds >= self.config.fsyncInterval.microseconds {
            try self.sync(now: now)
        }
        if let maxAge = self.config.maxAge, self.size > 0,
            now.microseconds - self.openedAt.microseconds >= maxAge.microseconds
        {
            try self.rotate(now: now)
        }
    }

    public func close(deadline: Double) {
        guard self.fd >= 0 else { return }
        _ = fsync(self.fd)
        _ = Glibc.close(self.fd)
        self.fd = -1
    }

    // MARK: -

    private func open(now: AuditTime) throws {
        let directory = (self.config.path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let fd = Glibc.open(self.config.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw AuditIOError(operation: "open", path: self.config.path, errno: errno) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            _ = Glibc.close(fd)
            throw AuditIOError(operation: "stat", path: self.config.path, errno: code)
        }
        self.fd = fd
        self.size = Int64(info.st_size)
        // An existing file's age counts from its last change (we cannot know when its first line was written).
        self.openedAt = self.size > 0 ? AuditTime(microseconds: Int64(info.st_mtim.tv_sec) * 1_000_000) : now
        self.lastSync = now
    }

    private func flushBuffer() throws {
        guard !self.buffer.isEmpty else { return }
        try writeAll(self.buffer, to: self.fd, path: self.config.path)
        self.size += Int64(self.buffer.count)
        self.unsynced = true
        self.buffer.removeAll(keepingCapacity: true)
    }

    public func sync(now: AuditTime) throws {
        guard self.fd >= 0, self.unsynced else { return }
        if fsync(self.fd) != 0 { throw AuditIOError(operation: "fsync", path: self.config.path, errno: errno) }
        self.unsynced = false
        self.lastSync = now
    }

    private func rotate(now: AuditTime) throws {
        try self.sync(now: now)
        _ = Glibc.close(self.fd)
        self.fd = -1
        let target = Self.rotatedPath(self.config.path, time: now)
        if rename(self.config.path, target) != 0 {
            let code = errno
            try self.open(now: now)  // keep writing to the active file
            throw AuditIOError(operation: "rename", path: target, errno: code)
        }
        self.logger.info("audit file rotated", metadata: ["proxy_audit_file": "\(target)"])
        try self.open(now: now)
        self.prune()
    }

    /// `/x/audit.jsonl` → `/x/audit-0000000042-20261122T101500.123456Z.jsonl`: a counter one above the highest
    /// rotated file's (so names sort in rotation order even if the clock steps back), then the UTC time.
    static func rotatedPath(_ path: String, time: AuditTime) -> String {
        let (stem, ext) = self.split(path)
        let prefix = (stem as NSString).lastPathComponent + "-"
        let highest = self.rotatedFiles(of: path).compactMap { file -> Int? in
            Int((file as NSString).lastPathComponent.dropFirst(prefix.count).prefix(10))
        }.max() ?? 0
        var stamp = time.rfc3339  // 2026-11-22T10:15:00.123456Z
        stamp.removeAll { $0 == "-" || $0 == ":" }
        let counter = String(highest + 1)
        return "\(stem)-\(String(repeating: "0", count: max(0, 10 - counter.count)))\(counter)-\(stamp)\(ext)"
    }

    static func split(_ path: String) -> (stem: String, ext: String) {
        let name = (path as NSString).lastPathComponent
        if let dot = name.lastIndex(of: "."), dot != name.startIndex {
            let ext = String(name[dot...])
            return (String(path.dropLast(ext.count)), ext)
        }
        return (path, "")
    }

    /// Rotated files of this sink, oldest first.
    static func rotatedFiles(of path: String) -> [String] {
        let (stem, ext) = self.split(path)
        let directory = (path as NSString).deletingLastPathComponent
        let prefix = (stem as NSString).lastPathComponent + "-"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.isEmpty ? "." : directory)) ?? []
        return names.filter { $0.hasPrefix(prefix) && $0.hasSuffix(ext) && $0.count > prefix.count + ext.count }
            .sorted()
            .map { directory.isEmpty ? $0 : "\(directory)/\($0)" }
    }

    private func prune() {
        let rotated = Self.rotatedFiles(of: self.config.path)
        guard rotated.count > self.config.keep else { return }
        for file in rotated.prefix(rotated.count - self.config.keep) {
            if unlink(file) == 0 {
                self.logger.info("audit file removed (rotate.keep)", metadata: ["proxy_audit_file": "\(file)"])
            }
        }
    }
}

/// Writes each sealed event as one line to standard output.
public final class StdoutAuditSink: AuditSink, @unchecked Sendable {
    public let name = "stdout"
    private var buffer: [UInt8] = []

    public init() {}

    public func write(_ batch: [SealedAuditEvent]) throws {
        self.buffer.removeAll(keepingCapacity: true)
        for event in batch {
            self.buffer.append(contentsOf: event.line)
            self.buffer.append(UInt8(ascii: "\n"))
        }
        try writeAll(self.buffer, to: 1, path: "stdout")
    }

    public func tick(now: AuditTime) throws {}
    public func close(deadline: Double) {}
}

/// Writes every byte (a short write continues, EINTR retries).
func writeAll(_ bytes: [UInt8], to fd: Int32, path: String) throws {
    try bytes.withUnsafeBytes { raw in
        var offset = 0
        while offset < raw.count {
            let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw AuditIOError(operation: "write", path: path, errno: errno)
            }
            offset += n
        }
    }
}

public struct AuditIOError: Error, CustomStringConvertible {
    public var operation: String
    public var path: String
    public var errno: Int32

    public var description: String { "\(self.operation) \(self.path): \(String(cString: strerror(self.errno)))" }
}

extension Duration {
    var microseconds: Int64 {
        let (seconds, attoseconds) = self.components
        return seconds * 1_000_000 + attoseconds / 1_000_000_000_000
    }
}

public enum AuditClock {
    public static func now() -> AuditTime {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return AuditTime(microseconds: Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000)
    }
}
