public import NIOCore
import ProxyModel

/// Parses the PROXY protocol header at the start of a connection (v1 text, v2 binary). Pure: no channel.
///
/// `parse` returns nil while the bytes so far are a valid prefix of a header (feed it more), the header
/// once complete (its bytes consumed, anything after it left in the buffer), and throws as soon as the
/// bytes can not be a header or break a bound. Nothing is consumed unless a header is returned.
public enum ProxyProtocolParser {
    /// The 12-byte v2 signature `\r\n\r\n\0\r\nQUIT\n`.
    public static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    /// A v1 line, CRLF included, is at most 107 bytes (the specification's bound).
    public static let v1MaximumLength = 107
    /// Default bound on the v2 address and TLV block (after the 16-byte fixed part).
    public static let defaultV2MaximumLength = 512

    static let v1Prefix: [UInt8] = Array("PROXY ".utf8)

    public static func parse(
        _ buffer: inout ByteBuffer,
        maximumV2Length: Int = ProxyProtocolParser.defaultV2MaximumLength
    ) throws(ProxyProtocolError) -> ProxyProtocolHeader? {
        let view = buffer.readableBytesView
        guard let first = view.first else { return nil }
        switch first {
        case Self.v2Signature[0]:
            let count = min(view.count, Self.v2Signature.count)
            guard view.prefix(count).elementsEqual(Self.v2Signature.prefix(count)) else {
                throw ProxyProtocolError(.missingHeader, "bytes do not match the v2 signature")
            }
            return try Self.parseV2(&buffer, maximumLength: maximumV2Length)
        case Self.v1Prefix[0]:
            let count = min(view.count, Self.v1Prefix.count)
            guard view.prefix(count).elementsEqual(Self.v1Prefix.prefix(count)) else {
                throw ProxyProtocolError(.missingHeader, "bytes do not start with 'PROXY '")
            }
            return try Self.parseV1(&buffer)
        default:
            throw ProxyProtocolError(.missingHeader, "first byte is neither 'P' (v1) nor the v2 signature")
        }
    }

    // MARK: - v1

    private static func parseV1(_ buffer: inout ByteBuffer) throws(ProxyProtocolError) -> ProxyProtocolHeader? {
        let view = buffer.readableBytesView
        var lineLength: Int?
        for offset in 0..<min(view.count, Self.v1MaximumLength) {
            let byte = view[view.startIndex + offset]
            if byte == UInt8(ascii: "\r") {
                guard offset + 2 <= Self.v1MaximumLength else {
                    throw ProxyProtocolError(.v1TooLong, "no CRLF within \(Self.v1MaximumLength) bytes")
                }
                guard offset + 1 < view.count else { return nil }
                guard view[view.startIndex + offset + 1] == UInt8(ascii: "\n") else {
                    throw ProxyProtocolError(.malformedV1, "CR not followed by LF")
                }
                lineLength = offset
                break
            }
            guard byte >= 0x20 && byte <= 0x7E else {
                throw ProxyProtocolError(.malformedV1, "control or non-ASCII byte in the header line")
            }
        }
        guard let lineLength else {
            if view.count >= Self.v1MaximumLength {
                throw ProxyProtocolError(.v1TooLong, "no CRLF within \(Self.v1MaximumLength) bytes")
            }
            return nil
        }
        let line = String(decoding: view.prefix(lineLength), as: UTF8.self)
        let fields = line.split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count >= 2, fields[0] == "PROXY" else {
            throw ProxyProtocolError(.malformedV1, "expected 'PROXY <protocol> ...'")
        }
        let header: ProxyProtocolHeader
        switch fields[1] {
        case "UNKNOWN":
            // "The receiver must ignore anything presented before the CRLF": keep the real endpoints.
            header = ProxyProtocolHeader(version: .v1, command: .proxy, source: nil, destination: nil)
        case "TCP4", "TCP6":
            guard fields.count == 6 else {
                throw ProxyProtocolError(.malformedV1, "expected 'PROXY \(fields[1]) <src> <dst> <sport> <dport>'")
            }
            let isV6 = fields[1] == "TCP6"
            let source = try Self.v1Address(fields[2], port: fields[4], isV6: isV6)
            let destination = try Self.v1Address(fields[3], port: fields[5], isV6: isV6)
            header = ProxyProtocolHeader(version: .v1, command: .proxy, source: source, destination: destination)
        default:
            throw ProxyProtocolError(.malformedV1, "unknown protocol (expected TCP4, TCP6 or UNKNOWN)")
        }
        buffer.moveReaderIndex(forwardBy: lineLength + 2)
        return header
    }

    private static func v1Address(
        _ text: Substring,
        port portText: Substring,
        isV6: Bool
    ) throws(ProxyProtocolError) -> ProxyProtocolAddress {
        // The address text must be of the announced family (an IPv4-mapped IPv6 text is still TCP6).
        guard text.contains(":") == isV6, let address = IPAddress.parse(String(text)) else {
            throw ProxyProtocolError(.malformedV1, "invalid \(isV6 ? "IPv6" : "IPv4") address")
        }
        guard (1...5).contains(portText.count), portText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            portText == "0" || !portText.hasPrefix("0"), let port = Int(portText), port <= 65_535
        else {
            throw ProxyProtocolError(.malformedV1, "invalid port")
        }
        return ProxyProtocolAddress(address: address, port: port)
    }

    // MARK: - v2

    private static func parseV2(
        _ buffer: inout ByteBuffer,
        maximumLength: Int
    ) throws(ProxyProtocolError) -> ProxyProtocolHeader? {
        guard buffer.readableBytes >= 16,
            let (versionCommand, familyTransport, length) = buffer.getMultipleIntegers(
                at: buffer.readerIndex + 12,
                as: (UInt8, UInt8, UInt16).self
            )
        else { return nil }
        guard versionCommand >> 4 == 2 else {
            throw ProxyProtocolError(.malformedV2, "unsupported version \(versionCommand >> 4)")
        }
        let command: ProxyProtocolHeader.Command
        switch versionCommand & 0x0F {
        case 0x0: command = .local
        case 0x1: command = .proxy
        default: throw ProxyProtocolError(.malformedV2, "unknown command \(versionCommand & 0x0F)")
        }
        let family = familyTransport >> 4
        let transport = familyTransport & 0x0F
        guard family <= 3, transport <= 2 else {
            throw ProxyProtocolError(
                .malformedV2,
                "unknown address family or transport 0x\(String(familyTransport, radix: 16))"
            )
        }
        guard Int(length) <= maximumLength else {
            throw ProxyProtocolError(.v2TooLong, "\(length) bytes of addresses and TLVs (at most \(maximumLength))")
        }
        guard buffer.readableBytes >= 16 + Int(length) else { return nil }

        var block = buffer.getSlice(at: buffer.readerIndex + 16, length: Int(length))!
        let header: ProxyProtocolHeader
        if command == .local {
            // "The receiver must ... use the real connection endpoints and discard the protocol block."
            header = ProxyProtocolHeader(version: .v2, command: .local, source: nil, destination: nil)
        } else {
            let addressLength = [0, 12, 36, 216][Int(family)]
            guard block.readableBytes >= addressLength else {
                throw ProxyProtocolError(.malformedV2, "address block shorter than its family needs")
            }
            var source: ProxyProtocolAddress?
            var destination: ProxyProtocolAddress?
            switch (family, transport) {
            case (0x1, 0x1):
                let (src, dst, sport, dport) = block.readMultipleIntegers(as: (UInt32, UInt32, UInt16, UInt16).self)!
                source = ProxyProtocolAddress(address: .v4(src), port: Int(sport))
                destination = ProxyProtocolAddress(address: .v4(dst), port: Int(dport))
            case (0x2, 0x1):
                let (srcHigh, srcLow, dstHigh, dstLow) = block.readMultipleIntegers(
                    as: (UInt64, UInt64, UInt64, UInt64).self
                )!
                let (sport, dport) = block.readMultipleIntegers(as: (UInt16, UInt16).self)!
                source = ProxyProtocolAddress(address: Self.ipv6(srcHigh, srcLow), port: Int(sport))
                destination = ProxyProtocolAddress(address: Self.ipv6(dstHigh, dstLow), port: Int(dport))
            default:
                // AF_UNSPEC, AF_UNIX, or datagrams: nothing to use as a TCP client address.
                block.moveReaderIndex(forwardBy: addressLength)
            }
            var tlvs: [ProxyProtocolHeader.TLV] = []
            while block.readableBytes > 0 {
                guard let (type, valueLength) = block.readMultipleIntegers(as: (UInt8, UInt16).self),
                    let value = block.readBytes(length: Int(valueLength))
                else {
                    throw ProxyProtocolError(.malformedV2, "truncated TLV")
                }
                tlvs.append(ProxyProtocolHeader.TLV(type: type, value: value))
            }
            header = ProxyProtocolHeader(
                version: .v2,
                command: .proxy,
                source: source,
                destination: destination,
                tlvs: tlvs
            )
        }
        buffer.moveReaderIndex(forwardBy: 16 + Int(length))
        return header
    }

    /// IPv4-mapped addresses (`::ffff:a.b.c.d`) become `.v4`, as `IPAddress.parse` does.
    private static func ipv6(_ high: UInt64, _ low: UInt64) -> IPAddress {
        if high == 0, low >> 32 == 0xFFFF { return .v4(UInt32(truncatingIfNeeded: low)) }
        return .v6(high, low)
    }
}
