import Crypto
import Foundation
import ProxyModel
import Testing

@testable import AuditCore

/// Keys written by the real `openssl` CLI.
@Suite("Ed25519 key files")
struct Ed25519KeyFileTests {
    final class Dir {
        let url: URL
        init() throws {
            self.url = FileManager.default.temporaryDirectory.appendingPathComponent(
                "portcullis-keys-\(UUID().uuidString)"
            )
            try FileManager.default.createDirectory(at: self.url, withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(at: self.url) }
        func path(_ name: String) -> String { self.url.appendingPathComponent(name).path }
        func read(_ name: String) throws -> String { try String(contentsOfFile: self.path(name), encoding: .utf8) }
    }

    static func openssl(_ arguments: [String]) throws {
        let process = Process()
        var found: String?
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        where FileManager.default.isExecutableFile(atPath: "\(dir)/openssl") {
            found = "\(dir)/openssl"
            break
        }
        guard let found else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSLocalizedDescriptionKey: "openssl is required"])
        }
        process.executableURL = URL(fileURLWithPath: found)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "openssl \(arguments.joined(separator: " "))")
    }

    func expectError(
        _ code: Ed25519KeyFileError.Code,
        mentioning text: String,
        sourceLocation: Testing.SourceLocation = #_sourceLocation,
        _ body: () throws(Ed25519KeyFileError) -> [UInt8]
    ) {
        do {
            _ = try body()
            Issue.record("expected \(code)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
            #expect(error.description.contains(text), "\(error)", sourceLocation: sourceLocation)
        }
    }

    @Test("openssl genpkey / pkey -pubout keys: the seed's public key is the SPKI key; openssl's signature verifies")
    func opensslKeys() throws {
        let dir = try Dir()
        try Self.openssl(["genpkey", "-algorithm", "ed25519", "-out", dir.path("key.pem")])
        try Self.openssl(["pkey", "-in", dir.path("key.pem"), "-pubout", "-out", dir.path("key.pub")])
        let seed = try Ed25519KeyFile.privateKey(pem: try dir.read("key.pem"))
        let publicKey = try Ed25519KeyFile.publicKey(pem: try dir.read("key.pub"))
        #expect(seed.count == 32)
        #expect(publicKey.count == 32)
        let signer = try CheckpointSigner(rawPrivateKey: seed)
        #expect(signer.rawPublicKey == publicKey)

        // A checkpoint message signed by openssl verifies with the key read from openssl's public key file.
        let hash = String(repeating: "5a", count: 32)
        try Data(CheckpointVerifier.message(instance: "proxy-1", seq: 7, hash: hash)).write(
            to: URL(fileURLWithPath: dir.path("msg"))
        )
        try Self.openssl([
            "pkeyutl", "-sign", "-rawin", "-inkey", dir.path("key.pem"), "-in", dir.path("msg"), "-out",
            dir.path("sig"),
        ])
        let signature = try Data(contentsOf: URL(fileURLWithPath: dir.path("sig")))
        let verifier = try CheckpointVerifier(rawPublicKey: publicKey)
        #expect(verifier.isValid(signatureHex: Hex.encode(signature), instance: "proxy-1", seq: 7, hash: hash))
        #expect(!verifier.isValid(signatureHex: Hex.encode(signature), instance: "proxy-1", seq: 8, hash: hash))

        // And the other way round: our signature verifies with openssl.
        let fields = try signer.checkpoint(instance: "proxy-1", seq: 7, hash: hash)
        let ours = Hex.decode(fields["checkpoint"]!.objectValue!["signature"]!.stringValue!)!
        try Data(ours).write(to: URL(fileURLWithPath: dir.path("ours.sig")))
        try Self.openssl([
            "pkeyutl", "-verify", "-rawin", "-pubin", "-inkey", dir.path("key.pub"), "-in", dir.path("msg"), "-sigfile",
            dir.path("ours.sig"),
        ])
    }

    @Test("the base64 of the raw 32 bytes, with or without a newline; CRLF PEM files")
    func rawAndCRLF() throws {
        let dir = try Dir()
        try Self.openssl(["genpkey", "-algorithm", "ed25519", "-out", dir.path("key.pem")])
        try Self.openssl(["pkey", "-in", dir.path("key.pem"), "-pubout", "-out", dir.path("key.pub")])
        let seed = try Ed25519KeyFile.privateKey(pem: try dir.read("key.pem"))
        let publicKey = try Ed25519KeyFile.publicKey(pem: try dir.read("key.pub"))
        #expect(try Ed25519KeyFile.privateKey(pem: Data(seed).base64EncodedString()) == seed)
        #expect(try Ed25519KeyFile.publicKey(pem: Data(publicKey).base64EncodedString() + "\n") == publicKey)
        let crlf = try dir.read("key.pub").replacingOccurrences(of: "\n", with: "\r\n")
        #expect(try Ed25519KeyFile.publicKey(pem: crlf) == publicKey)
        #expect(try Ed25519KeyFile.privateKey(pem: "text before the block\n" + (try dir.read("key.pem"))) == seed)
    }

    @Test("the RFC 8410 private key form with its public key is accepted only when the two belong together")
    func pkcs8WithPublicKey() throws {
        let key = Curve25519.Signing.PrivateKey()
        let seed = Array(key.rawRepresentation)
        let publicKey = Array(key.publicKey.rawRepresentation)
        func pem(_ der: [UInt8]) -> String {
            "-----BEGIN PRIVATE KEY-----\n\(Data(der).base64EncodedString(options: .lineLength64Characters))\n-----END"
                + " PRIVATE KEY-----\n"
        }
        let prefix: [UInt8] = [
            0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
        ]
        #expect(try Ed25519KeyFile.privateKey(pem: pem(prefix + seed + [0x81, 0x21, 0x00] + publicKey)) == seed)
        let otherPublic = Array(Curve25519.Signing.PrivateKey().publicKey.rawRepresentation)
        self.expectError(.notEd25519, mentioning: "does not belong") {
            () throws(Ed25519KeyFileError) -> [UInt8] in
            try Ed25519KeyFile.privateKey(pem: pem(prefix + seed + [0x81, 0x21, 0x00] + otherPublic))
        }
    }

    @Test("clear errors for the wrong kind of key, other algorithms, encrypted keys and broken files")
    func errors() throws {
        let dir = try Dir()
        try Self.openssl(["genpkey", "-algorithm", "ed25519", "-out", dir.path("key.pem")])
        try Self.openssl(["pkey", "-in", dir.path("key.pem"), "-pubout", "-out", dir.path("key.pub")])
        try Self.openssl([
            "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", dir.path("ec.pem"),
        ])
        try Self.openssl(["genpkey", "-algorithm", "X25519", "-out", dir.path("x25519.pem")])
        try Self.openssl(["genpkey", "-algorithm", "ed448", "-out", dir.path("ed448.pem")])
        try Self.openssl(["pkey", "-in", dir.path("ed448.pem"), "-pubout", "-out", dir.path("ed448.pub")])
        try Self.openssl([
            "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", dir.path("rsa.pem"),
        ])
        try Self.openssl([
            "genpkey", "-algorithm", "ed25519", "-aes-256-cbc", "-pass", "pass:secret", "-out",
            dir.path("encrypted.pem"),
        ])
        let privatePEM = try dir.read("key.pem")
        let publicPEM = try dir.read("key.pub")

        self.expectError(.wrongKind, mentioning: "public key") { () throws(Ed25519KeyFileError) -> [UInt8] in
            try Ed25519KeyFile.privateKey(pem: publicPEM)
        }
        self.expectError(.wrongKind, mentioning: "-pubout") { () throws(Ed25519KeyFileError) -> [UInt8] in
            try Ed25519KeyFile.publicKey(pem: privatePEM)
        }
        for (file, name) in [
            ("ec.pem", "an EC key"), ("x25519.pem", "an X25519 key"), ("ed448.pem", "an Ed448 key"),
            ("rsa.pem", "an RSA key"),
        ] {
            let text = try dir.read(file)
            self.expectError(.notEd25519, mentioning: name) { () throws(Ed25519KeyFileError) -> [UInt8] in
                try Ed25519KeyFile.privateKey(pem: text)
            }
        }
        let ed448Public = try dir.read("ed448.pub")
        self.expectError(.notEd25519, mentioning: "an Ed448 key") { () throws(Ed25519KeyFileError) -> [UInt8] in
            try Ed25519KeyFile.publicKey(pem: ed448Public)
        }
        let encrypted = try dir.read("encrypted.pem")
        self.expectError(.unsupported, mentioning: "encrypted") { () throws(Ed25519KeyFileError) -> [UInt8] in
            try Ed25519KeyFile.privateKey(pem: encrypted)
        }
        let cut = String(privatePEM.prefix(40))
        self.expectError(.invalidEncoding, mentioning: "no END line") { () throws(Ed25519KeyFileError) -> [UInt8] in
            try Ed25519KeyFile.privateKey(pem: cut)
        }
        let short = Data(repeating: 1, count: 31).base64EncodedString()
        self.expectError(.invalidEncoding, mentioning: "31 bytes") { () throws(Ed25519KeyFileError) -> [UInt8] in
            try Ed25519KeyFile.publicKey(pem: short)
        }
        self.expectError(.invalidEncoding, mentioning: "neither PEM nor base64") {
            () throws(Ed25519KeyFileError) -> [UInt8] in
            try Ed25519KeyFile.publicKey(pem: "not a key!")
        }
        self.expectError(.invalidEncoding, mentioning: "empty") { () throws(Ed25519KeyFileError) -> [UInt8] in
            try Ed25519KeyFile.publicKey(pem: " \n")
        }
        let badBase64 = publicPEM.replacingOccurrences(of: "MC", with: "M!")
        self.expectError(.invalidEncoding, mentioning: "not valid base64") {
            () throws(Ed25519KeyFileError) -> [UInt8] in
            try Ed25519KeyFile.publicKey(pem: badBase64)
        }
        // No error message carries key material.
        let body = privatePEM.split(separator: "\n")[1]
        do {
            _ = try Ed25519KeyFile.publicKey(pem: privatePEM)
        } catch {
            #expect(!error.description.contains(body))
        }
    }

    @Test("the base64 decoder is strict: padding, alphabet, length")
    func base64() {
        #expect(Base64.decode("") == [])
        #expect(Base64.decode("TQ==") == Array("M".utf8))
        #expect(Base64.decode("TWE=") == Array("Ma".utf8))
        #expect(Base64.decode("TWFu") == Array("Man".utf8))
        #expect(Base64.decode("+/+/") == [0xFB, 0xFF, 0xBF])
        #expect(Base64.decode("TWF") == nil)
        #expect(Base64.decode("TQ=a") == nil)
        #expect(Base64.decode("T===") == nil)
        #expect(Base64.decode("TQ==TWFu") == nil)
        #expect(Base64.decode("TW-u") == nil)
        for n in 0..<40 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            #expect(Base64.decode(Data(bytes).base64EncodedString()) == bytes)
        }
    }
}
