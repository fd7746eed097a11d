// Strict base64url (RFC 4648 section 5) as JWS uses it (RFC 7515 section 2): the URL-safe
// alphabet only, no padding, no whitespace, and canonical trailing bits, so that one byte string
// has exactly one encoding and a token can not be altered without changing its bytes.

enum Base64URL {
    private static let alphabet: [UInt8] = Array(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8
    )

    /// The 6-bit value of an alphabet byte, or 0xFF for any other byte.
    @inline(__always)
    static func value(_ byte: UInt8) -> UInt8 {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): return byte &- UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): return byte &- UInt8(ascii: "a") &+ 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte &- UInt8(ascii: "0") &+ 52
        case UInt8(ascii: "-"): return 62
        case UInt8(ascii: "_"): return 63
        default: return 0xFF
        }
    }

    /// True when `byte` belongs to the base64url alphabet.
    @inline(__always)
    static func isAlphabet(_ byte: UInt8) -> Bool { value(byte) != 0xFF }

    /// ``value(_:)`` for every byte: the decoder looks bytes up here instead of branching on ranges
    /// (a token's characters are random, so range branches mispredict).
    private static let values: [UInt8] = (0..<256).map { value(UInt8($0)) }

    /// Decodes unpadded base64url. Returns nil for any byte outside the alphabet (`=`, `+`, `/`,
    /// whitespace, ...), for a length that no byte string encodes to (4n+1), and for non-zero
    /// trailing bits (a non-canonical encoding).
    static func decode(_ input: some Collection<UInt8>) -> [UInt8]? {
        if let result = input.withContiguousStorageIfAvailable({ decode(buffer: $0) }) { return result }
        return Array(input).withUnsafeBufferPointer { decode(buffer: $0) }
    }

    static func decode(_ string: some StringProtocol) -> [UInt8]? {
        decode(Array(string.utf8))
    }

    static func decode(buffer input: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        let count = input.count
        if count % 4 == 1 { return nil }
        var valid = true
        let output = Self.values.withUnsafeBufferPointer { table in
            [UInt8](unsafeUninitializedCapacity: count * 3 / 4) { output, initialized in
                @inline(__always) func value(_ byte: UInt8) -> UInt8 { table[Int(byte)] }
                var i = 0
                var o = 0
                while i + 4 <= count {
                    let a = value(input[i])
                    let b = value(input[i + 1])
                    let c = value(input[i + 2])
                    let d = value(input[i + 3])
                    if (a | b | c | d) & 0x80 != 0 {
                        valid = false
                        break
                    }
                    let group = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
                    output[o] = UInt8(truncatingIfNeeded: group >> 16)
                    output[o + 1] = UInt8(truncatingIfNeeded: group >> 8)
                    output[o + 2] = UInt8(truncatingIfNeeded: group)
                    i += 4
                    o += 3
                }
                if valid, i < count {
                    // A final group of 2 or 3 characters; its unused low bits must be zero.
                    let a = value(input[i])
                    let b = value(input[i + 1])
                    let c = count - i == 3 ? value(input[i + 2]) : 0
                    if (a | b | c) & 0x80 != 0 {
                        valid = false
                    } else if count - i == 2 {
                        valid = b & 0x0F == 0
                        output[o] = a << 2 | b >> 4
                        o += 1
                    } else {
                        valid = c & 0x03 == 0
                        output[o] = a << 2 | b >> 4
                        output[o + 1] = (b & 0x0F) << 4 | c >> 2
                        o += 2
                    }
                }
                initialized = valid ? o : 0
            }
        }
        return valid ? output : nil
    }

    /// Encodes without padding.
    static func encode(_ bytes: some Collection<UInt8>) -> String {
        var output = [UInt8]()
        output.reserveCapacity((bytes.count * 4 + 2) / 3)
        var accumulator: UInt32 = 0
        var bits = 0
        for byte in bytes {
            accumulator = (accumulator << 8) | UInt32(byte)
            bits += 8
            while bits >= 6 {
                bits -= 6
                output.append(alphabet[Int((accumulator >> UInt32(bits)) & 0x3F)])
            }
            accumulator &= (1 << UInt32(bits)) - 1
        }
        if bits > 0 {
            output.append(alphabet[Int((accumulator << UInt32(6 - bits)) & 0x3F)])
        }
        return String(decoding: output, as: UTF8.self)
    }
}
