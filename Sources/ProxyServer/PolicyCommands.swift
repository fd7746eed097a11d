import AsyncHTTPClient
import Foundation
import IdentityCore
import NIOPosix
import PolicyCore
import ProxyConfig
import ProxyHTTP
import ProxyModel
import ProxyTransport

/// `portcullis explain` and `portcullis test`: the proxy's request path (normalization, routing, identity,
/// policy) run on a described request, through ``PolicySimulator``.
public enum PolicyCommands {
    public struct ExplainInput: Sendable {
        public var configPath: String
        public var method: String
        public var url: String
        public var listener: String?
        public var token: String?
        public var claims: String?
        public var issuer: String?
        public var clientIP: String?
        public var clientCertFile: String?
        public var time: String?

        public init(
            configPath: String,
            method: String,
            url: String,
            listener: String? = nil,
            token: String? = nil,
            claims: String? = nil,
            issuer: String? = nil,
            clientIP: String? = nil,
            clientCertFile: String? = nil,
            time: String? = nil
        ) {
            self.configPath = configPath
            self.method = method
            self.url = url
            self.listener = listener
            self.token = token
            self.claims = claims
            self.issuer = issuer
            self.clientIP = clientIP
            self.clientCertFile = clientCertFile
            self.time = time
        }
    }

    static func fail(_ message: String) -> Int32 {
        FileHandle.standardError.write(Data("portcullis: \(message)\n".utf8))
        return PortcullisCommands.Exit.environment
    }

    /// The policy, without checking that certificate and key files exist: the tools never read them, so a
    /// policy can be explained and tested in CI without its secrets.
    static func loadConfig(_ path: String) -> LoadedConfig? {
        switch ConfigLoader.load(path: path, options: .init(checkFiles: false)) {
        case .failure(let error):
            for diagnostic in error.diagnostics {
                FileHandle.standardError.write(Data("\(diagnostic.description)\n".utf8))
            }
            return nil
        case .success(let loaded):
            return loaded
        }
    }

    // MARK: explain

    /// Prints the route, the identity, every rule tried with the condition that failed, and the decision.
    /// Exit 0 allow, 1 deny, 2 error (unreadable config or input).
    public static func explain(_ input: ExplainInput) async -> Int32 {
        guard let loaded = self.loadConfig(input.configPath) else {
            return self.fail("cannot explain: the policy file \(input.configPath) has errors")
        }
        let config = loaded.config
        guard SimulatedRequest.isValidMethod(input.method) else { return self.fail("'\(input.method)' is not an HTTP method") }
        if input.token != nil && input.claims != nil { return self.fail("give --token or --claims, not both") }
        if input.issuer != nil && input.claims == nil { return self.fail("--issuer goes with --claims") }

        var time = Int64(Date().timeIntervalSince1970)
        if let text = input.time {
            guard let parsed = PolicyTestSuite.parseTimestamp(text) else {
                return self.fail("--time '\(text)' is not an RFC 3339 time (2026-11-23T10:00:00Z)")
            }
            time = parsed
        }
        var clientAddress: IPAddress?
        if let text = input.clientIP {
            guard let address = IPAddress.parse(text) else { return self.fail("--client-ip '\(text)' is not an IP address") }
            clientAddress = address
        }
        var certificate: ClientCertificateIdentity?
        if let file = input.clientCertFile {
            do {
                let pem = try String(contentsOfFile: file, encoding: .utf8)
                certificate = try ClientCertificateIdentity(pemEncoded: pem)
            } catch {
                return self.fail("--client-cert \(file): \(error)")
            }
        }

        var bearer: (@Sendable (RouteConfig) -> Result<Principal, SimulatedRejection>)?
        var tokenNote: String?
        if let claimsText = input.claims {
            guard case .success(.object(let claims)) = StrictJSON.parse(Array(claimsText.utf8)) else {
                return self.fail("--claims must be a JSON object of claims, like '{\"sub\":\"alice\",\"groups\":[\"admins\"]}'")
            }
            if let issuer = input.issuer, !config.issuers.contains(where: { $0.name == issuer }) {
                return self.fail("--issuer '\(issuer)' is not an issuer of \(input.configPath)")
            }
            bearer = ClaimsIdentity.bearer(config: config, issuerName: input.issuer, claims: claims, now: time)
            tokenNote = "claims given on the command line (no signature to check)"
        } else if let token = input.token {
            let keys = await self.keys(forToken: token, config: config)
            let now = time
            bearer = { route in self.verify(token: token, route: route, config: config, keys: keys, now: now) }
            tokenNote = "token verified against the issuer's keys"
        }

        let request = SimulatedRequest(
            listener: input.listener,
            method: input.method.uppercased(),
            url: input.url,
            clientAddress: clientAddress,
            time: time
        )
        let simulator = PolicySimulator(config: config)
        let result = simulator.simulate(request, identity: SimulatedIdentity(clientCertificate: certificate, bearer: bearer))
        print(self.render(result, request: request, tokenNote: tokenNote, certificate: certificate))
        if result.allowed { return PortcullisCommands.Exit.success }
        return PortcullisCommands.Exit.finding
    }

    static func render(
        _ result: SimulationResult,
        request: SimulatedRequest,
        tokenNote: String?,
        certificate: ClientCertificateIdentity?
    ) -> String {
        var lines: [String] = []
        lines.append("request:   \(request.method) \(request.url)")
        if let host = result.host, let path = result.path { lines.append("           host \(host), normalized path \(path)") }
        if let address = request.clientAddress { lines.append("           client \(address)") }
        lines.append("listener:  \(result.listener ?? "(none)")")
        if let route = result.route {
            let location = route.location.map { " (\($0.file):\($0.line))" } ?? ""
            let kind = route.isPublic ? "public" : "auth"
            lines.append("route:     \(route.name)\(location), \(kind)")
        } else {
            lines.append("route:     (none)")
        }
        if let principal = result.principal {
            var parts: [String] = []
            if let issuer = principal.issuer { parts.append("issuer \(issuer)") }
            if let subject = principal.subject { parts.append("sub \(subject)") }
            if let email = principal.email { parts.append("email \(email)") }
            if !principal.groups.isEmpty { parts.append("groups [\(principal.groups.joined(separator: ", "))]") }
            if let certificate = principal.clientCertificate {
                parts.append("certificate \(certificate.subject)")
                if !certificate.uriSANs.isEmpty { parts.append("URI SANs [\(certificate.uriSANs.joined(separator: ", "))]") }
            }
            lines.append("identity:  " + (parts.isEmpty ? "(present, no attributes)" : parts.joined(separator: "; ")))
        } else if result.route != nil {
            lines.append("identity:  (none)")
        }
        if let tokenNote, result.route?.isPublic == false { lines.append("           \(tokenNote)") }
        if certificate != nil, result.route?.isPublic == false {
            lines.append("           client certificate read from the file (its chain is not verified by explain)")
        }
        if let explanation = result.explanation {
            if explanation.rules.isEmpty {
                lines.append("rules:     (none ran)")
            } else {
                lines.append("rules:")
                for line in explanation.lines { lines.append("  " + line) }
            }
        }
        let decision: String
        if result.allowed {
            decision = "allow (\(result.message))"
        } else {
            decision = "deny: \(result.status) \(result.reason?.code ?? "") (\(result.message))"
        }
        lines.append("decision:  \(decision)")
        return lines.joined(separator: "\n")
    }

    /// The key set of the token's issuer (by `iss`), fetched as the proxy would; nil when unavailable
    /// (the token is then refused with `issuer_keys_unavailable`, as the proxy does).
    static func keys(forToken token: String, config: PortcullisConfig) async -> [String: JWKSet] {
        guard case .success(let unverified) = UnverifiedToken.parse(token, maxBytes: 64 * 1024), let iss = unverified.issuer
        else { return [:] }
        let client = HTTPClient(
            eventLoopGroupProvider: .shared(MultiThreadedEventLoopGroup.singleton),
            configuration: .init(redirectConfiguration: .disallow)
        )
        defer { client.shutdown { _ in } }
        let fetcher = JWKSFetcher(client: client)
        var keys: [String: JWKSet] = [:]
        for issuer in config.issuers where issuer.issuer == iss {
            do {
                keys[issuer.name] = try await fetcher.fetch(issuer).keys
            } catch {
                FileHandle.standardError.write(Data("portcullis: issuer '\(issuer.name)': keys unavailable: \(error)\n".utf8))
            }
        }
        return keys
    }

    /// Verification as the proxy does it for `route`: its accepted issuers, its audiences.
    static func verify(
        token: String,
        route: RouteConfig,
        config: PortcullisConfig,
        keys: [String: JWKSet],
        now: Int64
    ) -> Result<Principal, SimulatedRejection> {
        guard let auth = route.auth else { return .failure(SimulatedRejection(.unauthenticated, "public route")) }
        guard case .success(let unverified) = UnverifiedToken.parse(token, maxBytes: 64 * 1024) else {
            return .failure(SimulatedRejection(.tokenMalformed, "not a JWS compact token"))
        }
        let accepted = auth.issuers.compactMap { name in config.issuers.first { $0.name == name } }
        guard let issuer = accepted.first(where: { $0.issuer == unverified.issuer }) else {
            return .failure(SimulatedRejection(.tokenIssuerNotAccepted, "issuer \(unverified.issuer ?? "(none)") is not accepted on this route"))
        }
        guard let set = keys[issuer.name] else {
            return .failure(SimulatedRejection(.issuerKeysUnavailable, "the keys of issuer '\(issuer.name)' could not be loaded"))
        }
        let audiences = auth.audiences ?? issuer.audiences
        switch TokenVerifier.verify(token, keys: set, policy: IssuerStoreSupport.policy(for: issuer), audiences: audiences, now: now) {
        case .valid(let verified): return .success(verified.principal)
        case .rejected(let rejection): return .failure(SimulatedRejection(rejection.reason, rejection.description))
        case .unknownKey(let kid):
            return .failure(SimulatedRejection(.tokenUnknownKey, "key \(kid ?? "(no kid)") is not in the key set of '\(issuer.name)'"))
        }
    }

    // MARK: test

    /// Runs every test of every file against the policy. Exit 0 all pass, 1 a test failed, 2 unreadable input.
    public static func test(configPath: String, testFiles: [String], verbose: Bool) -> Int32 {
        guard let loaded = self.loadConfig(configPath) else {
            return self.fail("cannot test: the policy file \(configPath) has errors")
        }
        let config = loaded.config
        var suites: [PolicyTestSuite] = []
        var unreadable = false
        for file in testFiles {
            switch PolicyTestSuite.load(path: file) {
            case .success(let suite): suites.append(suite)
            case .failure(let error):
                for diagnostic in error.diagnostics { print(diagnostic.description) }
                unreadable = true
            }
        }
        // Issuer and listener names a test gives must exist in the policy (a typo must not pass as a 404).
        for suite in suites {
            for testCase in suite.cases {
                if let issuer = testCase.issuer, !config.issuers.contains(where: { $0.name == issuer }) {
                    print("\(testCase.location): error: test '\(testCase.name)': issuer '\(issuer)' is not in \(configPath)")
                    unreadable = true
                }
                if let listener = testCase.listener, !config.listeners.contains(where: { $0.name == listener }) {
                    print("\(testCase.location): error: test '\(testCase.name)': listener '\(listener)' is not in \(configPath)")
                    unreadable = true
                }
            }
        }
        if unreadable { return PortcullisCommands.Exit.environment }

        let simulator = PolicySimulator(config: config)
        let now = Int64(Date().timeIntervalSince1970)
        var passed = 0
        var failed = 0
        for suite in suites {
            for testCase in suite.cases {
                let time = testCase.time ?? now
                let request = SimulatedRequest(
                    listener: testCase.listener,
                    method: testCase.method,
                    url: testCase.url,
                    clientAddress: testCase.clientAddress,
                    time: time
                )
                let bearer = testCase.claims.map {
                    ClaimsIdentity.bearer(config: config, issuerName: testCase.issuer, claims: $0, now: time)
                }
                let result = simulator.simulate(
                    request,
                    identity: SimulatedIdentity(clientCertificate: testCase.clientCertificate, bearer: bearer)
                )
                let problems = testCase.expect.check(result)
                if problems.isEmpty {
                    passed += 1
                    if verbose { print("PASS \(testCase.name)") }
                } else {
                    failed += 1
                    print("FAIL \(testCase.name) (\(testCase.location))")
                    for problem in problems { print("     \(problem)") }
                    if let explanation = result.explanation {
                        for line in explanation.lines { print("       \(line)") }
                    }
                }
            }
        }
        print("\(passed) passed, \(failed) failed (\(testFiles.joined(separator: ", ")) against \(configPath))")
        return failed == 0 ? PortcullisCommands.Exit.success : PortcullisCommands.Exit.finding
    }
}

/// An identity given as claims (`explain --claims`, test files): taken as a verified token of the issuer
/// named, or of the issuer whose URL is its `iss`, or of the route's only issuer. The checks that do
/// not need a signature still apply: the route must accept the issuer; `aud` and `exp`, when given,
/// must fit.
enum ClaimsIdentity {
    static func bearer(
        config: PortcullisConfig,
        issuerName: String?,
        claims: [String: JSONValue],
        now: Int64
    ) -> @Sendable (RouteConfig) -> Result<Principal, SimulatedRejection> {
        { route in
            guard let auth = route.auth else { return .failure(SimulatedRejection(.unauthenticated, "public route")) }
            let accepted = auth.issuers.compactMap { name in config.issuers.first { $0.name == name } }
            let issuer: IssuerConfig?
            if let issuerName {
                issuer = accepted.first { $0.name == issuerName }
            } else if let iss = claims["iss"]?.stringValue {
                issuer = accepted.first { $0.issuer == iss }
            } else {
                issuer = accepted.count == 1 ? accepted[0] : nil
            }
            guard let issuer else {
                let named = issuerName.map { "'\($0)'" } ?? claims["iss"]?.stringValue ?? "(no issuer given)"
                return .failure(
                    SimulatedRejection(.tokenIssuerNotAccepted, "issuer \(named) is not accepted on route '\(route.name)'")
                )
            }
            if let iss = claims["iss"]?.stringValue, iss != issuer.issuer {
                return .failure(SimulatedRejection(.tokenIssuerNotAccepted, "iss \(iss) is not issuer '\(issuer.name)'"))
            }
            let audiences = auth.audiences ?? issuer.audiences
            if let aud = claims["aud"] {
                let given = aud.stringValue.map { [$0] } ?? aud.arrayValue?.compactMap(\.stringValue) ?? []
                if !given.contains(where: audiences.contains) {
                    return .failure(SimulatedRejection(.tokenAudienceMismatch, "aud \(given) is not one of \(audiences)"))
                }
            }
            if let exp = claims["exp"]?.int64Value, exp + issuer.clockSkew.components.seconds <= now {
                return .failure(SimulatedRejection(.tokenExpired, "exp is in the past"))
            }
            var all = claims
            all["iss"] = .string(issuer.issuer)
            return .success(TokenVerifier.principal(claims: all, policy: IssuerStoreSupport.policy(for: issuer)))
        }
    }
}
