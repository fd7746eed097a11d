import IdentityCore
import NIOCore
import NIOHTTP1
import PolicyCore
import ProxyConfig
import ProxyModel
import ProxyTransport

/// A stage result that is either ready now or arrives later (reads stay paused meanwhile).
enum StageResult<Value> {
    case ready(Value)
    case later(EventLoopFuture<Value>)
}

/// Authentication outcome: an identity (nil: none presented) or a refusal that ends the request, with the
/// headers the refusal carries (`WWW-Authenticate`, `Retry-After`).
enum AuthenticationOutcome: Sendable {
    case identity(Principal?)
    case refused(ReasonCode, headers: [(String, String)])
}

/// Input of the identity stage.
struct AuthenticationInput {
    let route: CompiledRoute
    let head: HTTPRequestHead
    let connection: ConnectionInfo
    let snapshot: RuntimeSnapshot
    let loop: LoopContext
}

/// The stages between routing and forwarding: identity (bearer JWT today; session cookie and client
/// certificate plug in here), authorization (the route's compiled policy), upstream authentication
/// (identity headers today; Google ID tokens, SigV4, DB credentials later).
struct RequestStages: Sendable {
    let counters: ProxyCounters

    func authenticate(_ input: AuthenticationInput, eventLoop: any EventLoop) -> StageResult<AuthenticationOutcome> {
        guard let auth = input.route.config.auth else { return .ready(.identity(nil)) }
        // The verified client certificate (the TLS layer refused invalid or revoked ones already).
        let certificate = input.connection.tls?.clientCertificate
        let extraction = auth.issuers.isEmpty ? .none : BearerTokenSource.extract(from: input.head.headers, auth: auth)
        let token: Substring
        switch auth.identityStep(hasCertificate: certificate != nil, hasToken: extraction != .none) {
        case .refuse(let reason): return .ready(.refused(reason, headers: []))
        case .certificate: return .ready(.identity(certificate.map { Principal(clientCertificate: $0) }))
        case .anonymous: return .ready(.identity(nil))
        case .verifyToken:
            switch extraction {
            case .none: return .ready(.identity(nil))  // not reached: verifyToken means a token was presented
            case .malformed:
                let rejection = TokenRejection(reason: .tokenMalformed, description: "malformed authorization header")
                return .ready(TokenAuthenticator.refused(rejection))
            case .token(let value): token = value
            }
        }
        let result = TokenAuthenticator(counters: self.counters).authenticate(
            token: token,
            route: input.route,
            registry: input.snapshot.identity,
            loop: input.loop,
            eventLoop: eventLoop
        )
        guard let certificate else { return result }
        // Both presented: the token's identity, with the certificate attached for policy.
        let attach: @Sendable (AuthenticationOutcome) -> AuthenticationOutcome = { outcome in
            guard case .identity(var principal?) = outcome else { return outcome }
            principal.clientCertificate = certificate
            return .identity(principal)
        }
        switch result {
        case .ready(let outcome): return .ready(attach(outcome))
        case .later(let future): return .later(future.map(attach))
        }
    }

    func authorize(_ request: PreparedRequest, principal: Principal?) -> Decision {
        request.route.policy.evaluate(facts: request.facts, principal: principal)
    }

    /// Upstream authentication: the identity headers of the route (rendered and encoded); later Google ID
    /// tokens, SigV4 and database credentials.
    func authenticateUpstream(
        _ head: HTTPRequestHead,
        request: PreparedRequest,
        principal: Principal?,
        eventLoop: any EventLoop
    ) -> StageResult<Result<HTTPRequestHead, ReasonCode>> {
        let headers = request.route.config.identityHeaders
        guard !headers.isEmpty, let principal else { return .ready(.success(head)) }
        var head = head
        for header in headers {
            let value = IdentityHeaderRenderer.render(header.template, principal: principal)
            if !value.isEmpty { head.headers.replaceOrAdd(name: header.name, value: value) }
        }
        return .ready(.success(head))
    }
}
