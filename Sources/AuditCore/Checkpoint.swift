import Crypto
public import ProxyModel

/// Signed checkpoints: every N events or S seconds the writer seals an `audit.checkpoint` event whose
/// `checkpoint` member states the chain head before it and an Ed25519 signature over
///
///     "portcullis-audit-checkpoint/1\n" + instance + "\n" + seq + "\n" + hash
///
/// A copy of a checkpoint held elsewhere (a collector) anchors the chain: `audit verify --public-key`
/// checks each signature and that the chain really had that hash at that seq.
public struct CheckpointSigner: Sendable {
    private let key: Curve25519.Signing.PrivateKey
    public let keyID: String

    /// `rawPrivateKey`: the 32-byte Ed25519 seed.
    public init(rawPrivateKey: [UInt8]) throws {
        self.key = try Curve25519.Signing.PrivateKey(rawRepresentation: rawPrivateKey)
        self.keyID = CheckpointVerifier.keyID(publicKey: Array(self.key.publicKey.rawRepresentation))
    }

    public var rawPublicKey: [UInt8] { Array(self.key.publicKey.rawRepresentation) }

    /// The members of the checkpoint event that covers the chain head `(seq, hash)`.
    public func checkpoint(instance: String, seq: UInt64, hash: String) throws -> [String: JSONValue] {
        let signature = try self.key.signature(for: CheckpointVerifier.message(instance: instance, seq: seq, hash: hash))
        return [
            "checkpoint": .object([
                "seq": .integer(Int64(seq)),
                "hash": .string(hash),
                "key_id": .string(self.keyID),
                "signature": .string(Hex.encode(signature)),
            ])
        ]
    }
}

public struct CheckpointVerifier: Sendable {
    private let key: Curve25519.Signing.PublicKey
    public let keyID: String

    public init(rawPublicKey: [UInt8]) throws {
        self.key = try Curve25519.Signing.PublicKey(rawRepresentation: rawPublicKey)
        self.keyID = Self.keyID(publicKey: rawPublicKey)
    }

    public static func message(instance: String, seq: UInt64, hash: String) -> [UInt8] {
        Array("portcullis-audit-checkpoint/1\n\(instance)\n\(seq)\n\(hash)".utf8)
    }

    /// First 16 hex digits of SHA-256 of the raw public key.
    public static func keyID(publicKey: [UInt8]) -> String {
        String(Hex.encode(SHA256.hash(data: publicKey)).prefix(16))
    }

    public func isValid(signatureHex: String, instance: String, seq: UInt64, hash: String) -> Bool {
        guard let signature = Hex.decode(signatureHex) else { return false }
        return self.key.isValidSignature(signature, for: Self.message(instance: instance, seq: seq, hash: hash))
    }
}
