// Request-target and path normalization (DESIGN.md "Normalization").
//
// Two passes over the UTF-8 bytes:
// 1. a validating scan of the raw bytes that also notes whether any rewriting is needed
//    (an escape, `//`, or a `.`/`..` segment). Most paths need none and are returned as they came,
//    without allocating.
// 2. only when needed: decode escapes segment by segment into one output buffer and resolve
//    dot-segments as each segment completes.
//
// Errors in the raw bytes (pass 1) are reported before errors found while decoding (pass 2).

func _normalizeTarget(_ target: String) -> Result<RequestTarget, ReasonCode> {
    target.withUTF8Bytes { TargetNormalization.normalizeTarget($0, original: target) }
}

func _normalizePath(_ path: String) -> Result<String, ReasonCode> {
    path.withUTF8Bytes { bytes in
        guard bytes.first == ASCIIBytes.slash else { return .failure(.unsupportedTargetForm) }
        switch TargetNormalization.normalizePath(bytes) {
        case .success(nil): return .success(path)
        case .success(let rewritten?): return .success(rewritten)
        case .failure(let reason): return .failure(reason)
        }
    }
}

enum TargetNormalization {
    static func normalizeTarget(
        _ bytes: UnsafeBufferPointer<UInt8>,
        original: String
    ) -> Result<RequestTarget, ReasonCode> {
        guard !bytes.isEmpty else { return .failure(.unsupportedTargetForm) }

        // `#` anywhere (path or query) is a fragment, which a client must never send.
        var questionMark: Int? = nil
        for index in bytes.indices {
            let byte = bytes[index]
            if byte == ASCIIBytes.hash { return .failure(.pathFragment) }
            if byte == ASCIIBytes.question && questionMark == nil { questionMark = index }
        }
        let pathEnd = questionMark ?? bytes.count

        var query: String? = nil
        if let questionMark {
            let queryBytes = UnsafeBufferPointer(rebasing: bytes[(questionMark + 1)...])
            for byte in queryBytes where byte < 0x21 || byte >= 0x7F {
                return .failure(.queryInvalidCharacter)
            }
            query = String(decoding: queryBytes, as: UTF8.self)
        }

        if bytes[0] == ASCIIBytes.slash {
            // origin-form
            switch normalizePath(UnsafeBufferPointer(rebasing: bytes[..<pathEnd])) {
            case .failure(let reason):
                return .failure(reason)
            case .success(let rewritten?):
                return .success(RequestTarget(path: rewritten, query: query))
            case .success(nil):
                if questionMark == nil { return .success(RequestTarget(path: original)) }
                let path = String(decoding: UnsafeBufferPointer(rebasing: bytes[..<pathEnd]), as: UTF8.self)
                return .success(RequestTarget(path: path, query: query))
            }
        }

        // absolute-form: `http://` or `https://`, case-insensitive
        let authorityStart: Int
        if ASCIIBytes.hasLowercasePrefix(bytes, "http://") {
            authorityStart = 7
        } else if ASCIIBytes.hasLowercasePrefix(bytes, "https://") {
            authorityStart = 8
        } else {
            // `*`, authority-form (`host:port`), relative references, other schemes.
            return .failure(.unsupportedTargetForm)
        }
        var authorityEnd = authorityStart
        while authorityEnd < pathEnd && bytes[authorityEnd] != ASCIIBytes.slash { authorityEnd += 1 }
        let authorityBytes = UnsafeBufferPointer(rebasing: bytes[authorityStart..<authorityEnd])
        guard !authorityBytes.isEmpty, !authorityBytes.contains(ASCIIBytes.at) else {
            return .failure(.hostInvalid)
        }
        let authority = String(decoding: authorityBytes, as: UTF8.self)
        // The authority is kept as sent, but it must be a host the Host normalizer accepts.
        guard case .success = HostNormalization.normalize(authorityBytes, original: authority) else {
            return .failure(.hostInvalid)
        }

        let path: String
        if authorityEnd == pathEnd {
            path = "/"
        } else {
            let pathBytes = UnsafeBufferPointer(rebasing: bytes[authorityEnd..<pathEnd])
            switch normalizePath(pathBytes) {
            case .failure(let reason): return .failure(reason)
            case .success(let rewritten?): path = rewritten
            case .success(nil): path = String(decoding: pathBytes, as: UTF8.self)
            }
        }
        return .success(RequestTarget(authority: authority, path: path, query: query))
    }

    /// Normalizes a path that starts with `/` (checked by the callers).
    /// Returns `.success(nil)` when the path is already normalized.
    static func normalizePath(_ bytes: UnsafeBufferPointer<UInt8>) -> Result<String?, ReasonCode> {
        switch self.scanRaw(bytes) {
        case .failure(let reason): return .failure(reason)
        case .success(false): return .success(nil)
        case .success(true): break
        }
        return self.rewrite(bytes).map { Optional($0) }
    }

    /// Pass 1: validates every raw byte; true when the path needs rewriting.
    private static func scanRaw(_ bytes: UnsafeBufferPointer<UInt8>) -> Result<Bool, ReasonCode> {
        var needsRewrite = false
        var segmentStart = 0
        var previous: UInt8 = 0
        for index in bytes.indices {
            let byte = bytes[index]
            switch byte {
            case ASCIIBytes.slash:
                if previous == ASCIIBytes.slash || self.isDotSegment(bytes, segmentStart, index) {
                    needsRewrite = true
                }
                segmentStart = index + 1
            case ASCIIBytes.percent:
                needsRewrite = true
            case 0x41...0x5A, 0x61...0x7A, 0x30...0x39,
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"),
                UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"),
                UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "*"), UInt8(ascii: "+"),
                UInt8(ascii: ","), UInt8(ascii: "="), UInt8(ascii: ":"), UInt8(ascii: "@"):
                break
            case 0x80...:
                return .failure(.pathNonASCII)
            case 0..<0x20, 0x7F:
                return .failure(.pathControlCharacter)
            case ASCIIBytes.backslash:
                return .failure(.pathBackslash)
            case ASCIIBytes.semicolon:
                return .failure(.pathParameter)
            case ASCIIBytes.hash:
                return .failure(.pathFragment)
            default:
                // space " < > [ ] ^ ` { | } ?
                return .failure(.pathInvalidCharacter)
            }
            previous = byte
        }
        if self.isDotSegment(bytes, segmentStart, bytes.count) { needsRewrite = true }
        return .success(needsRewrite)
    }

    @inline(__always)
    private static func isDotSegment(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Bool {
        switch end - start {
        case 1: return bytes[start] == ASCIIBytes.dot
        case 2: return bytes[start] == ASCIIBytes.dot && bytes[start + 1] == ASCIIBytes.dot
        default: return false
        }
    }

    /// Pass 2: decodes escapes and resolves empty and dot segments. The raw bytes are already valid.
    private static func rewrite(_ bytes: UnsafeBufferPointer<UInt8>) -> Result<String, ReasonCode> {
        // `out` holds the resolved segments so far, each preceded by `/` (empty for the root).
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var trailingSlash = false
        var index = 0
        let count = bytes.count

        while index < count {
            // bytes[index] is a `/`: start a segment.
            index += 1
            let segmentStart = out.count
            out.append(ASCIIBytes.slash)

            // UTF-8 validation of consecutive encoded bytes >= 0x80.
            var pendingContinuations = 0
            var continuationLow: UInt8 = 0x80
            var continuationHigh: UInt8 = 0xBF

            while index < count && bytes[index] != ASCIIBytes.slash {
                let byte = bytes[index]
                guard byte == ASCIIBytes.percent else {
                    if pendingContinuations > 0 { return .failure(.pathInvalidUTF8) }
                    out.append(byte)
                    index += 1
                    continue
                }
                guard index + 2 < count,
                    let high = ASCIIBytes.hexValue(bytes[index + 1]),
                    let low = ASCIIBytes.hexValue(bytes[index + 2])
                else {
                    return .failure(.pathMalformedEscape)
                }
                index += 3
                let value = high << 4 | low

                if pendingContinuations > 0 {
                    guard value >= continuationLow && value <= continuationHigh else {
                        return .failure(.pathInvalidUTF8)
                    }
                    pendingContinuations -= 1
                    continuationLow = 0x80
                    continuationHigh = 0xBF
                    self.appendEscape(value, to: &out)
                    continue
                }

                switch value {
                case ASCIIBytes.slash:
                    return .failure(.pathEncodedSlash)
                case ASCIIBytes.backslash:
                    return .failure(.pathBackslash)
                case 0..<0x20, 0x7F:
                    return .failure(.pathControlCharacter)
                case 0x80...:
                    // A UTF-8 lead byte; the ranges for the first continuation byte rule out
                    // overlong forms, surrogates and values above U+10FFFF.
                    switch value {
                    case 0xC2...0xDF:
                        pendingContinuations = 1
                    case 0xE0:
                        pendingContinuations = 2
                        continuationLow = 0xA0
                    case 0xE1...0xEC, 0xEE...0xEF:
                        pendingContinuations = 2
                    case 0xED:
                        pendingContinuations = 2
                        continuationHigh = 0x9F
                    case 0xF0:
                        pendingContinuations = 3
                        continuationLow = 0x90
                    case 0xF1...0xF3:
                        pendingContinuations = 3
                    case 0xF4:
                        pendingContinuations = 3
                        continuationHigh = 0x8F
                    default:
                        // stray continuation byte, C0/C1, F5-FF
                        return .failure(.pathInvalidUTF8)
                    }
                    self.appendEscape(value, to: &out)
                default:
                    if ASCIIBytes.isUnreserved(value) {
                        out.append(value)
                    } else {
                        self.appendEscape(value, to: &out)
                    }
                }
            }
            if pendingContinuations > 0 { return .failure(.pathInvalidUTF8) }

            // Resolve the segment just written (after decoding, so `%2e%2e` is `..`).
            let segmentLength = out.count - segmentStart - 1
            if segmentLength == 0 {
                out.removeLast()
                trailingSlash = true
            } else if segmentLength == 1 && out[segmentStart + 1] == ASCIIBytes.dot {
                out.removeLast(2)
                trailingSlash = true
            } else if segmentLength == 2 && out[segmentStart + 1] == ASCIIBytes.dot
                && out[segmentStart + 2] == ASCIIBytes.dot
            {
                out.removeLast(3)
                guard let previousStart = out.lastIndex(of: ASCIIBytes.slash) else {
                    return .failure(.pathAboveRoot)
                }
                out.removeSubrange(previousStart...)
                trailingSlash = true
            } else {
                trailingSlash = false
            }
        }

        if out.isEmpty { return .success("/") }
        if trailingSlash { out.append(ASCIIBytes.slash) }
        return .success(String(decoding: out, as: UTF8.self))
    }

    @inline(__always)
    private static func appendEscape(_ value: UInt8, to out: inout [UInt8]) {
        out.append(ASCIIBytes.percent)
        out.append(ASCIIBytes.upperHexDigit(value >> 4))
        out.append(ASCIIBytes.upperHexDigit(value & 0x0F))
    }
}
