public import NIOCore
public import NIOSSL
import NIOTLS
public import ProxyModel

/// The TLS protocol version a connection negotiated, named as OpenSSL names it (for audit).
public enum NegotiatedTLSVersion: String, Sendable, Hashable {
    case tls10 = "TLSv1"
    case tls11 = "TLSv1.1"
    case tls12 = "TLSv1.2"
    case tls13 = "TLSv1.3"

    public init(_ version: TLSVersion) {
        switch version {
        case .tlsv1: self = .tls10
        case .tlsv11: self = .tls11
        case .tlsv12: self = .tls12
        case .tlsv13: self = .tls13
        }
    }
}

/// What a TLS server connection established, known once the handshake completed. Delivered as a user
/// inbound event, and through the future of
/// ``ServerTLSSnapshot/configureServerPipeline(_:position:handshakeTimeout:)``.
public struct TLSConnectionInfo: Sendable, Equatable {
    /// The SNI host name the client sent (lowercased, without a trailing dot), nil without SNI.
    /// This is the name the certificate was chosen by, and the one a Host header must agree with (421).
    public var serverName: String?
    public var tlsVersion: NegotiatedTLSVersion?
    /// The ALPN protocol agreed (`http/1.1`), nil when the client offered none.
    public var applicationProtocol: String?
    /// The verified client certificate's identity; nil when the client presented none (optional mode).
    public var clientCertificate: ClientCertificateIdentity?
    /// Which configured certificate pair was served (0 is the default).
    public var certificateIndex: Int
    /// The generation of the ``ServerTLSSnapshot`` that served the connection.
    public var generation: Int

    public init(
        serverName: String?,
        tlsVersion: NegotiatedTLSVersion?,
        applicationProtocol: String?,
        clientCertificate: ClientCertificateIdentity?,
        certificateIndex: Int,
        generation: Int
    ) {
        self.serverName = serverName
        self.tlsVersion = tlsVersion
        self.applicationProtocol = applicationProtocol
        self.clientCertificate = clientCertificate
        self.certificateIndex = certificateIndex
        self.generation = generation
    }
}

/// Sits right after the `NIOSSLServerHandler` until the handshake completes, then reports it
/// (``TLSConnectionInfo`` event and promise) and removes itself. Fails the promise if the connection
/// errs or closes first. The decisions are ``TLSHandshakeReportStateMachine``'s.
final class TLSHandshakeReporter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    typealias InboundOut = NIOAny

    private var stateMachine = TLSHandshakeReportStateMachine()
    private var tlsHandler: NIOSSLServerHandler?
    private let promise: EventLoopPromise<TLSConnectionInfo>
    private let generation: Int
    private let handshakeTimeout: TimeAmount?
    private var timeoutTask: Scheduled<Void>?

    init(promise: EventLoopPromise<TLSConnectionInfo>, generation: Int, handshakeTimeout: TimeAmount?) {
        self.promise = promise
        self.generation = generation
        self.handshakeTimeout = handshakeTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { self.scheduleTimeout(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        self.scheduleTimeout(context: context)
        context.fireChannelActive()
    }

    private func scheduleTimeout(context: ChannelHandlerContext) {
        guard let timeout = self.handshakeTimeout, self.timeoutTask == nil else { return }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.timeoutTask = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = bound.value
            handler.timeoutTask = nil
            let error = TLSHandshakeTimeoutError(timeout: timeout)
            if handler.fail(error) {
                context.fireErrorCaught(error)
                context.close(promise: nil)
            }
        }
    }

    /// The SNI step chose a certificate and a TLS handler.
    func selected(serverName: String?, certificateIndex: Int, handler: NIOSSLServerHandler) {
        if self.stateMachine.certificateSelected(serverName: serverName, certificateIndex: certificateIndex) {
            self.tlsHandler = handler
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case .handshakeCompleted(let negotiated) = event as? TLSUserEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        switch self.stateMachine.handshakeCompleted() {
        case .forward:
            context.fireUserInboundEventTriggered(event)
        case .report(let serverName, let index):
            self.report(context: context, event: event, negotiated: negotiated, serverName: serverName, index: index)
        }
    }

    private func report(
        context: ChannelHandlerContext,
        event: Any,
        negotiated: String?,
        serverName: String?,
        index: Int
    ) {
        self.timeoutTask?.cancel()
        self.timeoutTask = nil
        let handler = self.tlsHandler
        self.tlsHandler = nil
        let identity: ClientCertificateIdentity?
        do {
            identity = try handler?.clientCertificateIdentity()
        } catch {
            // A verified certificate whose SANs do not parse: refuse rather than run without its identity.
            self.promise.fail(error)
            context.fireErrorCaught(error)
            context.close(promise: nil)
            return
        }
        let info = TLSConnectionInfo(
            serverName: serverName,
            tlsVersion: handler?.tlsVersion.map(NegotiatedTLSVersion.init),
            applicationProtocol: negotiated,
            clientCertificate: identity,
            certificateIndex: index,
            generation: self.generation
        )
        context.fireUserInboundEventTriggered(event)
        context.fireUserInboundEventTriggered(info)
        self.promise.succeed(info)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.fail(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.fail(ChannelError.eof)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timeoutTask?.cancel()
        self.timeoutTask = nil
        self.fail(ChannelError.ioOnClosedChannel)
    }

    /// Returns whether this failure was the first (and failed the promise).
    @discardableResult
    private func fail(_ error: any Error) -> Bool {
        switch self.stateMachine.connectionFailed() {
        case .failPromise:
            self.timeoutTask?.cancel()
            self.timeoutTask = nil
            self.tlsHandler = nil
            self.promise.fail(error)
            return true
        case .none:
            return false
        }
    }
}

/// The TLS handshake (from accept to a completed handshake, SNI step included) took longer than allowed.
public struct TLSHandshakeTimeoutError: Error, Hashable, Sendable, CustomStringConvertible {
    public var timeout: TimeAmount

    public var description: String { "TLS handshake not completed within \(self.timeout.nanoseconds / 1_000_000) ms" }
}

@available(*, unavailable)
extension TLSHandshakeReporter: Sendable {}

/// When a TLS server connection's handshake is reported: after the SNI step chose a certificate and
/// NIOSSL completed the handshake; a failure or close before that fails the report, once.
struct TLSHandshakeReportStateMachine {
    private enum State {
        case waitingForClientHello
        case handshaking(serverName: String?, certificateIndex: Int)
        case done
    }

    enum HandshakeCompletedAction: Equatable {
        /// Build and deliver the connection info.
        case report(serverName: String?, certificateIndex: Int)
        /// Not ours to report (already reported or failed): pass the event on.
        case forward
    }

    enum FailureAction: Equatable {
        case failPromise
        case none
    }

    private var state: State = .waitingForClientHello

    /// Returns whether the selection was taken (only the first, before any failure).
    mutating func certificateSelected(serverName: String?, certificateIndex: Int) -> Bool {
        guard case .waitingForClientHello = self.state else { return false }
        self.state = .handshaking(serverName: serverName, certificateIndex: certificateIndex)
        return true
    }

    mutating func handshakeCompleted() -> HandshakeCompletedAction {
        guard case .handshaking(let serverName, let index) = self.state else { return .forward }
        self.state = .done
        return .report(serverName: serverName, certificateIndex: index)
    }

    mutating func connectionFailed() -> FailureAction {
        switch self.state {
        case .waitingForClientHello, .handshaking:
            self.state = .done
            return .failPromise
        case .done:
            return .none
        }
    }
}
