import AuditCore
import Foundation
import ProxyModel

/// `portcullis audit verify`: checks audit files (JSON lines) against the chain rules in ``AuditVerifier``.
public enum AuditCommands {
    public struct VerifyInput: Sendable {
        /// Audit files, oldest first (rotated files, then the active one).
        public var files: [String]
        /// The persisted chain head (`audit.head_file`, default the first file sink's path + `.head`).
        public var headFile: String?
        /// The checkpoints' Ed25519 public key: PEM (`openssl pkey -pubout`) or the base64 of 32 bytes.
        public var publicKeyFile: String?
        /// The chain's HMAC key (`audit.hmac_key_file`), read as the writer reads it (``AuditHMACKey``).
        public var hmacKeyFile: String?
        /// Print the report as JSON.
        public var json: Bool

        public init(
            files: [String],
            headFile: String? = nil,
            publicKeyFile: String? = nil,
            hmacKeyFile: String? = nil,
            json: Bool = false
        ) {
            self.files = files
            self.headFile = headFile
            self.publicKeyFile = publicKeyFile
            self.hmacKeyFile = hmacKeyFile
            self.json = json
        }
    }

    /// Exit 0 when everything verified, 1 with a finding (printed as `file:line: kind (seq N): message`),
    /// 2 when a file or key cannot be read.
    public static func verify(_ input: VerifyInput) -> Int32 {
        guard !input.files.isEmpty else { return self.fail("give at least one audit file") }

        var head: AuditHead?
        if let path = input.headFile {
            guard let bytes = self.readSmallFile(path) else { return self.fail("cannot read the head file \(path)") }
            guard let parsed = AuditHead(json: bytes) else {
                return self.fail("\(path) is not a chain head (expected {\"hash\",\"instance\",\"seq\",\"time\"})")
            }
            head = parsed
        }
        var checkpointKey: CheckpointVerifier?
        if let path = input.publicKeyFile {
            guard let bytes = self.readSmallFile(path) else { return self.fail("cannot read the public key \(path)") }
            do {
                let raw = try Ed25519KeyFile.publicKey(pem: String(decoding: bytes, as: UTF8.self))
                checkpointKey = try CheckpointVerifier(rawPublicKey: raw)
            } catch {
                return self.fail("\(path): \(error)")
            }
        }
        var hmacKey: [UInt8]?
        if let path = input.hmacKeyFile {
            guard let bytes = self.readSmallFile(path) else { return self.fail("cannot read the HMAC key \(path)") }
            do {
                hmacKey = try AuditHMACKey.fromFile(bytes: bytes)
            } catch {
                return self.fail("\(path): \(error)")
            }
        }
        // Every file must be readable before any is verified: a missing file is an error, not a finding.
        var handles: [(String, FileHandle)] = []
        defer { for (_, handle) in handles { try? handle.close() } }
        for path in input.files {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
                let handle = FileHandle(forReadingAtPath: path)
            else { return self.fail("cannot read the audit file \(path)") }
            handles.append((path, handle))
        }

        var verifier = AuditVerifier(head: head, checkpointKey: checkpointKey, hmacKey: hmacKey)
        for (path, handle) in handles where !verifier.hasFinding {
            verifier.beginFile(path)
            do {
                while !verifier.hasFinding, let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
                    verifier.feed(chunk)
                }
            } catch {
                return self.fail("cannot read the audit file \(path): \(error)")
            }
            verifier.endFile()
        }
        let report = verifier.finish()
        if input.json {
            print(JSONText.pretty(report.json))
        } else {
            print(self.text(report, input: input))
        }
        return report.isVerified ? PortcullisCommands.Exit.success : PortcullisCommands.Exit.finding
    }

    /// The readable report: the finding first (as `file:line: kind (seq N): message`), then what verified.
    static func text(_ report: AuditVerificationReport, input: VerifyInput) -> String {
        var lines: [String] = []
        let s = report.summary
        if let finding = report.finding {
            lines.append(finding.description)
            lines.append("FAILED: \(finding.kind.rawValue) at \(finding.file):\(finding.line)")
            lines.append(
                "before it, \(s.events) event\(s.events == 1 ? "" : "s") verified in \(s.files)"
                    + " file\(s.files == 1 ? "" : "s")"
            )
            return lines.joined(separator: "\n")
        }
        var range = ""
        if let first = s.firstSeq, let last = s.lastSeq {
            range =
                s.chainRestarts.isEmpty
                ? ", seq \(first)..\(last)" : ", seq \(first).. (\(s.chainRestarts.count + 1) chains) ..\(last)"
        }
        let instances = s.instances.isEmpty ? "" : ", instance \(s.instances.joined(separator: " then "))"
        lines.append(
            "verified: \(s.events) event\(s.events == 1 ? "" : "s") in \(s.files)"
                + " file\(s.files == 1 ? "" : "s")\(range)\(instances)"
        )
        if s.startsMidChain, let first = s.firstSeq {
            lines.append(
                "note: the first record is seq \(first), not the start of a chain: earlier records are not in these"
                    + " files (rotated away?)"
            )
        }
        for restart in s.chainRestarts {
            lines.append(
                "note: a new chain begins at \(restart) (audit.chain_start: the writer did not continue a persisted"
                    + " head)"
            )
        }
        if s.checkpointsVerified > 0 || s.checkpointsUnverified > 0 {
            var text =
                "checkpoints: \(s.checkpointsVerified) signature\(s.checkpointsVerified == 1 ? "" : "s") verified"
            if s.checkpointsUnverified > 0 {
                text += ", \(s.checkpointsUnverified) not verified (give --public-key to check their signatures)"
            }
            lines.append(text)
        }
        if let matched = s.headMatched {
            lines.append("head: seq \(matched.seq) found at \(matched)")
        } else {
            lines.append("note: without --head, records cut off the end or a deleted last file cannot be detected")
        }
        if input.hmacKeyFile == nil {
            lines.append(
                "note: the chain is not keyed (no --hmac-key-file): whoever can write the files can rebuild it"
            )
        }
        return lines.joined(separator: "\n")
    }

    /// Key and head files: small, read whole.
    private static func readSmallFile(_ path: String) -> [UInt8]? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        do {
            return Array(try handle.read(upToCount: 1 << 20) ?? Data())  // nil: an empty file
        } catch {
            return nil
        }
    }

    private static func fail(_ message: String) -> Int32 {
        FileHandle.standardError.write(Data("portcullis audit verify: \(message)\n".utf8))
        return PortcullisCommands.Exit.environment
    }
}
