import NIOCore
import NIOHTTP1
import ProxyModel

/// The admin listener: `/healthz` (the process is alive) and `/readyz` (config loaded, not draining;
/// later also: issuer keys loaded). Anything else: 404. Answers in the one JSON error shape for errors.
final class AdminHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let runtime: ProxyRuntime
    private var head: HTTPRequestHead?

    init(runtime: ProxyRuntime) {
        self.runtime = runtime
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            self.respond(context: context, head: head)
        }
    }

    private func respond(context: ChannelHandlerContext, head: HTTPRequestHead) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let status: HTTPResponseStatus
        let body: String
        switch (head.method, path) {
        case (.GET, "/healthz"), (.HEAD, "/healthz"):
            status = .ok
            body = #"{"status":"ok"}"#
        case (.GET, "/readyz"), (.HEAD, "/readyz"):
            status = self.runtime.isReady ? .ok : .serviceUnavailable
            body = #"{"status":"# + JSONEscaping.quoted(self.runtime.readinessStatus) + "}"
        case (.GET, "/metrics"):
            // Prometheus text format; the metrics issue extends this.
            let counters = self.runtime.counters
            status = .ok
            body =
                "# TYPE portcullis_token_verifications_total counter\n"
                + "portcullis_token_verifications_total \(counters.verifications)\n"
                + "# TYPE portcullis_token_cache_hits_total counter\n"
                + "portcullis_token_cache_hits_total \(counters.cacheHits)\n"
                + LiveObjects.prometheusText
        default:
            status = .notFound
            body = #"{"error":"not_found","reason":"route_not_found","request_id":""}"#
        }
        var responseHead = HTTPResponseHead(version: head.version, status: status)
        responseHead.headers.add(
            name: "content-type",
            value: path == "/metrics" ? "text/plain; version=0.0.4" : "application/json"
        )
        responseHead.headers.add(name: "content-length", value: String(body.utf8.count + 1))
        responseHead.headers.add(name: "cache-control", value: "no-store")
        if !head.isKeepAlive { responseHead.headers.add(name: "connection", value: "close") }
        context.write(Self.wrapOutboundOut(.head(responseHead)), promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: body.utf8.count + 1)
        buffer.writeString(body)
        buffer.writeString("\n")
        context.write(Self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let done = context.writeAndFlush(Self.wrapOutboundOut(.end(nil)))
        if !head.isKeepAlive {
            done.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension AdminHandler: Sendable {}
