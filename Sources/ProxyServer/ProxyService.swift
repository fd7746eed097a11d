public import Logging
public import NIOCore
import NIOConcurrencyHelpers
import NIOPosix
import ProxyConfig
import ProxyTransport
public import ProxyHTTP
public import ServiceLifecycle

/// Runs every listener of the configuration until graceful shutdown, then drains:
/// not ready → stop accepting → in-flight exchanges finish (bounded by the grace period) → exit.
public final class ProxyService: Service, Sendable {
    public let runtime: ProxyRuntime
    public let group: any EventLoopGroup
    private let logger: Logger
    private let listeners = NIOLockedValueBox<[HTTPListener]>([])
    private let bound = NIOLockedValueBox<EventLoopPromise<[HTTPListener]>?>(nil)

    public init(runtime: ProxyRuntime, group: any EventLoopGroup, logger: Logger) {
        self.runtime = runtime
        self.group = group
        self.logger = logger
    }

    /// The bound listeners (after `run()` bound them).
    public var boundListeners: [HTTPListener] { self.listeners.withLockedValue { $0 } }

    public func run() async throws {
        let snapshot = self.runtime.snapshots.current
        var bound: [HTTPListener] = []
        for listener in snapshot.config.listeners {
            switch listener.protocolKind {
            case .http, .https, .admin:
                bound.append(try await HTTPListener.bind(listener, runtime: self.runtime, group: self.group, logger: self.logger))
            case .postgres:
                // Refused at start-up by PortcullisServer.validateSupported; never reached.
                continue
            }
        }
        self.listeners.withLockedValue { $0 = bound }
        self.runtime.readiness.markConfigLoaded()
        self.logger.info("ready", metadata: ["proxy_listeners": "\(bound.count)", "proxy_policy_digest": "\(snapshot.digest)"])

        // Wait for SIGTERM/SIGINT (graceful shutdown) or cancellation.
        try? await gracefulShutdown()

        self.runtime.readiness.markDraining()
        let grace = snapshot.config.server.shutdownGracePeriod
        self.logger.info("draining", metadata: ["proxy_grace_period": "\(grace)"])
        let proxyListeners = bound.filter { $0.config.protocolKind != .admin }
        let adminListeners = bound.filter { $0.config.protocolKind == .admin }
        bound.removeAll()
        let loop = self.group.next()
        let drained = EventLoopFuture.andAllComplete(proxyListeners.map { $0.quiesce(eventLoop: loop) }, on: loop)
        let finishedInTime = await Self.wait(for: drained, atMost: TimeAmount(grace), on: loop)
        if finishedInTime {
            self.logger.info("drained: every in-flight request finished")
        } else {
            self.logger.warning("grace period over: closing the remaining connections")
        }
        // Admin listeners stay up during the drain (so /readyz reports it), then stop the same way.
        let adminDone = EventLoopFuture.andAllComplete(adminListeners.map { $0.quiesce(eventLoop: loop) }, on: loop)
        _ = await Self.wait(for: adminDone, atMost: .seconds(2), on: loop)
        // Release the listeners while their event loops still run (their quiescing helpers complete promises).
        self.listeners.withLockedValue { $0.removeAll() }
        self.logger.info("stopped")
    }

    /// Rebuilds the certificate sets of https listeners for a new policy (off the event loops). Throws on
    /// the first bad file; listeners already swapped keep their new set, the failing one its old set.
    func reloadTLS(for config: PortcullisConfig) async throws {
        for listener in self.boundListeners {
            guard let provider = listener.tlsProvider,
                let tls = config.listeners.first(where: { $0.name == listener.config.name })?.tls
            else { continue }
            if tls != provider.configuration || provider.filesChanged() {
                try await provider.reload(configuration: tls)
                self.logger.info("certificates reloaded", metadata: ["proxy_listener": "\(listener.config.name)"])
            }
        }
    }

    /// Reloads certificate sets whose files changed on disk; a bad file is logged and the old set keeps serving.
    func reloadTLSIfFilesChanged() async {
        for listener in self.boundListeners {
            guard let provider = listener.tlsProvider else { continue }
            do {
                if try await provider.reloadIfFilesChanged() {
                    self.logger.info("certificates reloaded (files changed)", metadata: ["proxy_listener": "\(listener.config.name)"])
                }
            } catch {
                self.logger.error(
                    "certificate reload refused; the old certificates keep serving",
                    metadata: ["proxy_listener": "\(listener.config.name)", "proxy_error": "\(error)"]
                )
            }
        }
    }

    /// true if `future` completed within `timeout`.
    static func wait(for future: EventLoopFuture<Void>, atMost timeout: TimeAmount, on loop: any EventLoop) async -> Bool {
        let promise = loop.makePromise(of: Bool.self)
        let done = NIOLockedValueBox(false)
        let complete: @Sendable (Bool) -> Void = { value in
            let first = done.withLockedValue { d -> Bool in
                if d { return false }
                d = true
                return true
            }
            if first { promise.succeed(value) }
        }
        let timer = loop.scheduleTask(in: timeout) { complete(false) }
        future.whenComplete { _ in
            timer.cancel()
            complete(true)
        }
        return (try? await promise.futureResult.get()) ?? false
    }
}
