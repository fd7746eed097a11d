import Crypto
public import ProxyModel

/// An event sealed into the chain: its one canonical JSON line (no newline) and what sinks need to know
/// without parsing it. `hash` is the event's stable id (collectors deduplicate by it).
public struct SealedAuditEvent: Sendable, Equatable {
    public let seq: UInt64
    public let hash: String
    public let kind: String
    public let time: AuditTime
    public let line: [UInt8]

    public init(seq: UInt64, hash: String, kind: String, time: AuditTime, line: [UInt8]) {
        self.seq = seq
        self.hash = hash
        self.kind = kind
        self.time = time
        self.line = line
    }

    /// The id a collector deduplicates by (the event's hash).
    public var id: String { self.hash }
}

/// The hash chain of one instance. Each event carries `seq` (0, 1, 2, ... within a chain), `prev_hash` (the
/// previous event's `hash`, 64 zeros for the first) and `hash`:
///
///     hash = hex(SHA-256(JCS(event without "hash")))          (no key)
///     hash = hex(HMAC-SHA-256(key, JCS(event without "hash"))) (with `hmac_key_file`)
///
/// where JCS is RFC 8785 canonical JSON and the event includes `prev_hash`, `seq` and `instance`. The line
/// written is JCS(event with "hash").
public struct AuditChain: Sendable {
    public static let genesis = String(repeating: "0", count: 64)

    public let instance: String
    /// The seq the next event gets.
    public internal(set) var nextSeq: UInt64
    /// The hash of the last sealed event (``genesis`` before the first).
    public internal(set) var head: String
    let key: SymmetricKey?
    /// The request writer's buffer, kept between events (one allocation per chain, not per event).
    var scratch: [UInt8] = []

    public init(instance: String, nextSeq: UInt64 = 0, head: String = AuditChain.genesis, hmacKey: [UInt8]? = nil) {
        self.instance = instance
        self.nextSeq = nextSeq
        self.head = head
        self.key = hmacKey.map { SymmetricKey(data: $0) }
    }

    public mutating func seal(_ event: AuditEvent) -> SealedAuditEvent {
        if case .request(let record) = event.payload {
            return self.sealRequest(record, kind: event.kind, time: event.time)
        }
        return self.sealGeneric(event)
    }

    /// Through a JSON tree: every kind (the request path's kind has its own writer, ``sealRequest``).
    mutating func sealGeneric(_ event: AuditEvent) -> SealedAuditEvent {
        var members = event.members
        members["schema"] = .integer(auditSchemaVersion)
        members["kind"] = .string(event.kind)
        members["time"] = .string(event.time.rfc3339)
        members["instance"] = .string(self.instance)
        members["seq"] = .integer(Int64(self.nextSeq))
        members["prev_hash"] = .string(self.head)
        members["hash"] = nil
        let (hash, line) = Self.hashAndLine(members: members, key: self.key)
        let sealed = SealedAuditEvent(seq: self.nextSeq, hash: hash, kind: event.kind, time: event.time, line: line)
        self.nextSeq += 1
        self.head = hash
        return sealed
    }

    /// The hash an event's members (without `hash`) must carry.
    public static func hash(members: [String: JSONValue], hmacKey: [UInt8]?) -> String {
        var members = members
        members["hash"] = nil
        return self.digest(CanonicalJSON.encode(.object(members)), key: hmacKey.map { SymmetricKey(data: $0) })
    }

    /// Encodes each member once; the hashed bytes and the written line are two joins of the same pieces.
    static func hashAndLine(members: [String: JSONValue], key: SymmetricKey?) -> (String, [UInt8]) {
        var names = CanonicalJSON.sortedKeys(members.keys)
        var pieces: [[UInt8]] = []
        pieces.reserveCapacity(names.count + 1)
        var total = 2
        for name in names {
            var piece = [UInt8]()
            CanonicalJSON.writeString(name, to: &piece)
            piece.append(UInt8(ascii: ":"))
            CanonicalJSON.write(members[name]!, to: &piece)
            total += piece.count + 1
            pieces.append(piece)
        }
        func join(_ pieces: [[UInt8]]) -> [UInt8] {
            var out = [UInt8]()
            out.reserveCapacity(total + 80)
            out.append(UInt8(ascii: "{"))
            for (index, piece) in pieces.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                out.append(contentsOf: piece)
            }
            out.append(UInt8(ascii: "}"))
            return out
        }
        let hash = self.digest(join(pieces), key: key)
        var hashPiece = Array("\"hash\":\"".utf8)
        hashPiece.append(contentsOf: hash.utf8)
        hashPiece.append(UInt8(ascii: "\""))
        let position = names.firstIndex { !$0.utf16.lexicographicallyPrecedes("hash".utf16) } ?? names.count
        names.insert("hash", at: position)
        pieces.insert(hashPiece, at: position)
        return (hash, join(pieces))
    }

    static func digest(_ bytes: [UInt8], key: SymmetricKey?) -> String {
        if let key {
            return Hex.encode(digest: HMAC<SHA256>.authenticationCode(for: bytes, using: key))
        }
        return Hex.encode(digest: SHA256.hash(data: bytes))
    }
}

/// The persisted chain head: where the chain continues after a restart, and what `audit verify --head`
/// compares the last record with (truncation and deleted files).
public struct AuditHead: Sendable, Equatable {
    public var instance: String
    public var seq: UInt64
    public var hash: String
    public var time: AuditTime

    public init(instance: String, seq: UInt64, hash: String, time: AuditTime) {
        self.instance = instance
        self.seq = seq
        self.hash = hash
        self.time = time
    }

    public var json: [UInt8] {
        var bytes = CanonicalJSON.encode(
            .object([
                "instance": .string(self.instance),
                "seq": .integer(Int64(self.seq)),
                "hash": .string(self.hash),
                "time": .string(self.time.rfc3339),
            ])
        )
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }

    public init?(json bytes: [UInt8]) {
        guard case .success(.object(let object)) = StrictJSON.parse(bytes.trimmingTrailingWhitespace()),
            let instance = object["instance"]?.stringValue, let seq = object["seq"]?.int64Value, seq >= 0,
            let hash = object["hash"]?.stringValue, hash.utf8.count == 64,
            hash.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }),
            let time = object["time"]?.stringValue.flatMap(AuditTime.init(rfc3339:))
        else { return nil }
        self.init(instance: instance, seq: UInt64(seq), hash: hash, time: time)
    }
}

extension Array where Element == UInt8 {
    func trimmingTrailingWhitespace() -> ArraySlice<UInt8> {
        var end = self.count
        while end > 0, self[end - 1] == 0x0A || self[end - 1] == 0x0D || self[end - 1] == 0x20 || self[end - 1] == 0x09 {
            end -= 1
        }
        return self[0..<end]
    }
}

enum Hex {
    /// A digest or MAC in lower-case hex, written straight into the string (one allocation).
    static func encode(digest: SHA256Digest) -> String {
        digest.withUnsafeBytes { raw in Self.encode(raw: raw) }
    }

    static func encode(digest: HashedAuthenticationCode<SHA256>) -> String {
        digest.withUnsafeBytes { raw in Self.encode(raw: raw) }
    }

    private static func encode(raw: UnsafeRawBufferPointer) -> String {
        String(unsafeUninitializedCapacity: raw.count * 2) { buffer in
            for (index, byte) in raw.enumerated() {
                buffer[2 * index] = CanonicalJSON.hexDigit(byte >> 4)
                buffer[2 * index + 1] = CanonicalJSON.hexDigit(byte & 0xF)
            }
            return raw.count * 2
        }
    }

    static func encode(_ bytes: some Sequence<UInt8>) -> String {
        Array(bytes).withUnsafeBytes { Self.encode(raw: $0) }
    }

    static func decode(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 97...102: return c - 87
            case 65...70: return c - 55
            default: return nil
            }
        }
        var out = [UInt8]()
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let hi = nibble(chars[i]), let lo = nibble(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}

/// The chain's HMAC key as read from `audit.hmac_key_file`, the same way by the writer and by
/// `audit verify`: the file's bytes without trailing CR/LF, at least 32 of them.
public enum AuditHMACKey {
    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    public static let minimumBytes = 32

    public static func fromFile(bytes: [UInt8]) throws(Invalid) -> [UInt8] {
        var key = bytes
        while let last = key.last, last == 0x0A || last == 0x0D { key.removeLast() }
        guard key.count >= self.minimumBytes else {
            throw Invalid(
                description: "the HMAC key must be at least \(self.minimumBytes) bytes (got \(key.count)); e.g. openssl rand -hex 32"
            )
        }
        return key
    }
}
