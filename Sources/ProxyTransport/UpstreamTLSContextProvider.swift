public import Logging
import NIOConcurrencyHelpers
import NIOCore
public import NIOPosix
public import NIOSSL
public import ProxyConfig
import ProxyModel

/// The client side of TLS to an https upstream: one `NIOSSLContext` per upstream, built off the event
/// loop, verifying the upstream's certificate by default (`fullVerification`: chain to the system trust
/// store or the configured CA bundle, and the name), sending SNI, with an optional client certificate.
///
/// Reloadable like the server side: ``reload()`` rebuilds from the files and swaps; handlers made before
/// keep their context.
public final class UpstreamTLSContextProvider: Sendable {
    /// One loaded client setup.
    public struct Snapshot: Sendable {
        public let configuration: UpstreamTLSConfig
        public let generation: Int
        let context: NIOSSLContext
        let fingerprints: [FileFingerprint]
    }

    private struct State {
        var snapshot: Snapshot
        var attempted: [FileFingerprint]
        var lastAttempt: Int
        var installedAttempt: Int
    }

    /// ALPN protocols offered to upstreams.
    public static let applicationProtocols = ["http/1.1"]

    private let state: NIOLockedValueBox<State>
    private let threadPool: NIOThreadPool?
    private let logger: Logger

    /// - Parameter configuration: the upstream's `tls:` section; nil means all defaults (system trust
    ///   store, full verification, TLS 1.2 minimum, SNI from the endpoint host).
    public init(configuration: UpstreamTLSConfig?, threadPool: NIOThreadPool? = nil, logger: Logger) async throws {
        let configuration = configuration ?? UpstreamTLSConfig()
        let snapshot = try await ServerTLSContextProvider.runBlocking(on: threadPool) { () throws(TLSSetupError) in
            try Self.load(configuration, generation: 1, fingerprints: FileFingerprint.of(Self.files(of: configuration)))
        }
        if configuration.insecureSkipVerify {
            logger.warning("upstream TLS certificate verification is disabled (insecure_skip_verify)")
        }
        self.state = NIOLockedValueBox(
            State(snapshot: snapshot, attempted: snapshot.fingerprints, lastAttempt: 1, installedAttempt: 1)
        )
        self.threadPool = threadPool
        self.logger = logger
    }

    public var snapshot: Snapshot { self.state.withLockedValue { $0.snapshot } }

    /// The name sent as SNI and verified for `host`: the configured `server_name`, else `host` when it is a
    /// DNS name, else nil (an IP endpoint: no SNI, and NIOSSL verifies the certificate's IP SANs against the
    /// connected address).
    public func serverName(forEndpointHost host: String) -> String? {
        Self.serverName(configured: self.snapshot.configuration.serverName, endpointHost: host)
    }

    static func serverName(configured: String?, endpointHost host: String) -> String? {
        if let configured { return configured }
        guard IPAddress.parse(host) == nil, let name = ServerCertificateNames.normalize(host) else { return nil }
        return name
    }

    /// A TLS client handler for a connection to `endpoint`, with the SNI/verification name from
    /// ``serverName(forEndpointHost:)``.
    public func makeClientHandler(endpoint: HostPort) throws -> NIOSSLClientHandler {
        let snapshot = self.snapshot
        let name = Self.serverName(configured: snapshot.configuration.serverName, endpointHost: endpoint.host)
        return try NIOSSLClientHandler(context: snapshot.context, serverHostname: name)
    }

    /// A TLS client handler that sends `serverHostname` as SNI and verifies the certificate for it;
    /// nil (or an IP literal, which can not be SNI): no SNI, the certificate is verified for the peer's IP.
    public func makeClientHandler(serverHostname: String?) throws -> NIOSSLClientHandler {
        let name = serverHostname.flatMap { IPAddress.parse($0) == nil ? $0 : nil }
        return try NIOSSLClientHandler(context: self.snapshot.context, serverHostname: name)
    }

    /// Rebuilds the context from the files, off the event loop; on failure the old one stays.
    @discardableResult
    public func reload(configuration: UpstreamTLSConfig? = nil) async throws -> Snapshot {
        let (target, attempt) = self.state.withLockedValue { state in
            state.lastAttempt += 1
            return (configuration ?? state.snapshot.configuration, state.lastAttempt)
        }
        // The files are fingerprinted before they are read: a change during the load is seen by the next check.
        let (fingerprints, result) = try await ServerTLSContextProvider.runBlocking(on: self.threadPool) {
            let fingerprints = FileFingerprint.of(Self.files(of: target))
            let result = Result { () throws(TLSSetupError) in
                try Self.load(target, generation: attempt, fingerprints: fingerprints)
            }
            return (fingerprints, result)
        }
        return try self.state.withLockedValue { state in
            switch result {
            case .success(let snapshot):
                // Two reloads in flight: the one started last wins.
                if attempt > state.installedAttempt {
                    state.snapshot = snapshot
                    state.installedAttempt = attempt
                    state.attempted = fingerprints
                }
                return state.snapshot
            case .failure(let error):
                // A broken file of the current configuration is reported once, not at every check.
                if configuration == nil, attempt > state.installedAttempt { state.attempted = fingerprints }
                throw error
            }
        }
    }

    /// Whether the CA bundle or client certificate files changed since the last load attempt (blocking).
    public func filesChanged() -> Bool {
        let (configuration, attempted) = self.state.withLockedValue { ($0.snapshot.configuration, $0.attempted) }
        return FileFingerprint.of(Self.files(of: configuration)) != attempted
    }

    static func files(of configuration: UpstreamTLSConfig) -> [String] {
        [configuration.caFile, configuration.clientCertificate, configuration.clientKey].compactMap { $0 }
    }

    /// Blocking: reads the files and builds the context (the system trust store is read here too).
    static func load(
        _ configuration: UpstreamTLSConfig,
        generation: Int,
        fingerprints: [FileFingerprint]
    ) throws(TLSSetupError) -> Snapshot {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = configuration.minVersion == .tls13 ? .tlsv13 : .tlsv12
        tls.maximumTLSVersion = nil
        tls.applicationProtocols = Self.applicationProtocols
        tls.certificateVerification = configuration.insecureSkipVerify ? .none : .fullVerification
        if let caFile = configuration.caFile {
            tls.trustRoots = .certificates(try TLSFiles.certificates(caFile).map(\.native))
        } else {
            tls.trustRoots = .default
        }
        switch (configuration.clientCertificate, configuration.clientKey) {
        case (let certificate?, let key?):
            let identity = try LoadedIdentity.load(certificate: certificate, privateKey: key)
            tls.certificateChain = identity.chain.map { .certificate($0.native) }
            tls.privateKey = .privateKey(identity.key.native)
        case (nil, nil):
            break
        case (let file?, nil), (nil, let file?):
            throw TLSSetupError(
                .invalidConfiguration,
                file: file,
                reason: "a client certificate needs its key and a key its certificate"
            )
        }
        let context: NIOSSLContext
        do {
            context = try NIOSSLContext(configuration: tls)
        } catch {
            throw TLSSetupError(.contextFailed, file: configuration.caFile, reason: "\(error)")
        }
        return Snapshot(
            configuration: configuration,
            generation: generation,
            context: context,
            fingerprints: fingerprints
        )
    }
}
