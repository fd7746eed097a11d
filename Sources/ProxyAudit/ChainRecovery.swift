import AuditCore
import Foundation
import Logging
import ProxyModel

#if canImport(Glibc)
import Glibc
#endif

/// Where the chain continues after a restart.
///
/// - With a persisted head of this instance: from the head, or from the active file's last record when
///   that one is later (the head is persisted shortly after the file is written) and its own hash holds.
/// - Without a head (first start, head lost, another instance's head): a new chain whose first event is
///   `audit.chain_start` saying why, and naming the previous chain's last record when the file has one.
///
/// A partial last line in the active file (the process was killed while writing it) is cut off first, so
/// that the file stays one valid record per line.
struct ChainRecovery {
    var nextSeq: UInt64
    var head: String
    var chainStart: [String: JSONValue]?

    static func recover(instance: String, headFile: String?, activeFile: String?, hmacKey: [UInt8]?, logger: Logger) -> ChainRecovery {
        var persisted: AuditHead?
        var headProblem: String?
        if let headFile {
            if let bytes = FileManager.default.contents(atPath: headFile) {
                if let head = AuditHead(json: Array(bytes)) {
                    if head.instance == instance {
                        persisted = head
                    } else {
                        headProblem = "head_other_instance"
                    }
                } else {
                    headProblem = "head_unreadable"
                }
            } else {
                headProblem = "head_missing"
            }
        } else {
            headProblem = "no_head_file"
        }

        let tail = activeFile.flatMap { self.lastRecord(of: $0, logger: logger) }
        var validTail: (seq: UInt64, hash: String)?
        if let tail, tail.instance == instance,
            AuditChain.hash(members: tail.members, hmacKey: hmacKey) == tail.hash
        {
            validTail = (tail.seq, tail.hash)
        }

        if let persisted {
            if let validTail, validTail.seq >= persisted.seq {
                return ChainRecovery(nextSeq: validTail.seq + 1, head: validTail.hash, chainStart: nil)
            }
            if let tail, validTail == nil {
                logger.warning(
                    "audit: the active file's last record does not verify; continuing from the persisted head",
                    metadata: ["proxy_audit_seq": "\(tail.seq)"]
                )
            }
            return ChainRecovery(nextSeq: persisted.seq + 1, head: persisted.hash, chainStart: nil)
        }
        var fields: [String: JSONValue] = ["reason": .string(headProblem ?? "head_missing")]
        if let tail {
            fields["previous"] = .object([
                "instance": .string(tail.instance),
                "seq": .integer(Int64(tail.seq)),
                "hash": .string(tail.hash),
            ])
        }
        logger.notice(
            "audit: starting a new chain",
            metadata: ["proxy_audit_reason": "\(headProblem ?? "head_missing")"]
        )
        return ChainRecovery(nextSeq: 0, head: AuditChain.genesis, chainStart: fields)
    }

    struct Record {
        var instance: String
        var seq: UInt64
        var hash: String
        var members: [String: JSONValue]
    }

    /// The last complete record of `path`; cuts off a partial last line.
    static func lastRecord(of path: String, logger: Logger) -> Record? {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size > 0 else { return nil }
        let size = Int64(info.st_size)
        let window = min(size, 1 << 20)
        var bytes = [UInt8](repeating: 0, count: Int(window))
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, Int(window), off_t(size - window)) }
        guard n == window else { return nil }
        var end = bytes.count
        if bytes[end - 1] != UInt8(ascii: "\n") {
            // A partial record: cut it off (it never completed; the chain continues from the line before).
            guard let lastNewline = bytes.lastIndex(of: UInt8(ascii: "\n")) else {
                if window == size {
                    logger.warning("audit: removing a partial record from the active file", metadata: ["proxy_audit_bytes": "\(size)"])
                    _ = ftruncate(fd, 0)
                }
                return nil
            }
            let cut = Int64(bytes.count - lastNewline - 1)
            logger.warning(
                "audit: removing a partial last record from the active file (the previous process ended while writing it)",
                metadata: ["proxy_audit_bytes": "\(cut)"]
            )
            _ = ftruncate(fd, off_t(size - cut))
            end = lastNewline + 1
        }
        // The last line: between the newline before it and the final newline.
        let lineEnd = end - 1
        let lineStart = (bytes[0..<lineEnd].lastIndex(of: UInt8(ascii: "\n")) ?? -1) + 1
        guard lineStart > 0 || window == size else { return nil }
        guard case .success(.object(let object)) = StrictJSON.parse(bytes[lineStart..<lineEnd]),
            let instance = object["instance"]?.stringValue, let seq = object["seq"]?.int64Value, seq >= 0,
            let hash = object["hash"]?.stringValue
        else { return nil }
        return Record(instance: instance, seq: UInt64(seq), hash: hash, members: object)
    }
}
