import AuditCore
import Logging
import NIOCore
import NIOHTTP1
import PolicyCore
import ProxyConfig
import ProxyModel
import ProxyTransport
import Synchronization

/// Sits in front of the HTTP/1 decoder and tells the proxy handler that bytes arrived, so that the
/// header-read timer starts with the first byte of a request (slowloris protection).
final class InboundBytesObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// Strong (no cycle: the handler does not know the observer); a weak reference would give the handler a
    /// refcount side table (see ``Exchange/server``).
    var target: ProxyServerHandler?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.target?.clientBytesArrived()
        context.fireChannelRead(data)
    }
}

@available(*, unavailable)
extension InboundBytesObserver: Sendable {}

/// The request path of one client connection (HTTP/1.1): parse (NIOHTTP1 decoder, upstream of this
/// handler) → normalize → route → identity → policy → upstream authentication → forward, one pass.
/// Pipelined requests are queued here and answered in order, without pausing/resuming the socket per request.
/// Bodies stream in both directions with backpressure: a side that cannot take more stops reads on the other.
final class ProxyServerHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let runtime: ProxyRuntime
    private let loop: LoopContext
    private let listener: ListenerConfig
    private var logger: Logger
    private var connection: ConnectionInfo
    private var context: ChannelHandlerContext?

    private var inbox = CircularBuffer<HTTPServerRequestPart>()
    private var pumping = false
    private var exchange: Exchange?

    private var readsAllowed = true
    private var readPending = false
    /// false once the connection is to close after the current exchange.
    private var keepAlive = true
    private var closing = false
    private var inputClosed = false
    private var requestCount = 0
    /// The parser failed on a request that follows the one being served (pipelined): answered, and the
    /// connection closed, once the requests queued before it are done.
    private var pendingParserError: ReasonCode?

    // Timeouts, each one lazily re-armed task per connection (DeadlineTimer), not one per request.
    private var idleTimer: DeadlineTimer?
    private var headerTimer: DeadlineTimer?
    /// The upstream's answer: from the request's end to the response head (`timeouts.response`).
    private var responseTimer: DeadlineTimer?
    /// Upstream inactivity while forwarding (`timeouts.idle`, from the exchange's last activity).
    private var upstreamIdleTimer: DeadlineTimer?
    /// The client's port (audit); the PROXY protocol source's when there is one.
    private var peerPort: Int?

    init(runtime: ProxyRuntime, loop: LoopContext, listener: ListenerConfig, scheme: String, logger: Logger) {
        self.runtime = runtime
        self.loop = loop
        self.listener = listener
        self.logger = logger
        self.connection = ConnectionInfo(listener: listener, peer: nil, peerDescription: "unknown", scheme: scheme)
        LiveObjects.connectionHandlers.add(1, ordering: .relaxed)
    }

    deinit {
        LiveObjects.connectionHandlers.subtract(1, ordering: .relaxed)
    }

    // MARK: lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.makeTimers(eventLoop: context.eventLoop)
        if let remote = context.channel.remoteAddress {
            let text = remote.ipAddress ?? "unknown"
            self.connection = ConnectionInfo(
                listener: self.listener,
                peer: remote.ipAddress.flatMap(IPAddress.parse),
                peerDescription: text,
                scheme: self.connection.scheme
            )
            self.logger[metadataKey: "proxy_peer"] = "\(text):\(remote.port ?? 0)"
            self.peerPort = remote.port
        }
        if context.channel.isActive { self.startIdleTimer() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        // The timers' closures hold the handler (strongly: see makeTimers); dropping them ends that cycle.
        for timer in [self.idleTimer, self.headerTimer, self.responseTimer, self.upstreamIdleTimer] { timer?.cancel() }
        self.idleTimer = nil
        self.headerTimer = nil
        self.responseTimer = nil
        self.upstreamIdleTimer = nil
        self.exchange = nil
        self.inbox.removeAll()
    }

    func channelActive(context: ChannelHandlerContext) {
        self.startIdleTimer()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.closing = true
        self.cancelConnectionTimers()
        if let exchange = self.exchange {
            self.exchange = nil
            self.abortUpstream(exchange)
            self.clearExchangeTimers()
            self.recordAudit(exchange, aborted: true)
        }
        self.inbox.removeAll()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            // Graceful shutdown: finish the exchange under way (with Connection: close), take no more.
            self.keepAlive = false
            if self.exchange == nil {
                self.closeNow()
            }
            return
        }
        if let info = event as? TLSConnectionInfo {
            self.connection.tls = info
            self.logger[metadataKey: "proxy_tls"] = "\(info.tlsVersion?.rawValue ?? "?")"
            return
        }
        if let header = event as? ProxyProtocolHeader {
            if let source = header.source {
                self.connection.applyProxyProtocolSource(source.address)
                self.peerPort = source.port
                self.logger[metadataKey: "proxy_peer"] = "\(source.address):\(source.port)"
            }
            return
        }
        if let event = event as? ChannelEvent, event == .inputClosed {
            self.inputClosed = true
            if self.exchange == nil && self.inbox.isEmpty {
                self.closeNow()
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let parserError = error as? HTTPParserError {
            let reason = Self.reason(for: parserError)
            self.logger.debug("client request refused by parser", metadata: ["proxy_error": "\(parserError)"])
            if let exchange = self.exchange, exchange.requestEndReceived {
                // A later request is malformed, not the one being served: that one (and any queued before the
                // bad one) is answered first. The decoder delivers nothing after an error.
                self.pendingParserError = reason
                self.updateReads()
                return
            }
            self.keepAlive = false
            self.inbox.removeAll()
            if let exchange = self.exchange {
                if exchange.responseHeadSent {
                    self.closeNow()
                } else {
                    self.abortUpstream(exchange)
                    exchange.requestEndReceived = true
                    self.respond(exchange, reason: reason)
                }
            } else {
                self.respondWithoutExchange(reason: reason)
            }
            return
        }
        if let event = error as? ChannelError, event == .ioOnClosedChannel || event == .alreadyClosed {
            return
        }
        self.logger.debug("client connection error", metadata: ["proxy_error": "\(error)"])
        self.closeNow()
    }

    static func reason(for error: HTTPParserError) -> ReasonCode {
        switch error {
        case .headerOverflow: return .headersTooLarge
        case .invalidContentLength, .unexpectedContentLength: return .ambiguousFraming
        default: return .malformedRequest
        }
    }

    // MARK: reads and writability (backpressure)

    func read(context: ChannelHandlerContext) {
        if self.readsAllowed {
            context.read()
        } else {
            self.readPending = true
        }
    }

    private func updateReads() {
        let want: Bool
        if self.closing {
            want = false
        } else if let exchange = self.exchange {
            if exchange.requestEndReceived {
                // The request is complete. Keep reading until a next (pipelined) request is queued: pausing and
                // resuming here would cost two epoll_ctl calls per request, and a client that goes away is noticed
                // while its request is still being served.
                want = self.inbox.isEmpty && self.pendingParserError == nil
            } else if exchange.phase == .forwarding, let upstream = exchange.upstream {
                // Read more of this request only while it streams to an upstream that can take it.
                want = upstream.channel.isWritable
            } else {
                want = false
            }
        } else {
            want = self.inbox.isEmpty
        }
        self.readsAllowed = want
        if want, self.readPending, let context = self.context {
            self.readPending = false
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if let exchange = self.exchange, let upstream = exchange.upstream {
            upstream.handler.setReadsAllowed(context.channel.isWritable)
        }
        context.fireChannelWritabilityChanged()
    }

    // MARK: inbound

    /// Arms the header-read timer at the first byte of a request. Bytes that arrive while an exchange runs (the
    /// start of a pipelined head: reads stay on) do not arm it; after the response, a head that stops is an idle
    /// keep-alive connection (idle timeout), and one that keeps trickling arms it with its next byte.
    func clientBytesArrived() {
        guard self.exchange == nil, self.inbox.isEmpty, self.headerTimer?.isSet == false, !self.closing else { return }
        self.idleTimer?.clear()
        self.headerTimer?.set(.now() + TimeAmount(self.listener.limits.headerReadTimeout))
    }

    /// The closures capture the handler strongly: a weak capture would give it a refcount side table (slow
    /// retains and releases for the connection's life). `handlerRemoved` drops the timers, which ends the cycle.
    private func makeTimers(eventLoop: any EventLoop) {
        guard self.idleTimer == nil, self.context != nil else { return }
        self.idleTimer = DeadlineTimer(eventLoop: eventLoop) { [self] in
            guard self.exchange == nil, self.inbox.isEmpty, self.headerTimer?.isSet == false else { return }
            self.closeNow()
        }
        self.headerTimer = DeadlineTimer(eventLoop: eventLoop) { [self] in
            guard self.exchange == nil, !self.closing else { return }
            self.logger.debug("request head not received in time")
            self.keepAlive = false
            self.respondWithoutExchange(reason: .requestTimeout)
        }
        self.responseTimer = DeadlineTimer(eventLoop: eventLoop) { [self] in
            guard let exchange = self.exchange, exchange.phase == .forwarding, !exchange.responseHeadSent else {
                return
            }
            self.upstreamTimedOut(exchange)
        }
        self.upstreamIdleTimer = DeadlineTimer(eventLoop: eventLoop) { [self] in
            guard let exchange = self.exchange, exchange.phase == .forwarding,
                let idle = exchange.prepared.map({ TimeAmount($0.route.config.timeouts.idle) })
            else { return }
            if NIODeadline.now() - exchange.lastActivity >= idle {
                self.upstreamTimedOut(exchange)
            } else {
                self.upstreamIdleTimer?.set(exchange.lastActivity + idle)
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if self.closing { return }
        self.inbox.append(Self.unwrapInboundIn(data))
        self.pumpInbox()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if let exchange = self.exchange, exchange.needsUpstreamFlush, let upstream = exchange.upstream {
            exchange.needsUpstreamFlush = false
            upstream.handler.context?.flush()
        }
        context.fireChannelReadComplete()
    }

    /// Hands queued parts to the current exchange, or starts the next exchange; stops at a request whose
    /// predecessor is still being answered (pipelining: answers go out in order).
    private func pumpInbox() {
        guard !self.pumping else { return }
        self.pumping = true
        defer { self.pumping = false }
        while !self.closing, let part = self.inbox.first {
            if let exchange = self.exchange {
                if exchange.requestEndReceived { break }
                self.inbox.removeFirst()
                self.requestPart(part, exchange: exchange)
            } else {
                self.inbox.removeFirst()
                guard case .head(let head) = part else {
                    // Body without a head cannot come from the decoder; be safe.
                    self.closeNow()
                    break
                }
                self.startExchange(head)
            }
        }
        if self.exchange == nil && self.inbox.isEmpty && !self.closing {
            if let reason = self.pendingParserError {
                self.pendingParserError = nil
                self.respondWithoutExchange(reason: reason)
            } else if self.inputClosed {
                self.closeNow()
            }
        }
        self.updateReads()
    }

    private func startExchange(_ head: HTTPRequestHead) {
        guard let context = self.context else { return }
        self.cancelConnectionTimers()
        self.requestCount += 1
        if !head.isKeepAlive || self.requestCount >= self.listener.limits.maxRequestsPerConnection {
            self.keepAlive = false
        }
        let expectsBody =
            head.headers.contains(name: "transfer-encoding")
            || (head.headers.contains(name: "content-length")
                && head.headers[canonicalForm: "content-length"].contains { $0 != "0" })
        let exchange = Exchange(
            server: self,
            head: head,
            expectsBody: expectsBody,
            startedAt: .now(),
            startedWall: WallClock.nowMicroseconds()
        )
        self.exchange = exchange
        if let audit = self.runtime.audit {
            if audit.queue.reserve() {
                exchange.auditSlot = true
            } else if audit.failClosed {
                // No room to record it: refuse rather than serve unrecorded (on_overflow: fail_closed).
                exchange.requestID = self.loop.makeRequestID()
                self.runtime.counters.auditRefused()
                self.respond(exchange, reason: .auditUnavailable)
                return
            }
        }
        let snapshot = self.runtime.snapshots.current
        let outcome = RequestPreparation.prepare(
            head: head,
            connection: self.connection,
            snapshot: snapshot,
            generateRequestID: self.loop.makeRequestID
        )
        switch outcome {
        case .reject(let reason, let requestID, let route, let close):
            exchange.requestID = requestID
            exchange.routeName = route
            if close { self.keepAlive = false }
            self.logger.debug(
                "request refused",
                metadata: ["proxy_request_id": "\(requestID)", "proxy_reason": "\(reason)"]
            )
            self.respond(exchange, reason: reason)
        case .forward(let prepared):
            exchange.requestID = prepared.requestID
            exchange.routeName = prepared.route.name
            exchange.prepared = prepared
            if prepared.requestedUpgrade { self.keepAlive = false }
            let input = AuthenticationInput(
                route: prepared.route,
                head: head,
                connection: self.connection,
                snapshot: snapshot,
                loop: self.loop
            )
            switch self.runtime.stages.authenticate(input, eventLoop: context.eventLoop) {
            case .ready(let outcome):
                self.authenticated(exchange, outcome: outcome)
            case .later(let future):
                future.hop(to: context.eventLoop).assumeIsolated().whenComplete { [self] result in
                    guard self.exchange === exchange else { return }
                    switch result {
                    case .success(let outcome): self.authenticated(exchange, outcome: outcome)
                    case .failure: self.respond(exchange, reason: .internalError)
                    }
                    self.updateReads()
                }
            }
        }
    }

    private func authenticated(_ exchange: Exchange, outcome: AuthenticationOutcome) {
        guard let prepared = exchange.prepared, let context = self.context else { return }
        switch outcome {
        case .refused(let reason, let headers):
            self.respond(exchange, reason: reason, extraHeaders: headers)
        case .identity(let principal):
            if let principal { exchange.identity = AuditIdentity(principal: principal) }
            switch self.runtime.stages.authorize(prepared, principal: principal) {
            case .deny(let reason, let rule):
                exchange.rule = rule
                let challenge: [(String, String)] =
                    reason == .unauthenticated && !(prepared.route.config.auth?.issuers.isEmpty ?? true)
                    ? [("www-authenticate", TokenAuthenticator.challenge(nil))] : []
                // Rule internals only where the route asks for them (the slow path: denials only).
                let explanation = prepared.route.policy.explainDenials && reason != .unauthenticated
                    ? prepared.route.policy.explain(facts: prepared.facts, principal: principal).lines : nil
                self.respond(exchange, reason: reason, extraHeaders: challenge, explanation: explanation)
            case .allow(let rule):
                exchange.allowed = true
                exchange.rule = rule
                self.scheduleLongRunningEvent(exchange)
                switch self.runtime.stages.authenticateUpstream(
                    prepared.upstreamHead,
                    request: prepared,
                    principal: principal,
                    eventLoop: context.eventLoop
                ) {
                case .ready(let result):
                    self.upstreamAuthenticated(exchange, result: result)
                case .later(let future):
                    future.hop(to: context.eventLoop).assumeIsolated().whenComplete { [self] result in
                        guard self.exchange === exchange else { return }
                        switch result {
                        case .success(let result): self.upstreamAuthenticated(exchange, result: result)
                        case .failure: self.respond(exchange, reason: .internalError)
                        }
                        self.updateReads()
                    }
                }
            }
        }
    }

    private func upstreamAuthenticated(_ exchange: Exchange, result: Result<HTTPRequestHead, ReasonCode>) {
        guard let prepared = exchange.prepared, let context = self.context else { return }
        switch result {
        case .failure(let reason):
            self.respond(exchange, reason: reason)
        case .success(let head):
            exchange.upstreamHead = head
            if prepared.expectContinue && !exchange.requestEndReceived {
                // Invariant 3: 100 Continue only once the request is authorized.
                context.writeAndFlush(
                    Self.wrapOutboundOut(.head(HTTPResponseHead(version: exchange.clientVersion, status: .continue))),
                    promise: nil
                )
            }
            exchange.phase = .connecting
            self.acquireUpstream(exchange, fresh: false)
        }
    }

    private func acquireUpstream(_ exchange: Exchange, fresh: Bool) {
        guard let prepared = exchange.prepared else { return }
        let pool = self.loop.pool(for: prepared.route.upstreamKey, tls: prepared.route.upstreamTLS)
        exchange.pool = pool
        if !fresh, let connection = pool.takeIdle() {
            self.attach(exchange, connection: connection)
            return
        }
        pool.acquire(connectTimeout: TimeAmount(prepared.route.config.timeouts.connect), fresh: fresh)
            .assumeIsolated().whenComplete { [self] result in
                guard self.exchange === exchange, exchange.phase == .connecting else {
                    if case .success(let connection) = result {
                        pool.release(connection, reusable: true)
                    }
                    return
                }
                switch result {
                case .success(let connection):
                    self.attach(exchange, connection: connection)
                case .failure(let error):
                    let reason = (error as? UpstreamPoolError)?.reason ?? .upstreamUnavailable
                    self.logger.debug(
                        "no upstream connection",
                        metadata: [
                            "proxy_request_id": "\(exchange.requestID)", "proxy_route": "\(prepared.route.name)",
                            "proxy_error": "\(error)",
                        ]
                    )
                    self.respond(exchange, reason: reason)
                }
                self.updateReads()
            }
    }

    private func attach(_ exchange: Exchange, connection: UpstreamConnection) {
        guard let head = exchange.upstreamHead, let upstreamContext = connection.handler.context else {
            connection.channel.close(promise: nil)
            self.respond(exchange, reason: .upstreamUnavailable)
            return
        }
        exchange.phase = .forwarding
        exchange.upstream = connection
        exchange.reusedConnection = connection.exchangesServed > 0
        exchange.upstreamAddress = connection.remoteText
        connection.handler.receiver = exchange
        connection.handler.setReadsAllowed(self.context?.channel.isWritable ?? true)
        upstreamContext.write(NIOAny(HTTPClientRequestPart.head(head)), promise: nil)
        while let chunk = exchange.buffered.popFirst() {
            upstreamContext.write(NIOAny(HTTPClientRequestPart.body(.byteBuffer(chunk))), promise: nil)
        }
        if exchange.requestEndReceived {
            self.sendRequestEnd(exchange, upstreamContext: upstreamContext)
        } else {
            upstreamContext.flush()
        }
        exchange.lastActivity = .now()
        self.scheduleIdleWatchdog(exchange)
    }

    private func sendRequestEnd(_ exchange: Exchange, upstreamContext: ChannelHandlerContext) {
        exchange.requestEndSent = true
        exchange.needsUpstreamFlush = false
        upstreamContext.writeAndFlush(NIOAny(HTTPClientRequestPart.end(nil)), promise: nil)
        if !exchange.responseHeadSent, let prepared = exchange.prepared {
            self.responseTimer?.set(.now() + TimeAmount(prepared.route.config.timeouts.response))
        }
    }

    private func requestPart(_ part: HTTPServerRequestPart, exchange: Exchange) {
        switch part {
        case .head:
            // The decoder gives a head only after the previous end; pumpInbox routes heads elsewhere.
            self.closeNow()
        case .body(let chunk):
            exchange.requestBodyBytes += Int64(chunk.readableBytes)
            if let prepared = exchange.prepared, exchange.requestBodyBytes > prepared.route.config.maxRequestBodyBytes {
                self.keepAlive = false
                if exchange.responseHeadSent {
                    self.closeNow()
                } else {
                    self.abortUpstream(exchange)
                    exchange.requestEndReceived = true
                    self.respond(exchange, reason: .bodyTooLarge)
                }
                return
            }
            switch exchange.phase {
            case .forwarding:
                if let upstreamContext = exchange.upstream?.handler.context {
                    upstreamContext.write(NIOAny(HTTPClientRequestPart.body(.byteBuffer(chunk))), promise: nil)
                    exchange.needsUpstreamFlush = true
                    exchange.lastActivity = .now()
                }
            case .processing, .connecting:
                exchange.buffered.append(chunk)
            case .responding:
                break
            }
        case .end:
            exchange.requestEndReceived = true
            switch exchange.phase {
            case .forwarding:
                if let upstreamContext = exchange.upstream?.handler.context {
                    self.sendRequestEnd(exchange, upstreamContext: upstreamContext)
                }
            case .responding:
                // Our own answer went out already; the request is now complete.
                self.finish(exchange, endWritten: nil)
            case .processing, .connecting:
                break
            }
        }
    }

    // MARK: upstream events

    func upstreamResponsePart(_ part: HTTPClientResponsePart, exchange: Exchange) {
        guard self.exchange === exchange, exchange.phase == .forwarding, let context = self.context else { return }
        exchange.lastActivity = .now()
        switch part {
        case .head(let head):
            self.responseTimer?.clear()
            exchange.upstreamKeepAlive = head.isKeepAlive
            var out = HeaderSanitizer.sanitizeResponse(
                head,
                clientVersion: exchange.clientVersion,
                requestID: exchange.requestID
            )
            if exchange.clientVersion.minor == 0 && !out.headers.contains(name: "content-length") {
                self.keepAlive = false
            }
            if !self.keepAlive {
                out.headers.replaceOrAdd(name: "connection", value: "close")
            } else if exchange.clientVersion.minor == 0 {
                out.headers.replaceOrAdd(name: "connection", value: "keep-alive")
            }
            exchange.responseHeadSent = true
            exchange.status = Int(head.status.code)
            exchange.firstByteAt = .now()
            exchange.needsClientFlush = true
            context.write(Self.wrapOutboundOut(.head(out)), promise: nil)
        case .body(let chunk):
            exchange.responseBodyBytes += Int64(chunk.readableBytes)
            exchange.needsClientFlush = true
            context.write(Self.wrapOutboundOut(.body(.byteBuffer(chunk))), promise: nil)
            if !context.channel.isWritable {
                exchange.upstream?.handler.setReadsAllowed(false)
            }
        case .end(let trailers):
            if !exchange.requestEndReceived {
                // The upstream answered before the whole request arrived: the rest cannot be skipped safely.
                self.keepAlive = false
            }
            // Only a connection that closes after this response needs to know when the end is written.
            let endWritten: EventLoopFuture<Void>?
            if self.keepAlive {
                context.writeAndFlush(Self.wrapOutboundOut(.end(trailers)), promise: nil)
                endWritten = nil
            } else {
                endWritten = context.writeAndFlush(Self.wrapOutboundOut(.end(trailers)))
            }
            exchange.needsClientFlush = false
            if let connection = exchange.upstream, let pool = exchange.pool {
                exchange.upstream = nil
                pool.release(connection, reusable: exchange.upstreamKeepAlive && exchange.requestEndSent)
            }
            self.finish(exchange, endWritten: endWritten)
        }
    }

    func upstreamReadComplete(exchange: Exchange) {
        guard self.exchange === exchange, exchange.needsClientFlush, let context = self.context else { return }
        exchange.needsClientFlush = false
        context.flush()
    }

    func upstreamWritabilityChanged(exchange: Exchange) {
        guard self.exchange === exchange else { return }
        self.updateReads()
    }

    func upstreamFailed(_ error: (any Error)?, exchange: Exchange) {
        guard self.exchange === exchange, exchange.phase == .forwarding else { return }
        exchange.upstream = nil
        self.clearExchangeTimers()
        if exchange.responseHeadSent {
            // Mid-response: the client cannot be told any more; cut its connection so it sees a truncation.
            self.logger.debug("upstream failed mid-response", metadata: ["proxy_request_id": "\(exchange.requestID)"])
            self.closeNow()
            return
        }
        if let prepared = exchange.prepared, exchange.reusedConnection, !exchange.retried, prepared.isIdempotent,
            !prepared.framing.hasBody
        {
            // A pooled connection the upstream had already closed: one retry on a fresh connection.
            exchange.retried = true
            exchange.phase = .connecting
            self.logger.debug("retrying on a fresh upstream connection", metadata: ["proxy_request_id": "\(exchange.requestID)"])
            self.acquireUpstream(exchange, fresh: true)
            return
        }
        let reason: ReasonCode = error is HTTPParserError ? .upstreamProtocolError : .upstreamUnavailable
        self.logger.debug(
            "upstream failed",
            metadata: ["proxy_request_id": "\(exchange.requestID)", "proxy_error": "\(error.map { "\($0)" } ?? "closed")"]
        )
        self.respond(exchange, reason: reason)
        self.updateReads()
    }

    private func upstreamTimedOut(_ exchange: Exchange) {
        self.logger.debug("upstream timed out", metadata: ["proxy_request_id": "\(exchange.requestID)"])
        self.abortUpstream(exchange)
        if exchange.responseHeadSent {
            self.closeNow()
        } else {
            self.respond(exchange, reason: .upstreamTimeout)
            self.updateReads()
        }
    }

    private func scheduleIdleWatchdog(_ exchange: Exchange) {
        guard let prepared = exchange.prepared else { return }
        self.upstreamIdleTimer?.set(exchange.lastActivity + TimeAmount(prepared.route.config.timeouts.idle))
    }

    /// The exchange's timeouts end with it (or with its upstream).
    private func clearExchangeTimers() {
        self.responseTimer?.clear()
        self.upstreamIdleTimer?.clear()
    }

    private func abortUpstream(_ exchange: Exchange) {
        self.clearExchangeTimers()
        if let connection = exchange.upstream {
            exchange.upstream = nil
            connection.handler.receiver = nil
            if let pool = exchange.pool {
                pool.release(connection, reusable: false)
            } else {
                connection.channel.close(promise: nil)
            }
        }
    }

    // MARK: our own responses

    private func errorResponseParts(
        reason: ReasonCode,
        requestID: String,
        route: String?,
        version: HTTPVersion,
        extraHeaders: [(String, String)],
        close: Bool,
        explanation: [String]? = nil
    ) -> (HTTPResponseHead, ByteBuffer) {
        let body = ErrorBody(reason: reason, requestID: requestID, route: route, explanation: explanation).jsonBytes()
        var head = HTTPResponseHead(
            version: version.minor == 0 ? .http1_0 : .http1_1,
            status: HTTPResponseStatus(statusCode: reason.status)
        )
        head.headers.add(name: "content-type", value: "application/json")
        head.headers.add(name: "content-length", value: String(body.count))
        head.headers.add(name: "cache-control", value: "no-store")
        head.headers.add(name: "x-request-id", value: requestID)
        for (name, value) in extraHeaders { head.headers.add(name: name, value: value) }
        if close {
            head.headers.add(name: "connection", value: "close")
        } else if version.minor == 0 {
            head.headers.add(name: "connection", value: "keep-alive")
        }
        var buffer = ByteBufferAllocator().buffer(capacity: body.count)
        buffer.writeBytes(body)
        return (head, buffer)
    }

    /// Answers the exchange with an error in the one JSON shape.
    private func respond(
        _ exchange: Exchange,
        reason: ReasonCode,
        extraHeaders: [(String, String)] = [],
        explanation: [String]? = nil
    ) {
        guard let context = self.context else { return }
        self.abortUpstream(exchange)
        exchange.phase = .responding
        exchange.buffered.removeAll()
        if exchange.responseHeadSent {
            if exchange.errorReason == nil { exchange.errorReason = reason }
            self.closeNow()
            return
        }
        exchange.errorReason = reason
        if !exchange.requestEndReceived && exchange.expectsBody {
            // We will not read the rest of the body: the connection cannot be reused.
            self.keepAlive = false
        }
        let (head, body) = self.errorResponseParts(
            reason: reason,
            requestID: exchange.requestID,
            route: exchange.routeName,
            version: exchange.clientVersion,
            extraHeaders: extraHeaders,
            close: !self.keepAlive,
            explanation: explanation
        )
        exchange.responseHeadSent = true
        exchange.status = reason.status
        exchange.firstByteAt = .now()
        exchange.responseBodyBytes += Int64(body.readableBytes)
        context.write(Self.wrapOutboundOut(.head(head)), promise: nil)
        context.write(Self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let endWritten = context.writeAndFlush(Self.wrapOutboundOut(.end(nil)))
        if exchange.requestEndReceived || !self.keepAlive {
            self.finish(exchange, endWritten: endWritten)
        }
        // else: a bodiless request whose end the decoder delivers next; finish() runs then.
    }

    /// An error when no exchange exists (parser error between requests, header-read timeout): answer and close.
    private func respondWithoutExchange(reason: ReasonCode) {
        guard let context = self.context, !self.closing else { return }
        self.keepAlive = false
        let requestID = self.loop.makeRequestID()
        self.recordUnparsedRequest(reason: reason, requestID: requestID)
        let (head, body) = self.errorResponseParts(
            reason: reason,
            requestID: requestID,
            route: nil,
            version: .http1_1,
            extraHeaders: [],
            close: true
        )
        self.closing = true
        self.cancelConnectionTimers()
        context.write(Self.wrapOutboundOut(.head(head)), promise: nil)
        context.write(Self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(Self.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    /// The exchange is over (its response end is written or queued).
    private func finish(_ exchange: Exchange, endWritten: EventLoopFuture<Void>?) {
        guard self.exchange === exchange, let context = self.context else { return }
        self.exchange = nil
        self.clearExchangeTimers()
        self.abortUpstream(exchange)
        self.recordAudit(exchange, aborted: false)
        if !self.keepAlive {
            self.closing = true
            self.cancelConnectionTimers()
            if let endWritten {
                endWritten.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            } else {
                context.close(promise: nil)
            }
            return
        }
        self.pumpInbox()
        if self.exchange == nil && self.inbox.isEmpty && !self.closing {
            self.startIdleTimer()
        }
        self.updateReads()
    }

    // MARK: connection timers and closing

    private func startIdleTimer() {
        guard self.context != nil, !self.closing else { return }
        if self.idleTimer == nil, let context = self.context { self.makeTimers(eventLoop: context.eventLoop) }
        self.idleTimer?.set(.now() + TimeAmount(self.listener.limits.idleTimeout))
    }

    private func cancelConnectionTimers() {
        self.idleTimer?.clear()
        self.headerTimer?.clear()
    }

    private func closeNow() {
        guard let context = self.context else { return }
        self.closing = true
        self.cancelConnectionTimers()
        if let exchange = self.exchange {
            self.exchange = nil
            self.abortUpstream(exchange)
            self.recordAudit(exchange, aborted: true)
        }
        context.close(promise: nil)
    }

    // MARK: audit

    /// Submits the exchange's event (once): into its reserved slot, or, without one, if there is room.
    /// Authentication failures go through the per-address rate limit first.
    private func recordAudit(_ exchange: Exchange, aborted: Bool) {
        guard !exchange.audited else { return }
        exchange.audited = true
        if exchange.watchedForLongRunning {
            exchange.watchedForLongRunning = false
            self.loop.unwatchLongRunning(exchange)
        }
        guard let audit = self.runtime.audit else { return }
        let now = NIODeadline.now()
        var suppressedBefore = 0
        if let reason = exchange.errorReason, reason.isAuthenticationFailure, !exchange.allowed {
            let admitted = self.loop.authFailures.admit(
                address: self.connection.peerDescription,
                now: exchange.startedWall,
                rate: audit.authFailureRate,
                burst: audit.authFailureBurst
            )
            if !admitted.record {
                if exchange.auditSlot { audit.queue.release() }
                self.runtime.counters.auditSuppressed()
                self.scheduleSuppressionSweep(audit)
                return
            }
            suppressedBefore = admitted.suppressedBefore
        }
        let event = AuditEvent(
            kind: AuditKind.httpRequest,
            time: AuditTime(microseconds: exchange.startedWall),
            payload: .request(self.record(exchange, now: now, aborted: aborted, suppressedBefore: suppressedBefore))
        )
        if exchange.auditSlot {
            audit.queue.submit(reserved: event)
        } else if !audit.queue.offer(event) {
            self.runtime.counters.auditDropped()
        }
    }

    private func record(_ exchange: Exchange, now: NIODeadline, aborted: Bool, suppressedBefore: Int) -> HTTPRequestRecord {
        let decision: AuditDecision
        let reason: String
        if let errorReason = exchange.errorReason {
            decision = exchange.allowed ? .error : AuditDecision.of(errorReason)
            reason = errorReason.code
        } else if exchange.allowed {
            decision = .allow
            reason = "allowed"
        } else {
            decision = .error
            reason = "client_closed"
        }
        let target = exchange.auditTarget
        let query = target.query.map {
            QueryRedaction.redact($0, keeping: exchange.prepared?.route.config.auditQueryParameters ?? [])
        }
        let tls = self.connection.tls
        return HTTPRequestRecord(
            requestID: exchange.requestID,
            listener: self.listener.name,
            route: exchange.routeName,
            decision: decision,
            reason: reason,
            rule: exchange.rule,
            identity: exchange.identity,
            clientAddress: self.connection.peerDescription,
            clientPort: self.peerPort,
            tlsVersion: tls?.tlsVersion?.rawValue,
            sni: tls?.serverName,
            method: exchange.head.method.rawValue,
            host: target.host,
            path: target.path,
            query: query,
            status: exchange.status,
            bytesIn: exchange.requestBodyBytes,
            bytesOut: exchange.responseBodyBytes,
            timeToFirstByteMicros: exchange.firstByteAt.map { ($0 - exchange.startedAt).nanoseconds / 1000 },
            durationMicros: (now - exchange.startedAt).nanoseconds / 1000,
            upstream: exchange.upstreamAddress,
            userAgent: exchange.head.headers.first(name: "user-agent").map { String($0.prefix(512)) },
            aborted: aborted,
            suppressedBefore: suppressedBefore
        )
    }

    /// A request still running after the threshold gets an event then (long downloads, slow uploads): the
    /// loop's sweep calls ``recordLongRunning(_:)``.
    private func scheduleLongRunningEvent(_ exchange: Exchange) {
        guard let audit = self.runtime.audit else { return }
        let threshold = audit.longRequestThreshold
        let interval = TimeAmount.nanoseconds(max(min(threshold.nanoseconds / 4, 1_000_000_000), 10_000_000))
        exchange.watchedForLongRunning = true
        self.loop.watchLongRunning(exchange, deadline: exchange.startedAt + threshold, interval: interval)
    }

    func recordLongRunning(_ exchange: Exchange) {
        guard let audit = self.runtime.audit, self.exchange === exchange, !exchange.audited else { return }
        exchange.watchedForLongRunning = false
        let event = AuditEvent(
            kind: AuditKind.httpRequestLongRunning,
            time: AuditTime(microseconds: exchange.startedWall),
            payload: .request(self.record(exchange, now: .now(), aborted: false, suppressedBefore: 0))
        )
        if !audit.queue.offer(event) { self.runtime.counters.auditDropped() }
    }

    /// A request refused before it had a head (parser error, header timeout): recorded if there is room.
    private func recordUnparsedRequest(reason: ReasonCode, requestID: String) {
        guard let audit = self.runtime.audit else { return }
        let tls = self.connection.tls
        let record = HTTPRequestRecord(
            requestID: requestID,
            listener: self.listener.name,
            decision: .error,
            reason: reason.code,
            clientAddress: self.connection.peerDescription,
            clientPort: self.peerPort,
            tlsVersion: tls?.tlsVersion?.rawValue,
            sni: tls?.serverName,
            method: "",
            host: "",
            path: "",
            status: reason.status
        )
        let event = AuditEvent(kind: AuditKind.httpRequest, time: AuditTime(microseconds: WallClock.nowMicroseconds()), payload: .request(record))
        if !audit.queue.offer(event) { self.runtime.counters.auditDropped() }
    }

    /// Reports suppressed counts of addresses that went quiet (every 10 s while any are pending).
    private func scheduleSuppressionSweep(_ audit: AuditRecorder) {
        guard !self.loop.authFailures.sweepScheduled else { return }
        self.loop.authFailures.sweepScheduled = true
        let loop = self.loop
        let counters = self.runtime.counters
        func sweep() {
            loop.reportSuppressedAuthFailures(audit: audit, counters: counters, force: loop.authFailures.isFull)
            if loop.authFailures.isEmpty {
                loop.authFailures.sweepScheduled = false
            } else {
                loop.eventLoop.assumeIsolated().scheduleTask(in: .seconds(10)) { sweep() }
            }
        }
        loop.eventLoop.assumeIsolated().scheduleTask(in: .seconds(10)) { sweep() }
    }
}

@available(*, unavailable)
extension ProxyServerHandler: Sendable {}
