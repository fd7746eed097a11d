public import Logging
import PolicyCore
public import ProxyConfig
import ProxyModel
public import ProxyTransport

/// Everything a request needs from the configuration, compiled once per load and swapped atomically
/// on reload. Immutable; a request keeps the snapshot it started with.
public final class RuntimeSnapshot: Sendable {
    public let config: PortcullisConfig
    /// SHA-256 of the policy file this snapshot was built from ("" when built in memory).
    public let digest: String
    /// Route tables by listener name.
    let tables: [String: RouteTable<CompiledRoute>]
    /// Listener settings by name.
    let listeners: [String: ListenerConfig]
    /// Issuers and their keys (kept across reloads when their key source is unchanged).
    public let identity: IdentityRegistry

    /// TLS client contexts of the https upstreams, by pool key.
    let upstreamTLS: [UpstreamKey: UpstreamTLSContextProvider]

    /// Builds a snapshot, reading the upstream TLS files (blocking work, so this is async and runs off the
    /// event loops). Providers of unchanged upstreams are taken over from `previous`.
    public static func make(
        config: PortcullisConfig,
        digest: String,
        previous: RuntimeSnapshot? = nil,
        logger: Logger
    ) async throws -> RuntimeSnapshot {
        var providers: [UpstreamKey: UpstreamTLSContextProvider] = [:]
        for route in config.routes where route.upstream.scheme == .https {
            let key = UpstreamKey(route.upstream)
            if providers[key] != nil { continue }
            if let existing = previous?.upstreamTLS[key] {
                providers[key] = existing
            } else {
                providers[key] = try await UpstreamTLSContextProvider(configuration: route.upstream.tls, logger: logger)
            }
        }
        return RuntimeSnapshot(config: config, digest: digest, previous: previous, upstreamTLS: providers)
    }

    public init(
        config: PortcullisConfig,
        digest: String = "",
        previous: RuntimeSnapshot? = nil,
        upstreamTLS: [UpstreamKey: UpstreamTLSContextProvider] = [:]
    ) {
        self.config = config
        self.digest = digest
        self.upstreamTLS = upstreamTLS
        self.identity = IdentityRegistry(issuers: config.issuers, previous: previous?.identity)
        // Every identity header any route sets is stripped from every client request, whatever the route:
        // an upstream shared by two routes must never see a client-supplied value under a trusted name.
        let identityHeaderNames = Set(
            config.routes.flatMap { $0.identityHeaders.map { HeaderSanitizer.canonicalName($0.name) } }
        )
        var byListener: [String: [RouteTable<CompiledRoute>.Entry]] = [:]
        for route in config.routes {
            let compiled = CompiledRoute(
                route,
                strippedHeaderNames: identityHeaderNames,
                upstreamTLS: upstreamTLS[UpstreamKey(route.upstream)]
            )
            byListener[route.listener, default: []].append(.init(host: route.host, path: route.path, payload: compiled))
        }
        self.tables = byListener.mapValues { RouteTable($0) }
        var listeners: [String: ListenerConfig] = [:]
        for listener in config.listeners { listeners[listener.name] = listener }
        self.listeners = listeners
    }

    func route(listener: String, host: String, path: String) -> CompiledRoute? {
        self.tables[listener]?.lookup(host: host, path: path)
    }
}

/// A route with what the request path needs pre-computed.
final class CompiledRoute: Sendable {
    let config: RouteConfig
    let policy: RoutePolicy
    let upstreamKey: UpstreamKey
    /// Lower-cased identity header names of every route, `_` spelled `-` (stripped from every client request).
    let strippedHeaderNames: Set<String>
    /// The route's path prefix for prefix routes ("" for `/*`), nil for exact routes.
    let pathPrefix: String?

    /// TLS to the upstream (https upstreams only).
    let upstreamTLS: UpstreamTLSContextProvider?
    /// The Host header for the upstream when the client's is not preserved (formatted once, not per request).
    let upstreamAuthority: String

    init(_ route: RouteConfig, strippedHeaderNames: Set<String>, upstreamTLS: UpstreamTLSContextProvider?) {
        self.upstreamTLS = upstreamTLS
        self.config = route
        let prefix: String?
        switch route.path {
        case .prefix(let p): prefix = p
        case .exact: prefix = nil
        }
        self.pathPrefix = prefix
        self.policy = route.policy
        self.upstreamKey = UpstreamKey(route.upstream)
        self.strippedHeaderNames = strippedHeaderNames
        self.upstreamAuthority = RequestPreparation.upstreamAuthority(route)
    }

    var name: String { self.config.name }

    /// The path the upstream receives: the normalized path with `prefix_rewrite` applied.
    func upstreamPath(for path: String) -> String {
        guard let rewrite = self.config.prefixRewrite, let prefix = self.pathPrefix else { return path }
        var rest = Substring(path)
        if !prefix.isEmpty {
            guard path.hasPrefix(prefix) else { return path }
            rest = path.dropFirst(prefix.count)
        }
        // rest is "" or starts with "/".
        if rest.isEmpty { return rewrite.isEmpty ? "/" : rewrite }
        if rewrite.hasSuffix("/") { return rewrite + rest.dropFirst() }
        return rewrite + rest
    }
}

/// Identity of an upstream pool: same endpoints and settings share connections.
public struct UpstreamKey: Hashable, Sendable {
    let scheme: UpstreamScheme
    let endpoints: [HostPort]
    let maxConnectionsPerEndpoint: Int
    let maxPendingRequests: Int
    let idleTimeout: Duration
    let tls: UpstreamTLSConfig?

    init(_ upstream: UpstreamConfig) {
        self.tls = upstream.tls
        self.scheme = upstream.scheme
        self.endpoints = upstream.endpoints
        self.maxConnectionsPerEndpoint = upstream.maxConnectionsPerEndpoint
        self.maxPendingRequests = upstream.maxPendingRequests
        self.idleTimeout = upstream.idleTimeout
    }
}
