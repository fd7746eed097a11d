import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import ProxyConfig
import ProxyModel
import Testing

@testable import ProxyTransport

/// Hands the PROXY protocol header events to the test.
final class ProxyHeaderRecorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    let headers: NIOLockedValueBox<[ProxyProtocolHeader]>

    init(headers: NIOLockedValueBox<[ProxyProtocolHeader]>) { self.headers = headers }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let header = event as? ProxyProtocolHeader { self.headers.withLockedValue { $0.append(header) } }
        context.fireUserInboundEventTriggered(event)
    }
}

/// The order a listener with `proxy_protocol: true` and TLS uses: PROXY header, then TLS, then the application.
@Suite("listener pipeline")
struct ListenerPipelineTests {
    @Test func proxyHeaderBeforeTLSReachesTheApplication() async throws {
        let pki = try TestPKI()
        let provider = try await ServerTLSContextProvider(
            configuration: ListenerTLSConfig(certificates: [pki.serverPair]),
            logger: testLogger
        )
        let headers = NIOLockedValueBox<[ProxyProtocolHeader]>([])
        let infos = NIOLockedValueBox<[TLSConnectionInfo]>([])
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(ProxyProtocolHandler())
                    try provider.configureServerPipeline(sync)
                    try sync.addHandler(ProxyHeaderRecorder(headers: headers))
                    try sync.addHandler(InfoEventRecorder(events: infos))
                    try sync.addHandler(EchoHandler())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = server.localAddress!.port!
        let context = try NIOSSLContext(configuration: try trustingClientConfiguration(pki))

        let relayed = try await TestClient.connect(
            port: port,
            plaintextPrefix: Array("PROXY TCP4 192.0.2.10 198.51.100.1 54321 443\r\n".utf8)
        ) { try NIOSSLClientHandler(context: context, serverHostname: "localhost") }
        #expect(try await relayed.echo("through the balancer") == "through the balancer")
        #expect(
            headers.withLockedValue { $0.map(\.source) } == [
                ProxyProtocolAddress(address: .v4(0xC000_020A), port: 54321)
            ]
        )
        #expect(infos.withLockedValue { $0.map(\.serverName) } == ["localhost"])

        // Without the header the connection is closed before TLS begins.
        let direct = try await TestClient.connect(port: port) {
            try NIOSSLClientHandler(context: context, serverHostname: "localhost")
        }
        #expect(await direct.works() == false)
        #expect(headers.withLockedValue { $0.count } == 1)
        #expect(infos.withLockedValue { $0.count } == 1)

        await relayed.close()
        await direct.close()
        try await server.close()
    }
}
