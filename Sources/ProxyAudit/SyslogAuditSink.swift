public import AuditCore
import Foundation
public import Logging
public import NIOCore
import NIOPosix
import NIOSSL
public import ProxyConfig
import ProxyModel

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Ships sealed events to a syslog server: one RFC 5424 message per event, over TCP with TLS (RFC 5425),
/// framed by octet counting (`MSG-LEN SP SYSLOG-MSG`), so a message may hold any byte.
///
///     <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG
///
/// - PRI: `facility * 8 + severity`; severity 5 (notice) for an `http.request` (or `.long_running`) whose
///   decision is `deny` and for `auth.suppressed`, 4 (warning) for `audit.dropped`, 6 (informational)
///   otherwise. The deny test is a byte search for `"decision":"deny"` in the canonical line: a JSON string
///   cannot hold an unescaped quote, so the bytes occur only as that member.
/// - TIMESTAMP: the event's time (RFC 3339, UTC, microseconds). HOSTNAME: `gethostname()`. PROCID: the pid.
///   MSGID: the event kind. STRUCTURED-DATA: `-` (seq and hash are in the message; an SD-ID of our own would
///   need an IANA enterprise number).
/// - MSG: the event's canonical JSON line, UTF-8, without a BOM: RFC 5424 allows MSG-ANY, JSON forbids a
///   leading BOM, and collectors (rsyslog among them) keep the BOM as part of the message.
///
/// The server must accept messages of the events' size: rsyslog's default `maxMessageSize` is 8 KiB.
///
/// **TLS.** 1.2 or newer. The server's certificate must chain to `ca_file` (else the system's roots) and be
/// valid for `server_name` (default: the address's host), which is sent as SNI when it is a DNS name; NIOSSL
/// also accepts a certificate whose IP SAN is the address connected to. `certificate` and `private_key`
/// authenticate the sink to the server. Plain TCP (`tls: false`) only to a loopback address.
///
/// **Delivery.** ``write(_:)`` only queues (the connection lives on an event loop): the backlog holds at
/// most ``Options/backlogCapacity`` events, and a batch that does not fit makes `write` wait, for at most
/// ``Options/writeTimeout``, then throw ``SyslogSinkError/Code/backlogFull`` without keeping any of the batch
/// (the audit writer logs that and retries the same batch: backpressure, nothing dropped, no duplicates).
/// The connection is opened on the first event and re-opened after a failure with exponential backoff
/// (``Options/initialBackoff`` doubling up to ``Options/maxBackoff``, with jitter).
///
/// Syslog has no acknowledgement: a successful socket write means the kernel has the bytes, not that the
/// server read them. So the sink keeps the events most recently written on the current connection, up to
/// ``Options/resendWindowBytes`` of messages (default 8 MiB, about what the two kernels' TCP buffers can hold
/// on Linux), and when the connection breaks it sends them again on the next one, ahead of the backlog.
/// Events that reached the server before the break arrive twice; collectors deduplicate by `hash`. An event
/// is lost only if the connection breaks after more than the resend window was written behind it.
///
/// ``close(deadline:)`` sends what is queued, then closes gracefully (TLS close_notify, or a TCP half-close)
/// and waits for the server to close its side: the server has then read every byte. It logs how many events
/// were not delivered (never written, or written but not confirmed by that close) when there are any.
public final class SyslogAuditSink: AuditSink {
    /// Limits and timings; the defaults suit production, tests shorten them.
    public struct Options: Sendable {
        /// Events accepted but not yet written to a connection. Default 10,000.
        public var backlogCapacity: Int
        /// How long ``SyslogAuditSink/write(_:)`` waits for room in the backlog before it throws. Default 1 s.
        public var writeTimeout: Duration
        /// Bytes of recently written messages kept to send again after a broken connection. Default 8 MiB.
        public var resendWindowBytes: Int
        /// The first reconnect delay; it doubles with each failure up to ``maxBackoff``. Default 500 ms.
        public var initialBackoff: Duration
        /// Default 30 s.
        public var maxBackoff: Duration
        /// Each delay is shortened by up to this fraction at random, so that replicas spread. Default 0.2.
        public var backoffJitter: Double
        /// A connection that lived this long restarts the backoff at ``initialBackoff``. Default 10 s.
        public var backoffResetAfter: Duration
        /// TCP connect timeout. Default 10 s.
        public var connectTimeout: Duration

        public init(
            backlogCapacity: Int = 10_000,
            writeTimeout: Duration = .seconds(1),
            resendWindowBytes: Int = 8 << 20,
            initialBackoff: Duration = .milliseconds(500),
            maxBackoff: Duration = .seconds(30),
            backoffJitter: Double = 0.2,
            backoffResetAfter: Duration = .seconds(10),
            connectTimeout: Duration = .seconds(10)
        ) {
            self.backlogCapacity = backlogCapacity
            self.writeTimeout = writeTimeout
            self.resendWindowBytes = resendWindowBytes
            self.initialBackoff = initialBackoff
            self.maxBackoff = maxBackoff
            self.backoffJitter = backoffJitter
            self.backoffResetAfter = backoffResetAfter
            self.connectTimeout = connectTimeout
        }
    }

    /// `syslog tls://host:port` or `syslog tcp://host:port`.
    public let name: String
    let format: SyslogMessageFormat
    private let options: Options
    private let logger: Logger
    private let shared: SyslogSharedState
    private let loop: any EventLoop
    private let connection: NIOLoopBoundBox<SyslogConnection>

    /// Reads the CA bundle and client certificate and builds the TLS context (blocking: call at startup or
    /// on reload, off any event loop). No connection is opened until the first event.
    ///
    /// - Parameters:
    ///   - instance: this replica's id (log metadata; every event carries it too).
    ///   - eventLoopGroup: where the connection lives (default `MultiThreadedEventLoopGroup.singleton`).
    public init(
        config: AuditSyslogSinkConfig,
        instance: String,
        logger: Logger,
        options: Options = Options(),
        eventLoopGroup: (any EventLoopGroup)? = nil
    ) throws {
        guard options.backlogCapacity > 0, options.resendWindowBytes >= 0, options.initialBackoff > .zero,
            options.maxBackoff >= options.initialBackoff, (0...1).contains(options.backoffJitter)
        else {
            throw SyslogSinkError(.invalidConfiguration, "invalid sink options")
        }
        guard (0...23).contains(config.facility) else {
            throw SyslogSinkError(.invalidConfiguration, "facility \(config.facility) is not within 0...23")
        }
        guard !config.appName.isEmpty, config.appName.utf8.count <= 48,
            config.appName.utf8.allSatisfy({ $0 >= 33 && $0 <= 126 })
        else {
            throw SyslogSinkError(.invalidConfiguration, "app_name must be 1 to 48 printable ASCII characters")
        }
        guard (1...65535).contains(config.address.port) else {
            throw SyslogSinkError(.invalidConfiguration, "port \(config.address.port) is out of range")
        }
        let scheme = config.tls ? "tls" : "tcp"
        self.name = "syslog \(scheme)://\(config.address)"
        var sslContext: NIOSSLContext?
        var verifiedName: String?
        if config.tls {
            let context = try Self.makeSSLContext(config)
            sslContext = context
            let expected = config.serverName ?? config.address.host
            if IPAddress.parse(expected) != nil {
                // An IP literal cannot be SNI; NIOSSL then checks the certificate's IP SANs against the peer's
                // address, which is only the configured name when it is the address we connect to.
                guard IPAddress.parse(config.address.host) == IPAddress.parse(expected) else {
                    throw SyslogSinkError(
                        .invalidConfiguration,
                        "server_name \(expected) is an IP address other than the address's host"
                    )
                }
            } else {
                verifiedName = expected
            }
            // A name NIOSSL cannot send as SNI fails here, not at every connection attempt.
            do {
                _ = try NIOSSLClientHandler(context: context, serverHostname: verifiedName)
            } catch {
                throw SyslogSinkError(.invalidConfiguration, "server name \(expected): \(error)")
            }
        } else {
            guard Self.isLoopback(config.address.host) else {
                throw SyslogSinkError(.invalidConfiguration, "plain TCP is only allowed to a loopback address")
            }
        }
        self.format = SyslogMessageFormat(
            facility: config.facility,
            hostname: SyslogMessageFormat.localHostname(),
            appName: config.appName,
            processID: Int(getpid())
        )
        var logger = logger
        logger[metadataKey: "proxy_audit_sink"] = "\(self.name)"
        logger[metadataKey: "proxy_instance"] = "\(instance)"
        self.logger = logger
        self.options = options
        self.shared = SyslogSharedState()
        let loop = (eventLoopGroup ?? MultiThreadedEventLoopGroup.singleton).next()
        self.loop = loop
        self.connection = NIOLoopBoundBox.makeBoxSendingValue(
            SyslogConnection(
                loop: loop,
                address: config.address,
                sslContext: sslContext,
                serverHostname: verifiedName,
                format: self.format,
                options: options,
                shared: self.shared,
                logger: logger
            ),
            eventLoop: loop
        )
    }

    public func write(_ batch: [SealedAuditEvent]) throws {
        guard !batch.isEmpty else { return }
        let deadline = Date(timeIntervalSinceNow: self.options.writeTimeout.inSeconds)
        let condition = self.shared.condition
        condition.lock()
        // Room for the whole batch (or an empty backlog): all of it or none of it, so a retried batch is not
        // duplicated.
        while !self.shared.state.closing, !self.shared.state.pending.isEmpty,
            self.shared.state.pending.count + batch.count > self.options.backlogCapacity
        {
            if !condition.wait(until: deadline) {
                let lastError = self.shared.state.lastError
                let queued = self.shared.state.pending.count
                condition.unlock()
                throw SyslogSinkError(
                    .backlogFull,
                    "backlog full (\(queued) events) for \(self.options.writeTimeout): "
                        + (lastError.map { "the server is unreachable (\($0))" } ?? "the server reads too slowly")
                )
            }
        }
        guard !self.shared.state.closing else {
            condition.unlock()
            throw SyslogSinkError(.closed, "the sink is closed")
        }
        self.shared.state.pending.append(contentsOf: batch)
        self.shared.state.accepted += UInt64(batch.count)
        let schedule = !self.shared.state.kickScheduled
        self.shared.state.kickScheduled = true
        condition.unlock()
        if schedule { self.kick() }
    }

    public func tick(now: AuditTime) throws {
        // Nothing is time-based here; this only makes sure queued events are not forgotten.
        let schedule = self.shared.withLock { state -> Bool in
            guard !state.pending.isEmpty, !state.kickScheduled, !state.closing else { return false }
            state.kickScheduled = true
            return true
        }
        if schedule { self.kick() }
    }

    public func close(deadline: Double) {
        let end = Date(timeIntervalSinceNow: max(0, deadline))
        let alreadyClosing = self.shared.withLock { state -> Bool in
            defer { state.closing = true }
            return state.closing
        }
        guard !alreadyClosing else { return }
        let connection = self.connection
        self.loop.execute { connection.value.closeRequested() }

        // 1. Everything queued reaches a connection (written to the socket), or the deadline passes.
        let condition = self.shared.condition
        condition.lock()
        while !(self.shared.state.pending.isEmpty && self.shared.state.inFlight == 0) {
            if !condition.wait(until: end) { break }
        }
        condition.unlock()

        // 2. Graceful close, confirmed by the server closing its side, within what is left of the deadline.
        let remaining = max(0, end.timeIntervalSinceNow)
        self.loop.execute { connection.value.closeGracefully(within: remaining) }
        condition.lock()
        while self.shared.state.outcome == nil {
            if !condition.wait(until: end) { break }
        }
        condition.unlock()

        // 3. Whatever is still open is cut; count what did not make it.
        let result = try? self.loop.submit { connection.value.finish() }.wait()
        let notSent = result?.notSent ?? self.shared.withLock { $0.pending.count + $0.inFlight }
        let unconfirmed = result?.unconfirmed ?? 0
        let accepted = self.shared.withLock { $0.accepted }
        if notSent + unconfirmed == 0 {
            self.logger.info(
                "syslog sink closed; every event delivered",
                metadata: ["proxy_audit_events": "\(accepted)"]
            )
        } else {
            self.logger.error(
                "syslog sink closed: \(notSent + unconfirmed) audit events not delivered",
                metadata: [
                    "proxy_audit_events": "\(accepted)",
                    "proxy_audit_undelivered": "\(notSent + unconfirmed)",
                    "proxy_audit_not_sent": "\(notSent)",
                    "proxy_audit_unconfirmed": "\(unconfirmed)",
                    "proxy_error": "\(self.shared.withLock { $0.lastError } ?? "close deadline passed")",
                ]
            )
        }
    }

    // MARK: -

    private func kick() {
        let connection = self.connection
        self.loop.execute { connection.value.eventsQueued() }
    }

    private static func makeSSLContext(_ config: AuditSyslogSinkConfig) throws -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.maximumTLSVersion = nil
        tls.certificateVerification = .fullVerification
        // NIOSSL closes anyway when the server does not answer close_notify within this; a graceful close
        // waits less (``SyslogConnection/maxGracefulClose``), so a close that completes is one the server made.
        tls.shutdownTimeout = .seconds(10)
        if let caFile = config.caFile {
            let certificates: [NIOSSLCertificate]
            do {
                certificates = try NIOSSLCertificate.fromPEMFile(caFile)
            } catch {
                throw SyslogSinkError(.invalidConfiguration, "ca_file \(caFile): \(error)")
            }
            guard !certificates.isEmpty else {
                throw SyslogSinkError(.invalidConfiguration, "ca_file \(caFile): no PEM certificate")
            }
            tls.trustRoots = .certificates(certificates)
        } else {
            tls.trustRoots = .default
        }
        switch (config.certificateFile, config.privateKeyFile) {
        case (let certificateFile?, let keyFile?):
            do {
                let chain = try NIOSSLCertificate.fromPEMFile(certificateFile)
                guard !chain.isEmpty else {
                    throw SyslogSinkError(.invalidConfiguration, "certificate \(certificateFile): no PEM certificate")
                }
                tls.certificateChain = chain.map { .certificate($0) }
            } catch let error as SyslogSinkError {
                throw error
            } catch {
                throw SyslogSinkError(.invalidConfiguration, "certificate \(certificateFile): \(error)")
            }
            do {
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem))
            } catch {
                // The error names the failure, never the key's bytes.
                throw SyslogSinkError(.invalidConfiguration, "private_key \(keyFile): \(error)")
            }
        case (nil, nil):
            break
        default:
            throw SyslogSinkError(.invalidConfiguration, "certificate and private_key go together")
        }
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw SyslogSinkError(.invalidConfiguration, "TLS setup failed: \(error)")
        }
    }

    static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" { return true }
        guard let address = IPAddress.parse(host) else { return false }
        return CIDR.parse("127.0.0.0/8")!.contains(address) || address == IPAddress.parse("::1")
    }
}

/// Why the syslog sink refused a configuration or a batch. The description names files and causes, never
/// key material.
public struct SyslogSinkError: Error, Hashable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case invalidConfiguration, backlogFull, closed
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The configuration or a file it names cannot be used.
        public static let invalidConfiguration = Code(.invalidConfiguration)
        /// ``SyslogAuditSink/write(_:)`` found no room within its timeout; nothing of the batch was kept.
        public static let backlogFull = Code(.backlogFull)
        /// Written after ``SyslogAuditSink/close(deadline:)``.
        public static let closed = Code(.closed)

        public var description: String {
            switch self.base {
            case .invalidConfiguration: return "invalid configuration"
            case .backlogFull: return "backlog full"
            case .closed: return "closed"
            }
        }
    }

    public let code: Code
    public let reason: String
    public let file: String
    public let line: Int

    init(_ code: Code, _ reason: String, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.reason = reason
        self.file = file
        self.line = line
    }

    public var description: String { "syslog sink: \(self.reason)" }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }
}

// MARK: - message format

/// RFC 5424 messages with RFC 5425 octet-counting frames. Pure: no I/O.
struct SyslogMessageFormat: Sendable {
    let facility: Int
    /// ` HOSTNAME APP-NAME PROCID ` (with the spaces around), the same for every message.
    let fixedFields: [UInt8]

    init(facility: Int, hostname: String, appName: String, processID: Int) {
        self.facility = facility
        var fixed: [UInt8] = [UInt8(ascii: " ")]
        fixed.append(contentsOf: Self.headerField(hostname, maxLength: 255))
        fixed.append(UInt8(ascii: " "))
        fixed.append(contentsOf: Self.headerField(appName, maxLength: 48))
        fixed.append(UInt8(ascii: " "))
        fixed.append(contentsOf: Self.headerField(String(processID), maxLength: 128))
        fixed.append(UInt8(ascii: " "))
        self.fixedFields = fixed
    }

    static let informational = 6
    static let notice = 5
    static let warning = 4

    private static let denyMarker = Array(#""decision":"deny""#.utf8)

    static func severity(of event: SealedAuditEvent) -> Int {
        switch event.kind {
        case AuditKind.dropped:
            return Self.warning
        case AuditKind.authSuppressed:
            return Self.notice
        case AuditKind.httpRequest, AuditKind.httpRequestLongRunning:
            return Self.contains(event.line, Self.denyMarker) ? Self.notice : Self.informational
        default:
            return Self.informational
        }
    }

    func priority(of event: SealedAuditEvent) -> Int {
        self.facility * 8 + Self.severity(of: event)
    }

    /// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - ` (everything before MSG).
    func header(of event: SealedAuditEvent) -> [UInt8] {
        var header: [UInt8] = []
        header.reserveCapacity(self.fixedFields.count + 80)
        header.append(UInt8(ascii: "<"))
        header.append(contentsOf: String(self.priority(of: event)).utf8)
        header.append(contentsOf: ">1 ".utf8)
        header.append(contentsOf: event.time.rfc3339.utf8)
        header.append(contentsOf: self.fixedFields)
        header.append(contentsOf: Self.headerField(event.kind, maxLength: 32))
        header.append(contentsOf: " - ".utf8)
        return header
    }

    /// The SYSLOG-MSG of one event.
    func message(of event: SealedAuditEvent) -> [UInt8] {
        self.header(of: event) + event.line
    }

    /// Appends `MSG-LEN SP SYSLOG-MSG`; returns the bytes appended.
    @discardableResult
    func appendFrame(of event: SealedAuditEvent, to buffer: inout ByteBuffer) -> Int {
        let header = self.header(of: event)
        let length = header.count + event.line.count
        var written = buffer.writeString(String(length))
        written += buffer.writeInteger(UInt8(ascii: " "))
        written += buffer.writeBytes(header)
        written += buffer.writeBytes(event.line)
        return written
    }

    /// A header field: printable US-ASCII only (anything else becomes `_`), at most `maxLength` bytes, `-`
    /// when empty (the NILVALUE).
    static func headerField(_ text: String, maxLength: Int) -> [UInt8] {
        var out: [UInt8] = []
        for byte in text.utf8.prefix(maxLength) {
            out.append((33...126).contains(byte) ? byte : UInt8(ascii: "_"))
        }
        return out.isEmpty ? [UInt8(ascii: "-")] : out
    }

    static func localHostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "-" }
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count else { return false }
        let first = needle[0]
        var index = 0
        let last = haystack.count - needle.count
        while index <= last {
            if haystack[index] == first {
                var match = true
                for offset in 1..<needle.count where haystack[index + offset] != needle[offset] {
                    match = false
                    break
                }
                if match { return true }
            }
            index += 1
        }
        return false
    }
}

// MARK: - backoff

/// Reconnect delays: `initial * 2^(failures)`, capped, each shortened by up to `jitter` (a fraction) using
/// the random value the caller passes. Pure.
struct SyslogBackoff: Sendable {
    let initial: Duration
    let maximum: Duration
    let jitter: Double
    private(set) var failures = 0

    init(initial: Duration, maximum: Duration, jitter: Double) {
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
    }

    /// The delay before the next attempt; counts a failure. `random` is in 0..<1.
    mutating func nextDelay(random: Double) -> Duration {
        let exponent = min(self.failures, 30)
        self.failures += 1
        let base = min(self.initial.inSeconds * Double(1 << exponent), self.maximum.inSeconds)
        let delay = base * (1 - self.jitter * min(max(random, 0), 1))
        return .nanoseconds(Int64(delay * 1e9))
    }

    mutating func reset() {
        self.failures = 0
    }
}

extension Duration {
    fileprivate var inSeconds: Double {
        let (seconds, attoseconds) = self.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    fileprivate var timeAmount: TimeAmount {
        let (seconds, attoseconds) = self.components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

// MARK: - state shared by the writer thread and the event loop

/// The backlog and counters, under one condition lock. The writer thread waits on it (room in the backlog,
/// close progress); the event loop only locks briefly and broadcasts.
final class SyslogSharedState: @unchecked Sendable {
    // @unchecked: `state` is read and written only with `condition` locked.
    struct State {
        /// Accepted, not yet handed to a connection (resent events go back to the front).
        var pending = CircularBuffer<SealedAuditEvent>()
        /// Taken by the event loop, written to a channel, the write not complete yet.
        var inFlight = 0
        var kickScheduled = false
        var closing = false
        var accepted: UInt64 = 0
        /// The last connection failure, for the backlog-full error.
        var lastError: String?
        /// Set by the event loop when the graceful close ended.
        var outcome: CloseOutcome?
    }

    enum CloseOutcome {
        case confirmed
        case unconfirmed
    }

    let condition = NSCondition()
    var state = State()

    func withLock<Result>(_ body: (inout State) throws -> Result) rethrows -> Result {
        self.condition.lock()
        defer {
            self.condition.broadcast()
            self.condition.unlock()
        }
        return try body(&self.state)
    }
}

// MARK: - the connection (event loop only)

/// One TCP (+TLS) connection at a time, confined to its event loop: lazy connect, drain the backlog while
/// the channel is writable, keep the resend window, requeue it when the connection breaks, reconnect with
/// backoff, close gracefully.
final class SyslogConnection {
    private enum State {
        /// No connection and nothing to send.
        case idle
        case connecting(SyslogLink)
        case connected(SyslogLink, any Channel)
        case waitingToReconnect(Scheduled<Void>)
        /// Graceful close under way: no new connection, no new writes.
        case closingGracefully(SyslogLink, any Channel, Scheduled<Void>)
        case closed
    }

    private let loop: any EventLoop
    private let address: HostPort
    private let sslContext: NIOSSLContext?
    private let serverHostname: String?
    private let format: SyslogMessageFormat
    private let options: Options
    private let shared: SyslogSharedState
    private let logger: Logger
    private var state: State = .idle
    private var backoff: SyslogBackoff
    private var nextLinkID = 0
    /// The sink is closing: reconnect at once instead of backing off, and end when nothing is left.
    private var closing = false
    /// Failures in a row, for the log (the first is an error, the rest debug until one succeeds).
    private var failureStreak = 0
    private var lastLoggedFailure: String?

    typealias Options = SyslogAuditSink.Options

    /// At most this much is written per channel write.
    static let maxChunkBytes = 64 * 1024
    /// Seconds a graceful close waits for the server, less than the TLS `shutdownTimeout` (10 s).
    static let maxGracefulClose = 9.0

    init(
        loop: any EventLoop,
        address: HostPort,
        sslContext: NIOSSLContext?,
        serverHostname: String?,
        format: SyslogMessageFormat,
        options: Options,
        shared: SyslogSharedState,
        logger: Logger
    ) {
        self.loop = loop
        self.address = address
        self.sslContext = sslContext
        self.serverHostname = serverHostname
        self.format = format
        self.options = options
        self.shared = shared
        self.logger = logger
        self.backoff = SyslogBackoff(
            initial: options.initialBackoff,
            maximum: options.maxBackoff,
            jitter: options.backoffJitter
        )
    }

    // MARK: events

    func eventsQueued() {
        self.shared.withLock { $0.kickScheduled = false }
        switch self.state {
        case .idle:
            self.connect()
        case .connected(let link, let channel):
            self.drain(link, channel)
        case .connecting, .waitingToReconnect, .closingGracefully, .closed:
            break
        }
    }

    func channelWritable(_ link: SyslogLink) {
        if case .connected(let current, let channel) = self.state, current === link {
            self.drain(link, channel)
        }
    }

    /// The channel failed or closed (or never connected). Idempotent per link.
    func linkDown(_ link: SyslogLink, error: (any Error)?) {
        guard !link.isDown else { return }
        link.isDown = true
        if let error, link.error == nil { link.error = error }

        if case .closingGracefully(let current, _, let timer) = self.state, current === link {
            timer.cancel()
            // The server closed its side after our close_notify / FIN: it read everything before it. A TLS
            // peer that closes without its own close_notify is fine here; any other error is not.
            let confirmed = link.error.map(Self.isBenignCloseError) ?? true
            if confirmed {
                let incomplete = link.incomplete
                self.shared.withLock { $0.inFlight -= incomplete }
                link.sent.removeAll()
                link.sentSizes.removeAll()
                link.incomplete = 0
            } else {
                self.requeue(link)
            }
            self.state = .closed
            self.shared.withLock { $0.outcome = confirmed ? .confirmed : .unconfirmed }
            return
        }

        let isCurrent: Bool
        switch self.state {
        case .connecting(let current), .connected(let current, _): isCurrent = current === link
        default: isCurrent = false
        }
        let resent = link.sent.count
        self.requeue(link)
        guard isCurrent else { return }

        let lived = NIODeadline.now() - link.openedAt
        if link.established && lived >= self.options.backoffResetAfter.timeAmount {
            self.backoff.reset()
        }
        let reason = link.error.map { "\($0)" } ?? "closed by the server"
        self.shared.withLock { $0.lastError = reason }
        self.logFailure(link: link, reason: reason, resent: resent)

        if self.closing {
            // Closing: keep trying at a short interval, close(deadline:) bounds the whole thing.
            self.state = .idle
            let hasWork = self.shared.withLock { !$0.pending.isEmpty }
            if hasWork {
                self.scheduleReconnect(after: min(self.options.initialBackoff, .milliseconds(250)))
            }
            return
        }
        let hasWork = self.shared.withLock { !$0.pending.isEmpty }
        if hasWork || !link.established {
            self.scheduleReconnect(after: self.backoff.nextDelay(random: Double.random(in: 0..<1)))
        } else {
            // The server closed an idle connection: connect again when there is something to send.
            self.state = .idle
        }
    }

    func closeRequested() {
        self.closing = true
        switch self.state {
        case .waitingToReconnect(let timer):
            timer.cancel()
            self.state = .idle
            self.connect()
        case .idle:
            if self.shared.withLock({ !$0.pending.isEmpty }) { self.connect() }
        case .connected(let link, let channel):
            self.drain(link, channel)
        case .connecting, .closingGracefully, .closed:
            break
        }
    }

    /// Closes the connection gracefully and waits (at most `within` seconds) for the server to close its
    /// side; reports the outcome through the shared state.
    func closeGracefully(within seconds: Double) {
        switch self.state {
        case .connected(let link, let channel) where seconds > 0:
            let wait = min(seconds, Self.maxGracefulClose)
            let timer = self.loop.assumeIsolated().scheduleTask(in: .nanoseconds(Int64(wait * 1e9))) {
                self.gracefulCloseTimedOut(link)
            }
            self.state = .closingGracefully(link, channel, timer)
            if self.sslContext != nil {
                channel.close(mode: .all, promise: nil)
            } else {
                channel.close(mode: .output, promise: nil)
            }
        case .connected, .connecting, .waitingToReconnect, .idle, .closed:
            self.shared.withLock { $0.outcome = .unconfirmed }
        case .closingGracefully:
            break
        }
    }

    private func gracefulCloseTimedOut(_ link: SyslogLink) {
        guard case .closingGracefully(let current, _, _) = self.state, current === link else { return }
        self.shared.withLock { $0.outcome = .unconfirmed }
    }

    /// Ends everything; returns what was never written and what was written without confirmation.
    func finish() -> (notSent: Int, unconfirmed: Int) {
        self.closing = true
        var unconfirmed = 0
        switch self.state {
        case .connected(let link, let channel), .closingGracefully(let link, let channel, _):
            if case .closingGracefully(_, _, let timer) = self.state { timer.cancel() }
            unconfirmed = link.sent.count - link.incomplete
            link.isDown = true
            channel.close(promise: nil)
            self.shared.withLock { state in
                state.inFlight -= link.incomplete
                for event in link.sent.reversed().prefix(link.incomplete) { state.pending.prepend(event) }
            }
        case .connecting(let link):
            link.isDown = true
        case .waitingToReconnect(let timer):
            timer.cancel()
        case .idle, .closed:
            break
        }
        self.state = .closed
        let notSent = self.shared.withLock { $0.pending.count + $0.inFlight }
        return (notSent, unconfirmed)
    }

    // MARK: actions

    private func connect() {
        let link = SyslogLink(id: self.nextLinkID, openedAt: .now())
        self.nextLinkID += 1
        self.state = .connecting(link)
        let bound = NIOLoopBound(self, eventLoop: self.loop)
        let boundLink = NIOLoopBound(link, eventLoop: self.loop)
        let sslContext = self.sslContext
        let serverHostname = self.serverHostname
        let bootstrap = ClientBootstrap(group: self.loop)
            .connectTimeout(self.options.connectTimeout.timeAmount)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        let tls = try NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname)
                        try channel.pipeline.syncOperations.addHandler(tls)
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        SyslogChannelHandler(owner: bound.value, link: boundLink.value)
                    )
                }
            }
        bootstrap.connect(host: self.address.host, port: self.address.port).assumeIsolated().whenComplete {
            result in
            switch result {
            case .success(let channel):
                guard case .connecting(let current) = self.state, current === link, !link.isDown else {
                    channel.close(promise: nil)
                    return
                }
                self.state = .connected(link, channel)
                self.logger.debug("syslog connection open", metadata: ["proxy_syslog_connection": "\(link.id)"])
                self.drain(link, channel)
            case .failure(let error):
                self.linkDown(link, error: error)
            }
        }
    }

    private func scheduleReconnect(after delay: Duration) {
        let timer = self.loop.assumeIsolated().scheduleTask(in: delay.timeAmount) {
            guard case .waitingToReconnect = self.state else { return }
            self.state = .idle
            self.connect()
        }
        self.state = .waitingToReconnect(timer)
    }

    /// Writes queued events while the channel takes them.
    ///
    /// A write can fail at once (the peer reset the connection): the channel then closes inside
    /// `writeAndFlush`, and ``linkDown(_:error:)`` puts this link's events back in the backlog. The loop must
    /// stop there: a closed channel still reports itself writable, and writing on would move the requeued
    /// events onto the dead link, where nothing ever resends them.
    private func drain(_ link: SyslogLink, _ channel: any Channel) {
        while !link.isDown, channel.isActive, channel.isWritable {
            let events = self.shared.withLock { state -> [SealedAuditEvent] in
                var taken: [SealedAuditEvent] = []
                var bytes = 0
                while bytes < Self.maxChunkBytes, let event = state.pending.popFirst() {
                    bytes += event.line.count + 100
                    taken.append(event)
                }
                state.inFlight += taken.count
                return taken
            }
            guard !events.isEmpty else { break }
            var buffer = channel.allocator.buffer(capacity: events.reduce(0) { $0 + $1.line.count + 100 })
            var sizes: [Int] = []
            sizes.reserveCapacity(events.count)
            for event in events {
                sizes.append(self.format.appendFrame(of: event, to: &buffer))
            }
            link.sent.append(contentsOf: events)
            link.sentSizes.append(contentsOf: sizes)
            link.incomplete += events.count
            let promise = self.loop.makePromise(of: Void.self)
            promise.futureResult.assumeIsolated().whenComplete { result in
                self.writeCompleted(link, count: events.count, bytes: sizes.reduce(0, +), result: result)
            }
            // Writability changes only as bytes reach the socket (through TLS): flush per chunk.
            channel.writeAndFlush(buffer, promise: promise)
        }
    }

    private func writeCompleted(_ link: SyslogLink, count: Int, bytes: Int, result: Result<Void, any Error>) {
        guard !link.isDown else { return }
        switch result {
        case .success:
            link.incomplete -= count
            link.completedBytes += bytes
            self.shared.withLock { $0.inFlight -= count }
            if !link.established {
                link.established = true
                if self.failureStreak > 0 {
                    self.logger.notice(
                        "syslog server reachable again",
                        metadata: ["proxy_audit_failures": "\(self.failureStreak)"]
                    )
                } else {
                    self.logger.debug("syslog connection established")
                }
                self.failureStreak = 0
                self.lastLoggedFailure = nil
                self.shared.withLock { $0.lastError = nil }
            }
            // Keep only the resend window of completed writes (the incomplete tail always stays).
            while link.completedBytes > self.options.resendWindowBytes, link.sent.count > link.incomplete {
                _ = link.sent.removeFirst()
                link.completedBytes -= link.sentSizes.removeFirst()
            }
        case .failure:
            // The channel is going down; errorCaught / channelInactive requeue everything.
            break
        }
    }

    /// Puts the link's written events back at the front of the backlog, oldest first.
    private func requeue(_ link: SyslogLink) {
        let incomplete = link.incomplete
        let sent = link.sent
        link.sent.removeAll()
        link.sentSizes.removeAll()
        link.incomplete = 0
        link.completedBytes = 0
        guard !sent.isEmpty || incomplete > 0 else { return }
        self.shared.withLock { state in
            state.inFlight -= incomplete
            for event in sent.reversed() { state.pending.prepend(event) }
        }
    }

    private func logFailure(link: SyslogLink, reason: String, resent: Int) {
        self.failureStreak += 1
        var metadata: Logger.Metadata = [
            "proxy_error": "\(reason)",
            "proxy_audit_failures": "\(self.failureStreak)",
        ]
        if resent > 0 { metadata["proxy_audit_resend"] = "\(resent)" }
        let message: Logger.Message =
            link.established
            ? "syslog connection lost; unconfirmed events will be sent again" : "syslog connection failed"
        if link.established && (link.error.map(Self.isBenignCloseError) ?? true) {
            // The server closed a working connection (a restart; TLS servers often skip close_notify): worth a
            // notice, not an error. Failing to reconnect is an error.
            self.logger.notice(message, metadata: metadata)
        } else if self.failureStreak == 1 || reason != self.lastLoggedFailure || self.failureStreak % 10 == 0 {
            self.logger.error(message, metadata: metadata)
        } else {
            self.logger.debug(message, metadata: metadata)
        }
        self.lastLoggedFailure = reason
    }

    private static func isBenignCloseError(_ error: any Error) -> Bool {
        if let error = error as? NIOSSLError, case .uncleanShutdown = error { return true }
        if let error = error as? ChannelError, case .eof = error { return true }
        return false
    }
}

/// One connection's bookkeeping: what was written on it and may need sending again.
final class SyslogLink {
    let id: Int
    let openedAt: NIODeadline
    /// Written on this connection, oldest first: the completed writes within the resend window, then the
    /// `incomplete` ones.
    var sent = CircularBuffer<SealedAuditEvent>()
    var sentSizes = CircularBuffer<Int>()
    var incomplete = 0
    var completedBytes = 0
    /// A write completed: TCP (and TLS) came up and the server took bytes.
    var established = false
    var isDown = false
    var error: (any Error)?

    init(id: Int, openedAt: NIODeadline) {
        self.id = id
        self.openedAt = openedAt
    }
}

@available(*, unavailable)
extension SyslogLink: Sendable {}

@available(*, unavailable)
extension SyslogConnection: Sendable {}

/// Reports the channel's life to its ``SyslogConnection``; discards anything the server sends.
final class SyslogChannelHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let owner: SyslogConnection
    private let link: SyslogLink

    init(owner: SyslogConnection, link: SyslogLink) {
        self.owner = owner
        self.link = link
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // RFC 5425 servers send nothing; anything that comes is ignored.
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { self.owner.channelWritable(self.link) }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if self.link.error == nil { self.link.error = error }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.owner.linkDown(self.link, error: nil)
        context.fireChannelInactive()
    }
}

@available(*, unavailable)
extension SyslogChannelHandler: Sendable {}
