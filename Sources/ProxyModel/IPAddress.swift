/// An IPv4 or IPv6 address as a value (no sockets involved).
public enum IPAddress: Sendable, Hashable, CustomStringConvertible {
    case v4(UInt32)
    /// High and low 64 bits, network order.
    case v6(UInt64, UInt64)

    /// Parses dotted IPv4 (`10.0.0.1`) and IPv6 text (`::1`, `2001:db8::1`, `::ffff:10.0.0.1`),
    /// without brackets, without zone ids. IPv4-mapped IPv6 addresses are returned as `.v4`.
    public static func parse(_ text: String) -> IPAddress? { _parseIPAddress(text) }

    public var description: String { _describeIPAddress(self) }
}

/// A CIDR block such as `10.0.0.0/8` or `2001:db8::/32`. A bare address means a single host.
public struct CIDR: Sendable, Hashable, CustomStringConvertible {
    public let address: IPAddress
    public let prefixLength: Int

    /// nil when the text is not a valid block (bad address, prefix out of range, host bits set are
    /// accepted and masked off).
    public static func parse(_ text: String) -> CIDR? { _parseCIDR(text) }

    public init(address: IPAddress, prefixLength: Int) {
        self.address = address
        self.prefixLength = prefixLength
    }

    public func contains(_ ip: IPAddress) -> Bool { _cidrContains(self, ip) }

    public var description: String { "\(self.address)/\(self.prefixLength)" }
}
