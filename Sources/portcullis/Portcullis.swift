import ArgumentParser
import Foundation
import Logging
import ProxyServer

/// CLI parsing only; the work is in ProxyServer.
struct Portcullis: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "portcullis",
        abstract: "An identity-aware reverse proxy for data platforms.",
        discussion: "Exit codes: 0 success or allow, 1 a finding (invalid policy, deny), 2 usage or environment error.",
        version: "portcullis \(PortcullisCommands.version)",
        subcommands: [Serve.self, Check.self]
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

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        _ = try self.logging.bootstrap()
        let code = PortcullisCommands.check(configPath: self.config, checkFiles: !self.noFiles)
        if code != 0 { throw ExitCode(code) }
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
