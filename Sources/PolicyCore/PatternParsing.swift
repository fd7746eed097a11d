import ProxyModel

// Parsing, matching and printing of route host and path patterns. Parsing happens once, at config
// load; matching is on the request path and allocates nothing.

func _parseHostPattern(_ text: String) -> Result<HostPattern, PatternError> {
    guard !text.isEmpty else { return .failure(PatternError("host pattern is empty")) }
    if text == "*" {
        return .failure(
            PatternError("host pattern \"*\" is not allowed: leave out the host to match every host")
        )
    }

    var name = Substring(text)
    var isWildcard = false
    if text.hasPrefix("*.") {
        isWildcard = true
        name = name.dropFirst(2)
    }
    if name.contains("*") {
        return .failure(
            PatternError(
                "host pattern \"\(text)\": \"*\" is only allowed as the whole first label (\"*.example.com\")"
            )
        )
    }
    if name.hasPrefix("[") {
        if isWildcard {
            return .failure(PatternError("host pattern \"\(text)\": a wildcard can not cover an IP literal"))
        }
        if !name.hasSuffix("]") {
            return .failure(PatternError("host pattern \"\(text)\" must not contain a port"))
        }
    } else if name.contains(":") {
        return .failure(PatternError("host pattern \"\(text)\" must not contain a port"))
    }
    guard !name.isEmpty, !name.hasPrefix("."), !name.contains("..") else {
        return .failure(PatternError("host pattern \"\(text)\" has an empty label"))
    }
    switch HostNormalizer.normalize(String(name)) {
    case .failure:
        return .failure(
            PatternError(
                "host pattern \"\(text)\" is not a valid host name (letters, digits, \"-\", \"_\" and \".\" only)"
            )
        )
    case .success(let normalized):
        return .success(isWildcard ? .wildcard(suffix: "." + normalized) : .exact(normalized))
    }
}

func _describeHostPattern(_ pattern: HostPattern) -> String {
    switch pattern {
    case .any: return "*"
    case .exact(let host): return host
    case .wildcard(let suffix): return "*" + suffix
    }
}

func _parsePathPattern(_ text: String) -> Result<PathPattern, PatternError> {
    guard text.utf8.first == UInt8(ascii: "/") else {
        return .failure(PatternError("path pattern \"\(text)\" must start with \"/\""))
    }
    let isPrefix = text.hasSuffix("/*")
    let base = isPrefix ? String(text.dropLast(2)) : text
    if base.contains("*") {
        return .failure(
            PatternError("path pattern \"\(text)\": \"*\" is only allowed as a final \"/*\" (\"/admin/*\")")
        )
    }
    if isPrefix && base.isEmpty { return .success(.prefix("")) }

    switch PathNormalizer.normalizePath(base) {
    case .failure(let reason):
        return .failure(PatternError("path pattern \"\(text)\" is not a valid path (\(reason.code))"))
    case .success(let normalized):
        if isPrefix && normalized.hasSuffix("/") {
            // `/admin//*` or `/admin/./*`: the prefix would be `/admin/`, which matches only `/admin/`.
            var suggestion = Substring(normalized)
            while suggestion.hasSuffix("/") { suggestion = suggestion.dropLast() }
            return .failure(
                PatternError(
                    "path pattern must be normalized (did you mean \"\(suggestion)/*\" instead of \"\(text)\"?)"
                )
            )
        }
        guard normalized == base else {
            let suggestion = isPrefix ? normalized + "/*" : normalized
            return .failure(
                PatternError(
                    "path pattern must be normalized (did you mean \"\(suggestion)\" instead of \"\(text)\"?)"
                )
            )
        }
        return .success(isPrefix ? .prefix(base) : .exact(base))
    }
}

func _pathPatternMatches(_ pattern: PathPattern, _ path: String) -> Bool {
    PathMatching.matches(pattern, Substring(path))
}

func _describePathPattern(_ pattern: PathPattern) -> String {
    switch pattern {
    case .exact(let path): return path
    case .prefix(let prefix): return prefix + "/*"
    }
}

enum PathMatching {
    /// `path` is compared byte for byte (both sides are normalized).
    static func matches(_ pattern: PathPattern, _ path: Substring) -> Bool {
        switch pattern {
        case .exact(let exact):
            return path.utf8.elementsEqual(exact.utf8)
        case .prefix(let prefix):
            return self.isUnder(path, prefix: prefix)
        }
    }

    /// `path == prefix`, or `path` continues `prefix` with a `/`. The empty prefix covers everything.
    static func isUnder(_ path: Substring, prefix: String) -> Bool {
        let pathBytes = path.utf8
        let prefixBytes = prefix.utf8
        guard pathBytes.starts(with: prefixBytes) else { return false }
        let rest = pathBytes.dropFirst(prefixBytes.count)
        return rest.isEmpty || prefixBytes.isEmpty || rest.first == UInt8(ascii: "/")
    }
}
