import Crypto
import ProxyModel
import Testing

@testable import AuditCore

/// The finding must be exactly this kind at this place, and its message must name what was expected and found.
func expectFinding(
    _ report: AuditVerificationReport,
    _ kind: AuditFinding.Kind,
    file: String,
    line: Int,
    seq: UInt64?,
    mentions: [String] = [],
    sourceLocation: Testing.SourceLocation = #_sourceLocation
) {
    guard let finding = report.finding else {
        Issue.record("expected a \(kind.rawValue) finding, the files verified", sourceLocation: sourceLocation)
        return
    }
    #expect(finding.kind == kind, "\(finding)", sourceLocation: sourceLocation)
    #expect(finding.file == file, "\(finding)", sourceLocation: sourceLocation)
    #expect(finding.line == line, "\(finding)", sourceLocation: sourceLocation)
    #expect(finding.seq == seq, "\(finding)", sourceLocation: sourceLocation)
    for text in mentions {
        #expect(
            finding.message.contains(text),
            "message lacks '\(text)': \(finding.message)",
            sourceLocation: sourceLocation
        )
    }
}

@Suite("Audit verifier: intact chains")
struct AuditVerifierIntactTests {
    let lines = Fixture.chain(count: 10)

    @Test("an intact chain verifies, with its summary")
    func intact() {
        let report = Fixture.verify([("audit.jsonl", self.lines)])
        #expect(report.isVerified, "\(String(describing: report.finding))")
        #expect(report.summary.events == 10)
        #expect(report.summary.files == 1)
        #expect(report.summary.firstSeq == 0)
        #expect(report.summary.lastSeq == 9)
        #expect(report.summary.startsMidChain == false)
        #expect(report.summary.instances == ["proxy-1"])
        #expect(report.summary.chainRestarts.isEmpty)
        #expect(report.summary.headMatched == nil)
    }

    @Test("a rotation boundary between two files is no break; empty files are fine")
    func rotated() {
        let report = Fixture.verify([
            ("audit-1.jsonl", Array(self.lines[0..<4])), ("audit-2.jsonl", []),
            ("audit.jsonl", Array(self.lines[4...])),
        ])
        #expect(report.isVerified, "\(String(describing: report.finding))")
        #expect(report.summary.files == 3)
        #expect(report.summary.events == 10)
    }

    @Test("the first record may start mid-chain (older files rotated away): reported in the summary, not a finding")
    func startsMidChain() {
        let report = Fixture.verify([("audit.jsonl", Array(self.lines[3...]))])
        #expect(report.isVerified)
        #expect(report.summary.startsMidChain)
        #expect(report.summary.firstSeq == 3)
        #expect(report.summary.events == 7)
    }

    @Test(
        "feeding a file in chunks of any size gives the same report as feeding it whole",
        arguments: [1, 7, 64, 333, 1 << 16]
    )
    func chunked(size: Int) {
        var tampered = self.lines
        tampered[6] = Fixture.edit(tampered[6]) { $0["status"] = .integer(500) }
        for lines in [self.lines, tampered] {
            let bytes = Fixture.file(lines) + Array("{\"partial".utf8)
            let whole = AuditVerifier.verify(files: [(name: "a.jsonl", bytes: bytes)])
            var verifier = AuditVerifier()
            verifier.beginFile("a.jsonl")
            var index = 0
            while index < bytes.count {
                verifier.feed(bytes[index..<min(index + size, bytes.count)])
                index += size
            }
            verifier.endFile()
            let report = verifier.finish()
            #expect(report == whole)
            #expect(report.finding != nil)
        }
    }

    @Test("without a head, a clean truncation at a line boundary is NOT detectable (documented)")
    func truncationWithoutHead() {
        let report = Fixture.verify([("audit.jsonl", Array(self.lines[0..<7]))])
        #expect(report.isVerified)
        #expect(report.summary.lastSeq == 6)
        // A deleted last file is just as invisible without the head.
        let files = Fixture.verify([("audit-1.jsonl", Array(self.lines[0..<5]))])
        #expect(files.isVerified)
    }

    @Test("with a head: records after the head's record are fine (the head is persisted a little later)")
    func headBehind() {
        let report = Fixture.verify([("audit.jsonl", self.lines)], head: Fixture.head(of: self.lines[7]))
        #expect(report.isVerified, "\(String(describing: report.finding))")
        #expect(report.summary.headMatched == AuditPosition(file: "audit.jsonl", line: 8, seq: 7))
        let exact = Fixture.verify([("audit.jsonl", self.lines)], head: Fixture.head(of: self.lines[9]))
        #expect(exact.summary.headMatched == AuditPosition(file: "audit.jsonl", line: 10, seq: 9))
    }

    @Test("no records at all: verified without a head, truncated with one")
    func empty() {
        #expect(Fixture.verify([("audit.jsonl", [])]).isVerified)
        #expect(Fixture.verify([("audit.jsonl", [])]).summary.events == 0)
        let report = Fixture.verify([("audit.jsonl", [])], head: Fixture.head(of: self.lines[2]))
        expectFinding(report, .truncated, file: "audit.jsonl", line: 0, seq: nil, mentions: ["seq 2"])
    }

    @Test("the JSON report carries the finding and the summary")
    func json() {
        var lines = self.lines
        lines[2] = Fixture.edit(lines[2]) { $0["path"] = .string("/other") }
        let report = Fixture.verify([("audit.jsonl", lines)])
        guard case .object(let object) = report.json, case .object(let finding) = object["finding"] else {
            Issue.record("no finding object")
            return
        }
        #expect(object["verified"] == .bool(false))
        #expect(finding["kind"] == .string("altered"))
        #expect(finding["file"] == .string("audit.jsonl"))
        #expect(finding["line"] == .integer(3))
        #expect(finding["seq"] == .integer(2))
        #expect(object["summary"]?.objectValue?["events"] == .integer(2))
        #expect(Fixture.verify([("audit.jsonl", self.lines)]).json.objectValue?["finding"] == .null)
    }
}

@Suite("Audit verifier: tampering")
struct AuditVerifierTamperTests {
    let lines = Fixture.chain(count: 10)

    @Test("an edited field (hash not recomputed) is altered, at its line")
    func editedField() {
        var lines = self.lines
        lines[4] = Fixture.edit(lines[4]) { $0["status"] = .integer(403) }
        let report = Fixture.verify([("audit.jsonl", lines)])
        expectFinding(
            report,
            .altered,
            file: "audit.jsonl",
            line: 5,
            seq: 4,
            mentions: [Fixture.hash(self.lines[4]), "does not match"]
        )
        #expect(report.summary.events == 4)
    }

    @Test("an edited field with its own hash recomputed breaks the next record's link")
    func editedFieldRehashed() {
        var lines = self.lines
        lines[4] = Fixture.reseal(lines[4]) { $0["status"] = .integer(403) }
        let report = Fixture.verify([("audit.jsonl", lines)])
        expectFinding(
            report,
            .inserted,
            file: "audit.jsonl",
            line: 6,
            seq: 5,
            mentions: ["prev_hash \(Fixture.hash(self.lines[4]))", Fixture.hash(lines[4]), "audit.jsonl:5"]
        )
    }

    @Test("a deleted line is missing, at the record after the gap")
    func deletedLine() {
        var lines = self.lines
        lines.remove(at: 4)
        let report = Fixture.verify([("audit.jsonl", lines)])
        expectFinding(
            report,
            .missing,
            file: "audit.jsonl",
            line: 5,
            seq: 5,
            mentions: ["expected seq 4 after seq 3 (audit.jsonl:4)", "found seq 5", "1 record missing"]
        )
    }

    @Test("several deleted lines are counted")
    func deletedLines() {
        var lines = self.lines
        lines.removeSubrange(3..<6)
        let report = Fixture.verify([("audit.jsonl", lines)])
        expectFinding(
            report,
            .missing,
            file: "audit.jsonl",
            line: 4,
            seq: 6,
            mentions: ["expected seq 3", "3 records missing"]
        )
    }

    @Test("two swapped lines are reordered, at the first of them")
    func swapped() {
        var lines = self.lines
        lines.swapAt(4, 5)
        let report = Fixture.verify([("audit.jsonl", lines)])
        expectFinding(
            report,
            .reordered,
            file: "audit.jsonl",
            line: 5,
            seq: 5,
            mentions: ["seq 3 (audit.jsonl:4)", "seq 4 (audit.jsonl:6)"]
        )
        // Swapped lines at the start of a file that starts mid-chain: seq goes backwards.
        var rotated = Array(self.lines[3...])
        rotated.swapAt(0, 1)
        let backwards = Fixture.verify([("audit.jsonl", rotated)])
        expectFinding(
            backwards,
            .reordered,
            file: "audit.jsonl",
            line: 2,
            seq: 3,
            mentions: ["seq goes backwards", "found seq 3"]
        )
    }

    @Test("two lines swapped further apart are reordered")
    func swappedApart() {
        var lines = self.lines
        lines.swapAt(3, 6)
        let report = Fixture.verify([("audit.jsonl", lines)])
        expectFinding(report, .reordered, file: "audit.jsonl", line: 4, seq: 6)
    }

    @Test("an inserted forged line with a correct own hash and link (a second seq 5) is inserted, at the forged line")
    func insertedLinked() {
        var lines = self.lines
        let forged = Fixture.reseal(lines[5]) { $0["request_id"] = .string("forged") }
        lines.insert(forged, at: 5)
        let report = Fixture.verify([("audit.jsonl", lines)])
        expectFinding(
            report,
            .inserted,
            file: "audit.jsonl",
            line: 6,
            seq: 5,
            mentions: ["does not belong", "audit.jsonl:5", "audit.jsonl:7"]
        )
        // The same forged line after the genuine one: still the forged line.
        var after = self.lines
        after.insert(forged, at: 6)
        expectFinding(
            Fixture.verify([("audit.jsonl", after)]),
            .inserted,
            file: "audit.jsonl",
            line: 7,
            seq: 5,
            mentions: ["seq 5 again"]
        )
    }

    @Test("an inserted forged line whose prev_hash does not continue the chain is inserted")
    func insertedUnlinked() {
        var lines = self.lines
        let forged = Fixture.reseal(lines[5]) {
            $0["request_id"] = .string("forged")
            $0["prev_hash"] = .string(String(repeating: "ab", count: 32))
        }
        lines.insert(forged, at: 5)
        let report = Fixture.verify([("audit.jsonl", lines)])
        expectFinding(
            report,
            .inserted,
            file: "audit.jsonl",
            line: 6,
            seq: 5,
            mentions: ["prev_hash abab", "does not belong here"]
        )
    }

    @Test("a copy of an earlier line is inserted, naming the original")
    func replayedCopy() {
        var lines = self.lines
        lines.insert(self.lines[3], at: 7)
        expectFinding(
            Fixture.verify([("audit.jsonl", lines)]),
            .inserted,
            file: "audit.jsonl",
            line: 8,
            seq: 3,
            mentions: ["a copy of the record at audit.jsonl:4"]
        )
        // At the end of the file, with nothing after it.
        let appended = self.lines + [self.lines[9]]
        expectFinding(
            Fixture.verify([("audit.jsonl", appended)]),
            .inserted,
            file: "audit.jsonl",
            line: 11,
            seq: 9,
            mentions: ["a copy"]
        )
    }

    @Test("a record of another instance is wrong_instance")
    func otherInstance() {
        var lines = self.lines
        lines[5] = Fixture.reseal(lines[5]) { $0["instance"] = .string("proxy-9") }
        expectFinding(
            Fixture.verify([("audit.jsonl", lines)]),
            .wrongInstance,
            file: "audit.jsonl",
            line: 6,
            seq: 5,
            mentions: ["\"proxy-9\"", "\"proxy-1\""]
        )
    }

    @Test("seq 0 that is not audit.chain_start, and audit.chain_start that is not seq 0, are inserted")
    func chainStartShape() {
        var first = self.lines
        first[0] = Fixture.reseal(first[0]) { $0["kind"] = .string(AuditKind.httpRequest) }
        first = Fixture.rebuild(first, hmacKey: nil) { _, _, _ in }
        expectFinding(
            Fixture.verify([("audit.jsonl", first)]),
            .inserted,
            file: "audit.jsonl",
            line: 1,
            seq: 0,
            mentions: ["audit.chain_start"]
        )
        var middle = self.lines
        middle[4] = Fixture.reseal(middle[4]) { $0["kind"] = .string(AuditKind.chainStart) }
        expectFinding(
            Fixture.verify([("audit.jsonl", middle)]),
            .inserted,
            file: "audit.jsonl",
            line: 5,
            seq: 4,
            mentions: ["must have seq 0"]
        )
    }
}

@Suite("Audit verifier: truncation and files")
struct AuditVerifierFileTests {
    let lines = Fixture.chain(count: 10)

    @Test("lines cut off the end are truncated when the head is given, naming the head's seq")
    func truncatedWithHead() {
        let head = Fixture.head(of: self.lines[9])
        let report = Fixture.verify([("audit.jsonl", Array(self.lines[0..<7]))], head: head)
        expectFinding(
            report,
            .truncated,
            file: "audit.jsonl",
            line: 7,
            seq: 6,
            mentions: ["seq 9", "end at seq 6", "3 records missing"]
        )
        #expect(report.summary.events == 7)
    }

    @Test("a partial last line is truncated, with or without a head")
    func partialLastLine() {
        let bytes = Fixture.file(self.lines[0..<5]) + Array(self.lines[5].prefix(40))
        let report = AuditVerifier.verify(files: [(name: "audit.jsonl", bytes: bytes)])
        expectFinding(
            report,
            .truncated,
            file: "audit.jsonl",
            line: 6,
            seq: nil,
            mentions: ["40 bytes after the last newline"]
        )
        // A complete line without its newline is still a partial line.
        let noNewline = Fixture.file(self.lines[0..<5]) + self.lines[5]
        expectFinding(
            AuditVerifier.verify(files: [(name: "audit.jsonl", bytes: noNewline)]),
            .truncated,
            file: "audit.jsonl",
            line: 6,
            seq: nil
        )
        // In a file that is not the last one.
        let middle = AuditVerifier.verify(files: [
            (name: "audit-1.jsonl", bytes: bytes), (name: "audit.jsonl", bytes: Fixture.file(self.lines[6...])),
        ])
        expectFinding(middle, .truncated, file: "audit-1.jsonl", line: 6, seq: nil)
    }

    @Test("a deleted middle file is missing, at the first record after it, naming both files")
    func deletedMiddleFile() {
        let report = Fixture.verify([
            ("audit-1.jsonl", Array(self.lines[0..<3])), ("audit.jsonl", Array(self.lines[6...])),
        ])
        expectFinding(
            report,
            .missing,
            file: "audit.jsonl",
            line: 1,
            seq: 6,
            mentions: [
                "expected seq 3 after seq 2 (audit-1.jsonl:3)", "3 records missing",
                "a file missing between audit-1.jsonl and audit.jsonl",
            ]
        )
    }

    @Test("a deleted last file is truncated when the head is given")
    func deletedLastFile() {
        let head = Fixture.head(of: self.lines[9])
        let report = Fixture.verify(
            [("audit-1.jsonl", Array(self.lines[0..<3])), ("audit-2.jsonl", Array(self.lines[3..<6]))],
            head: head
        )
        expectFinding(
            report,
            .truncated,
            file: "audit-2.jsonl",
            line: 3,
            seq: 5,
            mentions: ["seq 9", "the last file deleted"]
        )
    }

    @Test("files given in the wrong order are reported; when the earlier file begins a chain, only the head tells")
    func filesOutOfOrder() {
        let report = Fixture.verify([
            ("audit.jsonl", Array(self.lines[6...])), ("audit-1.jsonl", Array(self.lines[2..<6])),
        ])
        expectFinding(report, .reordered, file: "audit-1.jsonl", line: 1, seq: 2, mentions: ["seq goes backwards"])
        // audit-1.jsonl begins with audit.chain_start: it reads as a restart (listed in the summary)...
        let files = [("audit.jsonl", Array(self.lines[5...])), ("audit-1.jsonl", Array(self.lines[0..<5]))]
        let restart = Fixture.verify(files)
        #expect(restart.isVerified)
        #expect(restart.summary.chainRestarts == [AuditPosition(file: "audit-1.jsonl", line: 1, seq: 0)])
        // ...and the head, which must name a record of the last chain, finds it.
        let head = Fixture.verify(files, head: Fixture.head(of: self.lines[9]))
        expectFinding(
            head,
            .truncated,
            file: "audit-1.jsonl",
            line: 1,
            seq: 0,
            mentions: ["audit.jsonl:5", "earlier chain"]
        )
    }

    @Test("a splice of two instances' files is wrong_instance, at the first line of the second file")
    func spliceInstances() {
        let other = Fixture.chain(instance: "proxy-2", count: 10)
        let report = Fixture.verify([("a.jsonl", Array(self.lines[0..<5])), ("b.jsonl", Array(other[5...]))])
        expectFinding(report, .wrongInstance, file: "b.jsonl", line: 1, seq: 5, mentions: ["\"proxy-2\"", "a.jsonl:5"])
    }

    @Test("a splice of two chains of one instance is inserted (seq continues, prev_hash does not) or missing (a gap)")
    func spliceChains() {
        let other = Fixture.chain(count: 10, tag: "b")
        let continuing = Fixture.verify([("a.jsonl", Array(self.lines[0..<5])), ("b.jsonl", Array(other[5...]))])
        expectFinding(
            continuing,
            .inserted,
            file: "b.jsonl",
            line: 1,
            seq: 5,
            mentions: ["prev_hash \(Fixture.hash(other[4]))", "a.jsonl:5"]
        )
        let gap = Fixture.verify([("a.jsonl", Array(self.lines[0..<5])), ("b.jsonl", Array(other[7...]))])
        expectFinding(gap, .missing, file: "b.jsonl", line: 1, seq: 7)
        let backwards = Fixture.verify([("a.jsonl", Array(self.lines[0..<8])), ("b.jsonl", Array(other[3...]))])
        expectFinding(backwards, .inserted, file: "b.jsonl", line: 1, seq: 3, mentions: ["another chain"])
    }

    @Test("a head of another instance is wrong_instance; a head whose seq has another hash is truncated")
    func headMismatch() {
        var head = Fixture.head(of: self.lines[7])
        head.instance = "proxy-2"
        expectFinding(
            Fixture.verify([("audit.jsonl", self.lines)], head: head),
            .wrongInstance,
            file: "audit.jsonl",
            line: 1,
            seq: 0,
            mentions: ["\"proxy-2\""]
        )
        var rewritten = Fixture.head(of: self.lines[7])
        rewritten.hash = String(repeating: "cd", count: 32)
        expectFinding(
            Fixture.verify([("audit.jsonl", self.lines)], head: rewritten),
            .truncated,
            file: "audit.jsonl",
            line: 8,
            seq: 7,
            mentions: ["cdcd"]
        )
    }
}

@Suite("Audit verifier: restarts, checkpoints, keys, malformed lines")
struct AuditVerifierChainTests {
    let lines = Fixture.chain(count: 5)

    @Test("a new chain via audit.chain_start is a restart, not a finding; the head of the new chain matches")
    func restart() {
        let next = Fixture.chain(count: 4, tag: "b", previous: ("proxy-1", 4, Fixture.hash(self.lines[4])))
        let report = Fixture.verify([("a.jsonl", self.lines), ("b.jsonl", next)], head: Fixture.head(of: next[3]))
        #expect(report.isVerified, "\(String(describing: report.finding))")
        #expect(report.summary.chainRestarts == [AuditPosition(file: "b.jsonl", line: 1, seq: 0)])
        #expect(report.summary.events == 9)
        #expect(report.summary.headMatched == AuditPosition(file: "b.jsonl", line: 4, seq: 3))
        // Without naming the previous chain's last record (the active file was empty at the restart).
        let bare = Fixture.verify([("a.jsonl", self.lines), ("b.jsonl", Fixture.chain(count: 4, tag: "b"))])
        #expect(bare.isVerified)
        #expect(bare.summary.chainRestarts.count == 1)
    }

    @Test("a restart that names another previous record: missing when it ended later, inserted otherwise")
    func restartNamesOtherRecord() {
        let later = Fixture.chain(count: 4, tag: "b", previous: ("proxy-1", 7, String(repeating: "ef", count: 32)))
        expectFinding(
            Fixture.verify([("a.jsonl", self.lines), ("b.jsonl", later)]),
            .missing,
            file: "b.jsonl",
            line: 1,
            seq: 0,
            mentions: ["ended at seq 7", "seq 4"]
        )
        let earlier = Fixture.chain(count: 4, tag: "b", previous: ("proxy-1", 2, Fixture.hash(self.lines[2])))
        expectFinding(
            Fixture.verify([("a.jsonl", self.lines), ("b.jsonl", earlier)]),
            .inserted,
            file: "b.jsonl",
            line: 1,
            seq: 0
        )
    }

    @Test("a restart may change the instance only when it names the previous chain's last record")
    func restartOtherInstance() {
        let named = Fixture.chain(instance: "proxy-2", count: 3, previous: ("proxy-1", 4, Fixture.hash(self.lines[4])))
        let report = Fixture.verify([("a.jsonl", self.lines), ("b.jsonl", named)])
        #expect(report.isVerified, "\(String(describing: report.finding))")
        #expect(report.summary.instances == ["proxy-1", "proxy-2"])
        let unnamed = Fixture.chain(instance: "proxy-2", count: 3)
        expectFinding(
            Fixture.verify([("a.jsonl", self.lines), ("b.jsonl", unnamed)]),
            .wrongInstance,
            file: "b.jsonl",
            line: 1,
            seq: 0
        )
    }

    static func withCheckpoint(
        _ signer: CheckpointSigner,
        count: Int = 4,
        statedSeqOffset: UInt64 = 1
    ) throws -> [[UInt8]] {
        var chain = AuditChain(instance: "proxy-1")
        var lines = [chain.seal(AuditEvent(kind: AuditKind.chainStart, time: Fixture.start, fields: [:])).line]
        for i in 1..<count { lines.append(chain.seal(Fixture.event(i)).line) }
        let fields = try signer.checkpoint(instance: "proxy-1", seq: chain.nextSeq - statedSeqOffset, hash: chain.head)
        lines.append(chain.seal(AuditEvent(kind: AuditKind.checkpoint, time: Fixture.start, fields: fields)).line)
        lines.append(chain.seal(Fixture.event(count + 1)).line)
        return lines
    }

    @Test("a checkpoint verifies with the public key, and is counted unverified without it")
    func checkpoint() throws {
        let signer = try CheckpointSigner(rawPrivateKey: Array(repeating: 7, count: 32))
        let lines = try Self.withCheckpoint(signer)
        let key = try CheckpointVerifier(rawPublicKey: signer.rawPublicKey)
        let verified = Fixture.verify([("audit.jsonl", lines)], key: key)
        #expect(verified.isVerified, "\(String(describing: verified.finding))")
        #expect(verified.summary.checkpointsVerified == 1)
        #expect(verified.summary.checkpointsUnverified == 0)
        let unverified = Fixture.verify([("audit.jsonl", lines)])
        #expect(unverified.isVerified)
        #expect(unverified.summary.checkpointsUnverified == 1)
        #expect(unverified.summary.checkpointsVerified == 0)
        // The raw-key initializer is the same verifier.
        var raw = try AuditVerifier(publicKey: signer.rawPublicKey)
        raw.feed(file: "audit.jsonl", bytes: Fixture.file(lines))
        #expect(raw.finish().summary.checkpointsVerified == 1)
    }

    @Test("a chain rebuilt after an edit passes without the key but its checkpoint's signature does not verify")
    func checkpointBadSignature() throws {
        let signer = try CheckpointSigner(rawPrivateKey: Array(repeating: 7, count: 32))
        let lines = try Self.withCheckpoint(signer)
        let fixed = Fixture.rebuild(lines, hmacKey: nil) { index, previous, members in
            if index == 2 { members["status"] = .integer(403) }
            if index == 4, case .object(var checkpoint) = members["checkpoint"] {
                // The attacker restates the new hash of the record before; the signature stays the old one.
                checkpoint["hash"] = .string(previous)
                members["checkpoint"] = .object(checkpoint)
            }
        }
        let withoutKey = Fixture.verify([("audit.jsonl", fixed)])
        #expect(withoutKey.isVerified, "\(String(describing: withoutKey.finding))")
        #expect(withoutKey.summary.checkpointsUnverified == 1)
        let key = try CheckpointVerifier(rawPublicKey: signer.rawPublicKey)
        expectFinding(
            Fixture.verify([("audit.jsonl", fixed)], key: key),
            .signatureInvalid,
            file: "audit.jsonl",
            line: 5,
            seq: 4,
            mentions: ["does not verify"]
        )
    }

    @Test("a checkpoint signed by another key, or stating another record, is signature_invalid")
    func checkpointOtherKeyOrRecord() throws {
        let signer = try CheckpointSigner(rawPrivateKey: Array(repeating: 7, count: 32))
        let other = try CheckpointSigner(rawPrivateKey: Array(repeating: 9, count: 32))
        let key = try CheckpointVerifier(rawPublicKey: signer.rawPublicKey)
        expectFinding(
            Fixture.verify([("audit.jsonl", try Self.withCheckpoint(other))], key: key),
            .signatureInvalid,
            file: "audit.jsonl",
            line: 5,
            seq: 4,
            mentions: [other.keyID, signer.keyID]
        )
        // Stating seq 2 while the record before it is seq 3: found even without a key.
        expectFinding(
            Fixture.verify([("audit.jsonl", try Self.withCheckpoint(signer, statedSeqOffset: 2))]),
            .signatureInvalid,
            file: "audit.jsonl",
            line: 5,
            seq: 4,
            mentions: ["states seq 2", "seq 3"]
        )
        var noSignature = try Self.withCheckpoint(signer)
        noSignature = Fixture.rebuild(noSignature, hmacKey: nil) { index, _, members in
            if index == 4 { members["checkpoint"] = .object(["seq": .integer(3)]) }
        }
        expectFinding(
            Fixture.verify([("audit.jsonl", noSignature)]),
            .malformed,
            file: "audit.jsonl",
            line: 5,
            seq: 4,
            mentions: ["checkpoint"]
        )
    }

    @Test(
        "an HMAC-keyed chain verifies with its key; rebuilt without the key, it is altered when the key is given"
    )
    func hmac() {
        let key = Array("a secret key of thirty-two bytes".utf8)
        let lines = Fixture.chain(count: 6, hmacKey: key)
        #expect(Fixture.verify([("audit.jsonl", lines)], hmacKey: key).isVerified)
        expectFinding(
            Fixture.verify([("audit.jsonl", lines)]),
            .altered,
            file: "audit.jsonl",
            line: 1,
            seq: 0,
            mentions: ["hmac_key_file"]
        )

        let rebuilt = Fixture.rebuild(lines, hmacKey: nil) { index, _, members in
            if index == 3 { members["status"] = .integer(403) }
        }
        #expect(Fixture.verify([("audit.jsonl", rebuilt)]).isVerified)  // what the files alone prove
        expectFinding(
            Fixture.verify([("audit.jsonl", rebuilt)], hmacKey: key),
            .altered,
            file: "audit.jsonl",
            line: 1,
            seq: 0,
            mentions: ["HMAC key"]
        )
        let guessed = Fixture.rebuild(lines, hmacKey: Array("another key".utf8)) { _, _, _ in }
        expectFinding(
            Fixture.verify([("audit.jsonl", guessed)], hmacKey: key),
            .altered,
            file: "audit.jsonl",
            line: 1,
            seq: 0
        )
    }

    @Test(
        "malformed lines",
        arguments: [
            ("not json", "not a JSON object"),
            ("", "empty line"),
            ("[1,2]", "not a JSON object"),
        ]
    )
    func malformedText(line: String, mention: String) {
        var lines = Fixture.chain(count: 5)
        lines.insert(Array(line.utf8), at: 3)
        expectFinding(
            Fixture.verify([("audit.jsonl", lines)]),
            .malformed,
            file: "audit.jsonl",
            line: 4,
            seq: nil,
            mentions: [mention]
        )
    }

    @Test("malformed records: schema, missing members, non-canonical text, duplicate keys, CRLF")
    func malformedRecords() {
        var schema = self.lines
        schema[2] = Fixture.reseal(schema[2]) { $0["schema"] = .integer(2) }
        expectFinding(
            Fixture.verify([("a", schema)]),
            .malformed,
            file: "a",
            line: 3,
            seq: 2,
            mentions: ["\"schema\"", "expected 1", "found 2"]
        )
        var noTime = self.lines
        noTime[2] = Fixture.reseal(noTime[2]) { $0["time"] = nil }
        expectFinding(
            Fixture.verify([("a", noTime)]),
            .malformed,
            file: "a",
            line: 3,
            seq: 2,
            mentions: ["\"time\"", "missing"]
        )
        var badHash = self.lines
        badHash[2] = Fixture.edit(badHash[2]) { $0["hash"] = .string("XYZ") }
        expectFinding(Fixture.verify([("a", badHash)]), .malformed, file: "a", line: 3, seq: 2, mentions: ["\"hash\""])

        var spaced = self.lines
        spaced[2] = Array("{ ".utf8) + spaced[2].dropFirst()
        expectFinding(Fixture.verify([("a", spaced)]), .malformed, file: "a", line: 3, seq: 2, mentions: ["canonical"])
        var crlf = self.lines
        crlf[2] = crlf[2] + [0x0D]
        expectFinding(Fixture.verify([("a", crlf)]), .malformed, file: "a", line: 3, seq: 2, mentions: ["canonical"])
        var duplicate = self.lines
        duplicate[2] = Array(duplicate[2].dropLast()) + Array(",\"seq\":2}".utf8)
        expectFinding(
            Fixture.verify([("a", duplicate)]),
            .malformed,
            file: "a",
            line: 3,
            seq: nil,
            mentions: ["duplicate object key"]
        )
    }

    @Test("a line longer than the limit is malformed without buffering it whole")
    func longLine() {
        var verifier = AuditVerifier()
        verifier.beginFile("a")
        verifier.feed(Fixture.file(self.lines))
        let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 1 << 16)
        for _ in 0..<((AuditVerifier.maxLineBytes >> 16) + 2) { verifier.feed(chunk) }
        #expect(verifier.hasFinding)
        verifier.endFile()
        expectFinding(verifier.finish(), .malformed, file: "a", line: 6, seq: nil, mentions: ["longer than"])
    }
}
