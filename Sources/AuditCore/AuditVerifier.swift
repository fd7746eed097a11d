import Crypto
public import ProxyModel

/// What `audit verify` found wrong first, and where.
public struct AuditFinding: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
        /// A record's `hash` does not match its content (or the HMAC key).
        case altered
        /// Records are missing: a gap in `seq`, lines deleted, a file missing between two files, or a new chain
        /// that says the previous one ended later than the files do.
        case missing
        /// `seq` goes backwards, or a record sits before records it belongs after.
        case reordered
        /// A record that does not belong: a duplicate `seq`, a copy of an earlier record, or a record with a
        /// valid own hash whose `prev_hash` does not continue the chain (forged, or from another chain).
        case inserted
        /// The files end early: a partial last line, or, with the head given, before the head's record.
        case truncated
        /// Not one canonical JSON object per line, a required member missing or of the wrong type, or
        /// `schema` other than 1.
        case malformed
        /// A record, or the head, of another instance.
        case wrongInstance = "wrong_instance"
        /// A checkpoint whose signature does not verify with the given key, that was signed by another key, or
        /// that does not state the record before it.
        case signatureInvalid = "signature_invalid"
    }

    public var kind: Kind
    /// The file as it was named to the verifier.
    public var file: String
    /// 1-based line in `file`; 0 when the finding concerns no line (for example no records at all).
    public var line: Int
    /// The seq of the record at that line, when it has one.
    public var seq: UInt64?
    /// What was expected and what was found.
    public var message: String

    public init(kind: Kind, file: String, line: Int, seq: UInt64?, message: String) {
        self.kind = kind
        self.file = file
        self.line = line
        self.seq = seq
        self.message = message
    }

    /// `file:line: kind: message`.
    public var description: String {
        "\(self.file):\(self.line): \(self.kind.rawValue)\(self.seq.map { " (seq \($0))" } ?? ""): \(self.message)"
    }
}

/// A line of an audit file.
public struct AuditPosition: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var seq: UInt64

    public init(file: String, line: Int, seq: UInt64) {
        self.file = file
        self.line = line
        self.seq = seq
    }

    public var description: String { "\(self.file):\(self.line)" }
}

/// What was verified (up to the first finding, if any).
public struct AuditVerificationSummary: Sendable, Equatable {
    /// Records whose hash, link, and checkpoint (if any) verified.
    public var events = 0
    /// Files reached by the verifier (including empty ones; none after the finding).
    public var files = 0
    /// The instances of the chains, in order of appearance (more than one only across a chain restart that
    /// names the previous chain's last record).
    public var instances: [String] = []
    public var firstSeq: UInt64?
    public var lastSeq: UInt64?
    /// The first record is not the start of a chain (`audit.chain_start`, seq 0): older records are not in
    /// these files (rotated away, or not given). Not a finding: the files prove nothing about earlier records.
    public var startsMidChain = false
    /// Where a new chain began after the first record (`audit.chain_start`, seq 0).
    public var chainRestarts: [AuditPosition] = []
    /// Checkpoints whose signature verified with the given public key.
    public var checkpointsVerified = 0
    /// Checkpoints checked for what they state (the record before them) but not for their signature (no key).
    public var checkpointsUnverified = 0
    /// With a head given: the record it names (seq and hash) was found.
    public var headMatched: AuditPosition?

    public init() {}

    /// The instance of the last chain.
    public var instance: String? { self.instances.last }
}

public struct AuditVerificationReport: Sendable, Equatable {
    /// The first thing wrong; nil when everything verified.
    public var finding: AuditFinding?
    public var summary: AuditVerificationSummary

    public init(finding: AuditFinding?, summary: AuditVerificationSummary) {
        self.finding = finding
        self.summary = summary
    }

    public var isVerified: Bool { self.finding == nil }

    /// The report as JSON (for `audit verify --json`).
    public var json: JSONValue {
        let s = self.summary
        func position(_ p: AuditPosition) -> JSONValue {
            .object(["file": .string(p.file), "line": .integer(Int64(p.line)), "seq": .integer(Int64(p.seq))])
        }
        var summary: [String: JSONValue] = [
            "events": .integer(Int64(s.events)),
            "files": .integer(Int64(s.files)),
            "instances": .array(s.instances.map(JSONValue.string)),
            "starts_mid_chain": .bool(s.startsMidChain),
            "chain_restarts": .array(s.chainRestarts.map(position)),
            "checkpoints_verified": .integer(Int64(s.checkpointsVerified)),
            "checkpoints_unverified": .integer(Int64(s.checkpointsUnverified)),
        ]
        summary["first_seq"] = s.firstSeq.map { .integer(Int64($0)) } ?? .null
        summary["last_seq"] = s.lastSeq.map { .integer(Int64($0)) } ?? .null
        summary["head_matched"] = s.headMatched.map(position) ?? .null
        var object: [String: JSONValue] = ["verified": .bool(self.isVerified), "summary": .object(summary)]
        if let finding = self.finding {
            object["finding"] = .object([
                "kind": .string(finding.kind.rawValue),
                "file": .string(finding.file),
                "line": .integer(Int64(finding.line)),
                "seq": finding.seq.map { .integer(Int64($0)) } ?? .null,
                "message": .string(finding.message),
            ])
        } else {
            object["finding"] = .null
        }
        return .object(object)
    }
}

/// Verifies audit files (JSON lines written by the chain in ``AuditChain``), in the order given, and
/// reports the first thing wrong.
///
/// Rules:
/// - every line is one canonical (RFC 8785) JSON object ending in `\n`, with `schema` 1, `kind`, `time`,
///   `instance`, `seq`, `prev_hash` and `hash`; `hash` is ``AuditChain/hash(members:hmacKey:)`` of the other
///   members;
/// - within a chain `seq` grows by exactly 1 and `prev_hash` is the previous record's `hash`; a new chain
///   begins only with `audit.chain_start` at seq 0 with `prev_hash` 0…0 (a restart, not a finding; when it
///   names the previous chain's last record, that must be the record before it, which also allows the
///   instance to change there);
/// - the first record may have any seq (older files may have been rotated away; see
///   ``AuditVerificationSummary/startsMidChain``);
/// - an `audit.checkpoint` states the record before it (its seq and hash); with a public key its signature
///   must verify;
/// - with a head (``AuditHead``), the record it names must be in the files with its hash. Records after it
///   are fine (the head is persisted shortly after the file is written).
///
/// What cannot be detected: without the head, records cut off the end at a line boundary or a deleted last
/// file (the files are consistent up to where they end); without the HMAC key, a chain rewritten from some
/// record to the end with recomputed hashes (checkpoints held elsewhere, or the head, anchor it).
///
/// Streaming: feed files (or chunks of them) in order, then ``finish()``. Memory is bounded by the longest
/// line (at most ``maxLineBytes``) and a window of recent records.
public struct AuditVerifier: Sendable {
    /// Longer lines are malformed (the limit of ``StrictJSON``).
    public static let maxLineBytes = StrictJSON.defaultMaxBytes
    /// How many recent records are remembered to tell a moved record from one of another chain.
    static let window: UInt64 = 4096

    private let head: AuditHead?
    private let checkpointKey: CheckpointVerifier?
    private let hmacKey: [UInt8]?
    private let symmetricKey: SymmetricKey?

    private var summary = AuditVerificationSummary()
    private var finding: AuditFinding?
    /// A link failure whose blame waits for the next record (see ``resolve(_:next:)``).
    private var pending: Pending?
    private var last: Link?
    private var beforeLast: Link?
    /// seq → record of the current chain, for the last ``window`` seqs.
    private var recent: [UInt64: Link] = [:]
    /// The record at the head's seq in the current chain, if seen.
    private var atHeadSeq: Link?
    /// The head's record, found in a chain that a later restart ended.
    private var headInEarlierChain: (record: Link, restart: Link)?
    /// The first record of the last instance.
    private var instanceStart: Link?
    /// The head's record in the current chain.
    private var headMatchedLink: Link?

    private var fileName = ""
    private var lineNumber = 0
    private var carry: [UInt8] = []
    private var inFile = false

    /// - Parameters:
    ///   - head: the persisted chain head, to detect truncation and a deleted last file.
    ///   - checkpointKey: verifies checkpoint signatures; without it checkpoints are checked for what they state.
    ///   - hmacKey: the chain's HMAC key (`hmac_key_file`), when the chain is keyed.
    public init(head: AuditHead? = nil, checkpointKey: CheckpointVerifier? = nil, hmacKey: [UInt8]? = nil) {
        self.head = head
        self.checkpointKey = checkpointKey
        self.hmacKey = hmacKey
        self.symmetricKey = hmacKey.map { SymmetricKey(data: $0) }
    }

    /// - Parameter publicKey: the raw 32-byte Ed25519 public key of the checkpoints (see ``Ed25519KeyFile``).
    public init(head: AuditHead? = nil, publicKey: [UInt8]?, hmacKey: [UInt8]? = nil) throws {
        self.init(
            head: head,
            checkpointKey: try publicKey.map { try CheckpointVerifier(rawPublicKey: $0) },
            hmacKey: hmacKey
        )
    }

    /// Verifies whole files in order.
    public static func verify(
        files: [(name: String, bytes: [UInt8])],
        head: AuditHead? = nil,
        checkpointKey: CheckpointVerifier? = nil,
        hmacKey: [UInt8]? = nil
    ) -> AuditVerificationReport {
        var verifier = AuditVerifier(head: head, checkpointKey: checkpointKey, hmacKey: hmacKey)
        for file in files { verifier.feed(file: file.name, bytes: file.bytes) }
        return verifier.finish()
    }

    /// true once a finding is known: later input is ignored (a caller may stop reading).
    public var hasFinding: Bool { self.finding != nil }

    /// Verifies one whole file (the next in order).
    public mutating func feed(file name: String, bytes: some Collection<UInt8>) {
        self.beginFile(name)
        self.feed(bytes)
        self.endFile()
    }

    /// Starts the next file; its content follows with ``feed(_:)`` and ends with ``endFile()``.
    public mutating func beginFile(_ name: String) {
        if self.inFile { self.endFile() }
        if self.finding == nil { self.summary.files += 1 }
        self.fileName = name
        self.lineNumber = 0
        self.carry.removeAll(keepingCapacity: true)
        self.inFile = true
    }

    /// The next bytes of the current file (any split; lines may span chunks).
    public mutating func feed(_ chunk: some Collection<UInt8>) {
        precondition(self.inFile, "beginFile(_:) first")
        guard self.finding == nil else { return }
        let bytes = Array(chunk)
        var start = 0
        while start < bytes.count, self.finding == nil {
            guard let newline = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) else {
                self.carry.append(contentsOf: bytes[start...])
                if self.carry.count > Self.maxLineBytes {
                    self.lineNumber += 1
                    self.fail(.malformed, seq: nil, "line longer than \(Self.maxLineBytes) bytes")
                }
                return
            }
            self.lineNumber += 1
            if self.carry.isEmpty {
                self.verifyLine(bytes[start..<newline])
            } else {
                self.carry.append(contentsOf: bytes[start..<newline])
                let line = self.carry
                self.carry.removeAll(keepingCapacity: true)
                self.verifyLine(line[...])
            }
            start = newline + 1
        }
    }

    /// Ends the current file: bytes after its last newline are a partial line.
    public mutating func endFile() {
        guard self.inFile else { return }
        self.inFile = false
        guard self.finding == nil, !self.carry.isEmpty else { return }
        self.lineNumber += 1
        self.fail(
            .truncated,
            seq: nil,
            "the file ends in the middle of a line: \(self.carry.count) bytes after the last newline"
                + " (every record ends with a newline; the line was cut, or the writer stopped while writing it)"
        )
    }

    /// The report: the first finding, or the head check when everything else verified.
    public mutating func finish() -> AuditVerificationReport {
        if self.inFile { self.endFile() }
        if self.finding == nil, let pending = self.pending {
            self.finding = self.resolve(pending, next: nil)
        }
        if self.finding == nil, let head = self.head {
            self.checkHead(head)
        }
        return AuditVerificationReport(finding: self.finding, summary: self.summary)
    }

    // MARK: - Lines

    /// The chain-relevant part of a record.
    struct Link: Sendable {
        var seq: UInt64
        var hash: String
        var prevHash: String
        var instance: String
        var kind: String
        var file: String
        var line: Int

        var position: AuditPosition { AuditPosition(file: self.file, line: self.line, seq: self.seq) }
        var location: String { "\(self.file):\(self.line)" }
    }

    struct Pending: Sendable {
        var record: Link
        var previous: Link
        var beforePrevious: Link?
        var finding: AuditFinding
    }

    /// A finding at the current line; a link failure waiting for its blame (an earlier line) comes first.
    private mutating func fail(_ kind: AuditFinding.Kind, seq: UInt64?, _ message: String) {
        if let pending = self.pending {
            self.finding = pending.finding
            return
        }
        self.finding = AuditFinding(kind: kind, file: self.fileName, line: self.lineNumber, seq: seq, message: message)
    }

    private func finding(_ kind: AuditFinding.Kind, at record: Link, _ message: String) -> AuditFinding {
        AuditFinding(kind: kind, file: record.file, line: record.line, seq: record.seq, message: message)
    }

    private mutating func verifyLine(_ line: ArraySlice<UInt8>) {
        guard let (link, members) = self.parse(line) else { return }
        if let pending = self.pending {
            self.finding = self.resolve(pending, next: link)
            return
        }
        self.link(link, members: members)
    }

    /// Parses and checks one record on its own: JSON, members, canonical form, own hash.
    private mutating func parse(_ line: ArraySlice<UInt8>) -> (Link, [String: JSONValue])? {
        if line.isEmpty {
            self.fail(.malformed, seq: nil, "empty line (expected one JSON object per line)")
            return nil
        }
        let members: [String: JSONValue]
        switch StrictJSON.parse(line, maxBytes: Self.maxLineBytes) {
        case .failure(let error):
            self.fail(.malformed, seq: nil, "not a JSON object: \(error)")
            return nil
        case .success(.object(let object)):
            members = object
        case .success:
            self.fail(.malformed, seq: nil, "not a JSON object")
            return nil
        }
        let seq: UInt64? = members["seq"].flatMap {
            if case .integer(let value) = $0, value >= 0 { return UInt64(value) }
            return nil
        }
        func missing(_ name: String, _ expected: String) -> (Link, [String: JSONValue])? {
            let found = members[name].map { "found \(Self.describe($0))" } ?? "missing"
            self.fail(.malformed, seq: seq, "member \"\(name)\": expected \(expected), \(found)")
            return nil
        }
        guard case .integer(let schema) = members["schema"], schema == auditSchemaVersion else {
            return missing("schema", "\(auditSchemaVersion)")
        }
        guard let seq else { return missing("seq", "a non-negative integer") }
        guard case .string(let kind) = members["kind"], !kind.isEmpty else {
            return missing("kind", "a non-empty string")
        }
        guard case .string(let time) = members["time"], AuditTime(rfc3339: time) != nil else {
            return missing("time", "an RFC 3339 time")
        }
        guard case .string(let instance) = members["instance"], !instance.isEmpty else {
            return missing("instance", "a non-empty string")
        }
        guard case .string(let prevHash) = members["prev_hash"], Self.isHash(prevHash) else {
            return missing("prev_hash", "64 lower-case hex digits")
        }
        guard case .string(let hash) = members["hash"], Self.isHash(hash) else {
            return missing("hash", "64 lower-case hex digits")
        }
        // What the writer would write for these members: their hash and the line (one encoding for both; the
        // hash is the one of ``AuditChain/hash(members:hmacKey:)``).
        var withoutHash = members
        withoutHash["hash"] = nil
        let (recomputed, canonical) = AuditChain.hashAndLine(members: withoutHash, key: self.symmetricKey)
        guard recomputed == hash else {
            let hint =
                self.hmacKey == nil
                ? " (if the chain is keyed with hmac_key_file, give its key)"
                : " (with the HMAC key given: a chain rebuilt without the key, or another key)"
            self.fail(
                .altered,
                seq: seq,
                "hash \(hash) does not match the record's content: expected \(recomputed)\(hint)"
            )
            return nil
        }
        guard canonical.elementsEqual(line) else {
            self.fail(
                .malformed,
                seq: seq,
                "not in canonical form (RFC 8785), as the writer writes every line: the line was reformatted or"
                    + " rewritten"
            )
            return nil
        }
        let link = Link(
            seq: seq,
            hash: hash,
            prevHash: prevHash,
            instance: instance,
            kind: kind,
            file: self.fileName,
            line: self.lineNumber
        )
        return (link, members)
    }

    /// Checks how a record continues the chain; accepts it or records the (first) finding.
    private mutating func link(_ record: Link, members: [String: JSONValue]) {
        let genesis = record.prevHash == AuditChain.genesis
        if record.kind == AuditKind.chainStart {
            guard record.seq == 0, genesis else {
                self.finding = self.finding(
                    .inserted,
                    at: record,
                    "an audit.chain_start event must have seq 0 and prev_hash 0…0 (found seq \(record.seq), prev_hash"
                        + " \(record.prevHash))"
                )
                return
            }
        } else if record.seq == 0 || genesis {
            self.finding = self.finding(
                .inserted,
                at: record,
                "seq 0 with prev_hash 0…0 begins a chain, which only an audit.chain_start event may do"
                    + " (found kind \(record.kind), seq \(record.seq), prev_hash \(record.prevHash))"
            )
            return
        }

        guard let last = self.last else {
            // The first record: any seq (older files may have been rotated away).
            guard self.checkCheckpoint(record, members: members) else { return }
            self.summary.startsMidChain = record.kind != AuditKind.chainStart
            self.summary.firstSeq = record.seq
            self.accept(record, restart: false)
            return
        }

        if record.kind == AuditKind.chainStart {
            guard self.checkRestart(record, members: members, after: last) else { return }
            self.accept(record, restart: true)
            return
        }

        guard record.instance == last.instance else {
            self.finding = self.finding(
                .wrongInstance,
                at: record,
                "instance \"\(record.instance)\", expected \"\(last.instance)\" (the instance of the record before it,"
                    + " \(last.location))"
            )
            return
        }
        if record.seq == last.seq + 1 && record.prevHash == last.hash {
            guard self.checkCheckpoint(record, members: members) else { return }
            self.accept(record, restart: false)
            return
        }
        self.pending = Pending(
            record: record,
            previous: last,
            beforePrevious: self.beforeLast,
            finding: self.linkFailure(record, after: last)
        )
    }

    private mutating func accept(_ record: Link, restart: Bool) {
        if restart {
            self.summary.chainRestarts.append(record.position)
            self.recent.removeAll(keepingCapacity: true)
            self.atHeadSeq = nil
            if let matched = self.headMatchedLink {
                self.headInEarlierChain = (matched, record)
                self.headMatchedLink = nil
                self.summary.headMatched = nil
            }
        }
        if self.summary.instances.last != record.instance {
            self.summary.instances.append(record.instance)
            self.instanceStart = record
        }
        self.beforeLast = restart ? nil : self.last
        self.last = record
        self.summary.events += 1
        self.summary.lastSeq = record.seq
        self.recent[record.seq] = record
        if record.seq >= Self.window { self.recent[record.seq - Self.window] = nil }
        if let head = self.head, head.seq == record.seq, head.instance == record.instance {
            self.atHeadSeq = record
            if head.hash == record.hash {
                self.summary.headMatched = record.position
                self.headMatchedLink = record
            }
        }
        if record.kind == AuditKind.checkpoint {
            if self.checkpointKey == nil {
                self.summary.checkpointsUnverified += 1
            } else {
                self.summary.checkpointsVerified += 1
            }
        }
    }

    /// Why `record` does not continue from `last` (same instance, not a restart).
    private func linkFailure(_ record: Link, after last: Link) -> AuditFinding {
        let expected = "expected seq \(last.seq + 1) after seq \(last.seq) (\(last.location))"
        if record.seq == last.seq + 1 {
            return self.finding(
                .inserted,
                at: record,
                "prev_hash \(record.prevHash) is not the hash of the record before it (seq \(last.seq) at"
                    + " \(last.location), hash \(last.hash)):"
                    + " this record does not continue the chain (forged, from another chain, or the record before it"
                    + " was rewritten with a recomputed hash)"
            )
        }
        if record.seq > last.seq + 1 {
            let count = record.seq - last.seq - 1
            let files =
                record.file == last.file
                ? "lines deleted" : "lines deleted, or a file missing between \(last.file) and \(record.file)"
            return self.finding(
                .missing,
                at: record,
                "\(expected), found seq \(record.seq): \(count) record\(count == 1 ? "" : "s") missing (\(files))"
            )
        }
        // seq equal or lower: a copy, a record of another chain, or one moved from earlier.
        if let earlier = self.recent[record.seq], earlier.hash == record.hash {
            return self.finding(
                .inserted,
                at: record,
                "a copy of the record at \(earlier.location) (seq \(record.seq)); \(expected)"
            )
        }
        if record.seq > 0, let before = self.recent[record.seq - 1] {
            if before.hash == record.prevHash, record.seq < last.seq {
                return self.finding(
                    .reordered,
                    at: record,
                    "seq goes backwards: seq \(record.seq) after seq \(last.seq) (\(last.location)); it belongs after"
                        + " seq \(before.seq) at \(before.location)"
                )
            }
            if before.hash != record.prevHash {
                return self.finding(
                    .inserted,
                    at: record,
                    "\(expected), found seq \(record.seq) whose prev_hash \(record.prevHash) is not the hash of this"
                        + " chain's seq \(before.seq) (\(before.location)): a record from another chain"
                )
            }
        }
        if record.seq == last.seq {
            return self.finding(
                .inserted,
                at: record,
                "seq \(record.seq) again (already at \(last.location)); \(expected)"
            )
        }
        return self.finding(.reordered, at: record, "seq goes backwards: \(expected), found seq \(record.seq)")
    }

    /// Decides which record a link failure blames, with the record after it (nil at the end).
    ///
    /// - the next record continues from the record before the failing one: the failing one is out of place
    ///   (moved here, or inserted);
    /// - the failing record and the next continue from the one before the previous: the previous one is the
    ///   intruder (a second record with the same seq);
    /// - after a gap, the next record's seq is lower: the lines are out of order;
    /// - otherwise the failure stands where it was found.
    private func resolve(_ pending: Pending, next: Link?) -> AuditFinding {
        guard let next, next.kind != AuditKind.chainStart else { return pending.finding }
        let record = pending.record
        let previous = pending.previous
        if Self.continues(next, from: previous) {
            let context =
                "the chain goes from seq \(previous.seq) (\(previous.location)) to seq \(next.seq) (\(next.location))"
            if pending.finding.kind == .missing {
                return self.finding(.reordered, at: record, "seq \(record.seq) is out of place: \(context)")
            }
            var finding = pending.finding
            finding.message += "; this record does not belong here: \(context)"
            return finding
        }
        if let beforePrevious = pending.beforePrevious, Self.continues(record, from: beforePrevious),
            Self.continues(next, from: record)
        {
            return self.finding(
                .inserted,
                at: previous,
                "this record does not belong to the chain: the records around it (seq \(beforePrevious.seq) at"
                    + " \(beforePrevious.location), seq \(record.seq) at \(record.location)) link to each other"
            )
        }
        if record.seq > previous.seq + 1, next.instance == record.instance, next.seq < record.seq {
            return self.finding(
                .reordered,
                at: record,
                "lines out of order: seq \(record.seq) comes after seq \(previous.seq) (\(previous.location)) and"
                    + " before seq \(next.seq) (\(next.location))"
            )
        }
        return pending.finding
    }

    private static func continues(_ record: Link, from previous: Link) -> Bool {
        record.instance == previous.instance && record.seq == previous.seq + 1 && record.prevHash == previous.hash
    }

    /// A chain restart after `last`. When it names the previous chain's last record, that must be `last`.
    private mutating func checkRestart(_ record: Link, members: [String: JSONValue], after last: Link) -> Bool {
        guard let value = members["previous"] else {
            guard record.instance == last.instance else {
                self.finding = self.finding(
                    .wrongInstance,
                    at: record,
                    "a new chain of instance \"\(record.instance)\" after instance \"\(last.instance)\""
                        + " (\(last.location)),"
                        + " without naming the previous chain's last record"
                )
                return false
            }
            return true
        }
        guard case .object(let previous) = value, case .string(let instance) = previous["instance"],
            case .integer(let seqValue) = previous["seq"], seqValue >= 0,
            case .string(let hash) = previous["hash"]
        else {
            self.finding = self.finding(
                .malformed,
                at: record,
                "member \"previous\": expected {instance, seq, hash}, found \(Self.describe(value))"
            )
            return false
        }
        let seq = UInt64(seqValue)
        if instance == last.instance && seq == last.seq && hash == last.hash { return true }
        let says =
            "the new chain says the previous one ended at seq \(seq) (instance \"\(instance)\", hash \(hash)),"
            + " but the record before it is seq \(last.seq) (instance \"\(last.instance)\", hash \(last.hash),"
            + " \(last.location))"
        if instance != last.instance {
            self.finding = self.finding(.wrongInstance, at: record, says)
        } else if seq > last.seq {
            self.finding = self.finding(.missing, at: record, says + ": records are missing")
        } else {
            self.finding = self.finding(.inserted, at: record, says)
        }
        return false
    }

    /// An `audit.checkpoint` states the record before it: `seq - 1` and `prev_hash`.
    private mutating func checkCheckpoint(_ record: Link, members: [String: JSONValue]) -> Bool {
        guard record.kind == AuditKind.checkpoint else { return true }
        guard case .object(let checkpoint) = members["checkpoint"], case .integer(let seqValue) = checkpoint["seq"],
            seqValue >= 0, case .string(let hash) = checkpoint["hash"], case .string(let keyID) = checkpoint["key_id"],
            case .string(let signature) = checkpoint["signature"]
        else {
            self.finding = self.finding(
                .malformed,
                at: record,
                "member \"checkpoint\": expected {seq, hash, key_id, signature}, found"
                    + " \(members["checkpoint"].map(Self.describe) ?? "missing")"
            )
            return false
        }
        let seq = UInt64(seqValue)
        guard record.seq > 0, seq == record.seq - 1, hash == record.prevHash else {
            let before = record.seq > 0 ? "seq \(record.seq - 1) with hash \(record.prevHash)" : "none (seq 0)"
            self.finding = self.finding(
                .signatureInvalid,
                at: record,
                "the checkpoint states seq \(seq) with hash \(hash), but the record before it is \(before)"
            )
            return false
        }
        guard let key = self.checkpointKey else { return true }
        guard keyID == key.keyID else {
            self.finding = self.finding(
                .signatureInvalid,
                at: record,
                "the checkpoint was signed by key \(keyID), the given public key is \(key.keyID)"
            )
            return false
        }
        guard key.isValid(signatureHex: signature, instance: record.instance, seq: seq, hash: hash) else {
            self.finding = self.finding(
                .signatureInvalid,
                at: record,
                "the checkpoint's signature does not verify with the given public key (key \(key.keyID))"
            )
            return false
        }
        return true
    }

    /// With everything else verified: the head's record must be in the files.
    private mutating func checkHead(_ head: AuditHead) {
        guard let last = self.last else {
            self.finding = AuditFinding(
                kind: .truncated,
                file: self.fileName,
                line: 0,
                seq: nil,
                message:
                    "no records in the files, but the head says the chain reached seq \(head.seq) (hash \(head.hash))"
            )
            return
        }
        if self.summary.headMatched != nil { return }
        let says =
            "the head says the chain of instance \"\(head.instance)\" reached seq \(head.seq) with hash \(head.hash)"
        if head.instance != last.instance {
            self.finding = self.finding(
                .wrongInstance,
                at: self.instanceStart ?? last,
                "the files' records are of instance \"\(last.instance)\" from here to their end (\(last.location)), but"
                    + " \(says)"
            )
        } else if let earlier = self.headInEarlierChain {
            self.finding = self.finding(
                .truncated,
                at: earlier.restart,
                "\(says), which is the record at \(earlier.record.location) of an earlier chain, but a new chain begins"
                    + " here:"
                    + " the head must name a record of the last chain (files in the wrong order, or a head older than"
                    + " the"
                    + " restart: if the writer restarted moments ago, verify again once it has persisted its head)"
            )
        } else if let record = self.atHeadSeq {
            self.finding = self.finding(
                .truncated,
                at: record,
                "this record has hash \(record.hash), but \(says): the files were rewritten from here, or the head is"
                    + " of another chain"
            )
        } else if last.seq < head.seq {
            let count = head.seq - last.seq
            self.finding = self.finding(
                .truncated,
                at: last,
                "the files end at seq \(last.seq) (here), but \(says): \(count) record\(count == 1 ? "" : "s") missing"
                    + " at the end"
                    + " (lines cut off, or the last file deleted)"
            )
        } else {
            self.finding = self.finding(
                .truncated,
                at: last,
                "\(says), but the files' chain does not contain it (its records here begin after seq \(head.seq))"
            )
        }
    }

    private static func isHash(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    private static func describe(_ value: JSONValue) -> String {
        var text = String(decoding: CanonicalJSON.encode(value), as: UTF8.self)
        if text.count > 80 { text = String(text.prefix(77)) + "..." }
        return text
    }
}
