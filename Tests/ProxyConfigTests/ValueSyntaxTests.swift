import PolicyCore
import ProxyModel
import Testing

@testable import ProxyConfig

@Suite("durations, sizes, addresses")
struct ValueSyntaxTests {
    @Test(arguments: [
        ("500ms", Duration.milliseconds(500)),
        ("10s", .seconds(10)),
        ("5m", .seconds(300)),
        ("1h", .seconds(3600)),
        ("1h30m", .seconds(5400)),
        ("1m30s", .seconds(90)),
        ("2s500ms", .milliseconds(2500)),
        ("0s", .zero),
        ("45", .seconds(45)),
    ])
    func validDuration(text: String, expected: Duration) throws {
        #expect(try ConfigLoader.parseDuration(text).get() == expected)
    }

    @Test(arguments: [
        "", "10", "ten seconds", "10 s", "-5s", "1.5s", "5d", "30m1h", "1h1h", "s", "10S", "99999999999999999999s",
    ])
    func invalidDuration(text: String) {
        if text == "10" { return }  // a bare number is valid (seconds): covered above
        guard case .failure(let error) = ConfigLoader.parseDuration(text) else {
            Issue.record("'\(text)' should not parse")
            return
        }
        #expect(error.message.contains("duration"))
    }

    @Test(arguments: [
        ("1024", Int64(1024)),
        ("64KiB", 65_536),
        ("1MiB", 1_048_576),
        ("1GiB", 1_073_741_824),
        ("100MB", 100_000_000),
        ("2KB", 2_000),
        ("3 kib", 3_072),
        ("512B", 512),
    ])
    func validSize(text: String, expected: Int64) throws {
        #expect(try ConfigLoader.parseSize(text).get() == expected)
    }

    @Test(arguments: ["", "KiB", "1.5MiB", "10 parsecs", "-1", "1MiBs", "10  MB", "99999999999TiB"])
    func invalidSize(text: String) {
        guard case .failure(let error) = ConfigLoader.parseSize(text) else {
            Issue.record("'\(text)' should not parse")
            return
        }
        #expect(error.message.contains("size"))
    }

    @Test(arguments: [
        ("0.0.0.0:8443", HostPort(host: "0.0.0.0", port: 8443)),
        ("[::]:443", HostPort(host: "::", port: 443)),
        ("[::1]:1", HostPort(host: "::1", port: 1)),
        ("[2001:db8::1]:65535", HostPort(host: "2001:db8::1", port: 65535)),
        ("localhost:8080", HostPort(host: "localhost", port: 8080)),
        ("proxy-1.internal:80", HostPort(host: "proxy-1.internal", port: 80)),
    ])
    func validHostPort(text: String, expected: HostPort) throws {
        #expect(try ConfigLoader.parseHostPort(text).get() == expected)
    }

    @Test(arguments: [
        "", "8080", ":8080", "host:", "host:0", "host:65536", "::1:80", "[::1]", "[::1]80", "[10.0.0.1]:80", "a..b:80",
    ])
    func invalidHostPort(text: String) {
        guard case .failure(let error) = ConfigLoader.parseHostPort(text) else {
            Issue.record("'\(text)' should not parse")
            return
        }
        #expect(error.message.contains("address"))
    }

    @Test func durationsAndSizesInThePolicy() throws {
        let yaml =
            head + """
                  - name: r
                    listener: web
                    match: {}
                    upstream: { endpoints: ["http://a"], idle_timeout: 120 }
                    public: true
                    timeouts: { connect: 500ms, response: 1h30m, idle: 10 }
                    max_request_body: 100MB
                  - name: s
                    listener: web
                    match: { path: /s }
                    upstream: http://a
                    public: true
                    max_request_body: 4096

                """
        let routes = try #require(expectValid(yaml)).config.routes
        #expect(routes[0].upstream.idleTimeout == .seconds(120))
        #expect(
            routes[0].timeouts
                == RouteTimeouts(connect: .milliseconds(500), response: .seconds(5400), idle: .seconds(10))
        )
        #expect(routes[0].maxRequestBodyBytes == 100_000_000)
        #expect(routes[1].maxRequestBodyBytes == 4096)
    }

    @Test func invalidDurationInThePolicy() {
        expectDiagnostic(
            head
                + "  - { name: r, listener: web, match: {}, upstream: http://a, public: true, timeouts: { idle: 5 mins } }\n",
            line: 10,
            column: 94,
            "routes[0].timeouts.idle: invalid duration '5 mins'"
        )
    }

    @Test func durationOfTheWrongType() {
        expectDiagnostic(
            head
                + "  - { name: r, listener: web, match: {}, upstream: http://a, public: true, timeouts: { idle: [5s] } }\n",
            line: 10,
            column: 94,
            "routes[0].timeouts.idle: expected a duration (like 10s), got a list"
        )
    }

    @Test func negativeSizeInThePolicy() {
        expectDiagnostic(
            head
                + "  - { name: r, listener: web, match: {}, upstream: http://a, public: true, max_request_body: -1 }\n",
            line: 10,
            column: 94,
            "routes[0].max_request_body: a size can not be negative"
        )
    }

    @Test func suggestions() {
        #expect(ValueSyntax.suggestion(for: "upsteam", among: PolicyParser.routeKeys) == "upstream")
        #expect(ValueSyntax.suggestion(for: "lisener", among: PolicyParser.routeKeys) == "listener")
        #expect(ValueSyntax.suggestion(for: "pubilc", among: PolicyParser.routeKeys) == "public")
        #expect(ValueSyntax.suggestion(for: "colour", among: PolicyParser.routeKeys) == nil)
    }
}
