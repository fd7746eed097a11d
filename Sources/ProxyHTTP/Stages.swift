import NIOCore
import PolicyCore
import NIOHTTP1
import ProxyConfig
import ProxyModel

/// A stage result that is either ready now or arrives later (reads stay paused meanwhile).
enum StageResult<Value> {
    case ready(Value)
    case later(EventLoopFuture<Value>)
}

/// Authentication outcome: an identity (nil: none presented) or a refusal that ends the request.
enum AuthenticationOutcome {
    case identity(Principal?)
    case refused(ReasonCode, wwwAuthenticate: String?)
}

/// Input of the identity stage.
struct AuthenticationInput {
    let route: RouteConfig
    let head: HTTPRequestHead
    let connection: ConnectionInfo
}

/// The stages between routing and forwarding. Identity (bearer JWT, session, client certificate) and
/// upstream credentials plug in here; today identity yields "none" and upstream authentication is empty,
/// so routes with `auth` are refused with 401 by policy (fail closed) and public routes pass.
struct RequestStages: Sendable {
    func authenticate(_ input: AuthenticationInput, eventLoop: any EventLoop) -> StageResult<AuthenticationOutcome> {
        .ready(.identity(nil))
    }

    func authorize(_ request: PreparedRequest, principal: Principal?) -> Decision {
        request.route.policy.evaluate(facts: request.facts, principal: principal)
    }

    /// Upstream authentication: may add credentials to the upstream head (Google ID token, SigV4, identity
    /// headers). Empty for now.
    func authenticateUpstream(
        _ head: HTTPRequestHead,
        request: PreparedRequest,
        principal: Principal?,
        eventLoop: any EventLoop
    ) -> StageResult<Result<HTTPRequestHead, ReasonCode>> {
        .ready(.success(head))
    }
}
