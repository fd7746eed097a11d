import NIOCore
import NIOHTTP1
import NIOPosix

/// The built-in upstream of `portcullis demo`: answers every request with what it received
/// (method, path, and the identity headers the proxy set), as JSON.
enum DemoUpstream {
    static func start(group: any EventLoopGroup) async throws -> any Channel {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(EchoHandler())
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
    }

    final class EchoHandler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        private var head: HTTPRequestHead?
        private var bodyBytes = 0

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch Self.unwrapInboundIn(data) {
            case .head(let head):
                self.head = head
                self.bodyBytes = 0
            case .body(let buffer):
                self.bodyBytes += buffer.readableBytes
            case .end:
                guard let head = self.head else { return }
                var fields: [String] = [
                    #""method":"# + quoted(head.method.rawValue),
                    #""path":"# + quoted(head.uri),
                    #""body_bytes":"# + String(self.bodyBytes),
                ]
                var identity: [String] = []
                for (name, value) in head.headers where name.lowercased().hasPrefix("x-portcullis-") {
                    identity.append(quoted(name.lowercased()) + ":" + quoted(value))
                }
                fields.append(#""identity_headers":{"# + identity.joined(separator: ",") + "}")
                let text = "{" + fields.joined(separator: ",") + "}\n"
                var response = HTTPResponseHead(version: head.version, status: .ok)
                response.headers.add(name: "content-type", value: "application/json")
                response.headers.add(name: "content-length", value: String(text.utf8.count))
                context.write(Self.wrapOutboundOut(.head(response)), promise: nil)
                var buffer = context.channel.allocator.buffer(capacity: text.utf8.count)
                buffer.writeString(text)
                context.write(Self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
                context.writeAndFlush(Self.wrapOutboundOut(.end(nil)), promise: nil)
            }
        }

        private func quoted(_ text: String) -> String {
            var out = "\""
            for scalar in text.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case _ where scalar.value < 0x20: out += "?"
                default: out.unicodeScalars.append(scalar)
                }
            }
            return out + "\""
        }
    }
}

@available(*, unavailable)
extension DemoUpstream.EchoHandler: Sendable {}
