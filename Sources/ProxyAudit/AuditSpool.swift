package import AuditCore
import Foundation
import ProxyModel

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The HTTP sink's disk spool: one file per batch, `<20-digit batch number>.ndjson`, holding the events'
/// lines, each followed by a newline (so a spool file is a piece of the audit trail, readable by
/// `audit verify`). A file is written as `<name>.tmp`, fsync'ed and renamed, so a listed file is whole;
/// batch numbers only grow, so name order is age order.
///
/// `rejected/` keeps what a collector refused and files that could not be read back. Nothing there is
/// sent again by itself: move a file back into the spool directory and it is sent on the next start.
///
/// Blocking I/O: callers run it on the audit writer thread or on `NIOThreadPool`.
package final class AuditSpool: Sendable {
    package struct File: Sendable, Equatable {
        package var number: UInt64
        package var bytes: Int64
    }

    /// What a start found in the directory.
    package struct Inventory: Sendable {
        /// Batches waiting to be sent, oldest first.
        package var files: [File] = []
        package var rejectedFiles = 0
        package var rejectedBytes: Int64 = 0
        /// The number the next batch gets.
        package var nextNumber: UInt64 = 0
        /// What was repaired on the way (for the log).
        package var notes: [String] = []
    }

    package let directory: String
    package var rejectedDirectory: String { self.directory + "/rejected" }

    package init(directory: String) throws(HTTPAuditSinkError) {
        self.directory = directory.count > 1 && directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        for path in [self.directory, self.rejectedDirectory] {
            do {
                try FileManager.default.createDirectory(
                    atPath: path,
                    withIntermediateDirectories: true,
                    attributes: [.posixPermissions: 0o700]
                )
            } catch {
                throw HTTPAuditSinkError(
                    .spool,
                    "cannot create the spool directory \(path): \(error.localizedDescription)"
                )
            }
        }
    }

    package static func fileName(_ number: UInt64) -> String {
        let digits = String(number)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".ndjson"
    }

    package func path(_ number: UInt64) -> String {
        self.directory + "/" + Self.fileName(number)
    }

    static func number(fileName name: String) -> UInt64? {
        guard name.utf8.count == 27, name.hasSuffix(".ndjson") else { return nil }
        let digits = name.utf8.prefix(20)
        guard digits.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        return UInt64(String(decoding: digits, as: UTF8.self))
    }

    /// Lists the batches left by an earlier run, oldest first. A `.tmp` file (a crash while spooling) is
    /// kept when every line of it is a whole event, and set aside in `rejected/` otherwise.
    package func scan() throws(HTTPAuditSinkError) -> Inventory {
        var inventory = Inventory()
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: self.directory)
        } catch {
            throw HTTPAuditSinkError(
                .spool,
                "cannot list the spool directory \(self.directory): \(error.localizedDescription)"
            )
        }
        var highest: UInt64?
        for name in names.sorted() {
            if let number = Self.number(fileName: name) {
                inventory.files.append(File(number: number, bytes: Self.size(self.directory + "/" + name)))
                highest = max(highest ?? 0, number)
            } else if name.hasSuffix(".ndjson.tmp"), let number = Self.number(fileName: String(name.dropLast(4))) {
                let tmp = self.directory + "/" + name
                let bytes = (try? Self.readAll(tmp)) ?? []
                if !bytes.isEmpty, bytes.last == UInt8(ascii: "\n"), Self.decode(bytes) != nil,
                    rename(tmp, self.path(number)) == 0
                {
                    inventory.files.append(File(number: number, bytes: Int64(bytes.count)))
                    inventory.notes.append("kept \(name), a complete batch written before a crash")
                } else {
                    let target = self.freeRejectedPath(Self.fileName(number) + ".partial")
                    _ = rename(tmp, target)
                    inventory.notes.append("set aside \(name), a partly written batch, as \(target)")
                }
                highest = max(highest ?? 0, number)
            }
        }
        inventory.files.sort { $0.number < $1.number }
        if let rejected = try? FileManager.default.contentsOfDirectory(atPath: self.rejectedDirectory) {
            for name in rejected {
                inventory.rejectedFiles += 1
                inventory.rejectedBytes += Self.size(self.rejectedDirectory + "/" + name)
                if let number = Self.number(fileName: String(name.prefix(27))) { highest = max(highest ?? 0, number) }
            }
        }
        inventory.nextNumber = highest.map { $0 + 1 } ?? 0
        return inventory
    }

    /// Writes a batch as spool file `number`; returns its size.
    @discardableResult
    package func write(_ events: some Collection<SealedAuditEvent>, number: UInt64) throws(HTTPAuditSinkError) -> Int64
    {
        let bytes = Self.encode(events)
        try Self.writeAtomically(bytes, to: self.path(number))
        return Int64(bytes.count)
    }

    /// The events of spool file `number`.
    package func read(_ number: UInt64) throws(HTTPAuditSinkError) -> [SealedAuditEvent] {
        let path = self.path(number)
        let bytes = try Self.readAll(path)
        guard let events = Self.decode(bytes) else {
            throw HTTPAuditSinkError(.spoolCorrupt, "\(path) does not hold whole audit events")
        }
        return events
    }

    package func remove(_ number: UInt64) {
        _ = unlink(self.path(number))
    }

    /// Keeps refused events in `rejected/<name>.ndjson` (another name if that one is taken); returns the
    /// path and size.
    package func reject(
        _ events: some Collection<SealedAuditEvent>,
        name: String
    ) throws(HTTPAuditSinkError) -> (
        path: String, bytes: Int64
    ) {
        let bytes = Self.encode(events)
        let path = self.freeRejectedPath(name + ".ndjson")
        try Self.writeAtomically(bytes, to: path)
        return (path, Int64(bytes.count))
    }

    /// Moves spool file `number` (unreadable) into `rejected/`; returns where it went.
    package func setAside(_ number: UInt64) -> String {
        let target = self.freeRejectedPath(Self.fileName(number) + ".unreadable")
        _ = rename(self.path(number), target)
        return target
    }

    private func freeRejectedPath(_ name: String) -> String {
        var candidate = self.rejectedDirectory + "/" + name
        var suffix = 1
        while access(candidate, F_OK) == 0 {
            candidate = self.rejectedDirectory + "/" + name + "." + String(suffix)
            suffix += 1
        }
        return candidate
    }

    // MARK: - Encoding

    package static func encode(_ events: some Collection<SealedAuditEvent>) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(events.reduce(0) { $0 + $1.line.count + 1 })
        for event in events {
            out.append(contentsOf: event.line)
            out.append(UInt8(ascii: "\n"))
        }
        return out
    }

    /// Bytes a batch takes in the spool.
    package static func size(of events: some Collection<SealedAuditEvent>) -> Int64 {
        Int64(events.reduce(0) { $0 + $1.line.count + 1 })
    }

    /// The events of a spool file: every line must be a sealed event (nil otherwise).
    package static func decode(_ bytes: [UInt8]) -> [SealedAuditEvent]? {
        guard bytes.isEmpty || bytes.last == UInt8(ascii: "\n") else { return nil }
        var events: [SealedAuditEvent] = []
        for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
            guard let event = self.event(line: Array(line)) else { return nil }
            events.append(event)
        }
        return events
    }

    /// A sealed event back from its line: seq, hash, kind and time are members of it.
    package static func event(line: [UInt8]) -> SealedAuditEvent? {
        guard case .success(.object(let object)) = StrictJSON.parse(line, maxDepth: 64, maxBytes: max(line.count, 1)),
            let seq = object["seq"]?.int64Value, seq >= 0,
            let hash = object["hash"]?.stringValue, !hash.isEmpty,
            let kind = object["kind"]?.stringValue,
            let time = object["time"]?.stringValue.flatMap(AuditTime.init(rfc3339:))
        else { return nil }
        return SealedAuditEvent(seq: UInt64(seq), hash: hash, kind: kind, time: time, line: line)
    }

    // MARK: - Files

    private static func size(_ path: String) -> Int64 {
        var info = stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : 0
    }

    private static func readAll(_ path: String) throws(HTTPAuditSinkError) -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw HTTPAuditSinkError(.spool, "cannot read \(path)")
        }
        return [UInt8](data)
    }

    /// `<path>.tmp`, fsync, rename, fsync of the directory: after a crash the file is whole or absent.
    private static func writeAtomically(_ bytes: [UInt8], to path: String) throws(HTTPAuditSinkError) {
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Self.failure("open", tmp) }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { buffer in
                posixWrite(fd, buffer.baseAddress! + written, buffer.count - written)
            }
            if n < 0 {
                if errno == EINTR { continue }
                let error = Self.failure("write", tmp)
                close(fd)
                unlink(tmp)
                throw error
            }
            written += n
        }
        if fsync(fd) != 0 {
            let error = Self.failure("fsync", tmp)
            close(fd)
            unlink(tmp)
            throw error
        }
        close(fd)
        guard rename(tmp, path) == 0 else {
            let error = Self.failure("rename", tmp)
            unlink(tmp)
            throw error
        }
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        let dirfd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_CLOEXEC)
        if dirfd >= 0 {
            _ = fsync(dirfd)
            close(dirfd)
        }
    }

    private static func failure(_ operation: String, _ path: String) -> HTTPAuditSinkError {
        HTTPAuditSinkError(.spool, "\(operation) \(path): \(String(cString: strerror(errno)))")
    }
}

private func posixWrite(_ fd: Int32, _ pointer: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, pointer, count)
}
