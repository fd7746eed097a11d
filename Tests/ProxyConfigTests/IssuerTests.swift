import PolicyCore
import ProxyModel
import Testing

@testable import ProxyConfig

@Suite("issuers")
struct IssuerTests {
    /// One listener, then `issuers:` with `item` starting at line 4.
    func policy(_ item: String) -> String {
        "version: 1\nlisteners: [ { name: web, address: \"0.0.0.0:80\", protocol: http } ]\nissuers:\n" + item
    }

    @Test func missingIssuer() {
        expectDiagnostic(
            self.policy("  - name: corp\n"),
            line: 4,
            column: 5,
            "issuer 'corp': missing required key 'issuer'"
        )
    }

    @Test func httpOnlyForLoopback() {
        expectDiagnostic(
            self.policy("  - { name: corp, issuer: \"http://corp.example.com\" }\n"),
            line: 4,
            column: 27,
            "issuers[0].issuer: 'http://corp.example.com' must use https (http is allowed only for 127.0.0.1, ::1 and localhost)"
        )
        #expect(diagnostics(self.policy("  - { name: dev, issuer: \"http://localhost:8080/realms/dev\" }\n")).isEmpty)
        #expect(diagnostics(self.policy("  - { name: dev, issuer: \"http://[::1]:8080\" }\n")).isEmpty)
    }

    @Test func issuerIsNotAURL() {
        expectDiagnostic(
            self.policy("  - { name: corp, issuer: corp.example.com }\n"),
            line: 4,
            column: 27,
            "issuers[0].issuer: 'corp.example.com' is not a URL"
        )
    }

    @Test func issuerWithQuery() {
        expectDiagnostic(
            self.policy("  - { name: corp, issuer: \"https://corp.example.com/?tenant=1\" }\n"),
            line: 4,
            column: 27,
            "may not carry a query"
        )
    }

    @Test func jwksURIAndFileTogether() {
        expectDiagnostic(
            self.policy(
                "  - name: corp\n    issuer: https://corp.example.com\n    jwks_uri: https://corp.example.com/keys\n    jwks_file: keys.json\n"
            ),
            line: 7,
            column: 5,
            "issuer 'corp': give either 'jwks_uri' or 'jwks_file', not both"
        )
    }

    @Test func jwksURIMustBeHTTPS() {
        expectDiagnostic(
            self.policy(
                "  - name: corp\n    issuer: https://corp.example.com\n    jwks_uri: http://corp.example.com/keys\n"
            ),
            line: 6,
            column: 15,
            "issuers[0].jwks_uri: 'http://corp.example.com/keys' must use https"
        )
    }

    @Test func hmacAlgorithmsAreNeverAccepted() {
        expectDiagnostic(
            self.policy("  - { name: corp, issuer: \"https://c.example.com\", algorithms: [RS256, HS256] }\n"),
            line: 4,
            column: 72,
            "issuers[0].algorithms[1]: algorithm 'HS256' is never accepted (HMAC with a public key is an attack)"
        )
    }

    @Test func noneIsNeverAccepted() {
        expectDiagnostic(
            self.policy("  - { name: corp, issuer: \"https://c.example.com\", algorithms: [none] }\n"),
            line: 4,
            column: 65,
            "issuers[0].algorithms[0]: algorithm 'none' is never accepted"
        )
    }

    @Test func unsupportedAlgorithmWithSuggestion() {
        expectDiagnostic(
            self.policy("  - { name: corp, issuer: \"https://c.example.com\", algorithms: [rs256] }\n"),
            line: 4,
            column: 65,
            "issuers[0].algorithms[0]: unsupported algorithm 'rs256' (supported: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA); did you mean 'RS256'?"
        )
    }

    @Test func emptyAlgorithmList() {
        expectDiagnostic(
            self.policy("  - { name: corp, issuer: \"https://c.example.com\", algorithms: [] }\n"),
            line: 4,
            column: 64,
            "issuers[0].algorithms: empty list; no token could ever verify"
        )
    }

    @Test func clockSkewAtMostFiveMinutes() {
        expectDiagnostic(
            self.policy("  - { name: corp, issuer: \"https://c.example.com\", clock_skew: 6m }\n"),
            line: 4,
            column: 64,
            "issuers[0].clock_skew: must be at most 5m, got 6m"
        )
    }

    @Test func duplicateIssuerName() {
        expectDiagnostic(
            self.policy(
                "  - { name: corp, issuer: \"https://a.example.com\" }\n  - { name: corp, issuer: \"https://b.example.com\" }\n"
            ),
            line: 5,
            column: 13,
            "duplicate issuer name 'corp' (first at line 4, column 13)"
        )
    }

    @Test func emptyAudienceList() {
        expectDiagnostic(
            self.policy("  - { name: corp, issuer: \"https://a.example.com\", audiences: [] }\n"),
            line: 4,
            column: 63,
            "issuers[0].audiences: empty list; name at least one audience"
        )
    }

    @Test func unknownIssuerKeyWithSuggestion() {
        expectDiagnostic(
            self.policy("  - { name: corp, issuer: \"https://a.example.com\", audience: [x] }\n"),
            line: 4,
            column: 52,
            "unknown key 'audience' in issuer 'corp' (did you mean 'audiences'?)"
        )
    }

    @Test func typedIssuer() throws {
        let yaml = self.policy(
            """
              - name: corp
                issuer: https://corp.okta.com/oauth2/default
                audiences: [airflow, "1234567890"]
                algorithms: [RS256, ES256]
                clock_skew: 30s
                groups_claim: roles
                email_claim: upn
                typ: at+jwt
              - name: local
                issuer: https://portcullis.local
                jwks_file: certs/jwks.json

            """
        )
        let issuers = try #require(expectValid(yaml)).config.issuers
        #expect(issuers.count == 2)
        #expect(
            issuers[0]
                == IssuerConfig(
                    name: "corp",
                    issuer: "https://corp.okta.com/oauth2/default",
                    audiences: ["airflow", "1234567890"],
                    algorithms: ["RS256", "ES256"],
                    clockSkew: .seconds(30),
                    groupsClaim: "roles",
                    emailClaim: "upn",
                    requiredType: "at+jwt",
                    location: ProxyModel.SourceLocation(file: "policy.yaml", line: 4, column: 5)
                )
        )
        #expect(issuers[1].jwksFile == "/etc/portcullis/certs/jwks.json")
        #expect(issuers[1].jwksURI == nil)
        #expect(issuers[1].algorithms == IssuerConfig.defaultAlgorithms)
        #expect(issuers[1].clockSkew == .seconds(60))
    }
}
