import ProxyModel
import Testing

@testable import AuditCore

@Suite("http.request events: the direct writer equals the generic canonical encoding")
struct RequestEventEncodingTests {
    /// Records with every optional member present or absent, and strings that need escaping.
    static func records() -> [HTTPRequestRecord] {
        var state: UInt64 = 0x2545_F491_4F6C_DD1D
        func next() -> UInt64 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return state
        }
        func maybe<T>(_ value: T) -> T? { next() % 2 == 0 ? value : nil }
        let strings = ["plain", "quote \" and \\ backslash", "tab\tnew\nline\u{01}", "ünïcødé ✓ 𝄞", ""]
        func text() -> String { strings[Int(next() % UInt64(strings.count))] }
        var records: [HTTPRequestRecord] = []
        for _ in 0..<300 {
            let identity: AuditIdentity? = maybe(
                AuditIdentity(
                    principal: Principal(
                        issuer: maybe("https://idp.example.com"),
                        subject: maybe(text()),
                        email: maybe("a@example.com"),
                        groups: next() % 3 == 0 ? [] : ["admins", text()],
                        clientCertificate: maybe(
                            ClientCertificateIdentity(
                                subject: "CN=\(text())",
                                commonName: nil,
                                uriSANs: ["spiffe://example.org/ns/a/sa/b"],
                                dnsSANs: [],
                                emailSANs: []
                            )
                        )
                    )
                )
            )
            records.append(
                HTTPRequestRecord(
                    requestID: "r\(next() % 1000)",
                    listener: "web",
                    route: maybe(text()),
                    decision: [.allow, .deny, .error][Int(next() % 3)],
                    reason: "allowed",
                    rule: maybe(Int(next() % 50)),
                    identity: identity,
                    clientAddress: "10.0.0.\(next() % 255)",
                    clientPort: maybe(Int(next() % 65535)),
                    tlsVersion: maybe("TLSv1.3"),
                    sni: maybe(text()),
                    method: "GET",
                    host: text(),
                    path: "/" + text(),
                    query: maybe("a=REDACTED"),
                    status: Int(next() % 600),
                    bytesIn: Int64(next() % 100_000),
                    bytesOut: Int64(next() % 100_000_000_000),
                    timeToFirstByteMicros: maybe(Int64(next() % 1_000_000)),
                    durationMicros: Int64(next() % 10_000_000),
                    upstream: maybe("10.1.2.3:8080"),
                    userAgent: maybe(text()),
                    aborted: next() % 4 == 0,
                    suppressedBefore: next() % 5 == 0 ? Int(next() % 100) : 0
                )
            )
        }
        return records
    }

    @Test("byte-identical lines and hashes, with and without an HMAC key, chained")
    func sameBytes() {
        for key in [nil, Array("0123456789abcdef0123456789abcdef".utf8)] as [[UInt8]?] {
            var fast = AuditChain(instance: "i-\u{e9}", hmacKey: key)
            var generic = AuditChain(instance: "i-\u{e9}", hmacKey: key)
            for (index, record) in Self.records().enumerated() {
                let kind = index % 7 == 0 ? AuditKind.httpRequestLongRunning : AuditKind.httpRequest
                let event = AuditEvent(
                    kind: kind,
                    time: AuditTime(microseconds: 1_795_000_000_000_000 + Int64(index) * 1_234_567),
                    payload: .request(record)
                )
                let a = fast.seal(event)
                let b = generic.sealGeneric(event)
                let fastLine = String(decoding: a.line, as: UTF8.self)
                let genericLine = String(decoding: b.line, as: UTF8.self)
                #expect(fastLine == genericLine, "record \(index)")
                #expect(a.hash == b.hash && a.seq == b.seq && a.kind == b.kind && a.time == b.time)
                if a != b { return }
            }
        }
    }
}
