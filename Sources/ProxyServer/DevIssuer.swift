import Crypto
import Foundation
import IdentityCore
public import ProxyModel

#if canImport(Glibc)
import Glibc
#endif

/// A development token issuer: an ES256 key (generated when missing, written 0600, never committed), its
/// JWKS file next to it, and minted tokens. For `portcullis token mint`, `portcullis demo` and tests.
public struct DevIssuer: Sendable {
    public static let defaultIssuer = "https://portcullis.local"

    public let keyPath: String
    public let jwksPath: String
    public let keyID: String
    private let key: P256.Signing.PrivateKey

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Loads the PEM key at `keyPath`, or generates one (and its JWKS) when the file does not exist.
    public static func loadOrCreate(keyPath: String) throws -> DevIssuer {
        let jwksPath = Self.jwksPath(forKey: keyPath)
        let key: P256.Signing.PrivateKey
        if FileManager.default.fileExists(atPath: keyPath) {
            let pem = try String(contentsOfFile: keyPath, encoding: .utf8)
            do {
                key = try P256.Signing.PrivateKey(pemRepresentation: pem)
            } catch {
                throw Failure(description: "\(keyPath): not a P-256 private key in PEM form")
            }
        } else {
            key = P256.Signing.PrivateKey()
            let directory = (keyPath as NSString).deletingLastPathComponent
            if !directory.isEmpty {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
            let created = FileManager.default.createFile(
                atPath: keyPath,
                contents: Data(key.pemRepresentation.utf8),
                attributes: [.posixPermissions: 0o600]
            )
            guard created else { throw Failure(description: "\(keyPath): cannot write the key") }
        }
        let issuer = DevIssuer(keyPath: keyPath, jwksPath: jwksPath, key: key)
        try issuer.jwksDocument().write(toFile: jwksPath, atomically: true, encoding: .utf8)
        return issuer
    }

    static func jwksPath(forKey keyPath: String) -> String {
        let base = keyPath.hasSuffix(".pem") ? String(keyPath.dropLast(4)) : keyPath
        return base + ".jwks.json"
    }

    private init(keyPath: String, jwksPath: String, key: P256.Signing.PrivateKey) {
        self.keyPath = keyPath
        self.jwksPath = jwksPath
        self.key = key
        // The RFC 7638 thumbprint as the key id, computed by IdentityCore's JWK.
        let raw = key.publicKey.x963Representation
        self.keyID = (try? JWK(ecKeyType: .ecP256, x: Array(raw.dropFirst().prefix(32)), y: Array(raw.dropFirst(33))))?
            .thumbprint ?? "dev"
    }

    public func jwksDocument() -> String {
        let raw = self.key.publicKey.x963Representation
        let x = Self.base64url(raw.dropFirst().prefix(32))
        let y = Self.base64url(raw.dropFirst(33))
        return #"{"keys":[{"kty":"EC","crv":"P-256","use":"sig","alg":"ES256","kid":""# + self.keyID + #"","x":""# + x
            + #"","y":""# + y + "\"}]}\n"
    }

    /// A signed ES256 token. `extraClaims` are added as given (JSON values).
    public func mint(
        issuer: String = DevIssuer.defaultIssuer,
        subject: String,
        audiences: [String],
        groups: [String] = [],
        email: String? = nil,
        ttlSeconds: Int64,
        now: Int64? = nil,
        extraClaims: [String: JSONValue] = [:]
    ) throws -> String {
        let now = now ?? Int64(Date().timeIntervalSince1970)
        var claims: [String: JSONValue] = [
            "iss": .string(issuer),
            "sub": .string(subject),
            "iat": .integer(now),
            "nbf": .integer(now),
            "exp": .integer(now + ttlSeconds),
        ]
        claims["aud"] = audiences.count == 1 ? .string(audiences[0]) : .array(audiences.map(JSONValue.string))
        if !groups.isEmpty { claims["groups"] = .array(groups.map(JSONValue.string)) }
        if let email { claims["email"] = .string(email) }
        for (name, value) in extraClaims { claims[name] = value }
        let header: JSONValue = .object(["alg": .string("ES256"), "typ": .string("JWT"), "kid": .string(self.keyID)])
        let signingInput =
            Self.base64url(Data(JSONText.compact(header).utf8)) + "." + Self.base64url(Data(JSONText.compact(.object(claims)).utf8))
        let signature = try self.key.signature(for: Data(signingInput.utf8))
        return signingInput + "." + Self.base64url(signature.rawRepresentation)
    }

    static func base64url<D: DataProtocol>(_ data: D) -> String {
        Data(data).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

/// JSON text of a JSONValue: compact (sorted keys) and indented, for tokens and `token inspect`.
public enum JSONText {
    public static func compact(_ value: JSONValue) -> String {
        var out = ""
        write(value, into: &out, indent: nil, level: 0)
        return out
    }

    public static func pretty(_ value: JSONValue) -> String {
        var out = ""
        write(value, into: &out, indent: "  ", level: 0)
        return out
    }

    private static func write(_ value: JSONValue, into out: inout String, indent: String?, level: Int) {
        let newline = indent == nil ? "" : "\n"
        let pad = { (level: Int) -> String in indent.map { String(repeating: $0, count: level) } ?? "" }
        switch value {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .integer(let i): out += String(i)
        case .number(let d): out += d.isFinite ? String(d) : "null"
        case .string(let s): out += JSONEscaping.quoted(s)
        case .array(let items):
            if items.isEmpty {
                out += "[]"
                return
            }
            out += "[" + newline
            for (index, item) in items.enumerated() {
                out += pad(level + 1)
                write(item, into: &out, indent: indent, level: level + 1)
                out += (index < items.count - 1 ? "," : "") + newline
            }
            out += pad(level) + "]"
        case .object(let object):
            if object.isEmpty {
                out += "{}"
                return
            }
            out += "{" + newline
            let keys = object.keys.sorted()
            for (index, key) in keys.enumerated() {
                out += pad(level + 1) + JSONEscaping.quoted(key) + (indent == nil ? ":" : ": ")
                write(object[key]!, into: &out, indent: indent, level: level + 1)
                out += (index < keys.count - 1 ? "," : "") + newline
            }
            out += pad(level) + "}"
        }
    }
}
