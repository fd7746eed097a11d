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
    var responseTimer: Scheduled<Void>?
    var idleWatchdog: Scheduled<Void>?
    var lastActivity = NIODeadline.now()

    init(server: ProxyServerHandler, clientVersion: HTTPVersion, expectsBody: Bool) {
        self.server = server
        self.clientVersion = clientVersion
        self.expectsBody = expectsBody
    }

    func cancelTimers() {
        self.responseTimer?.cancel()
        self.responseTimer = nil
        self.idleWatchdog?.cancel()
        self.idleWatchdog = nil
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
