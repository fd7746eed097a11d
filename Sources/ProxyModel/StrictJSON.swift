/// Why ``StrictJSON`` refused a document. `Hashable` on the code only, so tests can compare
/// against `StrictJSONError.Code` values; `offset` says where (a byte offset into the input).
public struct StrictJSONError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case tooLarge = "document too large"
            case tooDeep = "nesting too deep"
            case unexpectedEnd = "unexpected end of input"
            case unexpectedByte = "unexpected byte"
            case trailingData = "trailing data after the value"
            case invalidNumber = "invalid number"
            case numberOutOfRange = "number out of range"
            case invalidString = "invalid string"
            case invalidEscape = "invalid escape"
            case loneSurrogate = "lone surrogate escape"
            case invalidUTF8 = "invalid UTF-8"
            case duplicateKey = "duplicate object key"
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The input is longer than the limit.
        public static let tooLarge = Code(.tooLarge)
        /// Arrays and objects nest deeper than the limit.
        public static let tooDeep = Code(.tooDeep)
        public static let unexpectedEnd = Code(.unexpectedEnd)
        /// A byte that can not start or continue a value here (including `NaN`, `Infinity`, comments,
        /// single quotes, trailing commas and a byte order mark).
        public static let unexpectedByte = Code(.unexpectedByte)
        public static let trailingData = Code(.trailingData)
        /// Leading zeros, a bare `-`, `1.`, `.5`, `1e` and friends.
        public static let invalidNumber = Code(.invalidNumber)
        /// A number too large for a Double (it would become infinity).
        public static let numberOutOfRange = Code(.numberOutOfRange)
        /// An unescaped control character inside a string.
        public static let invalidString = Code(.invalidString)
        public static let invalidEscape = Code(.invalidEscape)
        /// `\uD800` without its low half, or a low half alone.
        public static let loneSurrogate = Code(.loneSurrogate)
        public static let invalidUTF8 = Code(.invalidUTF8)
        /// The same key twice in one object (compared after unescaping, with Swift `String` equality).
        public static let duplicateKey = Code(.duplicateKey)

        public var description: String { self.base.rawValue }
    }

    public let code: Code
    /// Byte offset in the input where the problem was found.
    public let offset: Int

    public init(code: Code, offset: Int) {
        self.code = code
        self.offset = offset
    }

    public var description: String { "\(self.code) at byte \(self.offset)" }

    public static func == (lhs: StrictJSONError, rhs: StrictJSONError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }
}

/// A strict JSON parser: RFC 8259 over UTF-8 bytes. It refuses what lenient parsers let through and
/// what could make two readers of one token disagree: duplicate object keys (at any depth), trailing
/// garbage, trailing commas, leading zeros, `NaN`/`Infinity`, comments, lone surrogates, invalid
/// UTF-8, unescaped control characters, a byte order mark. Size and nesting depth are bounded.
///
/// Numbers: an integer literal (no fraction, no exponent) that fits in Int64 becomes
/// `.integer`; any other number becomes `.number(Double)`; a number whose magnitude overflows a
/// Double is refused.
public enum StrictJSON {
    public static let defaultMaxDepth = 32
    public static let defaultMaxBytes = 1 << 20

    public static func parse(
        _ bytes: some Collection<UInt8>,
        maxDepth: Int = StrictJSON.defaultMaxDepth,
        maxBytes: Int = StrictJSON.defaultMaxBytes
    ) -> Result<JSONValue, StrictJSONError> {
        if bytes.count > maxBytes { return .failure(StrictJSONError(code: .tooLarge, offset: maxBytes)) }
        if let result = bytes.withContiguousStorageIfAvailable({ buffer in
            parseBuffer(buffer, maxDepth: maxDepth)
        }) {
            return result
        }
        return Array(bytes).withUnsafeBufferPointer { parseBuffer($0, maxDepth: maxDepth) }
    }

    private static func parseBuffer(
        _ buffer: UnsafeBufferPointer<UInt8>,
        maxDepth: Int
    ) -> Result<JSONValue, StrictJSONError> {
        var parser = Parser(bytes: buffer, maxDepth: maxDepth)
        do throws(StrictJSONError) {
            parser.skipWhitespace()
            let value = try parser.parseValue(depth: 0)
            parser.skipWhitespace()
            if parser.index != buffer.count { throw StrictJSONError(code: .trailingData, offset: parser.index) }
            return .success(value)
        } catch {
            return .failure(error)
        }
    }
}

private struct Parser {
    let bytes: UnsafeBufferPointer<UInt8>
    let maxDepth: Int
    var index = 0
    /// The members of the objects being parsed, innermost last: an object's members are collected here
    /// and its dictionary is built once, at its exact size, when it closes (no rehashing as it grows).
    private var members: [(key: String, value: JSONValue, offset: Int)] = []
    /// The same for the elements of the arrays being parsed.
    private var elements: [JSONValue] = []

    init(bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    private func fail(_ code: StrictJSONError.Code, at offset: Int? = nil) -> StrictJSONError {
        StrictJSONError(code: code, offset: offset ?? self.index)
    }

    mutating func skipWhitespace() {
        while self.index < self.bytes.count {
            switch self.bytes[self.index] {
            case 0x20, 0x09, 0x0A, 0x0D: self.index += 1
            default: return
            }
        }
    }

    private func peek() throws(StrictJSONError) -> UInt8 {
        guard self.index < self.bytes.count else { throw self.fail(.unexpectedEnd) }
        return self.bytes[self.index]
    }

    private mutating func expectLiteral(_ literal: StaticString, value: JSONValue) throws(StrictJSONError) -> JSONValue
    {
        let count = literal.utf8CodeUnitCount
        guard self.bytes.count - self.index >= count else { throw self.fail(.unexpectedEnd) }
        let start = literal.utf8Start
        for offset in 0..<count where self.bytes[self.index + offset] != start[offset] {
            throw self.fail(.unexpectedByte, at: self.index + offset)
        }
        self.index += count
        return value
    }

    mutating func parseValue(depth: Int) throws(StrictJSONError) -> JSONValue {
        switch try self.peek() {
        case UInt8(ascii: "{"): return try self.parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try self.parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try self.parseString())
        case UInt8(ascii: "t"): return try self.expectLiteral("true", value: .bool(true))
        case UInt8(ascii: "f"): return try self.expectLiteral("false", value: .bool(false))
        case UInt8(ascii: "n"): return try self.expectLiteral("null", value: .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try self.parseNumber()
        default: throw self.fail(.unexpectedByte)
        }
    }

    private mutating func parseObject(depth: Int) throws(StrictJSONError) -> JSONValue {
        if depth > self.maxDepth { throw self.fail(.tooDeep) }
        self.index += 1  // {
        self.skipWhitespace()
        if try self.peek() == UInt8(ascii: "}") {
            self.index += 1
            return .object([:])
        }
        let base = self.members.count
        // One allocation for the members of a typical token header or claims set, nested ones included.
        if base == 0 { self.members.reserveCapacity(16) }
        while true {
            self.skipWhitespace()
            let keyOffset = self.index
            guard try self.peek() == UInt8(ascii: "\"") else { throw self.fail(.unexpectedByte) }
            let key = try self.parseString()
            self.skipWhitespace()
            guard try self.peek() == UInt8(ascii: ":") else { throw self.fail(.unexpectedByte) }
            self.index += 1
            self.skipWhitespace()
            let value = try self.parseValue(depth: depth)
            self.members.append((key, value, keyOffset))
            self.skipWhitespace()
            switch try self.peek() {
            case UInt8(ascii: ","): self.index += 1
            case UInt8(ascii: "}"):
                self.index += 1
                var object = [String: JSONValue](minimumCapacity: self.members.count - base)
                for member in self.members[base...] where object.updateValue(member.value, forKey: member.key) != nil {
                    // The first repeated key, in document order, at its second occurrence.
                    throw self.fail(.duplicateKey, at: member.offset)
                }
                self.members.removeSubrange(base...)
                return .object(object)
            default: throw self.fail(.unexpectedByte)
            }
        }
    }

    private mutating func parseArray(depth: Int) throws(StrictJSONError) -> JSONValue {
        if depth > self.maxDepth { throw self.fail(.tooDeep) }
        self.index += 1  // [
        self.skipWhitespace()
        if try self.peek() == UInt8(ascii: "]") {
            self.index += 1
            return .array([])
        }
        let base = self.elements.count
        if base == 0 { self.elements.reserveCapacity(8) }
        while true {
            self.skipWhitespace()
            let element = try self.parseValue(depth: depth)
            self.elements.append(element)
            self.skipWhitespace()
            switch try self.peek() {
            case UInt8(ascii: ","): self.index += 1
            case UInt8(ascii: "]"):
                self.index += 1
                let array = Array(self.elements[base...])
                self.elements.removeSubrange(base...)
                return .array(array)
            default: throw self.fail(.unexpectedByte)
            }
        }
    }

    private mutating func parseNumber() throws(StrictJSONError) -> JSONValue {
        let start = self.index
        var isInteger = true
        if self.bytes[self.index] == UInt8(ascii: "-") { self.index += 1 }
        // int = zero / ( digit1-9 *DIGIT )
        guard self.index < self.bytes.count, isDigit(self.bytes[self.index]) else {
            throw self.fail(.invalidNumber, at: start)
        }
        if self.bytes[self.index] == UInt8(ascii: "0") {
            self.index += 1
            if self.index < self.bytes.count, isDigit(self.bytes[self.index]) {
                throw self.fail(.invalidNumber, at: start)
            }
        } else {
            while self.index < self.bytes.count, isDigit(self.bytes[self.index]) { self.index += 1 }
        }
        // frac = decimal-point 1*DIGIT
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: ".") {
            isInteger = false
            self.index += 1
            guard self.index < self.bytes.count, isDigit(self.bytes[self.index]) else {
                throw self.fail(.invalidNumber, at: start)
            }
            while self.index < self.bytes.count, isDigit(self.bytes[self.index]) { self.index += 1 }
        }
        // exp = e [ minus / plus ] 1*DIGIT
        if self.index < self.bytes.count, self.bytes[self.index] | 0x20 == UInt8(ascii: "e") {
            isInteger = false
            self.index += 1
            if self.index < self.bytes.count,
                self.bytes[self.index] == UInt8(ascii: "+") || self.bytes[self.index] == UInt8(ascii: "-")
            {
                self.index += 1
            }
            guard self.index < self.bytes.count, isDigit(self.bytes[self.index]) else {
                throw self.fail(.invalidNumber, at: start)
            }
            while self.index < self.bytes.count, isDigit(self.bytes[self.index]) { self.index += 1 }
        }
        if isInteger, let integer = Self.int64(UnsafeBufferPointer(rebasing: self.bytes[start..<self.index])) {
            return .integer(integer)
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: self.bytes[start..<self.index]), as: UTF8.self)
        guard let double = Double(text), double.isFinite else { throw self.fail(.numberOutOfRange, at: start) }
        return .number(double)
    }

    /// An integer literal already checked by the grammar (`-`? digits, no leading zero), or nil when it
    /// does not fit in Int64 (the caller then reads it as a Double).
    private static func int64(_ literal: UnsafeBufferPointer<UInt8>) -> Int64? {
        let negative = literal[0] == UInt8(ascii: "-")
        var value: Int64 = 0
        for byte in literal[(negative ? 1 : 0)...] {
            let digit = Int64(byte &- UInt8(ascii: "0"))
            // Accumulate negatively: Int64.min has no positive counterpart.
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (next, overflow2) = shifted.subtractingReportingOverflow(digit)
            if overflow1 || overflow2 { return nil }
            value = next
        }
        if negative { return value }
        return value == .min ? nil : -value
    }

    /// Parses a string starting at its opening quote; returns it unescaped.
    private mutating func parseString() throws(StrictJSONError) -> String {
        let start = self.index
        self.index += 1  // opening quote
        // Fast path: no escapes. Scan to the closing quote.
        var scan = self.index
        while scan < self.bytes.count {
            let byte = self.bytes[scan]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { break }
            scan += 1
        }
        if scan < self.bytes.count, self.bytes[scan] == UInt8(ascii: "\"") {
            let raw = UnsafeBufferPointer(rebasing: self.bytes[self.index..<scan])
            guard let string = validatedString(raw) else { throw self.fail(.invalidUTF8, at: start) }
            self.index = scan + 1
            return string
        }
        var output: [UInt8] = []
        output.reserveCapacity(scan - self.index + 16)
        output.append(contentsOf: UnsafeBufferPointer(rebasing: self.bytes[self.index..<scan]))
        self.index = scan
        while true {
            guard self.index < self.bytes.count else { throw self.fail(.unexpectedEnd) }
            let byte = self.bytes[self.index]
            switch byte {
            case UInt8(ascii: "\""):
                self.index += 1
                guard let string = output.withUnsafeBufferPointer({ validatedString($0) }) else {
                    throw self.fail(.invalidUTF8, at: start)
                }
                return string
            case UInt8(ascii: "\\"):
                try self.parseEscape(into: &output)
            case 0..<0x20:
                throw self.fail(.invalidString)
            default:
                output.append(byte)
                self.index += 1
            }
        }
    }

    private mutating func parseEscape(into output: inout [UInt8]) throws(StrictJSONError) {
        let escapeStart = self.index
        self.index += 1  // backslash
        guard self.index < self.bytes.count else { throw self.fail(.unexpectedEnd) }
        let byte = self.bytes[self.index]
        self.index += 1
        switch byte {
        case UInt8(ascii: "\""): output.append(0x22)
        case UInt8(ascii: "\\"): output.append(0x5C)
        case UInt8(ascii: "/"): output.append(0x2F)
        case UInt8(ascii: "b"): output.append(0x08)
        case UInt8(ascii: "f"): output.append(0x0C)
        case UInt8(ascii: "n"): output.append(0x0A)
        case UInt8(ascii: "r"): output.append(0x0D)
        case UInt8(ascii: "t"): output.append(0x09)
        case UInt8(ascii: "u"):
            let first = try self.parseHex4()
            var scalarValue: UInt32
            switch first {
            case 0xD800...0xDBFF:
                // A high surrogate must be followed by an escaped low surrogate.
                guard self.bytes.count - self.index >= 6,
                    self.bytes[self.index] == UInt8(ascii: "\\"),
                    self.bytes[self.index + 1] == UInt8(ascii: "u")
                else { throw self.fail(.loneSurrogate, at: escapeStart) }
                self.index += 2
                let second = try self.parseHex4()
                guard (0xDC00...0xDFFF).contains(second) else { throw self.fail(.loneSurrogate, at: escapeStart) }
                scalarValue = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            case 0xDC00...0xDFFF:
                throw self.fail(.loneSurrogate, at: escapeStart)
            default:
                scalarValue = first
            }
            guard let scalar = Unicode.Scalar(scalarValue) else { throw self.fail(.invalidEscape, at: escapeStart) }
            output.append(contentsOf: UTF8.encode(scalar)!)
        default:
            throw self.fail(.invalidEscape, at: escapeStart)
        }
    }

    private mutating func parseHex4() throws(StrictJSONError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard self.index < self.bytes.count else { throw self.fail(.unexpectedEnd) }
            let byte = self.bytes[self.index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw self.fail(.invalidEscape)
            }
            value = value << 4 | UInt32(digit)
            self.index += 1
        }
        return value
    }
}

/// The bytes as a String when they are valid UTF-8 (no overlong forms, no surrogates, nothing above
/// U+10FFFF), else nil. ASCII, the common case, skips the full validation.
private func validatedString(_ bytes: UnsafeBufferPointer<UInt8>) -> String? {
    if bytes.allSatisfy({ $0 < 0x80 }) { return String(decoding: bytes, as: UTF8.self) }
    return String(validating: bytes, as: UTF8.self)
}

@inline(__always)
private func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
