import ArgumentParser
import Foundation
import Logging
import ProxyConfig
import ProxyServer

/// CLI parsing only; the work is in ProxyServer.
struct Portcullis: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "portcullis",
        abstract: "An identity-aware reverse proxy for data platforms.",
        discussion: "Exit codes: 0 success or allow, 1 a finding (invalid policy, deny, failed verification), 2 usage or environment error.",
        version: "portcullis \(PortcullisCommands.version)",
        subcommands: [Serve.self, Check.self, Explain.self, Test.self, Token.self, Audit.self, Demo.self, Certs.self]
    )
}

struct LoggingOptions: ParsableArguments {
    @Option(name: .long, help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    func bootstrap() throws -> Logger {
        guard let level = Logger.Level(rawValue: self.logLevel.lowercased()) else {
            throw ValidationError("unknown log level '\(self.logLevel)'")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "portcullis")
        logger.logLevel = level
        return logger
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the proxy. SIGTERM/SIGINT drain and stop; SIGHUP (or a changed file) reloads the policy."
    )

    @Option(name: .long, help: "The policy file (YAML).")
    var config: String

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        let logger = try self.logging.bootstrap()
        let code = await PortcullisCommands.serve(configPath: self.config, logger: logger)
        if code != 0 { throw ExitCode(code) }
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a policy file; print every problem as file:line:column: message. Exit 1 if any."
    )

    @Option(name: .long, help: "The policy file (YAML).")
    var config: String

    @Flag(name: .long, help: "Do not check that referenced files (certificates, keys) exist.")
    var noFiles = false

    @Flag(name: .long, help: "Treat warnings (shadowed rules, allow-everyone rules, ...) as errors: exit 1.")
    var strict = false

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        _ = try self.logging.bootstrap()
        let code = PortcullisCommands.check(configPath: self.config, checkFiles: !self.noFiles, strict: self.strict)
        if code != 0 { throw ExitCode(code) }
    }
}

struct Explain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show how the policy decides one request: the route, every rule tried and the condition that failed.",
        discussion: "Exit 0 allow, 1 deny, 2 error."
    )

    @Option(name: .long, help: "The policy file (YAML).") var config: String
    @Option(name: .long, help: "HTTP method.") var method: String = "GET"
    @Option(name: .long, help: "Absolute URL, e.g. https://airflow.example.com/admin/.") var url: String
    @Option(name: .long, help: "Listener name (default: the first http/https listener with a matching route).")
    var listener: String?
    @Option(name: .long, help: "A bearer token (JWT); verified against its issuer's keys, as the proxy does.")
    var token: String?
    @Option(name: .long, help: "Claims as a JSON object instead of a token (no signature).") var claims: String?
    @Option(name: .long, help: "With --claims: the issuer's name in the policy (default: by iss, or the route's only issuer).")
    var issuer: String?
    @Option(name: .long, help: "The client's IP address (for source_cidrs).") var clientIp: String?
    @Option(name: .long, help: "A PEM client certificate (its identity is used; the chain is not verified).")
    var clientCert: String?
    @Option(name: .long, help: "When the request happens, RFC 3339 (for time conditions; default now).") var time: String?

    func run() async throws {
        let code = await PolicyCommands.explain(
            .init(
                configPath: self.config,
                method: self.method,
                url: self.url,
                listener: self.listener,
                token: self.token,
                claims: self.claims,
                issuer: self.issuer,
                clientIP: self.clientIp,
                clientCertFile: self.clientCert,
                time: self.time
            )
        )
        if code != 0 { throw ExitCode(code) }
    }
}

struct Test: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run policy unit tests (request + identity -> expected decision) against a policy file.",
        discussion: "Exit 0 when every test passes, 1 when one fails, 2 when a file cannot be read."
    )

    @Option(name: .long, help: "The policy file (YAML).") var config: String
    @Flag(name: .long, help: "Print passing tests too.") var verbose = false
    @Argument(help: "Test files (YAML).") var tests: [String]

    func validate() throws {
        if self.tests.isEmpty { throw ValidationError("give at least one test file") }
    }

    func run() throws {
        let code = PolicyCommands.test(configPath: self.config, testFiles: self.tests, verbose: self.verbose)
        if code != 0 { throw ExitCode(code) }
    }
}

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a demo: a token-protected route in front of a built-in echo service, with curl commands to try."
    )
    @Option(name: .long, help: "Where the generated key, JWKS and policy go (git ignores certs/generated).")
    var dir: String = "certs/generated/demo"
    @Option(name: .long, help: "Proxy port on 127.0.0.1.") var port: Int = 8080
    @Option(name: .long, help: "Admin port on 127.0.0.1.") var adminPort: Int = 9901
    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        let logger = try self.logging.bootstrap()
        let code = await PortcullisCommands.demo(directory: self.dir, port: self.port, adminPort: self.adminPort, logger: logger)
        if code != 0 { throw ExitCode(code) }
    }
}

struct Certs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Certificate tooling.",
        subcommands: [Dev.self]
    )

    struct Dev: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Generate a development CA, server and client certificates and a CRL (keys 0600, never commit them)."
        )
        @Option(name: .long, help: "Output folder (git ignores certs/generated).") var dir: String = "certs/generated"
        @Option(name: .long, parsing: .upToNextOption, help: "Server names (DNS names or IP literals).")
        var name: [String] = ["localhost", "127.0.0.1", "::1"]
        @Option(name: .long, help: "SPIFFE ID of the client certificate.")
        var spiffeId: String = "spiffe://example.com/airflow/worker"

        func run() throws {
            let code = PortcullisCommands.certsDev(directory: self.dir, serverNames: self.name, spiffeID: self.spiffeId)
            if code != 0 { throw ExitCode(code) }
        }
    }
}

struct Token: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Development tokens: mint one from a local key, or inspect one against a policy file.",
        subcommands: [Mint.self, Inspect.self]
    )

    struct Mint: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a signed ES256 token. The key (and its JWKS file, KEY without .pem + .jwks.json) is created when missing."
        )
        @Option(name: .long, help: "PEM private key of the development issuer.") var key: String
        @Option(name: .long, help: "Subject (sub).") var sub: String
        @Option(name: .long, parsing: .upToNextOption, help: "Audiences (aud).") var aud: [String]
        @Option(name: .long, parsing: .upToNextOption, help: "Groups.") var groups: [String] = []
        @Option(name: .long, help: "Email claim.") var email: String?
        @Option(name: .long, help: "Issuer (iss).") var iss: String = "https://portcullis.local"
        @Option(name: .long, help: "Lifetime, e.g. 10m, 1h.") var ttl: String = "10m"

        func validate() throws {
            if self.aud.isEmpty { throw ValidationError("give at least one --aud") }
            if case .failure = ConfigLoader.parseDuration(self.ttl) { throw ValidationError("bad --ttl '\(self.ttl)'") }
        }

        func run() throws {
            guard case .success(let ttl) = ConfigLoader.parseDuration(self.ttl) else { throw ExitCode(2) }
            let code = TokenCommands.mint(
                keyPath: self.key,
                issuer: self.iss,
                subject: self.sub,
                audiences: self.aud,
                groups: self.groups,
                email: self.email,
                ttl: ttl
            )
            if code != 0 { throw ExitCode(code) }
        }
    }

    struct Inspect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a token's header and claims; with --config, which issuer and route accept it, or why none does."
        )
        @Option(name: .long, help: "The policy file.") var config: String?
        @Argument(help: "The token.") var token: String

        func run() async throws {
            let code = await TokenCommands.inspect(token: self.token, configPath: self.config)
            if code != 0 { throw ExitCode(code) }
        }
    }
}

struct Audit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Audit trail tooling.",
        subcommands: [Verify.self]
    )

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify the hash chain of audit files and report the first record that was altered, deleted, reordered or inserted.",
            discussion: """
                Files are verified in the order given, as one chain: give the rotated files oldest first and the \
                active file last. Rotated files are named <stem>-<UTC time>.jsonl next to the active <stem>.jsonl, \
                so a glob such as `audit*.jsonl` lists them in that order.

                The first record may have any seq (older files may have been rotated away). Without --head, \
                records cut off the end or a deleted last file cannot be detected; the head file (audit.head_file, \
                by default the file sink's path + .head) names the last record written. Without the chain's HMAC key \
                (audit.hmac_key_file), whoever can write the files can rebuild the chain; checkpoints verified with \
                --public-key anchor it.

                Exit 0 verified, 1 a finding (printed as FILE:LINE: kind (seq N): what was expected and found), \
                2 a file or key that cannot be read.
                """
        )
        @Argument(help: "Audit files (JSON lines), oldest first.") var files: [String]
        @Option(name: .long, help: "The persisted chain head file.") var head: String?
        @Option(name: .long, help: "The checkpoints' Ed25519 public key: PEM (openssl pkey -pubout) or base64 of 32 bytes.")
        var publicKey: String?
        @Option(name: .long, help: "The chain's HMAC key file (audit.hmac_key_file).") var hmacKeyFile: String?
        @Flag(name: .long, help: "Print the report as JSON.") var json = false

        func validate() throws {
            if self.files.isEmpty { throw ValidationError("give at least one audit file") }
        }

        func run() throws {
            let code = AuditCommands.verify(
                .init(files: self.files, headFile: self.head, publicKeyFile: self.publicKey, hmacKeyFile: self.hmacKeyFile, json: self.json)
            )
            if code != 0 { throw ExitCode(code) }
        }
    }
}

@main
enum Main {
    static func main() async {
        do {
            var command = try Portcullis.parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let code = Portcullis.exitCode(for: error)
            if code == .success {
                print(Portcullis.fullMessage(for: error))
                exit(0)
            }
            if let exitCode = error as? ExitCode {
                exit(exitCode.rawValue)
            }
            let message = Portcullis.fullMessage(for: error)
            if !message.isEmpty {
                FileHandle.standardError.write(Data((message + "\n").utf8))
            }
            // ArgumentParser's usage errors are EX_USAGE (64); ours is 2.
            exit(code.rawValue == 64 || code == .validationFailure ? 2 : code.rawValue)
        }
    }
}
