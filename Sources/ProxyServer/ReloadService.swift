import Foundation
public import Logging
import NIOConcurrencyHelpers
import ProxyConfig
import AuditCore
import ProxyModel
public import ProxyHTTP
public import ServiceLifecycle
import UnixSignals

/// Reloads the policy file on SIGHUP and when the file changes (polled: mtime, size, inode, then digest).
/// Parse, validate and compile happen here, off the event loops; the swap is atomic; requests in flight
/// finish under the snapshot they started with. A file that fails validation, or that changes listener
/// addresses or protocols, is refused with its reasons logged, and the old policy keeps serving.
///
/// SIGHUP and the poller only queue triggers; one loop reloads, in the order they were asked for, so each
/// reload starts from the snapshot the previous one left and a slow reload of an older file can never
/// finish after, and overwrite, a newer one.
public final class ReloadService: Service, Sendable {
    public enum Outcome: Sendable, Equatable {
        case unchanged
        case applied(oldDigest: String, newDigest: String)
        case refused([String])
    }

    private let path: String
    private let runtime: ProxyRuntime
    private let logger: Logger
    private let pollInterval: Duration
    private let lastStat = NIOLockedValueBox<FileStamp?>(nil)
    /// Called after a new snapshot is swapped in (the JWKS service picks up new issuers).
    private let onApplied: (@Sendable (RuntimeSnapshot) -> Void)?
    /// The listeners whose certificates are reloaded with the policy (nil in tests of the policy alone).
    private let proxy: ProxyService?
    /// Also sets SIGHUP to be ignored until `run()` traps it: the listeners accept before `run()` starts, and
    /// SIGHUP's default action would end the process. A SIGHUP in that window is made up for by the
    /// start-up check in `run()`. Create the service before the services that bind listeners run.
    public init(
        path: String,
        runtime: ProxyRuntime,
        pollInterval: Duration,
        logger: Logger,
        proxy: ProxyService? = nil,
        onApplied: (@Sendable (RuntimeSnapshot) -> Void)? = nil
    ) {
        self.proxy = proxy
        self.onApplied = onApplied
        self.path = path
        self.runtime = runtime
        self.pollInterval = pollInterval
        self.logger = logger
        self.lastStat.withLockedValue { $0 = FileStamp(path: path) }
        signal(SIGHUP, SIG_IGN)
    }

    public func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        let (triggers, queue) = AsyncStream.makeStream(of: String.self)
        // From here on every SIGHUP is delivered. One sent before (ignored, see init) would be lost: catch up
        // with the file. Unchanged (the usual case) does nothing and logs nothing.
        queue.yield("start-up check")
        await withTaskGroup(of: Void.self) { group in
            // The only place reloads happen: one at a time, in order.
            group.addTask {
                for await trigger in triggers {
                    _ = await self.reload(trigger: trigger)
                    // SIGHUP also re-reads certificate files that changed in place.
                    if trigger == "SIGHUP" { await self.proxy?.reloadTLSIfFilesChanged() }
                }
            }
            group.addTask {
                for await _ in signals.cancelOnGracefulShutdown() { queue.yield("SIGHUP") }
                // Graceful shutdown: no more triggers; the loop above ends after the one under way.
                queue.finish()
            }
            if self.pollInterval > .zero {
                group.addTask {
                    try? await cancelWhenGracefulShutdown {
                        while !Task.isCancelled {
                            try await Task.sleep(for: self.pollInterval)
                            let stamp = FileStamp(path: self.path)
                            let changed = self.lastStat.withLockedValue { last -> Bool in
                                defer { last = stamp }
                                return last != stamp
                            }
                            if changed, stamp != nil { queue.yield("file change") }
                            await self.proxy?.reloadTLSIfFilesChanged()
                        }
                    }
                }
            }
            await group.waitForAll()
        }
    }

    /// One reload; only the loop in `run()` calls it, so `old` is the snapshot the previous reload left.
    @discardableResult
    private func reload(trigger: String) async -> Outcome {
        let old = self.runtime.snapshots.current
        switch ConfigLoader.load(path: self.path) {
        case .failure(let error):
            let reasons = error.diagnostics.map(\.description)
            self.audit(trigger: trigger, outcome: "refused", old: old.digest, new: nil, errors: reasons)
            self.logger.error(
                "policy reload refused: the new file is invalid; the old policy keeps serving",
                metadata: [
                    "proxy_trigger": "\(trigger)", "proxy_old_digest": "\(old.digest)",
                    "proxy_errors": "\(reasons.joined(separator: " | "))",
                ]
            )
            return .refused(reasons)
        case .success(let loaded):
            if loaded.digest == old.digest {
                return .unchanged
            }
            let problems = Self.restartOnlyChanges(old: old.config, new: loaded.config)
            guard problems.isEmpty else {
                self.audit(trigger: trigger, outcome: "refused", old: old.digest, new: loaded.digest, errors: problems)
                self.logger.error(
                    "policy reload refused: listener addresses and protocols need a restart; the old policy keeps serving",
                    metadata: [
                        "proxy_trigger": "\(trigger)", "proxy_old_digest": "\(old.digest)",
                        "proxy_new_digest": "\(loaded.digest)", "proxy_errors": "\(problems.joined(separator: " | "))",
                    ]
                )
                return .refused(problems)
            }
            let snapshot: RuntimeSnapshot
            do {
                // Certificates and upstream TLS files are read here, off the event loops.
                try await self.proxy?.reloadTLS(for: loaded.config)
                snapshot = try await RuntimeSnapshot.make(
                    config: loaded.config,
                    digest: loaded.digest,
                    previous: old,
                    logger: self.logger
                )
            } catch {
                self.audit(trigger: trigger, outcome: "refused", old: old.digest, new: loaded.digest, errors: ["\(error)"])
                self.logger.error(
                    "policy reload refused: a TLS file could not be loaded; the old policy keeps serving",
                    metadata: ["proxy_trigger": "\(trigger)", "proxy_new_digest": "\(loaded.digest)", "proxy_error": "\(error)"]
                )
                return .refused(["\(error)"])
            }
            self.runtime.snapshots.replace(with: snapshot)
            self.audit(trigger: trigger, outcome: "accepted", old: old.digest, new: loaded.digest, errors: [])
            self.onApplied?(snapshot)
            self.runtime.retireUnusedPools(keeping: snapshot)
            self.logger.info(
                "policy reloaded",
                metadata: [
                    "proxy_trigger": "\(trigger)", "proxy_old_digest": "\(old.digest)",
                    "proxy_new_digest": "\(loaded.digest)", "proxy_routes": "\(loaded.config.routes.count)",
                ]
            )
            for warning in loaded.warnings {
                self.logger.warning("\(warning.description)")
            }
            return .applied(oldDigest: old.digest, newDigest: loaded.digest)
        }
    }

    /// A `policy.reload` audit event: accepted or refused, with both digests and why.
    private func audit(trigger: String, outcome: String, old: String, new: String?, errors: [String]) {
        var fields: [String: JSONValue] = [
            "trigger": .string(trigger),
            "outcome": .string(outcome),
            "old_digest": .string(old),
            "config_path": .string(self.path),
        ]
        if let new { fields["new_digest"] = .string(new) }
        if !errors.isEmpty { fields["errors"] = .array(errors.prefix(20).map { .string(String($0.prefix(500))) }) }
        self.runtime.audit?.record(kind: AuditKind.policyReload, fields: fields)
    }

    /// What a reload may not change (DESIGN.md "Reload").
    static func restartOnlyChanges(old: PortcullisConfig, new: PortcullisConfig) -> [String] {
        var problems: [String] = []
        // Compared without source locations: moving the section (a route added above it) is no change.
        var oldAudit = old.audit
        var newAudit = new.audit
        oldAudit.location = nil
        newAudit.location = nil
        if oldAudit != newAudit {
            problems.append("audit: the audit section changed; audit settings and sinks need a restart")
        }
        let oldByName = Dictionary(old.listeners.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let newByName = Dictionary(new.listeners.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for (name, listener) in newByName {
            guard let previous = oldByName[name] else {
                problems.append("listener '\(name)' is new")
                continue
            }
            if previous.address != listener.address {
                problems.append("listener '\(name)' address changed from \(previous.address) to \(listener.address)")
            }
            if previous.protocolKind != listener.protocolKind {
                problems.append(
                    "listener '\(name)' protocol changed from \(previous.protocolKind.rawValue) to \(listener.protocolKind.rawValue)"
                )
            }
        }
        for name in oldByName.keys where newByName[name] == nil {
            problems.append("listener '\(name)' was removed")
        }
        return problems.sorted()
    }
}

/// What the poller compares before reading the file again.
struct FileStamp: Equatable, Sendable {
    var modification: Date?
    var size: Int?
    var inode: Int?

    init?(path: String) {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { return nil }
        self.modification = attributes[.modificationDate] as? Date
        self.size = (attributes[.size] as? NSNumber)?.intValue
        self.inode = (attributes[.systemFileNumber] as? NSNumber)?.intValue
    }
}
