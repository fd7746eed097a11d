import Crypto
import Foundation
import Testing

/// Audit lines built here from the spec alone (canonical JSON with sorted ASCII keys, SHA-256 or HMAC-SHA-256
/// of the record without `hash`), not with the project's modules: this cross-checks `portcullis audit verify`.
struct SpecChain {
    let instance: String
    var hmacKey: [UInt8]?
    var lines: [String] = []
    var head = String(repeating: "0", count: 64)
    var seq = 0

    init(instance: String = "it-proxy", hmacKey: [UInt8]? = nil) {
        self.instance = instance
        self.hmacKey = hmacKey
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    /// `members`: name and raw JSON text of the event's own members.
    mutating func append(kind: String, _ members: [(String, String)] = []) {
        var all: [(String, String)] = [
            ("instance", "\"\(self.instance)\""), ("kind", "\"\(kind)\""), ("prev_hash", "\"\(self.head)\""),
            ("schema", "1"), ("seq", "\(self.seq)"),
            ("time", "\"2026-01-01T00:00:\(String(format: "%02d", self.seq % 60)).000000Z\""),
        ]
        all += members
        all.sort { $0.0 < $1.0 }
        let body = "{" + all.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
        let hash: String
        if let key = self.hmacKey {
            hash = Self.hex(HMAC<SHA256>.authenticationCode(for: Array(body.utf8), using: SymmetricKey(data: key)))
        } else {
            hash = Self.hex(SHA256.hash(data: Array(body.utf8)))
        }
        all.append(("hash", "\"\(hash)\""))
        all.sort { $0.0 < $1.0 }
        self.lines.append("{" + all.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}")
        self.head = hash
        self.seq += 1
    }

    mutating func request(_ n: Int) {
        self.append(kind: "http.request", [("request_id", "\"r-\(n)\""), ("status", "200"), ("path", "\"/api/\(n)\"")])
    }

    /// A new chain's first record, then `count - 1` requests.
    static func make(count: Int, instance: String = "it-proxy", hmacKey: [UInt8]? = nil) -> SpecChain {
        var chain = SpecChain(instance: instance, hmacKey: hmacKey)
        chain.append(kind: "audit.chain_start", [("reason", "\"no_head_file\"")])
        for n in 1..<count { chain.request(n) }
        return chain
    }

    /// The persisted head after the record at `index`.
    func headJSON(at index: Int) -> String {
        let hash = self.lines[index].split(separator: "\"")[3]  // {"hash":"<hash>",...
        return
            "{\"hash\":\"\(hash)\",\"instance\":\"\(self.instance)\",\"seq\":\(index),\"time\":\"2026-01-01T00:01:00.000000Z\"}\n"
    }
}

@Suite("portcullis audit verify")
struct AuditVerifyCommandTests {
    static func write(_ lines: some Sequence<String>, to url: URL) throws {
        try Data(lines.map { $0 + "\n" }.joined().utf8).write(to: url)
    }

    /// The files as a shell glob `audit*.jsonl` lists them: rotated files first, the active file last.
    static func glob(_ dir: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir.path)
            .filter { $0.hasPrefix("audit") && $0.hasSuffix(".jsonl") }
            .sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
            .map { dir.appendingPathComponent($0).path }
    }

    @Test("intact rotated and active files verify (exit 0), with the head")
    func verified() throws {
        let binary = try portcullisBinary()
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let chain = SpecChain.make(count: 8)
        try Self.write(chain.lines[0..<5], to: dir.appendingPathComponent("audit-20260101T000004.000000Z.jsonl"))
        try Self.write(chain.lines[5...], to: dir.appendingPathComponent("audit.jsonl"))
        let files = try Self.glob(dir)
        #expect(files.last?.hasSuffix("/audit.jsonl") == true)
        let result = try run(binary, ["audit", "verify"] + files)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("verified: 8 events in 2 files"), "\(result.stdout)")
        #expect(result.stdout.contains("without --head"))

        let head = dir.appendingPathComponent("audit.jsonl.head")
        try Data(chain.headJSON(at: 7).utf8).write(to: head)
        let withHead = try run(binary, ["audit", "verify", "--head", head.path] + files)
        #expect(withHead.status == 0, "\(withHead.stdout)\(withHead.stderr)")
        #expect(withHead.stdout.contains("head: seq 7 found at \(files[1]):3"), "\(withHead.stdout)")
    }

    @Test("an edited line exits 1 naming its file and line")
    func altered() throws {
        let binary = try portcullisBinary()
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        var lines = SpecChain.make(count: 6).lines
        lines[3] = lines[3].replacingOccurrences(of: "\"status\":200", with: "\"status\":403")
        let file = dir.appendingPathComponent("audit.jsonl")
        try Self.write(lines, to: file)
        let result = try run(binary, ["audit", "verify", file.path])
        #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("\(file.path):4: altered (seq 3)"), "\(result.stdout)")
    }

    @Test("a deleted line is missing; swapped lines are reordered; a cut end is truncated with the head")
    func tampering() throws {
        let binary = try portcullisBinary()
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let chain = SpecChain.make(count: 8)
        let file = dir.appendingPathComponent("audit.jsonl")

        var deleted = chain.lines
        deleted.remove(at: 4)
        try Self.write(deleted, to: file)
        let missing = try run(binary, ["audit", "verify", file.path])
        #expect(missing.status == 1)
        #expect(missing.stdout.contains("\(file.path):5: missing (seq 5)"), "\(missing.stdout)")
        #expect(missing.stdout.contains("expected seq 4"))

        var swapped = chain.lines
        swapped.swapAt(2, 3)
        try Self.write(swapped, to: file)
        let reordered = try run(binary, ["audit", "verify", file.path])
        #expect(reordered.status == 1)
        #expect(reordered.stdout.contains("\(file.path):3: reordered (seq 3)"), "\(reordered.stdout)")

        try Self.write(chain.lines[0..<6], to: file)
        let head = dir.appendingPathComponent("head.json")
        try Data(chain.headJSON(at: 7).utf8).write(to: head)
        let truncated = try run(binary, ["audit", "verify", "--head", head.path, file.path])
        #expect(truncated.status == 1)
        #expect(truncated.stdout.contains("\(file.path):6: truncated (seq 5)"), "\(truncated.stdout)")
        // Without the head the same cut is not detectable (documented).
        #expect(try run(binary, ["audit", "verify", file.path]).status == 0)

        try Data((chain.lines[0..<6].map { $0 + "\n" }.joined() + String(chain.lines[6].prefix(30))).utf8).write(
            to: file
        )
        let partial = try run(binary, ["audit", "verify", file.path])
        #expect(partial.status == 1)
        #expect(partial.stdout.contains("\(file.path):7: truncated"), "\(partial.stdout)")
    }

    @Test("--json prints the report as JSON")
    func json() throws {
        let binary = try portcullisBinary()
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = SpecChain.make(count: 4)
        let b = SpecChain.make(count: 8, instance: "other-proxy")
        let first = dir.appendingPathComponent("audit-1.jsonl")
        let second = dir.appendingPathComponent("audit.jsonl")
        try Self.write(a.lines, to: first)
        try Self.write(b.lines[4...], to: second)
        let result = try run(binary, ["audit", "verify", "--json", first.path, second.path])
        #expect(result.status == 1)
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let finding = object?["finding"] as? [String: Any]
        #expect(object?["verified"] as? Bool == false)
        #expect(finding?["kind"] as? String == "wrong_instance")
        #expect(finding?["file"] as? String == second.path)
        #expect(finding?["line"] as? Int == 1)
        #expect((object?["summary"] as? [String: Any])?["events"] as? Int == 4)
    }

    @Test("checkpoints verify with an openssl public key; another key is signature_invalid")
    func checkpoints() throws {
        let binary = try portcullisBinary()
        let openssl = try which("openssl")
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let keyPath = dir.appendingPathComponent("checkpoint.pem").path
        let pubPath = dir.appendingPathComponent("checkpoint.pub").path
        let derPath = dir.appendingPathComponent("checkpoint.der").path
        #expect(try run(openssl, ["genpkey", "-algorithm", "ed25519", "-out", keyPath]).status == 0)
        #expect(try run(openssl, ["pkey", "-in", keyPath, "-pubout", "-out", pubPath]).status == 0)
        #expect(try run(openssl, ["pkey", "-in", keyPath, "-outform", "DER", "-out", derPath]).status == 0)
        let der = try Data(contentsOf: URL(fileURLWithPath: derPath))
        let key = try Curve25519.Signing.PrivateKey(rawRepresentation: der.suffix(32))
        let keyID = String(SpecChain.hex(SHA256.hash(data: key.publicKey.rawRepresentation)).prefix(16))

        var chain = SpecChain.make(count: 5)
        let stated = (seq: chain.seq - 1, hash: chain.head)
        let message = Data("portcullis-audit-checkpoint/1\n\(chain.instance)\n\(stated.seq)\n\(stated.hash)".utf8)
        let signature = SpecChain.hex(try key.signature(for: message))
        chain.append(
            kind: "audit.checkpoint",
            [
                (
                    "checkpoint",
                    "{\"hash\":\"\(stated.hash)\",\"key_id\":\"\(keyID)\",\"seq\":\(stated.seq),\"signature\":\"\(signature)\"}"
                )
            ]
        )
        chain.request(6)
        let file = dir.appendingPathComponent("audit.jsonl")
        try Self.write(chain.lines, to: file)

        let verified = try run(binary, ["audit", "verify", "--public-key", pubPath, file.path])
        #expect(verified.status == 0, "\(verified.stdout)\(verified.stderr)")
        #expect(verified.stdout.contains("checkpoints: 1 signature verified"), "\(verified.stdout)")
        let unverified = try run(binary, ["audit", "verify", file.path])
        #expect(unverified.status == 0)
        #expect(unverified.stdout.contains("1 not verified"), "\(unverified.stdout)")

        let otherKey = dir.appendingPathComponent("other.pem").path
        let otherPub = dir.appendingPathComponent("other.pub").path
        #expect(try run(openssl, ["genpkey", "-algorithm", "ed25519", "-out", otherKey]).status == 0)
        #expect(try run(openssl, ["pkey", "-in", otherKey, "-pubout", "-out", otherPub]).status == 0)
        let refused = try run(binary, ["audit", "verify", "--public-key", otherPub, file.path])
        #expect(refused.status == 1)
        #expect(refused.stdout.contains("\(file.path):6: signature_invalid (seq 5)"), "\(refused.stdout)")
    }

    @Test("an HMAC-keyed chain verifies only with --hmac-key-file")
    func hmac() throws {
        let binary = try portcullisBinary()
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let key = Array("0123456789abcdef0123456789abcdef".utf8)
        let keyFile = dir.appendingPathComponent("hmac.key")
        try Data(key).write(to: keyFile)
        let file = dir.appendingPathComponent("audit.jsonl")
        try Self.write(SpecChain.make(count: 4, hmacKey: key).lines, to: file)
        let keyed = try run(binary, ["audit", "verify", "--hmac-key-file", keyFile.path, file.path])
        #expect(keyed.status == 0, "\(keyed.stdout)\(keyed.stderr)")
        let unkeyed = try run(binary, ["audit", "verify", file.path])
        #expect(unkeyed.status == 1)
        #expect(unkeyed.stdout.contains("\(file.path):1: altered"), "\(unkeyed.stdout)")
        // Rebuilt without the key (plain SHA-256): passes alone, fails with the key.
        try Self.write(SpecChain.make(count: 4).lines, to: file)
        #expect(try run(binary, ["audit", "verify", file.path]).status == 0)
        #expect(try run(binary, ["audit", "verify", "--hmac-key-file", keyFile.path, file.path]).status == 1)
    }

    @Test("usage and environment errors exit 2; help documents the file order")
    func errors() throws {
        let binary = try portcullisBinary()
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("audit.jsonl")
        try Self.write(SpecChain.make(count: 3).lines, to: file)
        let garbage = dir.appendingPathComponent("garbage")
        try Data("not a key".utf8).write(to: garbage)
        let empty = dir.appendingPathComponent("empty")
        try Data().write(to: empty)
        let missing = dir.appendingPathComponent("missing.jsonl").path

        #expect(try run(binary, ["audit", "verify"]).status == 2)
        let unreadable = try run(binary, ["audit", "verify", file.path, missing])
        #expect(unreadable.status == 2)
        #expect(unreadable.stderr.contains(missing))
        #expect(try run(binary, ["audit", "verify", dir.path]).status == 2)
        let badKey = try run(binary, ["audit", "verify", "--public-key", garbage.path, file.path])
        #expect(badKey.status == 2)
        #expect(badKey.stderr.contains("neither PEM nor base64"), "\(badKey.stderr)")
        #expect(try run(binary, ["audit", "verify", "--head", garbage.path, file.path]).status == 2)
        #expect(try run(binary, ["audit", "verify", "--head", missing, file.path]).status == 2)
        #expect(try run(binary, ["audit", "verify", "--hmac-key-file", empty.path, file.path]).status == 2)
        #expect(try run(binary, ["audit", "verify", "--no-such-flag", file.path]).status == 2)

        let help = try run(binary, ["audit", "verify", "--help"])
        #expect(help.status == 0)
        let text = help.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")  // help text is wrapped
        #expect(text.contains("verified in the order given"), "\(help.stdout)")
        #expect(text.contains("`audit*.jsonl`"))
    }
}
