// nio-floor: the benchmark's SwiftNIO anchor. A minimal HTTP/1.1 reverse proxy on the stock NIOHTTP1 pipeline
// (the server pipeline from `configureHTTPServerPipeline`, HTTPRequestEncoder and HTTPResponseDecoder upstream),
// with one upstream connection per client connection and nothing else: no routing, no normalization, no
// identity, no policy, no audit, no timeouts. It is not a product: it shows, in the same run as the proxies,
// what the platform Portcullis is built on costs per request, so that the gap between it and Portcullis'
// public route is our own work per request. Not for use beyond the benchmark (it trusts the backend and
// drops a client whose upstream fails).
//
//   nio-floor LISTEN_PORT UPSTREAM_PORT      (both on 127.0.0.1; one event loop: pin it with taskset)
import NIOCore
import NIOHTTP1
import NIOPosix

/// Hop-by-hop headers (RFC 9110 7.6.1) are not forwarded; the encoders frame each message themselves.
func isHopByHop(_ name: String) -> Bool {
    switch name.utf8.count {
    case 2, 7, 10, 16, 17:
        switch name.lowercased() {
        case "te", "upgrade", "trailer", "keep-alive", "connection", "proxy-connection", "transfer-encoding": return true
        default: return false
        }
    default: return false
    }
}

final class UpstreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart
    var client: ClientHandler?
    var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { self.client?.upstreamPart(Self.unwrapInboundIn(data)) }
    func channelReadComplete(context: ChannelHandlerContext) { self.client?.flush() }
    func channelInactive(context: ChannelHandlerContext) {
        self.client?.upstreamClosed()
        self.client = nil
    }
    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}

final class ClientHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let upstreamPort: Int
    var context: ChannelHandlerContext?
    var upstream: UpstreamHandler?
    var connecting = false
    var waiting: [HTTPClientRequestPart] = []
    var needsFlush = false

    init(upstreamPort: Int) { self.upstreamPort = upstreamPort }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        if let upstream = self.upstream {
            upstream.client = nil
            upstream.context?.close(promise: nil)
        }
        self.upstream = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            var out = HTTPRequestHead(version: .http1_1, method: head.method, uri: head.uri)
            out.headers.reserveCapacity(head.headers.count + 2)
            for (name, value) in head.headers where !isHopByHop(name) { out.headers.add(name: name, value: value) }
            out.headers.add(name: "x-forwarded-for", value: "127.0.0.1")
            out.headers.add(name: "x-forwarded-proto", value: "http")
            self.send(.head(out), flush: false)
        case .body(let body):
            self.send(.body(.byteBuffer(body)), flush: false)
        case .end:
            self.send(.end(nil), flush: true)
        }
    }

    private func send(_ part: HTTPClientRequestPart, flush: Bool) {
        guard let upstreamContext = self.upstream?.context else {
            self.waiting.append(part)
            self.connect()
            return
        }
        if flush {
            upstreamContext.writeAndFlush(NIOAny(part), promise: nil)
        } else {
            upstreamContext.write(NIOAny(part), promise: nil)
        }
    }

    private func connect() {
        guard !self.connecting, let context = self.context else { return }
        self.connecting = true
        ClientBootstrap(group: context.eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(HTTPRequestEncoder())
                    try sync.addHandler(ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes)))
                    try sync.addHandler(UpstreamHandler())
                }
            }
            .connect(host: "127.0.0.1", port: self.upstreamPort)
            .assumeIsolated().whenComplete { result in
                self.connecting = false
                guard case .success(let channel) = result, self.context != nil,
                    let upstream = try? channel.pipeline.syncOperations.handler(type: UpstreamHandler.self),
                    let upstreamContext = upstream.context
                else {
                    self.context?.close(promise: nil)
                    return
                }
                upstream.client = self
                self.upstream = upstream
                for part in self.waiting { upstreamContext.write(NIOAny(part), promise: nil) }
                self.waiting.removeAll()
                upstreamContext.flush()
            }
    }

    func upstreamPart(_ part: HTTPClientResponsePart) {
        guard let context = self.context else { return }
        switch part {
        case .head(let head):
            var out = HTTPResponseHead(version: .http1_1, status: head.status)
            out.headers.reserveCapacity(head.headers.count)
            for (name, value) in head.headers where !isHopByHop(name) { out.headers.add(name: name, value: value) }
            context.write(Self.wrapOutboundOut(.head(out)), promise: nil)
        case .body(let body):
            context.write(Self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        case .end:
            context.write(Self.wrapOutboundOut(.end(nil)), promise: nil)
        }
        self.needsFlush = true
    }

    func flush() {
        guard self.needsFlush, let context = self.context else { return }
        self.needsFlush = false
        context.flush()
    }

    func upstreamClosed() {
        self.upstream = nil
        self.context?.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}

let arguments = CommandLine.arguments
guard arguments.count == 3, let listenPort = Int(arguments[1]), let upstreamPort = Int(arguments[2]) else {
    print("usage: nio-floor LISTEN_PORT UPSTREAM_PORT")
    exit(2)
}
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let server = try await ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 1024)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            let sync = channel.pipeline.syncOperations
            // No pipelining assistance (it pauses and resumes reads per request) and no error handler (one more
            // handler on every message): the leanest the stock pipeline gets. Pipelined requests go to the one
            // upstream connection in order, so their answers come back in order. A parse error closes.
            try sync.configureHTTPServerPipeline(
                withPipeliningAssistance: false,
                withErrorHandling: false,
                withOutboundHeaderValidation: false
            )
            try sync.addHandler(ClientHandler(upstreamPort: upstreamPort))
        }
    }
    .bind(host: "127.0.0.1", port: listenPort).get()
print("nio-floor listening on 127.0.0.1:\(listenPort), upstream 127.0.0.1:\(upstreamPort)")
try await server.closeFuture.get()
