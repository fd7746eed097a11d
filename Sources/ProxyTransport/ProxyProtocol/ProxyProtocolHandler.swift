public import NIOCore

/// First handler of a child pipeline on a listener with `proxy_protocol: true`: reads the PROXY protocol
/// header (v1 or v2) the load balancer puts before the client's bytes, fires a ``ProxyProtocolHeader``
/// user inbound event, passes every byte after the header on unchanged, and removes itself.
///
/// The header is required: a connection whose first bytes are not a valid header, whose header is
/// malformed or too long, or that sends no complete header within `timeout`, is closed, and nothing it
/// sent is passed on (a ``ProxyProtocolError`` is fired through `errorCaught` first).
///
/// Listeners without `proxy_protocol` add nothing: a forged `PROXY ...` line then reaches the HTTP
/// parser, which refuses it as an invalid method (and the v2 signature as invalid bytes).
public final class ProxyProtocolHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    private enum State {
        case waiting(buffered: ByteBuffer?)
        case done
    }

    private var state: State = .waiting(buffered: nil)
    private let maximumV2Length: Int
    private let timeout: TimeAmount?
    private var timeoutTask: Scheduled<Void>?

    /// - Parameters:
    ///   - maximumV2Length: bound on the v2 address and TLV block (default 512 bytes).
    ///   - timeout: time from connection start to a complete header; nil for none (default 10 s).
    public init(
        maximumV2Length: Int = ProxyProtocolParser.defaultV2MaximumLength,
        timeout: TimeAmount? = .seconds(10)
    ) {
        self.maximumV2Length = maximumV2Length
        self.timeout = timeout
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { self.scheduleTimeout(context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        self.scheduleTimeout(context: context)
        context.fireChannelActive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.timeoutTask?.cancel()
        self.timeoutTask = nil
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = Self.unwrapInboundIn(data)
        guard case .waiting(var buffered) = self.state else {
            // Only between parsing the header and leaving the pipeline: pass on.
            context.fireChannelRead(data)
            return
        }
        if buffered == nil {
            buffered = incoming
        } else {
            buffered!.writeBuffer(&incoming)
        }
        do {
            guard let header = try ProxyProtocolParser.parse(&buffered!, maximumV2Length: self.maximumV2Length)
            else {
                self.state = .waiting(buffered: buffered)
                return
            }
            self.state = .done
            self.timeoutTask?.cancel()
            self.timeoutTask = nil
            context.fireUserInboundEventTriggered(header)
            if let rest = buffered, rest.readableBytes > 0 {
                context.fireChannelRead(Self.wrapInboundOut(rest))
            }
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        } catch {
            self.refuse(context: context, error: error)
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.timeoutTask?.cancel()
        self.timeoutTask = nil
        self.state = .done
        context.fireChannelInactive()
    }

    private func scheduleTimeout(context: ChannelHandlerContext) {
        guard let timeout = self.timeout, self.timeoutTask == nil, case .waiting = self.state else { return }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.timeoutTask = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = bound.value
            guard case .waiting = handler.state else { return }
            handler.refuse(
                context: context,
                error: ProxyProtocolError(.timeout, "no complete header within \(timeout.nanoseconds / 1_000_000) ms")
            )
        }
    }

    private func refuse(context: ChannelHandlerContext, error: ProxyProtocolError) {
        self.state = .done
        self.timeoutTask?.cancel()
        self.timeoutTask = nil
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension ProxyProtocolHandler: Sendable {}

/// The PROXY protocol parser as a `ByteToMessageDecoder` emitting ``ProxyProtocolHeader`` values (for
/// `ByteToMessageHandler`; NIO's `ByteToMessageDecoderVerifier` checks it against every split of the input).
/// ``ProxyProtocolHandler`` is what a listener uses: it also hands the following bytes on and leaves.
public struct ProxyProtocolDecoder: ByteToMessageDecoder {
    public typealias InboundOut = ProxyProtocolHeader

    private let maximumV2Length: Int

    public init(maximumV2Length: Int = ProxyProtocolParser.defaultV2MaximumLength) {
        self.maximumV2Length = maximumV2Length
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let header = try ProxyProtocolParser.parse(&buffer, maximumV2Length: self.maximumV2Length) else {
            return .needMoreData
        }
        context.fireChannelRead(Self.wrapInboundOut(header))
        return .continue
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext,
        buffer: inout ByteBuffer,
        seenEOF: Bool
    ) throws -> DecodingState {
        try self.decode(context: context, buffer: &buffer)
    }
}
