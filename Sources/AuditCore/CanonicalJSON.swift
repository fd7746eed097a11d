public import ProxyModel

/// RFC 8785 (JSON Canonicalization Scheme) serialization: object members sorted by the UTF-16 code units of
/// their names, no white space, strings with the minimal escapes, numbers as ECMAScript writes doubles.
/// The audit chain hashes these bytes, so that any party can recompute a hash from a parsed event.
public enum CanonicalJSON {
    public static func encode(_ value: JSONValue) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(512)
        self.write(value, to: &out)
        return out
    }

    public static func write(_ value: JSONValue, to out: inout [UInt8]) {
        switch value {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .integer(let i): self.writeInteger(i, to: &out)
        case .number(let d): self.writeNumber(d, to: &out)
        case .string(let s): self.writeString(s, to: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                self.write(item, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            var first = true
            for key in self.sortedKeys(members.keys) {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                self.writeString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                self.write(members[key]!, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// Member names in RFC 8785 order (UTF-16 code units; for ASCII names the same as byte order).
    public static func sortedKeys(_ keys: some Sequence<String>) -> [String] {
        keys.sorted { lhs, rhs in lhs.utf16.lexicographicallyPrecedes(rhs.utf16) }
    }

    public static func writeString(_ string: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var utf8 = string.utf8
        if utf8.withContiguousStorageIfAvailable({ Self.appendEscaped($0, to: &out) }) == nil {
            var copy = string
            copy.makeContiguousUTF8()
            utf8 = copy.utf8
            utf8.withContiguousStorageIfAvailable { Self.appendEscaped($0, to: &out) }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Runs that need no escape are appended whole.
    private static func appendEscaped(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        var runStart = 0
        for index in 0..<bytes.count {
            let byte = bytes[index]
            guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
            if runStart < index { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<index])) }
            runStart = index + 1
            out.append(UInt8(ascii: "\\"))
            switch byte {
            case UInt8(ascii: "\""): out.append(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
            case 0x08: out.append(UInt8(ascii: "b"))
            case 0x09: out.append(UInt8(ascii: "t"))
            case 0x0A: out.append(UInt8(ascii: "n"))
            case 0x0C: out.append(UInt8(ascii: "f"))
            case 0x0D: out.append(UInt8(ascii: "r"))
            default:
                out.append(UInt8(ascii: "u"))
                out.append(48)
                out.append(48)
                out.append(self.hexDigit(byte >> 4))
                out.append(self.hexDigit(byte & 0xF))
            }
        }
        if runStart < bytes.count { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart...])) }
    }

    @inline(__always)
    static func hexDigit(_ nibble: UInt8) -> UInt8 { nibble < 10 ? 48 + nibble : 87 + nibble }

    public static func writeInteger(_ value: Int64, to out: inout [UInt8]) {
        // JSON numbers are IEEE doubles in RFC 8785: integers beyond 2^53 are written as their double.
        if value.magnitude > (1 << 53) {
            self.writeNumber(Double(value), to: &out)
        } else {
            self.appendDecimal(value, to: &out)
        }
    }

    /// Decimal digits without making a String.
    /// The digits go into a small stack buffer and are appended once: reversing them in place (`out[start...]
    /// .reverse()`) made the slice copy the whole output array at every number.
    static func appendDecimal(_ value: Int64, to out: inout [UInt8]) {
        if value < 0 { out.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var index = 20  // UInt64.max has 20 digits
            repeat {
                index -= 1
                digits[index] = UInt8(48 + magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            out.append(contentsOf: UnsafeBufferPointer(rebasing: digits[index...]))
        }
    }

    /// ECMAScript Number.prototype.toString (ES2015 7.1.12.1) from the shortest round-trip digits.
    public static func writeNumber(_ value: Double, to out: inout [UInt8]) {
        guard value.isFinite else {
            out.append(contentsOf: "null".utf8)  // RFC 8785 forbids NaN and infinities; never produced by us
            return
        }
        if value == 0 {
            out.append(UInt8(ascii: "0"))
            return
        }
        if value < 0 { out.append(UInt8(ascii: "-")) }
        // Swift's description is the shortest round-trip representation; take its digits and exponent.
        let text = Array(value.magnitude.description.utf8)
        var digits = [UInt8]()
        var pointIndex: Int?
        var exponent = 0
        var i = 0
        while i < text.count {
            let c = text[i]
            if c == UInt8(ascii: ".") {
                pointIndex = digits.count
            } else if c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
                exponent = Int(String(decoding: text[(i + 1)...], as: UTF8.self)) ?? 0
                break
            } else {
                digits.append(c)
            }
            i += 1
        }
        // value = 0.d1d2... × 10^n with n = (digits before the point) + exponent
        var n = (pointIndex ?? digits.count) + exponent
        while let first = digits.first, first == UInt8(ascii: "0") {
            digits.removeFirst()
            n -= 1
        }
        while let last = digits.last, last == UInt8(ascii: "0") { digits.removeLast() }
        let k = digits.count
        if k <= n && n <= 21 {
            out.append(contentsOf: digits)
            out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: n - k))
        } else if 0 < n && n <= 21 {
            out.append(contentsOf: digits[0..<n])
            out.append(UInt8(ascii: "."))
            out.append(contentsOf: digits[n...])
        } else if -6 < n && n <= 0 {
            out.append(contentsOf: "0.".utf8)
            out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: -n))
            out.append(contentsOf: digits)
        } else {
            out.append(digits[0])
            if k > 1 {
                out.append(UInt8(ascii: "."))
                out.append(contentsOf: digits[1...])
            }
            out.append(UInt8(ascii: "e"))
            out.append(UInt8(ascii: n - 1 >= 0 ? "+" : "-"))
            out.append(contentsOf: String(abs(n - 1)).utf8)
        }
    }
}
