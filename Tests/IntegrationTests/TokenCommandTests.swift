import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("token and demo commands", .serialized)
struct TokenCommandTests {
    @Test("token mint creates a 0600 key and its JWKS; token inspect says which route accepts the token, or why not")
    func mintAndInspect() throws {
        let binary = try portcullisBinary()
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let key = dir.appendingPathComponent("dev.pem").path
        let minted = try run(binary, ["token", "mint", "--key", key, "--sub", "alice", "--groups", "admins", "--aud", "demo", "--ttl", "10m"])
        #expect(minted.status == 0, "\(minted.stderr)")
        let token = minted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.split(separator: ".").count == 3)
        let attributes = try FileManager.default.attributesOfItem(atPath: key)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let jwks = dir.appendingPathComponent("dev.jwks.json").path
        #expect(FileManager.default.fileExists(atPath: jwks))

        let policy = dir.appendingPathComponent("policy.yaml")
        try """
        version: 1
        listeners: [ { name: web, address: "127.0.0.1:1", protocol: http } ]
        issuers:
          - { name: dev, issuer: "https://portcullis.local", jwks_file: dev.jwks.json, audiences: [demo] }
        routes:
          - { name: app, listener: web, match: { path: /* }, upstream: "http://127.0.0.1:2", auth: { issuers: [dev] } }
          - { name: billing, listener: web, match: { path: /billing/* }, upstream: "http://127.0.0.1:2", auth: { issuers: [dev], audiences: [billing] } }
        """.write(to: policy, atomically: true, encoding: .utf8)
        let inspected = try run(binary, ["token", "inspect", "--config", policy.path, token])
        #expect(inspected.status == 0, "\(inspected.stdout)\(inspected.stderr)")
        #expect(inspected.stdout.contains(#""sub": "alice""#))
        #expect(inspected.stdout.contains("route 'app': accepted"))
        #expect(inspected.stdout.contains("route 'billing': refused"))
        #expect(inspected.stdout.contains("token_audience_mismatch"))

        // A token for another audience only: no route accepts it, exit 1.
        let other = try run(binary, ["token", "mint", "--key", key, "--sub", "bob", "--aud", "nobody"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let refused = try run(binary, ["token", "inspect", "--config", policy.path, other])
        #expect(refused.status == 1)
        // Garbage is reported, not crashed on.
        let garbage = try run(binary, ["token", "inspect", "not-a-token"])
        #expect(garbage.status == 1)
        #expect(garbage.stdout.contains("token_malformed"))
    }

    @Test("portcullis demo serves a token-protected echo route and prints working curl commands")
    func demo() throws {
        let binary = try portcullisBinary()
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let port = try freePort()
        let adminPort = try freePort()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["demo", "--dir", dir.path, "--port", String(port), "--admin-port", String(adminPort)]
        let output = dir.appendingPathComponent("demo.out")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: output)
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        try waitForPort(port, process: process)
        #expect(
            eventually(timeout: 10) {
                (try? curl(["http://127.0.0.1:\(adminPort)/readyz"]))?.status == 200
            }
        )
        let text = try String(contentsOf: output, encoding: .utf8)
        func token(after marker: String) -> String? {
            guard let range = text.range(of: marker) else { return nil }
            let rest = text[range.upperBound...]
            guard let start = rest.range(of: "Bearer ") else { return nil }
            return String(rest[start.upperBound...].prefix { $0 != "'" })
        }
        let admin = try #require(token(after: "Allowed (alice"))
        let viewer = try #require(token(after: "Denied, 403"))
        // The demo serves HTTPS with a generated development CA; the printed commands name it.
        let caRange = try #require(text.range(of: "--cacert "))
        let ca = String(text[caRange.upperBound...].prefix { $0 != " " })
        #expect(FileManager.default.fileExists(atPath: ca))
        let base = "https://127.0.0.1:\(port)"
        let allowed = try curl(["--cacert", ca, "-X", "POST", "-H", "Authorization: Bearer \(admin)", "\(base)/dags"])
        #expect(allowed.status == 200)
        #expect(allowed.body.contains("alice@example.com"))
        let denied = try curl(["--cacert", ca, "-X", "POST", "-H", "Authorization: Bearer \(viewer)", "\(base)/dags"])
        #expect(denied.status == 403)
        #expect(try curl(["--cacert", ca, "\(base)/dags"]).status == 401)
        // Without the CA the certificate is not trusted: curl refuses (exit 60), nothing is served.
        #expect(try curl(["\(base)/dags"]).exitCode == 60)
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
    }
}
