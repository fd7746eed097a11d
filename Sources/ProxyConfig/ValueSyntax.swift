import ProxyModel

// Syntax of the scalar values in the policy file: durations, sizes, host:port, URLs, names.
// Pure functions over text; the caller adds the location and the key path.

/// A value in the policy file that does not parse. `message` says why; the caller adds where.
public struct ConfigValueError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { self.message }
}

extension ConfigLoader {
    /// `500ms`, `10s`, `5m`, `1h`, `1h30m` (units in decreasing order, each at most once), or a
    /// bare non-negative integer meaning seconds.
    public static func parseDuration(_ text: String) -> Result<Duration, ConfigValueError> {
        ValueSyntax.parseDuration(text)
    }

    /// Bytes: a non-negative integer, or a number with a unit: `B`, `KB`/`MB`/`GB`/`TB` (powers of
    /// 1000), `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024). Units are case-insensitive.
    public static func parseSize(_ text: String) -> Result<Int64, ConfigValueError> {
        ValueSyntax.parseSize(text)
    }

    /// `host:port` or `[IPv6]:port`; port 1-65535; host an IP literal or a DNS name.
    /// The returned host carries no brackets.
    public static func parseHostPort(_ text: String) -> Result<HostPort, ConfigValueError> {
        ValueSyntax.parseHostPort(text)
    }
}

enum ValueSyntax {
    static let durationHint = "expected a duration like 500ms, 10s, 5m, 1h or 1h30m (a bare number means seconds)"
    static let sizeHint = "expected bytes or a number with a unit, like 1024, 64KiB, 1MiB or 100MB"

    // MARK: - Durations

    static func parseDuration(_ text: String) -> Result<Duration, ConfigValueError> {
        let scalars = Array(text.unicodeScalars)
        guard !scalars.isEmpty else { return .failure(ConfigValueError("empty duration: \(durationHint)")) }
        let invalid = ConfigValueError("invalid duration '\(text)': \(durationHint)")
        if scalars.allSatisfy(isDigit) {
            guard let seconds = Int64(text), seconds <= Int64.max / 1000 else { return .failure(invalid) }
            return .success(.seconds(seconds))
        }
        // Units from largest to smallest, with their size in milliseconds.
        let units: [(name: String, milliseconds: Int64)] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)]
        var index = 0
        var nextUnit = 0
        var total: Int64 = 0
        while index < scalars.count {
            var number: Int64 = 0
            let numberStart = index
            while index < scalars.count, isDigit(scalars[index]) {
                let (times10, overflow1) = number.multipliedReportingOverflow(by: 10)
                let (sum, overflow2) = times10.addingReportingOverflow(Int64(scalars[index].value - 48))
                guard !overflow1, !overflow2 else { return .failure(invalid) }
                number = sum
                index += 1
            }
            guard index > numberStart else { return .failure(invalid) }
            let unitStart = index
            while index < scalars.count, isLetter(scalars[index]) { index += 1 }
            let unit = String(String.UnicodeScalarView(scalars[unitStart..<index]))
            guard let position = units.firstIndex(where: { $0.name == unit }) else { return .failure(invalid) }
            guard position >= nextUnit else {
                return .failure(
                    ConfigValueError(
                        "invalid duration '\(text)': units must go from largest to smallest, each once (like 1h30m)"
                    )
                )
            }
            nextUnit = position + 1
            let (part, overflow1) = number.multipliedReportingOverflow(by: units[position].milliseconds)
            let (sum, overflow2) = total.addingReportingOverflow(part)
            guard !overflow1, !overflow2 else { return .failure(invalid) }
            total = sum
        }
        return .success(.milliseconds(total))
    }

    // MARK: - Sizes

    static func parseSize(_ text: String) -> Result<Int64, ConfigValueError> {
        let scalars = Array(text.unicodeScalars)
        guard !scalars.isEmpty else { return .failure(ConfigValueError("empty size: \(sizeHint)")) }
        let invalid = ConfigValueError("invalid size '\(text)': \(sizeHint)")
        var index = 0
        while index < scalars.count, isDigit(scalars[index]) { index += 1 }
        guard index > 0, let number = Int64(String(String.UnicodeScalarView(scalars[0..<index]))) else {
            return .failure(invalid)
        }
        if index < scalars.count, scalars[index] == " " { index += 1 }
        let unit = String(String.UnicodeScalarView(scalars[index...])).lowercased()
        let multipliers: [String: Int64] = [
            "": 1, "b": 1,
            "kb": 1_000, "mb": 1_000_000, "gb": 1_000_000_000, "tb": 1_000_000_000_000,
            "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
        ]
        guard let multiplier = multipliers[unit], !(unit.isEmpty && index < scalars.count) else {
            return .failure(invalid)
        }
        let (bytes, overflow) = number.multipliedReportingOverflow(by: multiplier)
        guard !overflow else { return .failure(ConfigValueError("size '\(text)' is too large")) }
        return .success(bytes)
    }

    // MARK: - host:port

    static func parseHostPort(_ text: String) -> Result<HostPort, ConfigValueError> {
        guard !text.isEmpty else { return .failure(ConfigValueError("empty address: expected host:port")) }
        let host: String
        let portText: String
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                return .failure(ConfigValueError("invalid address '\(text)': missing ']' after the IPv6 address"))
            }
            let inside = String(text[text.index(after: text.startIndex)..<close])
            guard inside.contains(":"), IPAddress.parse(inside) != nil else {
                return .failure(ConfigValueError("invalid address '\(text)': '\(inside)' is not an IPv6 address"))
            }
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else {
                return .failure(ConfigValueError("invalid address '\(text)': missing port (expected [IPv6]:port)"))
            }
            host = inside
            portText = String(rest.dropFirst())
        } else {
            let colons = text.filter { $0 == ":" }.count
            if colons == 0 {
                return .failure(ConfigValueError("invalid address '\(text)': missing port (expected host:port)"))
            }
            if colons > 1 {
                return .failure(
                    ConfigValueError("invalid address '\(text)': an IPv6 address needs brackets ([::1]:8443)")
                )
            }
            let colon = text.firstIndex(of: ":")!
            host = String(text[..<colon])
            portText = String(text[text.index(after: colon)...])
            guard !host.isEmpty else {
                return .failure(
                    ConfigValueError(
                        "invalid address '\(text)': missing host (use 0.0.0.0 or [::] for every interface)"
                    )
                )
            }
            guard IPAddress.parse(host) != nil || isHostName(host) else {
                return .failure(
                    ConfigValueError("invalid address '\(text)': '\(host)' is neither an IP address nor a host name")
                )
            }
        }
        guard let port = parsePort(portText) else {
            return .failure(
                ConfigValueError("invalid address '\(text)': port '\(portText)' is not a number from 1 to 65535")
            )
        }
        return .success(HostPort(host: host, port: port))
    }

    static func parsePort(_ text: String) -> Int? {
        guard !text.isEmpty, text.unicodeScalars.count <= 5, text.unicodeScalars.allSatisfy(isDigit),
            let port = Int(text), (1...65_535).contains(port)
        else { return nil }
        return port
    }

    /// Letters, digits, `-` and `_` in dot-separated non-empty labels (at most 253 characters).
    static func isHostName(_ text: String) -> Bool {
        guard !text.isEmpty, text.utf8.count <= 253 else { return false }
        let labels = text.split(separator: ".", omittingEmptySubsequences: false)
        return labels.allSatisfy { label in
            !label.isEmpty && label.utf8.count <= 63
                && label.unicodeScalars.allSatisfy { isDigit($0) || isLetter($0) || $0 == "-" || $0 == "_" }
        }
    }

    // MARK: - URLs

    struct URLParts {
        var scheme: String
        /// Lower-cased; IPv6 without brackets.
        var host: String
        var isIPv6: Bool
        var port: Int?
        /// Empty or starting with `/`.
        var path: String
        var hasQuery: Bool
        var hasFragment: Bool
    }

    /// Splits an absolute URL. Refuses what no URL in the policy file may carry (user info, a bad
    /// host or port); the callers check scheme, path, query and fragment for their use.
    static func parseURL(_ text: String) -> Result<URLParts, ConfigValueError> {
        guard let separator = text.firstRange(of: "://") else {
            return .failure(ConfigValueError("'\(text)' is not a URL (expected scheme://host[:port])"))
        }
        let scheme = text[..<separator.lowerBound].lowercased()
        guard let first = scheme.unicodeScalars.first, isLetter(first),
            scheme.unicodeScalars.allSatisfy({ isLetter($0) || isDigit($0) || "+-.".unicodeScalars.contains($0) })
        else {
            return .failure(ConfigValueError("'\(text)' is not a URL (expected scheme://host[:port])"))
        }
        var rest = Substring(text[separator.upperBound...])
        var hasFragment = false
        var hasQuery = false
        if let hash = rest.firstIndex(of: "#") {
            hasFragment = true
            rest = rest[..<hash]
        }
        if let question = rest.firstIndex(of: "?") {
            hasQuery = true
            rest = rest[..<question]
        }
        let pathStart = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<pathStart]
        let path = String(rest[pathStart...])
        if authority.contains("@") {
            // Never echo the authority: it may hold a password.
            return .failure(
                ConfigValueError("URL may not carry user info (user:password@); credentials never go in URLs")
            )
        }
        guard !authority.isEmpty else { return .failure(ConfigValueError("URL '\(text)' has no host")) }
        var host: String
        var isIPv6 = false
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                return .failure(ConfigValueError("URL '\(text)': missing ']' after the IPv6 address"))
            }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            guard host.contains(":"), IPAddress.parse(host) != nil else {
                return .failure(ConfigValueError("URL '\(text)': '\(host)' is not an IPv6 address"))
            }
            isIPv6 = true
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else {
                    return .failure(ConfigValueError("URL '\(text)': unexpected '\(after)' after the IPv6 address"))
                }
                portText = after.dropFirst()
            }
        } else {
            let colons = authority.filter { $0 == ":" }.count
            if colons > 1 {
                return .failure(ConfigValueError("URL '\(text)': an IPv6 address needs brackets (http://[::1]:8080)"))
            }
            if let colon = authority.firstIndex(of: ":") {
                host = String(authority[..<colon])
                portText = authority[authority.index(after: colon)...]
            } else {
                host = String(authority)
            }
            guard !host.isEmpty else { return .failure(ConfigValueError("URL '\(text)' has no host")) }
            guard IPAddress.parse(host) != nil || isHostName(host) else {
                return .failure(ConfigValueError("URL '\(text)': '\(host)' is not a valid host name"))
            }
        }
        host = host.lowercased()
        var port: Int?
        if let portText {
            guard let parsed = parsePort(String(portText)) else {
                return .failure(ConfigValueError("URL '\(text)': port '\(portText)' is not a number from 1 to 65535"))
            }
            port = parsed
        }
        return .success(
            URLParts(
                scheme: scheme,
                host: host,
                isIPv6: isIPv6,
                port: port,
                path: path,
                hasQuery: hasQuery,
                hasFragment: hasFragment
            )
        )
    }

    /// An upstream endpoint: `http(s)://host[:port][/]`, nothing else.
    static func parseUpstreamURL(
        _ text: String
    ) -> Result<(scheme: UpstreamScheme, endpoint: HostPort), ConfigValueError> {
        let parts: URLParts
        switch parseURL(text) {
        case .failure(let error): return .failure(ConfigValueError("upstream " + error.message))
        case .success(let value): parts = value
        }
        guard let scheme = UpstreamScheme(rawValue: parts.scheme) else {
            return .failure(
                ConfigValueError("upstream URL scheme '\(parts.scheme)' is not supported (use http or https)")
            )
        }
        if parts.hasQuery { return .failure(ConfigValueError("upstream URL may not carry a query")) }
        if parts.hasFragment { return .failure(ConfigValueError("upstream URL may not carry a fragment")) }
        if !(parts.path.isEmpty || parts.path == "/") {
            return .failure(ConfigValueError("upstream URL may not carry a path ('\(parts.path)'); use prefix_rewrite"))
        }
        let port = parts.port ?? (scheme == .https ? 443 : 80)
        return .success((scheme, HostPort(host: parts.host, port: port)))
    }

    static let loopbackHosts: Set<String> = ["127.0.0.1", "::1", "localhost"]

    /// An issuer or JWKS URL: https, or http for a loopback host only; no user info, no fragment.
    static func parseIdentityURL(_ text: String, allowQuery: Bool) -> Result<URLParts, ConfigValueError> {
        let parts: URLParts
        switch parseURL(text) {
        case .failure(let error): return .failure(error)
        case .success(let value): parts = value
        }
        switch parts.scheme {
        case "https": break
        case "http":
            guard loopbackHosts.contains(parts.host) else {
                return .failure(
                    ConfigValueError("'\(text)' must use https (http is allowed only for 127.0.0.1, ::1 and localhost)")
                )
            }
        default:
            return .failure(ConfigValueError("URL scheme '\(parts.scheme)' is not supported (use https)"))
        }
        if parts.hasFragment { return .failure(ConfigValueError("'\(text)' may not carry a fragment")) }
        if parts.hasQuery && !allowQuery { return .failure(ConfigValueError("'\(text)' may not carry a query")) }
        return .success(parts)
    }

    // MARK: - Names and tokens

    /// `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`
    static func isValidName(_ text: String) -> Bool {
        let scalars = Array(text.unicodeScalars)
        guard let first = scalars.first, scalars.count <= 64, isDigit(first) || isLetter(first) else { return false }
        return scalars.allSatisfy { isDigit($0) || isLetter($0) || $0 == "." || $0 == "_" || $0 == "-" }
    }

    /// An HTTP token (RFC 9110 `tchar`s).
    static func isToken(_ text: String) -> Bool {
        !text.isEmpty
            && text.unicodeScalars.allSatisfy {
                isDigit($0) || isLetter($0) || "!#$%&'*+-.^_`|~".unicodeScalars.contains($0)
            }
    }

    static func isDigit(_ scalar: Unicode.Scalar) -> Bool { ("0"..."9").contains(scalar) }
    static func isLetter(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar)
    }

    // MARK: - Suggestions

    /// The candidate closest to `word` by edit distance (adjacent transpositions count once), if close enough
    /// to be a likely typo.
    static func suggestion(for word: String, among candidates: [String]) -> String? {
        let limit = word.count <= 4 ? 1 : (word.count <= 8 ? 2 : 3)
        var best: (candidate: String, distance: Int)?
        for candidate in candidates {
            let distance = editDistance(word.lowercased(), candidate.lowercased())
            if distance <= limit, distance < (best?.distance ?? Int.max) { best = (candidate, distance) }
        }
        if let best { return best.candidate }
        // A shortened or lengthened key (`shutdown_grace` for `shutdown_grace_period`).
        let lowered = word.lowercased()
        guard lowered.count >= 4 else { return nil }
        return candidates.first { candidate in
            let other = candidate.lowercased()
            return other.count >= 4 && (other.hasPrefix(lowered) || lowered.hasPrefix(other))
        }
    }

    /// Optimal string alignment distance.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.unicodeScalars)
        let b = Array(b.unicodeScalars)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var table = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { table[i][0] = i }
        for j in 0...b.count { table[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                var value = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    value = min(value, table[i - 2][j - 2] + 1)
                }
                table[i][j] = value
            }
        }
        return table[a.count][b.count]
    }

    // MARK: - File paths

    /// `path` made absolute against `base` (itself made absolute against `currentDirectory`), with `.`
    /// and `..` segments and repeated slashes removed.
    static func absolutePath(_ path: String, base: String, currentDirectory: String) -> String {
        var full = path
        if !full.hasPrefix("/") {
            var directory = base.isEmpty ? currentDirectory : base
            if !directory.hasPrefix("/") { directory = currentDirectory + "/" + directory }
            full = directory + "/" + path
        }
        var segments: [Substring] = []
        for segment in full.split(separator: "/", omittingEmptySubsequences: true) {
            switch segment {
            case ".": continue
            case "..": if !segments.isEmpty { segments.removeLast() }
            default: segments.append(segment)
            }
        }
        return "/" + segments.joined(separator: "/")
    }
}
