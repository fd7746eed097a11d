import Foundation
import Testing

@Suite("portcullis commands")
struct CommandTests {
    @Test("check: a valid policy exits 0; every problem is printed as file:line:column and exits 1")
    func check() throws {
        let binary = try portcullisBinary()
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let good = dir.appendingPathComponent("good.yaml")
        try """
        version: 1
        listeners:
          - { name: web, address: 127.0.0.1:8080, protocol: http }
        routes:
          - name: health
            listener: web
            match: { path: /healthz }
            upstream: http://127.0.0.1:9000
            public: true
        """.write(to: good, atomically: true, encoding: .utf8)
        let ok = try run(binary, ["check", "--config", good.path])
        #expect(ok.status == 0, "\(ok.stdout)\(ok.stderr)")

        let bad = dir.appendingPathComponent("bad.yaml")
        try """
        version: 1
        listeners:
          - { name: web, address: 127.0.0.1:8080, protocol: http }
        routes:
          - name: open
            listener: web
            match: { host: *.example.com, path: /* }
            upstream: ftp://x
          - name: typo
            listener: web
            upsteam: http://127.0.0.1:9000
            public: true
        """.write(to: bad, atomically: true, encoding: .utf8)
        let result = try run(binary, ["check", "--config", bad.path])
        #expect(result.status == 1)
        #expect(result.stdout.contains("\(bad.path):7:"), "\(result.stdout)")
        #expect(result.stdout.contains("quote"))
    }

    @Test("usage errors exit 2; --version and --help exit 0")
    func exitCodes() throws {
        let binary = try portcullisBinary()
        #expect(try run(binary, ["--version"]).status == 0)
        #expect(try run(binary, ["--version"]).stdout.contains("portcullis"))
        #expect(try run(binary, ["--help"]).status == 0)
        #expect(try run(binary, ["serve"]).status == 2)
        #expect(try run(binary, ["no-such-command"]).status == 2)
        #expect(try run(binary, ["check", "--config", "/nonexistent/policy.yaml"]).status == 2)
    }
}
