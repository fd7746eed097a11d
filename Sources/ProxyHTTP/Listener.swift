public import Logging
public import NIOCore
import NIOConcurrencyHelpers
import NIOExtras
import NIOHTTP1
import NIOPosix
public import ProxyConfig
public import ProxyTransport

/// Counts open connections of a listener and closes new ones beyond `max_connections` at accept.
final class ConnectionLimitHandler: ChannelInboundHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel

    private let limit: Int
    private let open: NIOLockedValueBox<Int>
    private let logger: Logger

    init(limit: Int, open: NIOLockedValueBox<Int>, logger: Logger) {
        self.limit = limit
        self.open = open
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = Self.unwrapInboundIn(data)
        let admitted = self.open.withLockedValue { count -> Bool in
            guard count < self.limit else { return false }
            count += 1
            return true
        }
        guard admitted else {
            self.logger.debug("connection refused: listener at max_connections")
            child.close(promise: nil)
            return
        }
        let open = self.open
        let logger = self.logger
        child.closeFuture.whenComplete { _ in
            let now = open.withLockedValue { count -> Int in
                count -= 1
                return count
            }
            logger.trace("connection closed", metadata: ["proxy_open_connections": "\(now)"])
        }
        self.logger.trace("connection accepted", metadata: ["proxy_peer": "\(child.remoteAddress.map { "\($0)" } ?? "?")"])
        context.fireChannelRead(data)
    }
}

@available(*, unavailable)
extension ConnectionLimitHandler: Sendable {}

/// A bound listener: an HTTP proxy listener or the admin listener.
public final class HTTPListener: Sendable {
    public let config: ListenerConfig
    public let channel: any Channel
    /// The certificate set of an https listener (reloaded in place).
    public let tlsProvider: ServerTLSContextProvider?
    private let quiesce: ServerQuiescingHelper
    private let openConnections: NIOLockedValueBox<Int>

    /// The address actually bound (port 0 in the config binds an ephemeral port).
    public var localAddress: SocketAddress? { self.channel.localAddress }

    private init(
        config: ListenerConfig,
        channel: any Channel,
        tlsProvider: ServerTLSContextProvider?,
        quiesce: ServerQuiescingHelper,
        open: NIOLockedValueBox<Int>
    ) {
        self.config = config
        self.channel = channel
        self.tlsProvider = tlsProvider
        self.quiesce = quiesce
        self.openConnections = open
    }

    /// Binds the listener. HTTP listeners run the proxy request path, admin listeners health endpoints.
    public static func bind(
        _ config: ListenerConfig,
        runtime: ProxyRuntime,
        group: any EventLoopGroup,
        logger: Logger
    ) async throws -> HTTPListener {
        let quiesce = ServerQuiescingHelper(group: group)
        let open = NIOLockedValueBox(0)
        var logger = logger
        logger[metadataKey: "proxy_listener"] = "\(config.name)"
        let listenerLogger = logger
        let limits = config.limits
        var decoderLimits = NIOHTTPDecoderLimitConfiguration()
        decoderLimits.maxHeaderListSize = limits.maxHeaderBytes
        decoderLimits.maxHeaderFieldSize = limits.maxHeaderBytes
        decoderLimits.maxHeaderFieldCount = limits.maxHeaderCount
        let finalDecoderLimits = decoderLimits
        // Certificates are read and contexts built here, off the event loops (blocking I/O).
        var tlsProvider: ServerTLSContextProvider? = nil
        if config.protocolKind == .https, let tls = config.tls {
            tlsProvider = try await ServerTLSContextProvider(configuration: tls, logger: logger)
        }
        let provider = tlsProvider
        let proxyProtocol = config.proxyProtocol

        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                    try sync.addHandler(ConnectionLimitHandler(limit: limits.maxConnections, open: open, logger: listenerLogger))
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 32 * 1024, high: 64 * 1024))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    switch config.protocolKind {
                    case .admin:
                        try sync.configureHTTPServerPipeline(
                            withPipeliningAssistance: true,
                            withErrorHandling: true
                        )
                        try sync.addHandler(AdminHandler(runtime: runtime))
                    default:
                        if proxyProtocol {
                            // Required on this listener: a connection without a valid header is closed.
                            try sync.addHandler(ProxyProtocolHandler())
                        }
                        if let provider {
                            // SNI picks the certificate; TLSConnectionInfo (SNI, version, client certificate)
                            // reaches the proxy handler as an event before any request byte.
                            _ = try provider.configureServerPipeline(sync)
                        }
                        let observer = InboundBytesObserver()
                        try sync.addHandler(observer)
                        // NIOHTTP1's decoder (llhttp) and encoder, wired so HEAD responses carry no body.
                        // Outbound header validation is off: upstream headers were validated by the
                        // upstream-side parser and the proxy validates what it adds itself.
                        try sync.configureHTTPServerPipeline(
                            withPipeliningAssistance: false,
                            withServerUpgrade: nil,
                            withErrorHandling: false,
                            withOutboundHeaderValidation: false,
                            withEncoderConfiguration: .init(),
                            withDecoderLimitConfiguration: finalDecoderLimits
                        )
                        let handler = ProxyServerHandler(
                            runtime: runtime,
                            loop: runtime.loopContext(for: channel.eventLoop),
                            listener: config,
                            scheme: config.protocolKind == .https ? "https" : "http",
                            logger: listenerLogger
                        )
                        observer.target = handler
                        try sync.addHandler(handler)
                    }
                }
            }
        let channel = try await bootstrap.bind(host: config.address.host, port: config.address.port).get()
        logger.info("listening", metadata: ["proxy_address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
        return HTTPListener(config: config, channel: channel, tlsProvider: provider, quiesce: quiesce, open: open)
    }

    /// Stops accepting, asks every connection to finish its exchange and close; completes when all are closed.
    public func quiesce(eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        self.quiesce.initiateShutdown(promise: promise)
        return promise.futureResult
    }
}
