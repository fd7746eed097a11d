import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ProxyConfig
import ProxyModel
import ProxyTransport
import Synchronization

/// One connection to an upstream endpoint, owned by the pool of its event loop.
final class UpstreamConnection {
    let channel: any Channel
    let handler: UpstreamConnectionHandler
    let endpoint: HostPort
    let endpointIndex: Int
    /// Exchanges this connection has served; > 0 means it was reused from the pool (it may be stale).
    var exchangesServed = 0
    /// Closes the connection when it stays idle in the pool (lazily re-armed: no task per request).
    var idleTimer: DeadlineTimer?
    /// `address:port` of the upstream (the audit event's `upstream`), formatted once per connection.
    private(set) lazy var remoteText: String? = self.channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" }

    init(channel: any Channel, handler: UpstreamConnectionHandler, endpoint: HostPort, endpointIndex: Int) {
        self.channel = channel
        self.handler = handler
        self.endpoint = endpoint
        self.endpointIndex = endpointIndex
        LiveObjects.upstreamConnections.add(1, ordering: .relaxed)
    }

    deinit {
        LiveObjects.upstreamConnections.subtract(1, ordering: .relaxed)
    }
}

enum UpstreamPoolError: Error, Equatable {
    case connectFailed(String)
    case connectTimeout
    case poolExhausted
    case tlsNotSupported

    var reason: ReasonCode {
        switch self {
        case .connectFailed: return .upstreamUnavailable
        case .connectTimeout: return .upstreamConnectTimeout
        case .poolExhausted: return .upstreamPoolExhausted
        case .tlsNotSupported: return .upstreamUnavailable
        }
    }
}

/// Keep-alive connections to one upstream (all its endpoints), for one event loop: no locks, no hops.
/// Bounded per endpoint; requests beyond the bound wait in a bounded queue; endpoints are chosen round
/// robin; host names are resolved on every new connection, so DNS changes reach new connections.
final class UpstreamPool {
    private struct Endpoint {
        var address: HostPort
        var idle: [UpstreamConnection] = []
        /// Open connections (idle and busy) plus connects under way.
        var open = 0
    }

    private struct Waiter {
        let id: Int
        let promise: EventLoopPromise<UpstreamConnection>
        let connectTimeout: TimeAmount
        let timer: Scheduled<Void>
    }

    let key: UpstreamKey
    let tls: UpstreamTLSContextProvider?
    let eventLoop: any EventLoop
    private var endpoints: [Endpoint]
    private var nextEndpoint = 0
    private var waiters = CircularBuffer<Waiter>()
    private var nextWaiterID = 0
    private let logger: Logger

    init(key: UpstreamKey, tls: UpstreamTLSContextProvider?, eventLoop: any EventLoop, logger: Logger) {
        self.key = key
        self.tls = tls
        self.eventLoop = eventLoop
        self.endpoints = key.endpoints.map { Endpoint(address: $0) }
        self.logger = logger
    }

    /// A connection for one exchange. `fresh`: do not reuse a pooled connection (the retry after a stale one).
    func acquire(connectTimeout: TimeAmount, fresh: Bool = false) -> EventLoopFuture<UpstreamConnection> {
        self.eventLoop.assertInEventLoop()
        if self.key.scheme == .https && self.tls == nil {
            return self.eventLoop.makeFailedFuture(UpstreamPoolError.tlsNotSupported)
        }
        let count = self.endpoints.count
        let start = self.nextEndpoint
        self.nextEndpoint = (start + 1) % count
        // Round robin: the first endpoint in turn that has an idle connection or room for a new one.
        for offset in 0..<count {
            let index = (start + offset) % count
            if !fresh, let connection = self.popIdle(index) {
                return self.eventLoop.assumeIsolated().makeSucceededFuture(connection)
            }
            if self.endpoints[index].open < self.key.maxConnectionsPerEndpoint {
                let promise = self.eventLoop.makePromise(of: UpstreamConnection.self)
                self.connect(index: index, connectTimeout: connectTimeout, attemptsLeft: count - 1, promise: promise)
                return promise.futureResult
            }
        }
        guard self.waiters.count < self.key.maxPendingRequests else {
            return self.eventLoop.makeFailedFuture(UpstreamPoolError.poolExhausted)
        }
        let promise = self.eventLoop.makePromise(of: UpstreamConnection.self)
        let id = self.nextWaiterID
        self.nextWaiterID &+= 1
        let timer = self.eventLoop.assumeIsolated().scheduleTask(in: connectTimeout) { [self] in
            if let index = self.waiters.firstIndex(where: { $0.id == id }) {
                let waiter = self.waiters.remove(at: index)
                waiter.promise.fail(UpstreamPoolError.poolExhausted)
            }
        }
        self.waiters.append(Waiter(id: id, promise: promise, connectTimeout: connectTimeout, timer: timer))
        return promise.futureResult
    }

    /// The request path's fast path: the idle connection `acquire` would hand out now, without a future (a promise,
    /// a future and a callback per request). nil when `acquire` would connect, wait or fail instead.
    func takeIdle() -> UpstreamConnection? {
        self.eventLoop.assertInEventLoop()
        if self.key.scheme == .https && self.tls == nil { return nil }
        let count = self.endpoints.count
        let start = self.nextEndpoint
        for offset in 0..<count {
            let index = (start + offset) % count
            if let connection = self.popIdle(index) {
                self.nextEndpoint = (start + 1) % count
                return connection
            }
            // acquire would open a connection to this endpoint: leave that to it.
            if self.endpoints[index].open < self.key.maxConnectionsPerEndpoint { return nil }
        }
        return nil
    }

    /// Gives a connection back after an exchange. Only a connection that finished a complete exchange and
    /// may be kept alive is reusable; anything else is closed.
    func release(_ connection: UpstreamConnection, reusable: Bool) {
        self.eventLoop.assertInEventLoop()
        connection.handler.receiver = nil
        connection.handler.setReadsAllowed(true)
        connection.exchangesServed += 1
        guard reusable, connection.channel.isActive else {
            connection.channel.close(promise: nil)
            return
        }
        if let waiter = self.waiters.popFirst() {
            waiter.timer.cancel()
            waiter.promise.assumeIsolated().succeed(connection)
            return
        }
        if connection.idleTimer == nil {
            // Strong capture (no side table on the connection); the timer is cancelled when the connection closes.
            connection.idleTimer = DeadlineTimer(eventLoop: self.eventLoop) { [connection] in
                connection.channel.close(promise: nil)
            }
        }
        connection.idleTimer?.set(.now() + TimeAmount(self.key.idleTimeout))
        self.endpoints[connection.endpointIndex].idle.append(connection)
    }

    /// Closes idle connections (reload retired this pool, or shutdown).
    func closeIdle() {
        for index in self.endpoints.indices {
            let idle = self.endpoints[index].idle
            self.endpoints[index].idle.removeAll()
            for connection in idle {
                connection.idleTimer?.cancel()
                connection.channel.close(promise: nil)
            }
        }
    }

    private func popIdle(_ index: Int) -> UpstreamConnection? {
        while let connection = self.endpoints[index].idle.popLast() {
            connection.idleTimer?.clear()
            if connection.channel.isActive { return connection }
        }
        return nil
    }

    private func connect(
        index: Int,
        connectTimeout: TimeAmount,
        attemptsLeft: Int,
        promise: EventLoopPromise<UpstreamConnection>
    ) {
        self.endpoints[index].open += 1
        let endpoint = self.endpoints[index].address
        let tls = self.tls
        let future = ClientBootstrap(group: self.eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelOption(.autoRead, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls {
                        // Verification on (system store or the configured CA), SNI from the endpoint name.
                        try sync.addHandler(try tls.makeClientHandler(endpoint: endpoint))
                    }
                    try sync.addHandler(HTTPRequestEncoder())
                    try sync.addHandler(
                        ByteToMessageHandler(
                            HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .drop)
                        )
                    )
                    try sync.addHandler(UpstreamConnectionHandler())
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
        future.assumeIsolated().whenComplete { [self] result in
            switch result {
            case .success(let channel):
                guard let handler = try? channel.pipeline.syncOperations.handler(type: UpstreamConnectionHandler.self)
                else {
                    self.endpoints[index].open -= 1
                    channel.close(promise: nil)
                    promise.fail(UpstreamPoolError.connectFailed("pipeline"))
                    return
                }
                let connection = UpstreamConnection(
                    channel: channel,
                    handler: handler,
                    endpoint: endpoint,
                    endpointIndex: index
                )
                // Strong captures: weak ones would give the pool and the connection refcount side tables, which
                // slow every retain and release of them (several per request). The handler drops `onClose` when
                // the channel goes inactive, which ends the cycle.
                handler.onClose = { [self, connection] in
                    self.connectionClosed(connection)
                }
                if !channel.isActive {
                    // Closed between connect and now: onClose already ran before it was set, and never runs now;
                    // dropping it ends the cycle it would keep (handler, closure, connection).
                    handler.onClose = nil
                    self.endpoints[index].open -= 1
                    promise.fail(UpstreamPoolError.connectFailed("closed at connect"))
                    return
                }
                promise.assumeIsolated().succeed(connection)
            case .failure(let error):
                self.endpoints[index].open -= 1
                self.logger.debug(
                    "upstream connect failed",
                    metadata: ["proxy_upstream": "\(endpoint)", "proxy_error": "\(error)"]
                )
                // Nothing was sent: another endpoint may be tried, whatever the method.
                if attemptsLeft > 0, self.endpoints.count > 1 {
                    let next = (index + 1) % self.endpoints.count
                    if self.endpoints[next].open < self.key.maxConnectionsPerEndpoint {
                        self.connect(index: next, connectTimeout: connectTimeout, attemptsLeft: attemptsLeft - 1, promise: promise)
                        return
                    }
                }
                if case ChannelError.connectTimeout = error {
                    promise.fail(UpstreamPoolError.connectTimeout)
                } else if "\(error)".contains("connectTimeout") {
                    promise.fail(UpstreamPoolError.connectTimeout)
                } else {
                    promise.fail(UpstreamPoolError.connectFailed("\(error)"))
                }
                self.serveWaiters()
            }
        }
    }

    private func connectionClosed(_ connection: UpstreamConnection) {
        let index = connection.endpointIndex
        self.endpoints[index].open -= 1
        connection.idleTimer?.cancel()
        connection.idleTimer = nil  // its closure holds the connection
        if let position = self.endpoints[index].idle.firstIndex(where: { $0 === connection }) {
            self.endpoints[index].idle.remove(at: position)
        }
        self.serveWaiters()
    }

    /// Capacity was freed: start connections for waiting requests.
    private func serveWaiters() {
        while !self.waiters.isEmpty {
            guard let index = self.endpoints.indices.first(where: { self.endpoints[$0].open < self.key.maxConnectionsPerEndpoint })
            else { return }
            let waiter = self.waiters.removeFirst()
            waiter.timer.cancel()
            self.connect(index: index, connectTimeout: waiter.connectTimeout, attemptsLeft: 0, promise: waiter.promise)
        }
    }
}

@available(*, unavailable)
extension UpstreamPool: Sendable {}

@available(*, unavailable)
extension UpstreamConnection: Sendable {}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
