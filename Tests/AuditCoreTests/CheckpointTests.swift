import Crypto
import ProxyModel
import Testing

@testable import AuditCore

@Suite("Signed checkpoints")
struct CheckpointTests {
    let hash = String(repeating: "3f", count: 32)

    @Test("a checkpoint states seq and hash, names its key and verifies with the public key")
    func signVerify() throws {
        let signer = try CheckpointSigner(rawPrivateKey: Array(repeating: 1, count: 32))
        let verifier = try CheckpointVerifier(rawPublicKey: signer.rawPublicKey)
        let fields = try signer.checkpoint(instance: "proxy-1", seq: 41, hash: self.hash)
        guard case .object(let checkpoint) = fields["checkpoint"], case .string(let signature) = checkpoint["signature"]
        else {
            Issue.record("no checkpoint object")
            return
        }
        #expect(checkpoint["seq"] == .integer(41))
        #expect(checkpoint["hash"] == .string(self.hash))
        #expect(checkpoint["key_id"] == .string(signer.keyID))
        #expect(signer.keyID == verifier.keyID)
        #expect(signer.keyID.utf8.count == 16)
        #expect(signature.utf8.count == 128)
        #expect(verifier.isValid(signatureHex: signature, instance: "proxy-1", seq: 41, hash: self.hash))
        // The signed message is the documented one: a plain Ed25519 verification of it holds.
        let key = try Curve25519.Signing.PublicKey(rawRepresentation: signer.rawPublicKey)
        let message = Array("portcullis-audit-checkpoint/1\nproxy-1\n41\n\(self.hash)".utf8)
        #expect(key.isValidSignature(Hex.decode(signature)!, for: message))
        #expect(CheckpointVerifier.message(instance: "proxy-1", seq: 41, hash: self.hash) == message)
    }

    @Test("another seq, hash, instance or key, or a damaged signature, does not verify")
    func refuses() throws {
        let signer = try CheckpointSigner(rawPrivateKey: Array(repeating: 1, count: 32))
        let verifier = try CheckpointVerifier(rawPublicKey: signer.rawPublicKey)
        let other = try CheckpointVerifier(
            rawPublicKey: try CheckpointSigner(rawPrivateKey: Array(repeating: 2, count: 32)).rawPublicKey
        )
        let fields = try signer.checkpoint(instance: "proxy-1", seq: 41, hash: self.hash)
        let signature = fields["checkpoint"]!.objectValue!["signature"]!.stringValue!
        #expect(!verifier.isValid(signatureHex: signature, instance: "proxy-1", seq: 42, hash: self.hash))
        #expect(
            !verifier.isValid(
                signatureHex: signature,
                instance: "proxy-1",
                seq: 41,
                hash: String(repeating: "3e", count: 32)
            )
        )
        #expect(!verifier.isValid(signatureHex: signature, instance: "proxy-2", seq: 41, hash: self.hash))
        #expect(!other.isValid(signatureHex: signature, instance: "proxy-1", seq: 41, hash: self.hash))
        #expect(other.keyID != verifier.keyID)
        var damaged = Array(signature.utf8)
        damaged[10] = damaged[10] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        #expect(
            !verifier.isValid(
                signatureHex: String(decoding: damaged, as: UTF8.self),
                instance: "proxy-1",
                seq: 41,
                hash: self.hash
            )
        )
        #expect(!verifier.isValid(signatureHex: "zz", instance: "proxy-1", seq: 41, hash: self.hash))
        #expect(!verifier.isValid(signatureHex: "", instance: "proxy-1", seq: 41, hash: self.hash))
    }

    @Test("keys of the wrong size are refused")
    func keySizes() {
        #expect(throws: (any Error).self) { try CheckpointSigner(rawPrivateKey: Array(repeating: 1, count: 31)) }
        #expect(throws: (any Error).self) { try CheckpointVerifier(rawPublicKey: Array(repeating: 1, count: 33)) }
    }
}
