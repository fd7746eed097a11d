public import AsyncHTTPClient
import IdentityCore
public import Logging
import NIOConcurrencyHelpers
import NIOCore
import ProxyConfig
public import ProxyHTTP
public import ServiceLifecycle

/// Keeps every issuer's key set fresh: fetched at start-up (listeners do not wait; `/readyz` does),
/// refreshed on Cache-Control max-age (clamped), refetched once (rate-limited, single-flight) when a token
/// names an unknown key. A failed fetch keeps the last good set. One controller per issuer store; a reload
/// that brings new stores starts controllers for them and stops the old ones.
public final class JWKSService: Service, Sendable {
    private let runtime: ProxyRuntime
    private let fetcher: JWKSFetcher
    private let logger: Logger
    private let updates: AsyncStream<IdentityRegistry>
    private let updatesContinuation: AsyncStream<IdentityRegistry>.Continuation

    public init(runtime: ProxyRuntime, client: HTTPClient, logger: Logger) {
        self.runtime = runtime
        self.fetcher = JWKSFetcher(client: client)
        self.logger = logger
        (self.updates, self.updatesContinuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// A reload swapped in a new registry.
    public func registryChanged(_ registry: IdentityRegistry) {
        self.updatesContinuation.yield(registry)
    }

    public func run() async throws {
        let fetcher = self.fetcher
        let logger = self.logger
        let updates = self.updates
        let initial = self.runtime.snapshots.current.identity
        await withTaskGroup(of: Void.self) { group in
            var controllers: [ObjectIdentifier: IssuerKeysController] = [:]
            func reconcile(_ registry: IdentityRegistry, group: inout TaskGroup<Void>) {
                let wanted = Set(registry.stores.values.map { ObjectIdentifier($0) })
                for (id, controller) in controllers where !wanted.contains(id) {
                    controller.stop()
                    controllers[id] = nil
                }
                for store in registry.stores.values where controllers[ObjectIdentifier(store)] == nil {
                    let controller = IssuerKeysController(store: store, fetcher: fetcher, logger: logger)
                    controllers[ObjectIdentifier(store)] = controller
                    store.setRefetcher(controller)
                    group.addTask { await controller.run() }
                }
            }
            reconcile(initial, group: &group)
            for await registry in updates.cancelOnGracefulShutdown() {
                reconcile(registry, group: &group)
            }
            for controller in controllers.values { controller.stop() }
        }
    }
}

/// Runs one issuer's `JWKSRefreshStateMachine`: its actions become fetches and timers, its events come
/// from fetch results, timers and requests that met an unknown `kid`.
final class IssuerKeysController: JWKSRefetching, Sendable {
    enum Event: Sendable {
        case unknownKey(EventLoopPromise<Void>)
        case timer(generation: Int)
        case fetched(Result<JWKSFetcher.Fetched, any Error>)
        case stop
    }

    let store: IssuerKeyStore
    private let fetcher: JWKSFetcher
    private let logger: Logger
    private let events: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation

    init(store: IssuerKeyStore, fetcher: JWKSFetcher, logger: Logger) {
        self.store = store
        self.fetcher = fetcher
        var logger = logger
        logger[metadataKey: "proxy_issuer"] = "\(store.config.name)"
        self.logger = logger
        (self.events, self.continuation) = AsyncStream.makeStream()
    }

    func unknownKeyID(issuer: String, done: EventLoopPromise<Void>) {
        if case .terminated = self.continuation.yield(.unknownKey(done)) {
            done.succeed(())
        }
    }

    func stop() {
        self.continuation.yield(.stop)
        self.continuation.finish()
    }

    func run() async {
        var configuration = JWKSRefreshStateMachine.Configuration()
        configuration.minUnknownKeyInterval = max(1, self.store.config.unknownKeyRefetchInterval.components.seconds)
        var machine = JWKSRefreshStateMachine(configuration: configuration)
        var waiters: [EventLoopPromise<Void>] = []
        var timerGeneration = 0
        let store = self.store
        let fetcher = self.fetcher
        let continuation = self.continuation
        let logger = self.logger

        await withTaskGroup(of: Void.self) { group in
            func perform(_ action: JWKSRefreshStateMachine.Action, group: inout TaskGroup<Void>) {
                switch action {
                case .fetch:
                    group.addTask {
                        let result: Result<JWKSFetcher.Fetched, any Error>
                        do {
                            result = .success(try await fetcher.fetch(store.config))
                        } catch {
                            result = .failure(error)
                        }
                        continuation.yield(.fetched(result))
                    }
                case .scheduleRefresh(let at):
                    timerGeneration += 1
                    let generation = timerGeneration
                    let delay = max(0, at - WallClock.nowSeconds())
                    group.addTask {
                        try? await Task.sleep(for: .seconds(delay))
                        if !Task.isCancelled { continuation.yield(.timer(generation: generation)) }
                    }
                case .waitForInFlightFetch, .none:
                    break
                }
            }

            perform(machine.started(now: WallClock.nowSeconds()), group: &group)
            loop: for await event in self.events {
                let now = WallClock.nowSeconds()
                switch event {
                case .unknownKey(let done):
                    let action = machine.unknownKeySeen(now: now)
                    if action == .none {
                        done.succeed(())  // rate-limited: the request decides with the keys it has
                    } else {
                        waiters.append(done)
                    }
                    perform(action, group: &group)
                case .timer(let generation):
                    guard generation == timerGeneration else { continue }
                    perform(machine.timerFired(now: now), group: &group)
                case .fetched(.success(let fetched)):
                    let previous = store.current?.keyIDs
                    store.replace(with: fetched.keys)
                    if previous != fetched.keys.keyIDs {
                        logger.info(
                            "issuer keys loaded",
                            metadata: ["proxy_key_ids": "\(fetched.keys.keyIDs.sorted())"]
                        )
                    }
                    perform(machine.fetchSucceeded(maxAge: fetched.maxAge, now: now), group: &group)
                    for waiter in waiters { waiter.succeed(()) }
                    waiters.removeAll()
                case .fetched(.failure(let error)):
                    logger.error(
                        "issuer keys fetch failed; keeping the last good set",
                        metadata: ["proxy_error": "\(error)", "proxy_has_keys": "\(store.isLoaded)"]
                    )
                    perform(machine.fetchFailed(now: now), group: &group)
                    for waiter in waiters { waiter.succeed(()) }
                    waiters.removeAll()
                case .stop:
                    break loop
                }
            }
            group.cancelAll()
            for waiter in waiters { waiter.succeed(()) }
        }
    }
}
