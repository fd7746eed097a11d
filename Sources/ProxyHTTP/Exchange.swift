import AuditCore
import NIOCore
import NIOHTTP1
import ProxyModel

/// One request/response exchange on a client connection, from its head to the end of its response.
/// Confined to the client channel's event loop. Upstream events arrive here and are passed to the
/// connection handler together with the exchange, so that events for a finished exchange are ignored.
final class Exchange: UpstreamReceiver {
    enum Phase: Equatable {
        /// Identity, policy and upstream authentication are running (reads paused).
        case processing
        /// Waiting for an upstream connection (reads paused).
        case connecting
        /// Request and response stream between client and upstream.
        case forwarding
        /// We answer ourselves (an error); the upstream is not involved (any more).
        case responding
    }

    weak var server: ProxyServerHandler?
    var phase: Phase = .processing
    var requestID = ""
    var routeName: String?
    var prepared: PreparedRequest?
    var upstreamHead: HTTPRequestHead?
    let clientVersion: HTTPVersion
    /// The request declared a body (Content-Length > 0 or chunked).
    let expectsBody: Bool

    // request side
    var buffered = CircularBuffer<ByteBuffer>()
    var requestEndReceived = false
    var requestEndSent = false
    var requestBodyBytes: Int64 = 0
    var needsUpstreamFlush = false

    // upstream side
    var upstream: UpstreamConnection?
    var pool: UpstreamPool?
    var reusedConnection = false
    var retried = false
    var responseHeadSent = false
    var upstreamKeepAlive = false
    var needsClientFlush = false

    // timers
    var lastActivity = NIODeadline.now()

    // audit: what the event of this exchange records (plain values; encoded off the event loop)
    let startedAt: NIODeadline
    let startedWall: Int64
    /// A slot in the audit buffer is reserved for this exchange's event.
    var auditSlot = false
    /// The completion event was submitted (or deliberately not: rate-limited).
    var audited = false
    /// In the loop's long-running watch (until its event or its end).
    var watchedForLongRunning = false
    var method: String
    var host: String
    var path: String
    var rawQuery: Substring?
    var userAgent: String?
    /// The policy allowed the request (it was, or was to be, forwarded).
    var allowed = false
    var rule: Int?
    var identity: AuditIdentity?
    /// Why we answered ourselves (nil: the upstream answered, or nobody did).
    var errorReason: ReasonCode?
    var status = 0
    var responseBodyBytes: Int64 = 0
    var firstByteAt: NIODeadline?
    var upstreamAddress: String?

    init(server: ProxyServerHandler, head: HTTPRequestHead, expectsBody: Bool, startedAt: NIODeadline, startedWall: Int64) {
        self.server = server
        self.clientVersion = head.version
        self.expectsBody = expectsBody
        self.startedAt = startedAt
        self.startedWall = startedWall
        self.method = head.method.rawValue
        self.host = head.headers.first(name: "host") ?? ""
        let target = head.uri
        if let question = target.utf8.firstIndex(of: UInt8(ascii: "?")) {
            self.path = String(target[..<question].prefix(2048))
            self.rawQuery = target[target.index(after: question)...]
        } else {
            self.path = String(target.prefix(2048))
        }
        self.userAgent = head.headers.first(name: "user-agent").map { String($0.prefix(512)) }
    }


    // MARK: UpstreamReceiver

    func upstreamResponsePart(_ part: HTTPClientResponsePart) {
        self.server?.upstreamResponsePart(part, exchange: self)
    }

    func upstreamReadComplete() {
        self.server?.upstreamReadComplete(exchange: self)
    }

    func upstreamWritabilityChanged(isWritable: Bool) {
        self.server?.upstreamWritabilityChanged(exchange: self)
    }

    func upstreamFailed(_ error: (any Error)?) {
        self.server?.upstreamFailed(error, exchange: self)
    }
}

@available(*, unavailable)
extension Exchange: Sendable {}
