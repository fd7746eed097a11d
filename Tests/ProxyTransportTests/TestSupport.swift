import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import ProxyConfig
import SwiftASN1
import Testing
import X509

@testable import ProxyTransport

/// A temporary folder removed when the value is dropped at the end of a test.
final class TemporaryDirectory {
    let path: String

    init() throws {
        let path = NSTemporaryDirectory() + "portcullis-transport-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        self.path = path
    }

    func file(_ name: String) -> String { self.path + "/" + name }

    @discardableResult
    func write(_ name: String, _ contents: String) throws -> String {
        let full = self.file(name)
        try contents.write(toFile: full, atomically: false, encoding: .utf8)
        return full
    }

    func copy(_ source: String, to name: String) throws {
        let contents = try String(contentsOfFile: source, encoding: .utf8)
        try self.write(name, contents)
    }

    deinit { try? FileManager.default.removeItem(atPath: self.path) }
}

let testLogger = Logger(label: "portcullis.transport.tests")

/// A development PKI in a temporary folder.
struct TestPKI {
    let directory: TemporaryDirectory
    let files: DevCertificateFiles

    static let spiffeID = "spiffe://example.com/airflow/worker"
    static let email = "worker@example.com"

    init(serverNames: [String] = ["localhost", "127.0.0.1", "api.internal"]) throws {
        self.directory = try TemporaryDirectory()
        self.files = try DevCertificates.generate(
            in: self.directory.path + "/pki",
            serverNames: serverNames,
            clientSPIFFEID: Self.spiffeID,
            clientEmail: Self.email,
            validity: .seconds(3_600)
        )
    }

    var serverPair: CertificatePair {
        CertificatePair(certificate: self.files.serverCertificate, privateKey: self.files.serverPrivateKey)
    }

    func clientIdentity() throws -> (chain: [NIOSSLCertificateSource], key: NIOSSLPrivateKeySource) {
        (
            try NIOSSLCertificate.fromPEMFile(self.files.clientCertificate).map { .certificate($0) },
            .privateKey(try NIOSSLPrivateKey(file: self.files.clientPrivateKey, format: .pem))
        )
    }

    func revokedClientIdentity() throws -> (chain: [NIOSSLCertificateSource], key: NIOSSLPrivateKeySource) {
        (
            try NIOSSLCertificate.fromPEMFile(self.files.revokedClientCertificate).map { .certificate($0) },
            .privateKey(try NIOSSLPrivateKey(file: self.files.revokedClientPrivateKey, format: .pem))
        )
    }

    func caCertificates() throws -> [NIOSSLCertificate] { try NIOSSLCertificate.fromPEMFile(self.files.caCertificate) }
}

/// Runs `body`, failing when it takes longer than `seconds`.
func withTimeout<T: Sendable>(
    seconds: Double = 10,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .milliseconds(Int(seconds * 1_000)))
            throw TimedOut()
        }
        let result = try await group.next()!
        group.cancelAll()
        return result
    }
}

struct TimedOut: Error {}

/// Echoes every byte back (the "application" behind TLS in the server tests).
final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Records the `TLSConnectionInfo` events the pipeline delivers (to check they arrive as events too).
final class InfoEventRecorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    let events: NIOLockedValueBox<[TLSConnectionInfo]>

    init(events: NIOLockedValueBox<[TLSConnectionInfo]>) { self.events = events }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let info = event as? TLSConnectionInfo { self.events.withLockedValue { $0.append(info) } }
        context.fireUserInboundEventTriggered(event)
    }
}

/// A loopback TLS echo server using a `ServerTLSContextProvider`; every accepted connection's handshake
/// outcome is recorded, in order.
final class TLSTestServer: Sendable {
    let channel: any Channel
    let infoEvents: NIOLockedValueBox<[TLSConnectionInfo]>
    private let outcomes: NIOLockedValueBox<[Result<TLSConnectionInfo, any Error>]>

    var port: Int { self.channel.localAddress!.port! }

    init(provider: ServerTLSContextProvider, handshakeTimeout: TimeAmount? = .seconds(10)) async throws {
        let outcomes = NIOLockedValueBox<[Result<TLSConnectionInfo, any Error>]>([])
        let events = NIOLockedValueBox<[TLSConnectionInfo]>([])
        self.outcomes = outcomes
        self.infoEvents = events
        self.channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    let info = try provider.configureServerPipeline(sync, handshakeTimeout: handshakeTimeout)
                    try sync.addHandler(InfoEventRecorder(events: events))
                    try sync.addHandler(EchoHandler())
                    info.whenComplete { result in outcomes.withLockedValue { $0.append(result) } }
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
    }

    /// The handshake outcome of the next accepted connection (in accept order).
    func nextOutcome() async throws -> Result<TLSConnectionInfo, any Error> {
        try await withTimeout {
            while true {
                let next = self.outcomes.withLockedValue { outcomes -> Result<TLSConnectionInfo, any Error>? in
                    outcomes.isEmpty ? nil : outcomes.removeFirst()
                }
                if let next { return next }
                try await Task.sleep(for: .milliseconds(5))
            }
        }
    }

    func close() async throws { try await self.channel.close() }
}

extension Result {
    var failed: Bool {
        if case .failure = self { return true }
        return false
    }

    /// Whether this failed with an error whose description contains `text` (a BoringSSL reason).
    func failed(with text: String) -> Bool {
        if case .failure(let error) = self { return String(describing: error).contains(text) }
        return false
    }
}

/// The client end of a test connection: handshake outcome, echo round trips, the server's certificate.
final class TestClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let handshake: EventLoopPromise<String?>
    private var received = ""
    private var pending: (expected: Int, promise: EventLoopPromise<String>)?
    private var failure: (any Error)?

    init(handshake: EventLoopPromise<String?>) { self.handshake = handshake }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted(let negotiated) = event as? TLSUserEvent { self.handshake.succeed(negotiated) }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = Self.unwrapInboundIn(data)
        self.received += String(buffer: buffer)
        self.completeIfPossible()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.fail(ChannelError.eof)
        context.fireChannelInactive()
    }

    func expect(count: Int, promise: EventLoopPromise<String>) {
        if let failure {
            promise.fail(failure)
            return
        }
        self.pending = (count, promise)
        self.completeIfPossible()
    }

    private func completeIfPossible() {
        guard let pending, self.received.utf8.count >= pending.expected else { return }
        self.pending = nil
        let text = String(self.received.prefix(pending.expected))
        self.received = String(self.received.dropFirst(pending.expected))
        pending.promise.succeed(text)
    }

    private func fail(_ error: any Error) {
        if self.failure == nil { self.failure = error }
        self.handshake.fail(error)
        if let pending {
            self.pending = nil
            pending.promise.fail(error)
        }
    }
}

struct TestClient {
    let channel: any Channel
    private let handlers: NIOLoopBound<(client: TestClientHandler, tls: NIOSSLClientHandler)>
    private let handshakeResult: EventLoopFuture<String?>

    static func connect(
        port: Int,
        configuration: TLSConfiguration,
        serverHostname: String?
    ) async throws -> TestClient {
        let context = try NIOSSLContext(configuration: configuration)
        return try await Self.connect(port: port) {
            try NIOSSLClientHandler(context: context, serverHostname: serverHostname)
        }
    }

    static func connect(
        port: Int,
        plaintextPrefix: [UInt8]? = nil,
        handler makeHandler: @escaping @Sendable () throws -> NIOSSLClientHandler
    ) async throws -> TestClient {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let installed = loop.makePromise(of: NIOLoopBound<(client: TestClientHandler, tls: NIOSSLClientHandler)>.self)
        let channel = try await ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    let tls = try makeHandler()
                    let client = TestClientHandler(handshake: channel.eventLoop.makePromise())
                    if let plaintextPrefix { try sync.addHandler(PrefixWriter(bytes: plaintextPrefix)) }
                    try sync.addHandler(tls)
                    try sync.addHandler(client)
                    installed.succeed(NIOLoopBound((client, tls), eventLoop: channel.eventLoop))
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        let handlers = try await installed.futureResult.get()
        let handshake = try await loop.submit { handlers.value.client.handshake.futureResult }.get()
        return TestClient(channel: channel, handlers: handlers, handshakeResult: handshake)
    }

    /// The negotiated ALPN protocol once the client's handshake completed; throws when it failed.
    func handshake() async throws -> String? {
        try await withTimeout { [handshakeResult] in try await handshakeResult.get() }
    }

    /// Sends `text` and waits for it to come back; throws when the connection fails or closes first.
    func echo(_ text: String) async throws -> String {
        try await withTimeout { [channel, handlers] in
            try await channel.eventLoop.flatSubmit {
                let promise = channel.eventLoop.makePromise(of: String.self)
                handlers.value.client.expect(count: text.utf8.count, promise: promise)
                channel.writeAndFlush(ByteBuffer(string: text), promise: nil)
                return promise.futureResult
            }.get()
        }
    }

    /// Whether a round trip works: handshake and echo.
    func works() async -> Bool {
        do {
            _ = try await self.handshake()
            return try await self.echo("ping") == "ping"
        } catch {
            return false
        }
    }

    /// The certificate the server presented.
    func serverCertificate() async throws -> Certificate {
        let native = try await self.channel.eventLoop.submit { [handlers] in handlers.value.tls.peerCertificate }.get()
        let certificate = try #require(native)
        return try Certificate(derEncoded: certificate.toDERBytes())
    }

    func negotiatedVersion() async throws -> TLSVersion? {
        try await self.channel.eventLoop.submit { [handlers] in handlers.value.tls.tlsVersion }.get()
    }

    func close() async { try? await self.channel.close() }
}

/// Writes `bytes` in clear when the connection opens, before TLS starts (a load balancer's PROXY header).
final class PrefixWriter: ChannelInboundHandler {
    typealias InboundIn = NIOAny
    typealias OutboundOut = ByteBuffer
    let bytes: [UInt8]

    init(bytes: [UInt8]) { self.bytes = bytes }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(Self.wrapOutboundOut(ByteBuffer(bytes: self.bytes)), promise: nil)
        context.fireChannelActive()
    }
}

extension Certificate {
    var dnsNames: [String] {
        let names = (try? self.extensions.subjectAlternativeNames) ?? nil
        return (names ?? SubjectAlternativeNames()).compactMap {
            if case .dnsName(let name) = $0 { return name }
            return nil
        }
    }
}

/// A client configuration that does not verify the server (for tests that inspect what it presents).
func inspectingClientConfiguration(
    minimum: TLSVersion = .tlsv12,
    maximum: TLSVersion? = nil
) -> TLSConfiguration {
    var configuration = TLSConfiguration.makeClientConfiguration()
    configuration.certificateVerification = .none
    configuration.minimumTLSVersion = minimum
    configuration.maximumTLSVersion = maximum
    configuration.applicationProtocols = ["http/1.1"]
    return configuration
}

/// A client that trusts `pki`'s CA and optionally presents a client certificate.
func trustingClientConfiguration(
    _ pki: TestPKI,
    identity: (chain: [NIOSSLCertificateSource], key: NIOSSLPrivateKeySource)? = nil
) throws -> TLSConfiguration {
    var configuration = TLSConfiguration.makeClientConfiguration()
    configuration.trustRoots = .certificates(try pki.caCertificates())
    configuration.minimumTLSVersion = .tlsv12
    configuration.applicationProtocols = ["http/1.1"]
    if let identity {
        configuration.certificateChain = identity.chain
        configuration.privateKey = identity.key
    }
    return configuration
}
