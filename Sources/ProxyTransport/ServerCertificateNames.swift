public import X509

/// The DNS names a server certificate answers for, from its subjectAltName (the common name is not used,
/// as in browsers and RFC 6125). `*.example.com` covers exactly one more label (`a.example.com`, not
/// `example.com` nor `a.b.example.com`); names compare case-insensitively and without a trailing dot.
public struct ServerCertificateNames: Sendable, Hashable {
    /// Lowercased names without wildcards.
    public var exact: Set<String>
    /// Lowercased suffixes of wildcard names, with their leading dot (`.example.com` for `*.example.com`).
    public var wildcardSuffixes: Set<String>

    public init(exact: Set<String> = [], wildcardSuffixes: Set<String> = []) {
        self.exact = exact
        self.wildcardSuffixes = wildcardSuffixes
    }

    public init(certificate: Certificate) {
        var exact = Set<String>()
        var wildcards = Set<String>()
        let names = (try? certificate.extensions.subjectAlternativeNames) ?? nil
        for case .dnsName(let raw) in names ?? SubjectAlternativeNames() {
            guard let name = Self.normalize(raw) else { continue }
            if name.hasPrefix("*.") {
                let suffix = String(name.dropFirst())
                // `*.com`-style wildcards (one label after the star) are ignored.
                if suffix.dropFirst().contains("."), !suffix.contains("*") { wildcards.insert(suffix) }
            } else if !name.contains("*") {
                exact.insert(name)
            }
        }
        self.init(exact: exact, wildcardSuffixes: wildcards)
    }

    public func matchesExactly(_ serverName: String) -> Bool { self.exact.contains(serverName) }

    public func matchesWildcard(_ serverName: String) -> Bool {
        guard let dot = serverName.firstIndex(of: ".") else { return false }
        let firstLabel = serverName[..<dot]
        return !firstLabel.isEmpty && self.wildcardSuffixes.contains(String(serverName[dot...]))
    }

    /// Lowercased, one trailing dot removed; nil for an empty name or one with characters a DNS name never has.
    public static func normalize(_ name: String) -> String? {
        var name = name.lowercased()
        if name.hasSuffix(".") { name.removeLast() }
        guard !name.isEmpty, name.utf8.count <= 253,
            name.utf8.allSatisfy({
                ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D || $0 == 0x2E || $0 == 0x5F
                    || $0 == 0x2A
            })
        else { return nil }
        return name
    }

    /// The index of the certificate for an SNI name: an exact name anywhere wins over a wildcard; among
    /// equals the first configured wins; no match (or no SNI): 0, the default certificate.
    public static func select(serverName: String?, among certificates: [ServerCertificateNames]) -> Int {
        guard let serverName = serverName.flatMap(Self.normalize), !serverName.contains("*") else { return 0 }
        if let index = certificates.firstIndex(where: { $0.matchesExactly(serverName) }) { return index }
        if let index = certificates.firstIndex(where: { $0.matchesWildcard(serverName) }) { return index }
        return 0
    }
}
