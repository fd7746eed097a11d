import Foundation
import NIOSSL
import SwiftASN1
import X509

/// What identifies one version of a file on disk: device, inode, size and modification time.
/// A file replaced by `mv` (new inode) or rewritten in place (new size or mtime) gets a new fingerprint.
struct FileFingerprint: Hashable, Sendable {
    var path: String
    var exists: Bool
    var device: UInt64
    var inode: UInt64
    var size: UInt64
    var modified: Double

    /// Blocking (one `stat`): never call it on an event loop.
    static func of(_ path: String) -> FileFingerprint {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else {
            return FileFingerprint(path: path, exists: false, device: 0, inode: 0, size: 0, modified: 0)
        }
        func number(_ key: FileAttributeKey) -> UInt64 {
            (attributes[key] as? NSNumber)?.uint64Value ?? 0
        }
        return FileFingerprint(
            path: path,
            exists: true,
            device: number(.systemNumber),
            inode: number(.systemFileNumber),
            size: number(.size),
            modified: (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        )
    }

    static func of(_ paths: [String]) -> [FileFingerprint] { paths.map { Self.of($0) } }
}

/// Blocking helpers that read TLS material; every error names the file.
enum TLSFiles {
    /// Certificates, keys and CRLs are small; a CA bundle of the whole web is about 250 KiB.
    static let maximumFileSize = 8 * 1024 * 1024

    static func read(_ path: String) throws(TLSSetupError) -> [UInt8] {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            let reason = FileManager.default.fileExists(atPath: path) ? "can not be read" : "file not found"
            throw TLSSetupError(.unreadableFile, file: path, reason: reason)
        }
        guard !data.isEmpty else { throw TLSSetupError(.unreadableFile, file: path, reason: "file is empty") }
        guard data.count <= Self.maximumFileSize else {
            throw TLSSetupError(.unreadableFile, file: path, reason: "larger than \(Self.maximumFileSize) bytes")
        }
        return Array(data)
    }

    /// The PEM documents of a file (a DER file is one document of `derType`).
    static func documents(_ bytes: [UInt8], derType: String) -> [PEMDocument]? {
        guard let text = String(validating: bytes, as: UTF8.self), text.contains("-----BEGIN ") else {
            return [PEMDocument(type: derType, derBytes: bytes)]
        }
        return try? PEMDocument.parseMultiple(pemString: text)
    }

    /// Every certificate of a PEM file (a chain or a CA bundle), in file order, or one DER certificate.
    static func certificates(_ path: String) throws(TLSSetupError) -> [LoadedCertificate] {
        let bytes = try Self.read(path)
        guard let documents = Self.documents(bytes, derType: "CERTIFICATE") else {
            throw TLSSetupError(.invalidCertificate, file: path, reason: "not a valid PEM file")
        }
        var result: [LoadedCertificate] = []
        for document in documents where document.discriminator == "CERTIFICATE" {
            let certificate: Certificate
            let native: NIOSSLCertificate
            do {
                certificate = try Certificate(derEncoded: document.derBytes)
                native = try NIOSSLCertificate(bytes: document.derBytes, format: .der)
            } catch {
                throw TLSSetupError(
                    .invalidCertificate,
                    file: path,
                    reason: "certificate \(result.count + 1) does not parse: \(error)"
                )
            }
            result.append(LoadedCertificate(certificate: certificate, native: native))
        }
        guard !result.isEmpty else {
            throw TLSSetupError(.invalidCertificate, file: path, reason: "no CERTIFICATE in the file")
        }
        return result
    }

    /// An unencrypted private key (PKCS#8, SEC1 or PKCS#1 PEM, or DER), for both X509 and BoringSSL.
    static func privateKey(_ path: String) throws(TLSSetupError) -> LoadedPrivateKey {
        let bytes = try Self.read(path)
        guard let documents = Self.documents(bytes, derType: "PRIVATE KEY") else {
            throw TLSSetupError(.invalidPrivateKey, file: path, reason: "not a valid PEM file")
        }
        if documents.contains(where: { $0.discriminator == "ENCRYPTED PRIVATE KEY" }) {
            throw TLSSetupError(.invalidPrivateKey, file: path, reason: "encrypted private keys are not supported")
        }
        let keys = documents.filter { $0.discriminator.hasSuffix("PRIVATE KEY") }
        guard keys.count == 1, let document = keys.first else {
            throw TLSSetupError(
                .invalidPrivateKey,
                file: path,
                reason: keys.isEmpty ? "no PRIVATE KEY in the file" : "more than one private key in the file"
            )
        }
        do {
            let key = try Certificate.PrivateKey(pemDocument: document)
            let native = try NIOSSLPrivateKey(bytes: Array(document.pemString.utf8), format: .pem)
            return LoadedPrivateKey(key: key, native: native)
        } catch {
            // Never the key's bytes; the parser's message names no secret.
            throw TLSSetupError(
                .invalidPrivateKey,
                file: path,
                reason: "unsupported or malformed \(document.discriminator)"
            )
        }
    }
}

/// A certificate parsed twice: for our checks (X509) and for BoringSSL.
struct LoadedCertificate: Sendable {
    var certificate: Certificate
    var native: NIOSSLCertificate
}

struct LoadedPrivateKey: Sendable {
    var key: Certificate.PrivateKey
    var native: NIOSSLPrivateKey
}

/// A certificate chain and its key, checked to belong together.
struct LoadedIdentity: Sendable {
    var chain: [LoadedCertificate]
    var key: LoadedPrivateKey

    var leaf: Certificate { self.chain[0].certificate }

    static func load(certificate: String, privateKey: String) throws(TLSSetupError) -> LoadedIdentity {
        let chain = try TLSFiles.certificates(certificate)
        let key = try TLSFiles.privateKey(privateKey)
        guard key.key.publicKey == chain[0].certificate.publicKey else {
            throw TLSSetupError(
                .keyMismatch,
                file: privateKey,
                reason: "this key does not belong to the first certificate of \(certificate)"
            )
        }
        return LoadedIdentity(chain: chain, key: key)
    }
}
