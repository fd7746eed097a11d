import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOTestUtils
import ProxyModel
import Testing

@testable import ProxyTransport

/// Records user events and reads behind the handler under test.
final class ProxyEventRecorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    var headers: [ProxyProtocolHeader] = []
    var errors: [any Error] = []
    /// Whether the header event came before the first byte.
    var headerBeforeData = true
    var sawData = false

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let header = event as? ProxyProtocolHeader {
            if self.sawData { self.headerBeforeData = false }
            self.headers.append(header)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.sawData = true
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.errors.append(error)
    }
}

@Suite("PROXY protocol")
struct ProxyProtocolTests {
    static func address(_ text: String, _ port: Int) -> ProxyProtocolAddress {
        ProxyProtocolAddress(address: IPAddress.parse(text)!, port: port)
    }

    /// A v2 header: `command` 0x0 LOCAL / 0x1 PROXY, `family` 0x11 TCP4 / 0x21 TCP6 / 0x00 UNSPEC.
    static func v2(
        command: UInt8 = 0x1,
        family: UInt8,
        addresses: [UInt8],
        tlvs: [UInt8] = [],
        length: Int? = nil
    ) -> [UInt8] {
        let body = addresses + tlvs
        let count = length ?? body.count
        return ProxyProtocolParser.v2Signature + [0x20 | command, family, UInt8(count >> 8), UInt8(count & 0xFF)] + body
    }

    static let tcp4Addresses: [UInt8] = [192, 0, 2, 10, 198, 51, 100, 1, 0xD4, 0x31, 0x01, 0xBB]  // 54321 -> 443
    /// 2001:db8::1 port 12345 -> 2001:db8::2 port 8443.
    static let tcp6Addresses: [UInt8] =
        [0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [0x01]
        + [0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [0x02] + [0x30, 0x39, 0x20, 0xFB]
    /// AUTHORITY "example.com" and a NOOP with 3 bytes.
    static let tlvs: [UInt8] = [0x02, 0x00, 0x0B] + Array("example.com".utf8) + [0x04, 0x00, 0x03, 0, 0, 0]

    struct Setup {
        let channel: EmbeddedChannel
        let recorder: ProxyEventRecorder

        init(timeout: TimeAmount? = nil) throws {
            self.recorder = ProxyEventRecorder()
            self.channel = EmbeddedChannel()
            try self.channel.pipeline.syncOperations.addHandler(ProxyProtocolHandler(timeout: timeout))
            try self.channel.pipeline.syncOperations.addHandler(self.recorder)
            try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 443)).wait()
        }

        /// Everything passed on after the handler, as one string.
        func forwarded() throws -> String {
            var text = ""
            while let buffer = try self.channel.readInbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
            return text
        }

        func handlerRemoved() -> Bool {
            (try? self.channel.pipeline.syncOperations.handler(type: ProxyProtocolHandler.self)) == nil
        }
    }

    // MARK: - parsing

    @Test(arguments: [
        (
            "PROXY TCP4 192.0.2.10 198.51.100.1 54321 443\r\n",
            ProxyProtocolHeader(
                version: .v1,
                command: .proxy,
                source: ProxyProtocolTests.address("192.0.2.10", 54321),
                destination: ProxyProtocolTests.address("198.51.100.1", 443)
            )
        ),
        (
            "PROXY TCP6 2001:db8::1 2001:db8::2 12345 8443\r\n",
            ProxyProtocolHeader(
                version: .v1,
                command: .proxy,
                source: ProxyProtocolTests.address("2001:db8::1", 12345),
                destination: ProxyProtocolTests.address("2001:db8::2", 8443)
            )
        ),
        ("PROXY UNKNOWN\r\n", ProxyProtocolHeader(version: .v1, command: .proxy, source: nil, destination: nil)),
        (
            "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
            ProxyProtocolHeader(version: .v1, command: .proxy, source: nil, destination: nil)
        ),
        (
            "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
            ProxyProtocolHeader(
                version: .v1,
                command: .proxy,
                source: ProxyProtocolTests.address("0.0.0.0", 0),
                destination: ProxyProtocolTests.address("255.255.255.255", 65535)
            )
        ),
    ])
    func v1Headers(line: String, expected: ProxyProtocolHeader) throws {
        var buffer = ByteBuffer(string: line + "GET / HTTP/1.1\r\n")
        #expect(try ProxyProtocolParser.parse(&buffer) == expected)
        #expect(String(buffer: buffer) == "GET / HTTP/1.1\r\n")
    }

    @Test func v2Headers() throws {
        var tcp4 = ByteBuffer(
            bytes: Self.v2(family: 0x11, addresses: Self.tcp4Addresses, tlvs: Self.tlvs) + Array("rest".utf8)
        )
        let header4 = try #require(try ProxyProtocolParser.parse(&tcp4))
        #expect(header4.version == .v2)
        #expect(header4.command == .proxy)
        #expect(header4.source == Self.address("192.0.2.10", 54321))
        #expect(header4.destination == Self.address("198.51.100.1", 443))
        #expect(
            header4.tlvs == [
                .init(type: 0x02, value: Array("example.com".utf8)), .init(type: 0x04, value: [0, 0, 0]),
            ]
        )
        #expect(String(buffer: tcp4) == "rest")

        var tcp6 = ByteBuffer(bytes: Self.v2(family: 0x21, addresses: Self.tcp6Addresses))
        let header6 = try #require(try ProxyProtocolParser.parse(&tcp6))
        #expect(header6.source == Self.address("2001:db8::1", 12345))
        #expect(header6.destination == Self.address("2001:db8::2", 8443))
        #expect(header6.tlvs.isEmpty)
        #expect(tcp6.readableBytes == 0)

        // IPv4-mapped IPv6 addresses come out as IPv4, as IPAddress.parse gives them.
        let mapped: [UInt8] = [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF, 10, 0, 0, 1]
        var tcp6Mapped = ByteBuffer(bytes: Self.v2(family: 0x21, addresses: mapped + mapped + [0, 80, 0, 81]))
        #expect(try ProxyProtocolParser.parse(&tcp6Mapped)?.source == Self.address("10.0.0.1", 80))
    }

    @Test func v2LocalAndUnspecKeepTheRealAddresses() throws {
        // LOCAL: the balancer's own health check; the block is discarded whatever it holds.
        var local = ByteBuffer(
            bytes: Self.v2(command: 0x0, family: 0x11, addresses: Self.tcp4Addresses, tlvs: Self.tlvs)
        )
        #expect(
            try ProxyProtocolParser.parse(&local)
                == ProxyProtocolHeader(version: .v2, command: .local, source: nil, destination: nil)
        )
        #expect(local.readableBytes == 0)

        var unspec = ByteBuffer(bytes: Self.v2(family: 0x00, addresses: []))
        let header = try ProxyProtocolParser.parse(&unspec)
        #expect(header?.command == .proxy)
        #expect(header?.source == nil)

        // AF_UNIX addresses are skipped, TLVs after them still read.
        var unix = ByteBuffer(
            bytes: Self.v2(family: 0x31, addresses: [UInt8](repeating: 0x41, count: 216), tlvs: Self.tlvs)
        )
        let unixHeader = try ProxyProtocolParser.parse(&unix)
        #expect(unixHeader?.source == nil)
        #expect(unixHeader?.tlvs.count == 2)
    }

    @Test func partialInputNeedsMoreAndConsumesNothing() throws {
        for header in ["PROXY TCP4 192.0.2.10 198.51.100.1 54321 443\r\n"].map({ Array($0.utf8) })
            + [Self.v2(family: 0x11, addresses: Self.tcp4Addresses, tlvs: Self.tlvs)]
        {
            for length in 1..<header.count {
                var buffer = ByteBuffer(bytes: header.prefix(length))
                #expect(try ProxyProtocolParser.parse(&buffer) == nil, "prefix of \(length) bytes")
                #expect(buffer.readableBytes == length)
            }
        }
    }

    @Test(arguments: [
        ("GET / HTTP/1.1\r\n", ProxyProtocolError.Code.missingHeader),
        ("PROXI TCP4", .missingHeader),
        ("proxy TCP4 192.0.2.10 198.51.100.1 1 2\r\n", .missingHeader),
        ("PROXY TCP5 192.0.2.10 198.51.100.1 1 2\r\n", .malformedV1),
        ("PROXY TCP4 192.0.2.10 198.51.100.1 1\r\n", .malformedV1),
        ("PROXY TCP4 192.0.2.10  198.51.100.1 1 2\r\n", .malformedV1),
        ("PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n", .malformedV1),
        ("PROXY TCP6 192.0.2.10 2001:db8::2 1 2\r\n", .malformedV1),
        ("PROXY TCP4 192.0.2.300 198.51.100.1 1 2\r\n", .malformedV1),
        ("PROXY TCP4 192.0.2.10 198.51.100.1 65536 2\r\n", .malformedV1),
        ("PROXY TCP4 192.0.2.10 198.51.100.1 080 2\r\n", .malformedV1),
        ("PROXY TCP4 192.0.2.10 198.51.100.1 -1 2\r\n", .malformedV1),
        ("PROXY TCP4 192.0.2.10 198.51.100.1 1 2\n", .malformedV1),
        ("PROXY TCP4 192.0.2.10 198.51.100.1 1 2\rX", .malformedV1),
        ("PROXY TCP4 192.0.2.10\u{0} 198.51.100.1 1 2\r\n", .malformedV1),
        ("PROXY UNKNOWN " + String(repeating: "x", count: 92) + "\r\n", .v1TooLong),
        ("PROXY UNKNOWN " + String(repeating: "x", count: 120), .v1TooLong),
    ])
    func malformedV1(input: String, code: ProxyProtocolError.Code) {
        var buffer = ByteBuffer(string: input)
        #expect(throws: ProxyProtocolError(code, "")) { try ProxyProtocolParser.parse(&buffer) }
    }

    @Test func longestV1LineIsAccepted() throws {
        // 107 bytes exactly, CRLF included.
        let line = "PROXY UNKNOWN " + String(repeating: "x", count: 91) + "\r\n"
        #expect(line.utf8.count == 107)
        var buffer = ByteBuffer(string: line)
        #expect(try ProxyProtocolParser.parse(&buffer)?.source == nil)
    }

    @Test func malformedV2() {
        let cases: [([UInt8], ProxyProtocolError.Code)] = [
            (Array(ProxyProtocolParser.v2Signature.prefix(5)) + [0x0A], .missingHeader),
            (ProxyProtocolParser.v2Signature + [0x11, 0x11, 0, 12] + Self.tcp4Addresses, .malformedV2),  // version 1
            (ProxyProtocolParser.v2Signature + [0x22, 0x11, 0, 12] + Self.tcp4Addresses, .malformedV2),  // command 2
            (ProxyProtocolParser.v2Signature + [0x21, 0x41, 0, 12] + Self.tcp4Addresses, .malformedV2),  // family 4
            (ProxyProtocolParser.v2Signature + [0x21, 0x13, 0, 12] + Self.tcp4Addresses, .malformedV2),  // transport 3
            (Self.v2(family: 0x21, addresses: Self.tcp4Addresses), .malformedV2),  // TCP6 needs 36 bytes
            (Self.v2(family: 0x11, addresses: Self.tcp4Addresses, tlvs: [0x02, 0x00, 0x05, 0x61]), .malformedV2),
            (Self.v2(family: 0x11, addresses: Self.tcp4Addresses, tlvs: [0x02, 0x00]), .malformedV2),
            (Self.v2(family: 0x11, addresses: Self.tcp4Addresses, length: 513), .v2TooLong),
            (Self.v2(family: 0x11, addresses: Self.tcp4Addresses, length: 0xFFFF), .v2TooLong),
        ]
        for (bytes, code) in cases {
            var buffer = ByteBuffer(bytes: bytes)
            #expect(throws: ProxyProtocolError(code, ""), "\(bytes)") { try ProxyProtocolParser.parse(&buffer) }
        }
    }

    @Test func decoderOverEverySplit() throws {
        let v1 = "PROXY TCP4 192.0.2.10 198.51.100.1 54321 443\r\n"
        let v2 = Self.v2(family: 0x21, addresses: Self.tcp6Addresses, tlvs: Self.tlvs)
        var v2Buffer = ByteBuffer(bytes: v2)
        let v2Header = try #require(try ProxyProtocolParser.parse(&v2Buffer))
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: [
                (
                    ByteBuffer(string: v1),
                    [
                        ProxyProtocolHeader(
                            version: .v1,
                            command: .proxy,
                            source: Self.address("192.0.2.10", 54321),
                            destination: Self.address("198.51.100.1", 443)
                        )
                    ]
                ),
                (ByteBuffer(bytes: v2), [v2Header]),
                (
                    ByteBuffer(string: "PROXY UNKNOWN\r\n"),
                    [ProxyProtocolHeader(version: .v1, command: .proxy, source: nil, destination: nil)]
                ),
            ],
            decoderFactory: { ProxyProtocolDecoder() }
        )
    }

    // MARK: - handler

    @Test func handlerFiresTheHeaderForwardsTrailingDataAndLeaves() throws {
        let setup = try Setup()
        try setup.channel.writeInbound(
            ByteBuffer(string: "PROXY TCP4 192.0.2.10 198.51.100.1 54321 443\r\nGET / HTTP/1.1\r\n")
        )
        #expect(setup.recorder.headers.map(\.source) == [Self.address("192.0.2.10", 54321)])
        #expect(setup.recorder.headerBeforeData)
        #expect(try setup.forwarded() == "GET / HTTP/1.1\r\n")
        #expect(setup.handlerRemoved())
        try setup.channel.writeInbound(ByteBuffer(string: "Host: x\r\n\r\n"))
        #expect(try setup.forwarded() == "Host: x\r\n\r\n")
        #expect(setup.channel.isActive)
        _ = try setup.channel.finish()
    }

    @Test func handlerByteByByte() throws {
        for header in [
            Array("PROXY TCP6 2001:db8::1 2001:db8::2 12345 8443\r\n".utf8),
            Self.v2(family: 0x11, addresses: Self.tcp4Addresses, tlvs: Self.tlvs),
        ] {
            let setup = try Setup()
            for byte in header + Array("hello".utf8) {
                try setup.channel.writeInbound(ByteBuffer(bytes: [byte]))
            }
            #expect(setup.recorder.headers.count == 1)
            #expect(setup.recorder.headers.first?.source != nil)
            #expect(setup.recorder.headerBeforeData)
            #expect(try setup.forwarded() == "hello")
            #expect(setup.handlerRemoved())
            _ = try setup.channel.finish()
        }
    }

    @Test func handlerV2WithTLVsAndTrailingDataInOneRead() throws {
        let setup = try Setup()
        let bytes =
            Self.v2(family: 0x11, addresses: Self.tcp4Addresses, tlvs: Self.tlvs) + Array("\u{16}\u{03}\u{01}tls".utf8)
        try setup.channel.writeInbound(ByteBuffer(bytes: bytes))
        #expect(setup.recorder.headers.first?.tlvs.first?.value == Array("example.com".utf8))
        #expect(try setup.forwarded() == "\u{16}\u{03}\u{01}tls")
        _ = try setup.channel.finish()
    }

    @Test func handlerLocalCommand() throws {
        let setup = try Setup()
        try setup.channel.writeInbound(ByteBuffer(bytes: Self.v2(command: 0x0, family: 0x00, addresses: [])))
        #expect(
            setup.recorder.headers == [
                ProxyProtocolHeader(version: .v2, command: .local, source: nil, destination: nil)
            ]
        )
        #expect(setup.handlerRemoved())
        #expect(try setup.forwarded() == "")
        _ = try setup.channel.finish()
    }

    @Test(arguments: [
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "PROXY TCP4 192.0.2.10 198.51.100.1 54321 443\nGET / HTTP/1.1\r\n",
        "PROXY TCP4 192.0.2.10 198.51.100.1 99999 443\r\nGET / HTTP/1.1\r\n",
        "PROXY UNKNOWN " + String(repeating: "a", count: 200),
    ])
    func handlerClosesOnMissingOrMalformedHeader(input: String) throws {
        let setup = try Setup()
        _ = try? setup.channel.writeInbound(ByteBuffer(string: input))
        #expect(setup.channel.isActive == false)
        #expect(setup.recorder.headers.isEmpty)
        #expect(setup.recorder.errors.first is ProxyProtocolError)
        #expect(try setup.forwarded() == "")
    }

    @Test func handlerClosesOnOversizedV2() throws {
        let setup = try Setup()
        _ = try? setup.channel.writeInbound(
            ByteBuffer(bytes: Self.v2(family: 0x11, addresses: Self.tcp4Addresses, length: 4_000))
        )
        #expect(setup.channel.isActive == false)
        #expect((setup.recorder.errors.first as? ProxyProtocolError)?.code == ProxyProtocolError.Code.v2TooLong)
        #expect(try setup.forwarded() == "")
    }

    @Test func handlerClosesWhenTheHeaderDoesNotComeInTime() throws {
        let setup = try Setup(timeout: .seconds(5))
        try setup.channel.writeInbound(ByteBuffer(string: "PROXY TCP4 "))
        setup.channel.embeddedEventLoop.advanceTime(by: .seconds(4))
        #expect(setup.channel.isActive)
        setup.channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(setup.channel.isActive == false)
        #expect((setup.recorder.errors.first as? ProxyProtocolError)?.code == ProxyProtocolError.Code.timeout)
        #expect(try setup.forwarded() == "")
    }

    @Test func timerStopsOnceTheHeaderArrived() throws {
        let setup = try Setup(timeout: .seconds(5))
        try setup.channel.writeInbound(ByteBuffer(string: "PROXY UNKNOWN\r\n"))
        setup.channel.embeddedEventLoop.advanceTime(by: .seconds(10))
        #expect(setup.channel.isActive)
        #expect(setup.recorder.errors.isEmpty)
        _ = try setup.channel.finish()
    }

    // MARK: - listeners without the PROXY protocol

    @Test(arguments: [
        Array("PROXY TCP4 192.0.2.10 198.51.100.1 54321 443\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8),
        Array("PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8),
        ProxyProtocolTests.v2(family: 0x11, addresses: ProxyProtocolTests.tcp4Addresses)
            + Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8),
    ])
    func forgedHeaderIsAParseErrorForTheHTTPDecoder(bytes: [UInt8]) throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder()))
        var failure: (any Error)?
        do {
            try channel.writeInbound(ByteBuffer(bytes: bytes))
        } catch {
            failure = error
        }
        #expect(failure is HTTPParserError)
        // No request head came out of it.
        #expect(try channel.readInbound(as: HTTPServerRequestPart.self) == nil)
        _ = try? channel.finish()
    }
}
