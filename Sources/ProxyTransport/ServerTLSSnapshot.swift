import Foundation
import Logging
public import NIOCore
public import NIOSSL
import NIOTLS
public import ProxyConfig
public import X509

/// One immutable, fully loaded TLS setup of an https listener: a `NIOSSLContext` per certificate pair
/// (chosen by SNI), and the client certificate verifier (client CA and CRLs) when `client_ca` is set.
///
/// Built off the event loop (it reads files and builds BoringSSL contexts); shared by every connection
/// accepted while it is current. A reload builds a new snapshot; connections keep the one they started with.
public struct ServerTLSSnapshot: Sendable {
    /// One configured certificate pair, as loaded.
    public struct ServedCertificate: Sendable {
        public var pair: CertificatePair
        /// The leaf certificate (first of the chain file).
        public var leaf: Certificate
        public var names: ServerCertificateNames
        let context: NIOSSLContext
    }

    public let configuration: ListenerTLSConfig
    /// Increases with every successful (re)load of the provider that built it.
    public let generation: Int
    /// In configuration order; the first is the default.
    public let certificates: [ServedCertificate]
    /// nil when the listener has no `client_ca`.
    public let clientVerifier: ClientCertificateVerifier?
    /// ALPN protocols offered, in preference order.
    public static let applicationProtocols = ["http/1.1"]
    /// Default bound on the time from connection setup to a completed handshake.
    public static let defaultHandshakeTimeout: TimeAmount = .seconds(10)

    let fingerprints: [FileFingerprint]
    let logger: Logger

    /// Every file the configuration names (certificates, keys, client CA, CRL).
    static func files(of configuration: ListenerTLSConfig) -> [String] {
        configuration.certificates.flatMap { [$0.certificate, $0.privateKey] }
            + [configuration.clientCA, configuration.crl]
            .compactMap { $0 }
    }

    /// Blocking: reads every file and builds the contexts. Never call it on an event loop.
    /// - Parameter fingerprints: the files as they were just before this load.
    static func load(
        _ configuration: ListenerTLSConfig,
        generation: Int,
        fingerprints: [FileFingerprint],
        logger: Logger,
        now: Date = Date()
    ) throws(TLSSetupError) -> ServerTLSSnapshot {
        guard !configuration.certificates.isEmpty else {
            throw TLSSetupError(.invalidConfiguration, file: nil, reason: "at least one certificate pair is required")
        }

        var verifier: ClientCertificateVerifier?
        var trustRoots: [NIOSSLCertificate] = []
        if let caFile = configuration.clientCA {
            let authorities = try TLSFiles.certificates(caFile)
            trustRoots = authorities.map(\.native)
            var lists: [CertificateRevocationList] = []
            if let crlFile = configuration.crl {
                let bytes = try TLSFiles.read(crlFile)
                do {
                    lists = try CertificateRevocationList.parse(fileContents: bytes)
                } catch {
                    throw TLSSetupError(.invalidCRL, file: crlFile, reason: "\(error)")
                }
                for list in lists {
                    if let nextUpdate = list.nextUpdate, nextUpdate < now {
                        logger.warning(
                            "CRL is past its nextUpdate; still enforcing the serials it lists",
                            metadata: [
                                "proxy_file": "\(crlFile)", "proxy_crl_issuer": "\(list.issuer)",
                                "proxy_next_update": "\(nextUpdate)",
                            ]
                        )
                    }
                }
            }
            verifier = try ClientCertificateVerifier(
                certificateAuthorities: authorities.map(\.certificate),
                revocationLists: lists,
                crlFile: configuration.crl
            )
        } else if let crlFile = configuration.crl {
            throw TLSSetupError(.invalidConfiguration, file: crlFile, reason: "a CRL needs a client CA ('client_ca')")
        }

        var served: [ServedCertificate] = []
        for pair in configuration.certificates {
            let identity = try LoadedIdentity.load(certificate: pair.certificate, privateKey: pair.privateKey)
            var tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: identity.chain.map { .certificate($0.native) },
                privateKey: .privateKey(identity.key.native)
            )
            // swift-nio-ssl's server default is TLS 1.0; 1.3 stays allowed (no maximum).
            tls.minimumTLSVersion = configuration.minVersion == .tls13 ? .tlsv13 : .tlsv12
            tls.maximumTLSVersion = nil
            tls.applicationProtocols = Self.applicationProtocols
            if verifier != nil {
                // `.noHostnameVerification` requires a certificate; `.optionalVerification` checks one if sent.
                // Either way our verification callback replaces BoringSSL's checks.
                tls.certificateVerification =
                    configuration.clientAuth == .required ? .noHostnameVerification : .optionalVerification
                tls.trustRoots = .certificates(trustRoots)
                tls.sendCANameList = true
            } else {
                tls.certificateVerification = .none
            }
            let context: NIOSSLContext
            do {
                context = try NIOSSLContext(configuration: tls)
            } catch {
                throw TLSSetupError(.contextFailed, file: pair.certificate, reason: "\(error)")
            }
            if identity.leaf.notValidAfter < now {
                logger.warning(
                    "server certificate has expired",
                    metadata: [
                        "proxy_file": "\(pair.certificate)", "proxy_not_after": "\(identity.leaf.notValidAfter)",
                    ]
                )
            }
            served.append(
                ServedCertificate(
                    pair: pair,
                    leaf: identity.leaf,
                    names: ServerCertificateNames(certificate: identity.leaf),
                    context: context
                )
            )
        }
        return ServerTLSSnapshot(
            configuration: configuration,
            generation: generation,
            certificates: served,
            clientVerifier: verifier,
            fingerprints: fingerprints,
            logger: logger
        )
    }

    /// The index in `certificates` for an SNI name (see ``ServerCertificateNames/select(serverName:among:)``).
    public func certificateIndex(forServerName serverName: String?) -> Int {
        ServerCertificateNames.select(serverName: serverName, among: self.certificates.map(\.names))
    }

    /// A TLS server handler for one connection, with the certificate for `serverName` (SNI already known,
    /// e.g. from `SNIHandler`) or the default one.
    /// ``configureServerPipeline(_:position:handshakeTimeout:)`` does the SNI step itself and is what a
    /// listener normally uses.
    public func makeServerHandler(serverName: String? = nil) -> NIOSSLServerHandler {
        self.makeServerHandler(certificateIndex: self.certificateIndex(forServerName: serverName))
    }

    func makeServerHandler(certificateIndex: Int) -> NIOSSLServerHandler {
        let context = self.certificates[certificateIndex].context
        if let verifier = self.clientVerifier {
            return NIOSSLServerHandler(
                context: context,
                customVerificationCallback: verifier.makeVerificationCallback(logger: self.logger)
            )
        }
        return NIOSSLServerHandler(context: context)
    }

    /// Adds TLS to a new connection's pipeline (call it on the channel's event loop, in the child channel
    /// initializer): an SNI reader, then, once the ClientHello's SNI is known, the `NIOSSLServerHandler`
    /// with the matching certificate, and a handler that reports the handshake.
    ///
    /// After the handshake, handlers further down receive a ``TLSConnectionInfo`` user inbound event
    /// (after NIOSSL's own `TLSUserEvent.handshakeCompleted`) before any application data, and the returned
    /// future succeeds with the same value. It fails when the handshake fails or the connection closes first.
    ///
    /// A connection that has not completed its handshake `handshakeTimeout` after it was set up is closed
    /// (``TLSHandshakeTimeoutError``); nil for no bound.
    @discardableResult
    public func configureServerPipeline(
        _ pipeline: ChannelPipeline.SynchronousOperations,
        position: ChannelPipeline.SynchronousOperations.Position = .last,
        handshakeTimeout: TimeAmount? = ServerTLSSnapshot.defaultHandshakeTimeout
    ) throws -> EventLoopFuture<TLSConnectionInfo> {
        let eventLoop = pipeline.eventLoop
        let promise = eventLoop.makePromise(of: TLSConnectionInfo.self)
        let reporter = TLSHandshakeReporter(
            promise: promise,
            generation: self.generation,
            handshakeTimeout: handshakeTimeout
        )
        let snapshot = self
        let sni = ByteToMessageHandler(
            SNIHandler { result in
                let serverName: String?
                switch result {
                case .hostname(let name): serverName = ServerCertificateNames.normalize(name)
                case .fallback: serverName = nil
                }
                let index = snapshot.certificateIndex(forServerName: serverName)
                let handler = snapshot.makeServerHandler(certificateIndex: index)
                reporter.selected(serverName: serverName, certificateIndex: index, handler: handler)
                do {
                    try pipeline.addHandler(handler, position: .before(reporter))
                } catch {
                    return eventLoop.makeFailedFuture(error)
                }
                return eventLoop.makeSucceededVoidFuture()
            }
        )
        try pipeline.addHandlers([sni, reporter], position: position)
        return promise.futureResult
    }
}
