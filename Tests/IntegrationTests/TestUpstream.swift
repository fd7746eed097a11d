import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// What the test upstream saw of one request.
struct RecordedRequest: Sendable {
    var method: String
    var uri: String
    var headers: [(String, String)]
    var bodyBytes: Int
    var connectionID: Int
    /// The body (the first 8 MiB), for tests that check what a client sent (audit shipping).
    var body: [UInt8] = []

    func header(_ name: String) -> [String] {
        self.headers.filter { $0.0.lowercased() == name.lowercased() }.map(\.1)
    }
}

/// An HTTP/1.1 upstream on 127.0.0.1 in the test process, with behaviour chosen by path:
/// - `/download/<bytes>`: streams that many bytes (Content-Length), with backpressure.
/// - `/silent...`: reads the request and never answers.
/// - `/slow/<ms>...`: answers after a delay.
/// - `/drop...`: closes the connection without answering.
/// - `/chunked/<bytes>`: a chunked response of that many bytes.
/// - `/flaky...`: answers the first request of a connection (keep-alive), closes without answering on later ones.
/// - anything else: `200` with a text body `method uri\nbody-bytes N\n` and the request headers echoed back
///   as `x-echo-<name>` is NOT done (the record is what tests check).
final class TestUpstream: Sendable {
    let group: MultiThreadedEventLoopGroup
    let channel: any Channel
    private let recorded = NIOLockedValueBox<[RecordedRequest]>([])
    /// Fixed answers by exact path (a JWKS endpoint, a discovery document): status, content type, body.
    let fixed = NIOLockedValueBox<[String: (Int, String, String)]>([:])

    func setResponse(path: String, status: Int = 200, contentType: String = "application/json", body: String) {
        self.fixed.withLockedValue { $0[path] = (status, contentType, body) }
    }

    func requestCount(path: String) -> Int {
        self.requests.filter { $0.uri == path }.count
    }
    private let connections = NIOLockedValueBox<Int>(0)

    var port: Int { self.channel.localAddress!.port! }
    var requests: [RecordedRequest] { self.recorded.withLockedValue { $0 } }
    var connectionCount: Int { self.connections.withLockedValue { $0 } }

    func reset() {
        self.recorded.withLockedValue { $0.removeAll() }
    }

    let name: String

    init(name: String = "test") async throws {
        self.name = name
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.group = group
        let recorded = self.recorded
        let connections = self.connections
        let fixed = self.fixed
        self.channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: false)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let id = connections.withLockedValue { c -> Int in
                        c += 1
                        return c
                    }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        UpstreamBehaviour(connectionID: id, recorded: recorded, name: name, fixed: fixed)
                    )
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
    }

    /// Closes the listener and stops the event loop (callback form: callable from sync code such as `defer`).
    func stop() {
        self.channel.close(promise: nil)
        self.group.shutdownGracefully { _ in }
    }
}

private final class UpstreamBehaviour: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let connectionID: Int
    let name: String
    let recorded: NIOLockedValueBox<[RecordedRequest]>
    var current: RecordedRequest?
    var requestsOnConnection = 0
    // download state
    var remaining = 0
    var downloading = false

    let fixed: NIOLockedValueBox<[String: (Int, String, String)]>

    init(
        connectionID: Int,
        recorded: NIOLockedValueBox<[RecordedRequest]>,
        name: String,
        fixed: NIOLockedValueBox<[String: (Int, String, String)]>
    ) {
        self.fixed = fixed
        self.connectionID = connectionID
        self.name = name
        self.recorded = recorded
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            self.requestsOnConnection += 1
            self.current = RecordedRequest(
                method: head.method.rawValue,
                uri: head.uri,
                headers: head.headers.map { ($0.name, $0.value) },
                bodyBytes: 0,
                connectionID: self.connectionID
            )
        case .body(let buffer):
            self.current?.bodyBytes += buffer.readableBytes
            if let count = self.current?.body.count, count < 8 << 20 {
                self.current?.body.append(contentsOf: buffer.readableBytesView)
            }
        case .end:
            guard let request = self.current else { return }
            self.current = nil
            self.recorded.withLockedValue { $0.append(request) }
            self.respond(context: context, request: request)
        }
    }

    private func respond(context: ChannelHandlerContext, request: RecordedRequest) {
        let path = request.uri
        if let (status, contentType, body) = self.fixed.withLockedValue({ $0[path] }) {
            var head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status))
            head.headers.add(name: "content-type", value: contentType)
            head.headers.add(name: "content-length", value: String(body.utf8.count))
            context.write(Self.wrapOutboundOut(.head(head)), promise: nil)
            var buffer = context.channel.allocator.buffer(capacity: body.utf8.count)
            buffer.writeString(body)
            context.write(Self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            context.writeAndFlush(Self.wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        if path.hasPrefix("/silent") { return }
        if path.hasPrefix("/drop") {
            context.close(promise: nil)
            return
        }
        if path.hasPrefix("/flaky") && self.requestsOnConnection > 1 {
            context.close(promise: nil)
            return
        }
        if path.hasPrefix("/download/") {
            let size = Int(path.dropFirst("/download/".count)) ?? 0
            var head = HTTPResponseHead(version: .http1_1, status: .ok)
            head.headers.add(name: "content-length", value: String(size))
            head.headers.add(name: "content-type", value: "application/octet-stream")
            context.write(Self.wrapOutboundOut(.head(head)), promise: nil)
            self.remaining = size
            self.downloading = true
            self.pump(context: context)
            return
        }
        if path.hasPrefix("/chunked/") {
            // A chunked response (no Content-Length) in pieces of up to 1000 bytes.
            var left = Int(path.dropFirst("/chunked/".count)) ?? 0
            var head = HTTPResponseHead(version: .http1_1, status: .ok)
            head.headers.add(name: "transfer-encoding", value: "chunked")
            context.write(Self.wrapOutboundOut(.head(head)), promise: nil)
            while left > 0 {
                let n = min(left, 1000)
                left -= n
                var buffer = context.channel.allocator.buffer(capacity: n)
                buffer.writeRepeatingByte(UInt8(ascii: "c"), count: n)
                context.write(Self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            }
            context.writeAndFlush(Self.wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        if path.hasPrefix("/slow/") {
            let ms = Int(path.dropFirst("/slow/".count).prefix { $0.isNumber }) ?? 1000
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .milliseconds(Int64(ms))) {
                let (handler, context) = loopBound.value
                handler.writeEcho(context: context, request: request)
            }
            return
        }
        self.writeEcho(context: context, request: request)
    }

    private func writeEcho(context: ChannelHandlerContext, request: RecordedRequest) {
        let text = "\(request.method) \(request.uri)\nbody-bytes \(request.bodyBytes)\nconnection \(self.connectionID)\n"
        var head = HTTPResponseHead(version: .http1_1, status: .ok)
        head.headers.add(name: "content-length", value: String(text.utf8.count))
        head.headers.add(name: "content-type", value: "text/plain")
        head.headers.add(name: "x-upstream", value: self.name)
        // hop-by-hop headers the proxy must remove on the way back
        head.headers.add(name: "keep-alive", value: "timeout=5")
        head.headers.add(name: "x-hop", value: "secret")
        head.headers.add(name: "connection", value: "x-hop")
        context.write(Self.wrapOutboundOut(.head(head)), promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: text.utf8.count)
        buffer.writeString(text)
        context.write(Self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        context.writeAndFlush(Self.wrapOutboundOut(.end(nil)), promise: nil)
    }

    private static let chunk: ByteBuffer = {
        var buffer = ByteBufferAllocator().buffer(capacity: 64 * 1024)
        buffer.writeRepeatingByte(UInt8(ascii: "x"), count: 64 * 1024)
        return buffer
    }()

    private func pump(context: ChannelHandlerContext) {
        while self.downloading && context.channel.isWritable && self.remaining > 0 {
            let n = min(self.remaining, Self.chunk.readableBytes)
            self.remaining -= n
            context.write(Self.wrapOutboundOut(.body(.byteBuffer(Self.chunk.getSlice(at: 0, length: n)!))), promise: nil)
        }
        if self.downloading && self.remaining == 0 {
            self.downloading = false
            context.writeAndFlush(Self.wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            context.flush()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if self.downloading && context.channel.isWritable { self.pump(context: context) }
        context.fireChannelWritabilityChanged()
    }
}
