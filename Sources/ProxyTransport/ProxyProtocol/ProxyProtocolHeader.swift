public import ProxyModel

/// An address and port from a PROXY protocol header.
public struct ProxyProtocolAddress: Sendable, Hashable, CustomStringConvertible {
    public var address: IPAddress
    public var port: Int

    public init(address: IPAddress, port: Int) {
        self.address = address
        self.port = port
    }

    public var description: String {
        if case .v6 = self.address { return "[\(self.address)]:\(self.port)" }
        return "\(self.address):\(self.port)"
    }
}

/// A parsed PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2), fired as a user
/// inbound event by ``ProxyProtocolHandler`` before any byte that followed it.
///
/// `source` nil means "keep the connection's own addresses": v2 `LOCAL` (health checks from the
/// balancer itself), v1 `UNKNOWN`, and v2 families without an IP address (`AF_UNSPEC`, `AF_UNIX`) or
/// a non-stream transport.
public struct ProxyProtocolHeader: Sendable, Hashable {
    public enum Version: Int, Sendable, Hashable {
        case v1 = 1
        case v2 = 2
    }

    public enum Command: Sendable, Hashable {
        /// The connection was relayed for the client at `source`.
        case proxy
        /// The balancer's own connection (v2 only): no address override.
        case local
    }

    /// A v2 type-length-value field (`PP2_TYPE_ALPN` 0x01, `AUTHORITY` 0x02, `CRC32C` 0x03, `NOOP` 0x04,
    /// `UNIQUE_ID` 0x05, `SSL` 0x20, `NETNS` 0x30, vendor ranges 0xE0...0xEF such as AWS 0xEA).
    public struct TLV: Sendable, Hashable {
        public var type: UInt8
        public var value: [UInt8]

        public init(type: UInt8, value: [UInt8]) {
            self.type = type
            self.value = value
        }
    }

    public var version: Version
    public var command: Command
    /// The real client; nil: keep the connection's peer address.
    public var source: ProxyProtocolAddress?
    /// The address the client connected to (the balancer's listener).
    public var destination: ProxyProtocolAddress?
    /// v2 TLVs in wire order (empty for v1 and for `LOCAL`).
    public var tlvs: [TLV]

    public init(
        version: Version,
        command: Command,
        source: ProxyProtocolAddress?,
        destination: ProxyProtocolAddress?,
        tlvs: [TLV] = []
    ) {
        self.version = version
        self.command = command
        self.source = source
        self.destination = destination
        self.tlvs = tlvs
    }
}

/// Why a connection's PROXY protocol header was refused. The connection is closed; nothing it sent is
/// passed on.
public struct ProxyProtocolError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case missingHeader = "connection does not start with a PROXY protocol header"
            case malformedV1 = "malformed PROXY v1 header"
            case v1TooLong = "PROXY v1 header longer than 107 bytes"
            case malformedV2 = "malformed PROXY v2 header"
            case v2TooLong = "PROXY v2 header longer than allowed"
            case timeout = "no complete PROXY protocol header in time"
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        public static let missingHeader = Code(.missingHeader)
        public static let malformedV1 = Code(.malformedV1)
        public static let v1TooLong = Code(.v1TooLong)
        public static let malformedV2 = Code(.malformedV2)
        public static let v2TooLong = Code(.v2TooLong)
        public static let timeout = Code(.timeout)

        public var description: String { self.base.rawValue }
    }

    public var code: Code
    /// What exactly is wrong (never the raw bytes).
    public var reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public var description: String { "\(self.code): \(self.reason)" }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }
}
