import Foundation
import Testing

/// The policy language through the running proxy: claims from a real signed token decide, and
/// `explain_denials` is the only way rule internals reach a 403 body.
@Suite("policy through the proxy: claims and explain_denials", .serialized)
struct PolicyProxyTests {
    static let routes = """
          - name: admin
            listener: web
            match: { path: /admin/* }
            upstream: UPSTREAM
            auth: { issuers: [idp] }
            explain_denials: true
            rules:
              - allow: { groups: [admins], methods: [GET] }
              - allow: { groups: [admins], claims: { amr: mfa } }
          - name: quiet
            listener: web
            match: { path: /quiet/* }
            upstream: UPSTREAM
            auth: { issuers: [idp] }
            rules:
              - allow: { groups: [admins], claims: { amr: mfa } }
        """

    @Test("MFA from the token's amr claim decides; explain_denials lists the rules, other routes do not")
    func claimsAndExplainDenials() async throws {
        let signer = TestSigner.es256(kid: "k1")
        let env = try await IdentityEnvironment(signers: [signer], extraRoutes: Self.routes)
        defer { env.stop() }
        #expect(env.waitReady())
        var claims = TestSigner.claims(iss: env.issuer, aud: "app", groups: ["admins"])
        claims["amr"] = ["pwd"]
        let password = try signer.token(claims: claims)
        claims["amr"] = ["pwd", "mfa"]
        let mfa = try signer.token(claims: claims)

        // An admin without MFA may read, not write.
        #expect(try env.get("/admin/dags", token: password).status == 200)
        let denied = try curl(["-X", "POST", "-H", "Authorization: Bearer \(password)", "--data", "x", "\(env.base)/admin/dags"])
        #expect(denied.status == 403)
        let body = try #require(try JSONSerialization.jsonObject(with: Data(denied.body.utf8)) as? [String: Any])
        #expect(body["reason"] as? String == "no_rule_matched")
        #expect(body["route"] as? String == "admin")
        #expect(
            body["explanation"] as? [String] == [
                "rules[0] (allow, line 45): failed methods: any of [GET]",
                "rules[1] (allow, line 46): failed claims.amr: any of [\"mfa\"]",
            ],
            "\(denied.body)"
        )
        // With MFA the same request is forwarded.
        let allowed = try curl(["-X", "POST", "-H", "Authorization: Bearer \(mfa)", "--data", "x", "\(env.base)/admin/dags"])
        #expect(allowed.status == 200)

        // The attack: claiming MFA in a token the issuer did not sign changes nothing.
        let forged = try TestSigner.es256(kid: "k1").token(claims: claims)
        let refused = try curl(["-X", "POST", "-H", "Authorization: Bearer \(forged)", "--data", "x", "\(env.base)/admin/dags"])
        #expect(refused.status == 401)
        #expect(!refused.body.contains("explanation"))

        // A route without explain_denials names no rule internals.
        let quiet = try curl(["-X", "POST", "-H", "Authorization: Bearer \(password)", "--data", "x", "\(env.base)/quiet/x"])
        #expect(quiet.status == 403)
        #expect(!quiet.body.contains("explanation"))
        #expect(!quiet.body.contains("mfa"))
        #expect(!quiet.body.contains("rules["))
    }
}
