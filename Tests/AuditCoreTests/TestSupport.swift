import ProxyModel

@testable import AuditCore

/// Chains built with ``AuditChain/seal(_:)``, and the edits an attacker would make to them.
enum Fixture {
    static let start = AuditTime(microseconds: 1_790_000_000_000_000)

    /// A new chain: `audit.chain_start`, then `count - 1` request-like events. Lines without their newline.
    static func chain(
        instance: String = "proxy-1",
        count: Int,
        hmacKey: [UInt8]? = nil,
        tag: String = "a",
        previous: (instance: String, seq: UInt64, hash: String)? = nil
    ) -> [[UInt8]] {
        var chain = AuditChain(instance: instance, hmacKey: hmacKey)
        var lines: [[UInt8]] = []
        var startFields: [String: JSONValue] = ["reason": .string("no_head_file")]
        if let previous {
            startFields["previous"] = .object([
                "instance": .string(previous.instance), "seq": .integer(Int64(previous.seq)),
                "hash": .string(previous.hash),
            ])
        }
        lines.append(chain.seal(AuditEvent(kind: AuditKind.chainStart, time: self.start, fields: startFields)).line)
        for i in 1..<max(count, 1) {
            lines.append(chain.seal(self.event(i, tag: tag)).line)
        }
        return lines
    }

    static func event(_ i: Int, tag: String = "a") -> AuditEvent {
        AuditEvent(
            kind: AuditKind.httpRequest,
            time: AuditTime(microseconds: self.start.microseconds + Int64(i) * 1_000),
            fields: ["request_id": .string("\(tag)-\(i)"), "status": .integer(200), "path": .string("/dags/\(i)")]
        )
    }

    /// A file's bytes: every line followed by a newline.
    static func file(_ lines: some Sequence<[UInt8]>) -> [UInt8] {
        var bytes: [UInt8] = []
        for line in lines {
            bytes.append(contentsOf: line)
            bytes.append(UInt8(ascii: "\n"))
        }
        return bytes
    }

    static func members(_ line: [UInt8]) -> [String: JSONValue] {
        guard case .success(.object(let object)) = StrictJSON.parse(line) else { fatalError("not an object") }
        return object
    }

    static func hash(_ line: [UInt8]) -> String { self.members(line)["hash"]!.stringValue! }
    static func seq(_ line: [UInt8]) -> UInt64 { UInt64(self.members(line)["seq"]!.int64Value!) }

    /// What an attacker does with the files alone: edit members and recompute the record's own hash.
    static func reseal(_ line: [UInt8], hmacKey: [UInt8]? = nil, _ edit: (inout [String: JSONValue]) -> Void) -> [UInt8]
    {
        var members = self.members(line)
        edit(&members)
        members["hash"] = .string(AuditChain.hash(members: members, hmacKey: hmacKey))
        return CanonicalJSON.encode(.object(members))
    }

    /// An edit without recomputing the hash.
    static func edit(_ line: [UInt8], _ edit: (inout [String: JSONValue]) -> Void) -> [UInt8] {
        var members = self.members(line)
        edit(&members)
        return CanonicalJSON.encode(.object(members))
    }

    /// Rebuilds a whole chain from its lines with recomputed hashes and links (an attacker without the key
    /// uses nil or a guessed key).
    /// `edit` gets the index, the new hash of the record before, and the members.
    static func rebuild(
        _ lines: [[UInt8]],
        hmacKey: [UInt8]?,
        _ edit: (Int, String, inout [String: JSONValue]) -> Void
    ) -> [[UInt8]] {
        var previous = AuditChain.genesis
        var out: [[UInt8]] = []
        for (index, line) in lines.enumerated() {
            var members = self.members(line)
            edit(index, previous, &members)
            members["prev_hash"] = .string(previous)
            members["hash"] = nil
            let hash = AuditChain.hash(members: members, hmacKey: hmacKey)
            members["hash"] = .string(hash)
            out.append(CanonicalJSON.encode(.object(members)))
            previous = hash
        }
        return out
    }

    static func head(of line: [UInt8]) -> AuditHead {
        let m = self.members(line)
        return AuditHead(
            instance: m["instance"]!.stringValue!,
            seq: UInt64(m["seq"]!.int64Value!),
            hash: m["hash"]!.stringValue!,
            time: self.start
        )
    }

    static func verify(
        _ files: [(String, [[UInt8]])],
        head: AuditHead? = nil,
        key: CheckpointVerifier? = nil,
        hmacKey: [UInt8]? = nil
    ) -> AuditVerificationReport {
        AuditVerifier.verify(
            files: files.map { (name: $0.0, bytes: self.file($0.1)) },
            head: head,
            checkpointKey: key,
            hmacKey: hmacKey
        )
    }
}
