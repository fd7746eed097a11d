// IPv4/IPv6 text parsing and formatting, CIDR blocks. No sockets, no allocation while parsing.

func _parseIPAddress(_ text: String) -> IPAddress? {
    text.withUTF8Bytes { IPAddressParsing.parse($0) }
}

func _describeIPAddress(_ address: IPAddress) -> String {
    switch address {
    case .v4(let value): return IPAddressParsing.describeIPv4(value)
    case .v6(let high, let low): return IPAddressParsing.describeIPv6(high: high, low: low)
    }
}

func _parseCIDR(_ text: String) -> CIDR? {
    text.withUTF8Bytes { IPAddressParsing.parseCIDR($0) }
}

func _cidrContains(_ block: CIDR, _ address: IPAddress) -> Bool {
    switch (block.address, address) {
    case (.v4(let network), .v4(let value)):
        let mask = IPAddressParsing.ipv4Mask(block.prefixLength)
        return network & mask == value & mask
    case (.v6(let networkHigh, let networkLow), .v6(let high, let low)):
        let (maskHigh, maskLow) = IPAddressParsing.ipv6Mask(block.prefixLength)
        return networkHigh & maskHigh == high & maskHigh && networkLow & maskLow == low & maskLow
    default:
        return false
    }
}

enum IPAddressParsing {
    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> IPAddress? {
        if bytes.contains(ASCIIBytes.colon) {
            guard let (high, low) = self.parseIPv6(bytes) else { return nil }
            if let mapped = self.mappedIPv4(high: high, low: low) { return .v4(mapped) }
            return .v6(high, low)
        }
        return self.parseIPv4(bytes).map { .v4($0) }
    }

    /// `::ffff:a.b.c.d` (in any spelling) as its IPv4 address.
    @inline(__always)
    static func mappedIPv4(high: UInt64, low: UInt64) -> UInt32? {
        guard high == 0, low >> 32 == 0xFFFF else { return nil }
        return UInt32(truncatingIfNeeded: low)
    }

    /// Exactly four decimal octets 0-255; no signs, no leading zeros (`010` is refused because some
    /// parsers read it as octal).
    static func parseIPv4(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt32? {
        var value: UInt32 = 0
        var parts = 0
        var index = 0
        let count = bytes.count
        while true {
            let octetStart = index
            var octet: UInt32 = 0
            while index < count && ASCIIBytes.isDigit(bytes[index]) {
                guard index - octetStart < 3 else { return nil }
                octet = octet * 10 + UInt32(bytes[index] &- 0x30)
                index += 1
            }
            let digits = index - octetStart
            guard digits > 0, octet <= 255 else { return nil }
            if digits > 1 && bytes[octetStart] == UInt8(ascii: "0") { return nil }
            value = value << 8 | octet
            parts += 1
            if parts == 4 { return index == count ? value : nil }
            guard index < count && bytes[index] == ASCIIBytes.dot else { return nil }
            index += 1
        }
    }

    /// RFC 4291 text forms: eight groups, `::` once for one or more zero groups, an optional dotted
    /// IPv4 tail in the last 32 bits. No brackets, no zone id.
    static func parseIPv6(_ bytes: UnsafeBufferPointer<UInt8>) -> (UInt64, UInt64)? {
        let count = bytes.count
        guard count >= 2 else { return nil }
        var head = Bits128()
        var tail = Bits128()
        var headGroups = 0
        var tailGroups = 0
        var sawDoubleColon = false
        var index = 0

        if bytes[0] == ASCIIBytes.colon {
            guard bytes[1] == ASCIIBytes.colon else { return nil }
            sawDoubleColon = true
            index = 2
        }

        while index < count {
            let groupStart = index
            var group: UInt64 = 0
            while index < count, let digit = ASCIIBytes.hexValue(bytes[index]) {
                guard index - groupStart < 4 else { return nil }
                group = group << 4 | UInt64(digit)
                index += 1
            }
            if index < count && bytes[index] == ASCIIBytes.dot {
                // Dotted IPv4 tail: the rest of the text, two groups.
                guard headGroups + tailGroups <= 6,
                    let v4 = self.parseIPv4(UnsafeBufferPointer(rebasing: bytes[groupStart...]))
                else {
                    return nil
                }
                if sawDoubleColon {
                    tail.append(UInt64(v4 >> 16))
                    tail.append(UInt64(v4 & 0xFFFF))
                    tailGroups += 2
                } else {
                    head.append(UInt64(v4 >> 16))
                    head.append(UInt64(v4 & 0xFFFF))
                    headGroups += 2
                }
                index = count
                break
            }
            guard index > groupStart, headGroups + tailGroups < 8 else { return nil }
            if sawDoubleColon {
                tail.append(group)
                tailGroups += 1
            } else {
                head.append(group)
                headGroups += 1
            }
            if index == count { break }
            guard bytes[index] == ASCIIBytes.colon else { return nil }
            index += 1
            guard index < count else { return nil }  // a single trailing colon
            if bytes[index] == ASCIIBytes.colon {
                guard !sawDoubleColon else { return nil }
                sawDoubleColon = true
                index += 1
            }
        }

        let groups = headGroups + tailGroups
        if sawDoubleColon {
            guard groups <= 7 else { return nil }
        } else {
            guard groups == 8 else { return nil }
        }
        // The head goes to the top of the address, the tail to the bottom, zeros in between.
        head.shiftLeft(groups: 8 - headGroups)
        return (head.high | tail.high, head.low | tail.low)
    }

    static func parseCIDR(_ bytes: UnsafeBufferPointer<UInt8>) -> CIDR? {
        let slash = bytes.firstIndex(of: ASCIIBytes.slash)
        let addressBytes = UnsafeBufferPointer(rebasing: bytes[..<(slash ?? bytes.count)])
        let isIPv6Text = addressBytes.contains(ASCIIBytes.colon)
        guard let address = self.parse(addressBytes) else { return nil }

        var prefixLength: Int
        if let slash {
            let lengthBytes = UnsafeBufferPointer(rebasing: bytes[(slash + 1)...])
            guard !lengthBytes.isEmpty, lengthBytes.count <= 3 else { return nil }
            if lengthBytes.count > 1 && lengthBytes[0] == UInt8(ascii: "0") { return nil }
            prefixLength = 0
            for byte in lengthBytes {
                guard ASCIIBytes.isDigit(byte) else { return nil }
                prefixLength = prefixLength * 10 + Int(byte &- 0x30)
            }
            if isIPv6Text, case .v4 = address {
                // `::ffff:10.0.0.0/104` is the IPv4 block 10.0.0.0/8; shorter prefixes would
                // reach outside the mapped range, which no IPv4 address can be compared with.
                guard prefixLength >= 96 else { return nil }
                prefixLength -= 96
            }
        } else {
            if case .v4 = address { prefixLength = 32 } else { prefixLength = 128 }
        }

        switch address {
        case .v4(let value):
            guard prefixLength <= 32 else { return nil }
            return CIDR(address: .v4(value & self.ipv4Mask(prefixLength)), prefixLength: prefixLength)
        case .v6(let high, let low):
            guard prefixLength <= 128 else { return nil }
            let (maskHigh, maskLow) = self.ipv6Mask(prefixLength)
            return CIDR(address: .v6(high & maskHigh, low & maskLow), prefixLength: prefixLength)
        }
    }

    /// Out-of-range lengths are clamped (a `CIDR` can be built directly with any length).
    @inline(__always)
    static func ipv4Mask(_ prefixLength: Int) -> UInt32 {
        if prefixLength <= 0 { return 0 }
        if prefixLength >= 32 { return .max }
        return UInt32.max << UInt32(32 - prefixLength)
    }

    @inline(__always)
    static func ipv6Mask(_ prefixLength: Int) -> (UInt64, UInt64) {
        if prefixLength <= 0 { return (0, 0) }
        if prefixLength >= 128 { return (.max, .max) }
        if prefixLength <= 64 {
            return (prefixLength == 64 ? .max : UInt64.max << UInt64(64 - prefixLength), 0)
        }
        return (.max, UInt64.max << UInt64(128 - prefixLength))
    }

    static func describeIPv4(_ value: UInt32) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(15)
        for shift in stride(from: 24, through: 0, by: -8) {
            if shift != 24 { out.append(ASCIIBytes.dot) }
            let octet = UInt8(truncatingIfNeeded: value >> UInt32(shift))
            if octet >= 100 { out.append(0x30 + octet / 100) }
            if octet >= 10 { out.append(0x30 + (octet / 10) % 10) }
            out.append(0x30 + octet % 10)
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// RFC 5952: lower-case hex, no leading zeros, the longest run of two or more zero groups
    /// (the first of equal runs) written as `::`.
    static func describeIPv6(high: UInt64, low: UInt64) -> String {
        func group(_ index: Int) -> UInt16 {
            let word = index < 4 ? high : low
            return UInt16(truncatingIfNeeded: word >> UInt64(48 - 16 * (index % 4)))
        }
        var bestStart = -1
        var bestLength = 0
        var runStart = -1
        for index in 0..<8 {
            if group(index) == 0 {
                if runStart < 0 { runStart = index }
                let length = index - runStart + 1
                if length > bestLength {
                    bestStart = runStart
                    bestLength = length
                }
            } else {
                runStart = -1
            }
        }
        if bestLength < 2 { bestStart = -1 }

        var out: [UInt8] = []
        out.reserveCapacity(39)
        var index = 0
        while index < 8 {
            if index == bestStart {
                out.append(ASCIIBytes.colon)
                out.append(ASCIIBytes.colon)
                index += bestLength
                continue
            }
            if index > 0 && index != bestStart + bestLength { out.append(ASCIIBytes.colon) }
            let value = group(index)
            var started = false
            for shift in stride(from: 12, through: 0, by: -4) {
                let nibble = UInt8(truncatingIfNeeded: value >> UInt16(shift)) & 0x0F
                if nibble != 0 || started || shift == 0 {
                    out.append(ASCIIBytes.lowerHexDigit(nibble))
                    started = true
                }
            }
            index += 1
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// A 128-bit accumulator of 16-bit groups (UInt128 needs newer Apple OS versions than we target).
struct Bits128 {
    var high: UInt64 = 0
    var low: UInt64 = 0

    @inline(__always)
    mutating func append(_ group: UInt64) {
        self.high = self.high << 16 | self.low >> 48
        self.low = self.low << 16 | group
    }

    mutating func shiftLeft(groups: Int) {
        for _ in 0..<groups {
            self.high = self.high << 16 | self.low >> 48
            self.low = self.low << 16
        }
    }
}
