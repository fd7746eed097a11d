import AsyncHTTPClient
import Foundation
import IdentityCore
import NIOPosix
import ProxyConfig
import ProxyHTTP
import ProxyModel

/// `portcullis token mint` and `portcullis token inspect`.
public enum TokenCommands {
    /// Prints a signed development token (and creates the key and its JWKS file when missing).
    public static func mint(
        keyPath: String,
        issuer: String,
        subject: String,
        audiences: [String],
        groups: [String],
        email: String?,
        ttl: Duration
    ) -> Int32 {
        do {
            let dev = try DevIssuer.loadOrCreate(keyPath: keyPath)
            let token = try dev.mint(
                issuer: issuer,
                subject: subject,
                audiences: audiences,
                groups: groups,
                email: email,
                ttlSeconds: ttl.components.seconds
            )
            print(token)
            FileHandle.standardError.write(Data("key: \(dev.keyPath)\njwks: \(dev.jwksPath) (kid \(dev.keyID))\n".utf8))
            return PortcullisCommands.Exit.success
        } catch {
            FileHandle.standardError.write(Data("portcullis token mint: \(error)\n".utf8))
            return PortcullisCommands.Exit.environment
        }
    }

    /// Prints the header and claims; with a config, which issuer and route audiences accept the token,
    /// or exactly why none does. Exit 0 when some route accepts it (or without config), 1 when none does.
    public static func inspect(token: String, configPath: String?) async -> Int32 {
        let unverified: UnverifiedToken
        switch UnverifiedToken.parse(token, maxBytes: 64 * 1024) {
        case .success(let parsed): unverified = parsed
        case .failure(let rejection):
            print("token: \(rejection.description) (\(rejection.reason))")
            return PortcullisCommands.Exit.finding
        }
        print("header:\n" + JSONText.pretty(.object(unverified.header)))
        print("claims:\n" + JSONText.pretty(.object(unverified.claims)))
        if let exp = unverified.claims["exp"]?.int64Value {
            let remaining = exp - Int64(Date().timeIntervalSince1970)
            print(remaining > 0 ? "expires in \(remaining) s" : "expired \(-remaining) s ago")
        }
        guard let configPath else { return PortcullisCommands.Exit.success }

        let loaded: LoadedConfig
        switch ConfigLoader.load(path: configPath) {
        case .failure(let error):
            for diagnostic in error.diagnostics { print(diagnostic.description) }
            return PortcullisCommands.Exit.environment
        case .success(let value): loaded = value
        }
        let config = loaded.config
        let matching = config.issuers.filter { $0.issuer == unverified.issuer }
        guard !matching.isEmpty else {
            print("no issuer in \(configPath) has issuer \(unverified.issuer.map { "'\($0)'" } ?? "(no iss claim)")")
            return PortcullisCommands.Exit.finding
        }
        let client = HTTPClient(
            eventLoopGroupProvider: .shared(MultiThreadedEventLoopGroup.singleton),
            configuration: .init(redirectConfiguration: .disallow)
        )
        let fetcher = JWKSFetcher(client: client)
        defer { client.shutdown { _ in } }
        var accepted = false
        let now = Int64(Date().timeIntervalSince1970)
        for issuer in matching {
            let keys: JWKSet
            do {
                keys = try await fetcher.fetch(issuer).keys
            } catch {
                print("issuer '\(issuer.name)': keys unavailable: \(error)")
                continue
            }
            let store = IssuerStoreSupport.policy(for: issuer)
            let routes = config.routes.filter { $0.auth?.issuers.contains(issuer.name) ?? false }
            if routes.isEmpty { print("issuer '\(issuer.name)': no route accepts tokens from it") }
            for route in routes {
                let audiences = route.auth?.audiences ?? issuer.audiences
                switch TokenVerifier.verify(token, keys: keys, policy: store, audiences: audiences, now: now) {
                case .valid:
                    accepted = true
                    print("route '\(route.name)': accepted (issuer '\(issuer.name)', audiences \(audiences))")
                case .rejected(let rejection):
                    print("route '\(route.name)': refused: \(rejection.description) (\(rejection.reason))")
                case .unknownKey(let kid):
                    print("route '\(route.name)': refused: key \(kid ?? "(no kid)") is not in issuer '\(issuer.name)' key set")
                }
            }
        }
        return accepted ? PortcullisCommands.Exit.success : PortcullisCommands.Exit.finding
    }
}
