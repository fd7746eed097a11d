import NIOCore
import NIOHTTP1

/// Receives what happens on an upstream connection while it serves an exchange.
protocol UpstreamReceiver: AnyObject {
    func upstreamResponsePart(_ part: HTTPClientResponsePart)
    func upstreamReadComplete()
    func upstreamWritabilityChanged(isWritable: Bool)
    /// The connection closed or failed. `error` is nil for a plain close.
    func upstreamFailed(_ error: (any Error)?)
}

/// The last handler of an upstream connection: hands response parts to the exchange that owns the
/// connection and lets it pause reads (backpressure from the client side).
final class UpstreamConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    /// The exchange being served. Strong, cleared when the exchange lets the connection go (the pool's
    /// `release`, or the connection's end): a weak reference would give every exchange a refcount side table,
    /// which makes each of its retains and releases take the runtime's slow path.
    var receiver: (any UpstreamReceiver)?
    private var readsAllowed = true
    private var readPending = false
    private(set) var context: ChannelHandlerContext?
    /// Called once when the channel goes inactive (the pool forgets the connection).
    var onClose: (() -> Void)?

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = Self.unwrapInboundIn(data)
        if let receiver = self.receiver {
            receiver.upstreamResponsePart(part)
        } else {
            // An idle pooled connection must stay silent; anything else makes it unusable.
            context.close(promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.receiver?.upstreamReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.receiver?.upstreamWritabilityChanged(isWritable: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        let receiver = self.receiver
        self.receiver = nil
        receiver?.upstreamFailed(nil)
        let onClose = self.onClose
        self.onClose = nil
        onClose?()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let receiver = self.receiver
        self.receiver = nil
        receiver?.upstreamFailed(error)
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            // The upstream half-closed: treat as a close (we never send after its EOF).
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func read(context: ChannelHandlerContext) {
        if self.readsAllowed {
            context.read()
        } else {
            self.readPending = true
        }
    }

    func setReadsAllowed(_ allowed: Bool) {
        self.readsAllowed = allowed
        if allowed, self.readPending, let context = self.context {
            self.readPending = false
            context.read()
        }
    }
}

@available(*, unavailable)
extension UpstreamConnectionHandler: Sendable {}
