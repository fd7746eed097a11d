import Foundation
public import Logging
import NIOCore
import NIOPosix
import ProxyTransport

extension PortcullisCommands {
    /// `portcullis demo`: a development issuer, a built-in echo upstream and a demo policy that requires a
    /// token; prints ready-to-paste curl commands with an allowed and a denied token, then serves until
    /// Ctrl-C. Generated keys and files go to `directory` (git ignores `certs/generated/`).
    public static func demo(directory: String, port: Int, adminPort: Int, logger: Logger) async -> Int32 {
        let dir = URL(fileURLWithPath: directory).standardizedFileURL.path
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            logger.error("cannot create \(dir): \(error)")
            return Exit.environment
        }
        let issuer: DevIssuer
        do {
            issuer = try DevIssuer.loadOrCreate(keyPath: dir + "/demo-issuer.pem")
        } catch {
            logger.error("development issuer: \(error)")
            return Exit.environment
        }
        let upstreamGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { upstreamGroup.shutdownGracefully { _ in } }
        let upstream: any Channel
        do {
            upstream = try await DemoUpstream.start(group: upstreamGroup)
        } catch {
            logger.error("demo upstream: \(error)")
            return Exit.environment
        }
        let upstreamPort = upstream.localAddress?.port ?? 0
        // A development certificate for 127.0.0.1 and localhost (generated once, reused).
        let certificates: DevCertificateFiles
        do {
            let existing = DevCertificateFiles.existing(in: dir + "/tls")
            certificates = try existing ?? DevCertificates.generate(
                in: dir + "/tls",
                serverNames: ["127.0.0.1", "localhost"],
                clientSPIFFEID: "spiffe://portcullis.local/demo/client"
            )
        } catch {
            logger.error("demo certificates: \(error)")
            return Exit.environment
        }

        let policyPath = dir + "/demo-policy.yaml"
        let policy = """
            # Written by `portcullis demo`; edit it and it is reloaded (SIGHUP or on change).
            version: 1
            listeners:
              - name: web
                address: "127.0.0.1:\(port)"
                protocol: https
                tls:
                  certificates: [ { certificate: \(certificates.serverCertificate), private_key: \(certificates.serverPrivateKey) } ]
              - { name: ops, address: "127.0.0.1:\(adminPort)", protocol: admin }
            issuers:
              - name: demo
                issuer: \(DevIssuer.defaultIssuer)
                jwks_file: \(issuer.jwksPath)
                audiences: [demo]
            routes:
              - name: demo-app
                listener: web
                match: { path: /* }
                upstream: http://127.0.0.1:\(upstreamPort)
                auth: { issuers: [demo] }
                identity_headers: { X-Portcullis-User: "${email}", X-Portcullis-Groups: "${groups}" }
                rules:
                  - allow: { groups: [admins] }
                  - allow: { groups: [viewers], methods: [GET, HEAD] }
            audit:
              sinks: [ { type: file, path: \(dir)/audit.jsonl } ]

            """
        do {
            try policy.write(toFile: policyPath, atomically: true, encoding: .utf8)
            let admin = try issuer.mint(
                subject: "alice",
                audiences: ["demo"],
                groups: ["admins"],
                email: "alice@example.com",
                ttlSeconds: 3600
            )
            let viewer = try issuer.mint(
                subject: "bob",
                audiences: ["demo"],
                groups: ["viewers"],
                email: "bob@example.com",
                ttlSeconds: 3600
            )
            let base = "https://127.0.0.1:\(port)"
            let curl = "curl --cacert \(certificates.caCertificate)"
            // Written straight to the file descriptor: stdout may be a pipe (block-buffered by print).
            FileHandle.standardOutput.write(
                Data(
                    """

                Portcullis demo: a proxy on \(base) in front of a built-in echo service.
                Policy: \(policyPath)   (tokens valid for 1 hour; more with `portcullis token mint --key \(issuer.keyPath) --sub you --aud demo`)

                Allowed (alice is in admins):
                  \(curl) -i -X POST -H 'Authorization: Bearer \(admin)' \(base)/dags

                Allowed (bob is a viewer, GET only):
                  \(curl) -i -H 'Authorization: Bearer \(viewer)' \(base)/dags

                Denied, 403 (bob may not POST):
                  \(curl) -i -X POST -H 'Authorization: Bearer \(viewer)' \(base)/dags

                Denied, 401 (no token):
                  \(curl) -i \(base)/dags

                Health: curl -i http://127.0.0.1:\(adminPort)/readyz
                Audit trail: tail -f \(dir)/audit.jsonl
                  verify it: portcullis audit verify \(dir)/audit*.jsonl --head \(dir)/audit.jsonl.head
                Ctrl-C stops it.

                """.utf8
                )
            )
        } catch {
            logger.error("demo: \(error)")
            return Exit.environment
        }
        let code = await serve(configPath: policyPath, logger: logger)
        try? await upstream.close()
        return code
    }
}
