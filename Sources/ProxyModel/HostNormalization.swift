// Host header normalization: lowercase, port and one trailing dot removed, strict character set.

func _normalizeHost(_ host: String) -> Result<String, ReasonCode> {
    host.withUTF8Bytes { HostNormalization.normalize($0, original: host) }
}

enum HostNormalization {
    /// `original` is returned unchanged (no allocation) when it is already normalized.
    static func normalize(_ bytes: UnsafeBufferPointer<UInt8>, original: String) -> Result<String, ReasonCode> {
        guard !bytes.isEmpty else { return .failure(.hostInvalid) }
        if bytes[0] == ASCIIBytes.openBracket {
            return self.normalizeIPLiteral(bytes, original: original)
        }

        var end = bytes.count
        if let colon = bytes.firstIndex(of: ASCIIBytes.colon) {
            guard self.isValidPort(UnsafeBufferPointer(rebasing: bytes[(colon + 1)...])) else {
                return .failure(.hostInvalid)
            }
            end = colon
        }
        if end > 0 && bytes[end - 1] == ASCIIBytes.dot { end -= 1 }
        guard end > 0 else { return .failure(.hostInvalid) }

        var hasUpper = false
        var previous = ASCIIBytes.dot  // so that a leading dot counts as an empty label
        for index in 0..<end {
            let byte = bytes[index]
            switch byte {
            case 0x61...0x7A, 0x30...0x39, UInt8(ascii: "-"), UInt8(ascii: "_"):
                break
            case 0x41...0x5A:
                hasUpper = true
            case ASCIIBytes.dot:
                if previous == ASCIIBytes.dot { return .failure(.hostInvalid) }
            default:
                return .failure(.hostInvalid)
            }
            previous = byte
        }
        // A second trailing dot is an empty label.
        if previous == ASCIIBytes.dot { return .failure(.hostInvalid) }

        if end == bytes.count && !hasUpper { return .success(original) }
        return .success(self.lowercased(UnsafeBufferPointer(rebasing: bytes[..<end])))
    }

    /// `[v6]` or `[v6]:port`; the bracketed text must be an IPv6 address (kept as written, lower-cased).
    private static func normalizeIPLiteral(
        _ bytes: UnsafeBufferPointer<UInt8>,
        original: String
    ) -> Result<String, ReasonCode> {
        guard let close = bytes.firstIndex(of: ASCIIBytes.closeBracket), close > 1 else {
            return .failure(.hostInvalid)
        }
        let afterClose = close + 1
        if afterClose < bytes.count {
            guard bytes[afterClose] == ASCIIBytes.colon,
                self.isValidPort(UnsafeBufferPointer(rebasing: bytes[(afterClose + 1)...]))
            else {
                return .failure(.hostInvalid)
            }
        }
        let content = UnsafeBufferPointer(rebasing: bytes[1..<close])
        var hasUpper = false
        for byte in content {
            switch byte {
            case 0x30...0x39, 0x61...0x66, ASCIIBytes.colon, ASCIIBytes.dot: break
            case 0x41...0x46: hasUpper = true
            default: return .failure(.hostInvalid)
            }
        }
        guard content.contains(ASCIIBytes.colon), IPAddressParsing.parseIPv6(content) != nil else {
            return .failure(.hostInvalid)
        }
        if afterClose == bytes.count && !hasUpper { return .success(original) }
        return .success(self.lowercased(UnsafeBufferPointer(rebasing: bytes[...close])))
    }

    /// ASCII bytes lower-cased into a String in one pass (no lazy sequence, which `String(decoding:)`
    /// can only copy byte by byte through a dynamic cast).
    private static func lowercased(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
        String(unsafeUninitializedCapacity: bytes.count) { output in
            for index in bytes.indices { output[index] = ASCIIBytes.lowercased(bytes[index]) }
            return bytes.count
        }
    }

    /// Decimal 1-65535, digits only (at most five of them).
    static func isValidPort(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard !bytes.isEmpty, bytes.count <= 5 else { return false }
        var value = 0
        for byte in bytes {
            guard ASCIIBytes.isDigit(byte) else { return false }
            value = value * 10 + Int(byte &- 0x30)
        }
        return value >= 1 && value <= 65535
    }
}
