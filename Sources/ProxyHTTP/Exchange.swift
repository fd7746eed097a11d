import AuditCore
import NIOCore
import NIOHTTP1
import ProxyModel
import Synchronization

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

    /// Strong: a weak reference would give the connection's handler a refcount side table, which sends every
    /// retain and release of it (several per request) down the runtime's slow path. The cycle ends when the
    /// handler lets the exchange go (its end, the connection's close, or the handler's removal).
    let server: ProxyServerHandler
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
    /// The client's head, as received (a reference, not a copy): the event's method, host, path, query and
    /// user agent are read from it, and from ``prepared``, only when the event is built.
    let head: HTTPRequestHead
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
        self.head = head
        LiveObjects.exchanges.add(1, ordering: .relaxed)
    }

    deinit {
        LiveObjects.exchanges.subtract(1, ordering: .relaxed)
    }

    /// What the audit event says of the request: the normalized host and path once the request was routed,
    /// the head's otherwise (bounded); the raw query (redacted by the caller).
    var auditTarget: (host: String, path: String, query: Substring?) {
        let target = self.head.uri
        let question = target.utf8.firstIndex(of: UInt8(ascii: "?"))
        let query = question.map { target[target.index(after: $0)...] }
        if let prepared = self.prepared {
            return (prepared.facts.host, prepared.facts.path, query)
        }
        let rawPath = question.map { target[..<$0] } ?? target[...]
        return (self.head.headers.first(name: "host") ?? "", String(rawPath.prefix(2048)), query)
    }


    // MARK: UpstreamReceiver

    func upstreamResponsePart(_ part: HTTPClientResponsePart) {
        self.server.upstreamResponsePart(part, exchange: self)
    }

    func upstreamReadComplete() {
        self.server.upstreamReadComplete(exchange: self)
    }

    func upstreamWritabilityChanged(isWritable: Bool) {
        self.server.upstreamWritabilityChanged(exchange: self)
    }

    func upstreamFailed(_ error: (any Error)?) {
        self.server.upstreamFailed(error, exchange: self)
    }
}

@available(*, unavailable)
extension Exchange: Sendable {}
