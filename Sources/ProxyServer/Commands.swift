import AsyncHTTPClient
import Foundation
public import Logging
import NIOCore
import NIOPosix
import ProxyConfig
import AuditCore
import ProxyAudit
import ProxyModel
import ProxyHTTP
import ServiceLifecycle
import UnixSignals

/// What the `portcullis` sub-commands do; the executable only parses arguments.
public enum PortcullisCommands {
    public static let version = "0.1.0"

    /// Exit codes (DESIGN.md): 0 success or allow, 1 a finding, 2 usage or environment error.
    public enum Exit {
        public static let success: Int32 = 0
        public static let finding: Int32 = 1
        public static let environment: Int32 = 2
    }

    /// `portcullis check`: every problem as `file:line:column: severity: message`; exit 1 if any error.
    /// With `strict`, warnings count as findings too.
    public static func check(configPath: String, checkFiles: Bool, strict: Bool = false) -> Int32 {
        guard FileManager.default.isReadableFile(atPath: configPath) else {
            FileHandle.standardError.write(Data("portcullis: cannot read policy file \(configPath)\n".utf8))
            return Exit.environment
        }
        switch ConfigLoader.load(path: configPath, options: .init(checkFiles: checkFiles)) {
        case .failure(let error):
            for diagnostic in error.diagnostics { print(diagnostic.description) }
            let errors = error.diagnostics.filter { $0.severity == .error }.count
            print("\(configPath): \(errors) error\(errors == 1 ? "" : "s")")
            return Exit.finding
        case .success(let loaded):
            for warning in loaded.warnings { print(warning.description) }
            let unsupported = unsupportedFeatures(loaded.config)
            for problem in unsupported { print("\(configPath): error: \(problem)") }
            if !unsupported.isEmpty { return Exit.finding }
            if strict && !loaded.warnings.isEmpty {
                print("\(configPath): \(loaded.warnings.count) warning\(loaded.warnings.count == 1 ? "" : "s") (--strict)")
                return Exit.finding
            }
            let audit = loaded.config.audit
            let sinks = audit.sinks.map(\.typeName).joined(separator: ", ")
            print(
                "\(configPath): ok: \(loaded.config.listeners.count) listener(s), \(loaded.config.routes.count) route(s), "
                    + "audit to \(sinks)\(audit.isDefault ? " (no audit section)" : "") (on_overflow: \(audit.onOverflow.rawValue)), "
                    + "sha256 \(loaded.digest)"
            )
            return Exit.success
        }
    }

    /// Valid configuration that this build cannot serve yet (each lands with its issue).
    static func unsupportedFeatures(_ config: PortcullisConfig) -> [String] {
        var problems: [String] = []
        for listener in config.listeners where listener.protocolKind == .postgres {
            problems.append("listener '\(listener.name)': protocol postgres is not available in this version")
        }
        return problems
    }

    /// `portcullis serve`: runs until SIGTERM/SIGINT; SIGHUP or a changed file reloads.
    public static func serve(configPath: String, logger: Logger) async -> Int32 {
        guard FileManager.default.isReadableFile(atPath: configPath) else {
            logger.error("cannot read policy file", metadata: ["proxy_config": "\(configPath)"])
            return Exit.environment
        }
        let loaded: LoadedConfig
        switch ConfigLoader.load(path: configPath) {
        case .failure(let error):
            for diagnostic in error.diagnostics {
                logger.error("\(diagnostic.description)")
            }
            logger.error("policy file invalid; not starting", metadata: ["proxy_config": "\(configPath)"])
            return Exit.finding
        case .success(let value):
            loaded = value
        }
        let unsupported = unsupportedFeatures(loaded.config)
        guard unsupported.isEmpty else {
            for problem in unsupported { logger.error("\(problem)") }
            return Exit.finding
        }
        for warning in loaded.warnings { logger.warning("\(warning.description)") }

        var logger = logger
        let instance = loaded.config.server.instanceID ?? ProcessInfo.processInfo.hostName
        logger[metadataKey: "proxy_instance"] = "\(instance)"

        let group = MultiThreadedEventLoopGroup(numberOfThreads: EventLoopCount.forThisProcess())
        let snapshot: RuntimeSnapshot
        do {
            snapshot = try await RuntimeSnapshot.make(config: loaded.config, digest: loaded.digest, logger: logger)
        } catch {
            logger.error("upstream TLS: \(error)")
            try? await group.shutdownGracefully()
            return Exit.environment
        }
        // The audit trail starts before the first request can arrive and ends after the last one finished.
        let pipeline: AuditPipeline
        do {
            pipeline = try AuditSetup.makePipeline(config: loaded.config.audit, instance: instance, logger: logger)
        } catch {
            logger.error("audit: \(error)")
            try? await group.shutdownGracefully()
            return Exit.environment
        }
        if loaded.config.audit.isDefault {
            logger.notice("no audit section in the policy file: the audit trail goes to stdout")
        }
        // A closed stdout (the stdout sink) must be an error the writer retries, not a signal that kills.
        signal(SIGPIPE, SIG_IGN)
        pipeline.start()
        let recorder = AuditRecorder(queue: pipeline.queue, config: loaded.config.audit)
        let startedAt = ContinuousClock.now
        recorder.record(
            kind: AuditKind.processStart,
            fields: [
                "version": .string(PortcullisCommands.version),
                "pid": .integer(Int64(ProcessInfo.processInfo.processIdentifier)),
                "config_path": .string(loaded.path),
                "config_digest": .string(loaded.digest),
                "listeners": .array(loaded.config.listeners.map { .string("\($0.name) \($0.address)") }),
                "routes": .integer(Int64(loaded.config.routes.count)),
            ]
        )
        let runtime = ProxyRuntime(snapshot: snapshot, group: group, logger: logger, audit: recorder)
        let proxy = ProxyService(runtime: runtime, group: group, logger: logger)
        // Control-plane HTTP only (JWKS, discovery); never used to forward requests.
        let httpClient = HTTPClient(
            eventLoopGroupProvider: .shared(group),
            configuration: .init(redirectConfiguration: .disallow)
        )
        let jwks = JWKSService(runtime: runtime, client: httpClient, logger: logger)
        let reloader = ReloadService(
            path: loaded.path,
            runtime: runtime,
            pollInterval: loaded.config.server.reloadPollInterval,
            logger: logger,
            proxy: proxy,
            onApplied: { snapshot in jwks.registryChanged(snapshot.identity) }
        )
        let serviceGroup = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(service: proxy),
                    .init(service: jwks, successTerminationBehavior: .ignore),
                    .init(service: reloader, successTerminationBehavior: .ignore),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        var code = Exit.success
        var stopReason = "signal"
        do {
            try await serviceGroup.run()
        } catch {
            logger.error("portcullis stopped on an error", metadata: ["proxy_error": "\(error)"])
            code = Exit.environment
            stopReason = "error"
        }
        await runtime.flushSuppressedAuthFailures()
        let uptime = ContinuousClock.now - startedAt
        recorder.record(
            kind: AuditKind.processStop,
            fields: [
                "reason": .string(stopReason),
                "uptime_s": .integer(uptime.components.seconds),
                "config_digest": .string(runtime.snapshots.current.digest),
                "audit_refused": .integer(Int64(runtime.counters.auditRefusedCount)),
                "audit_suppressed": .integer(Int64(runtime.counters.auditSuppressedCount)),
            ]
        )
        // Blocking: the writer drains the buffer and network sinks get a few seconds to deliver.
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                pipeline.stop(deadline: 5)
                done.resume()
            }
        }
        try? await httpClient.shutdown()
        try? await group.shutdownGracefully()
        return code
    }
}
