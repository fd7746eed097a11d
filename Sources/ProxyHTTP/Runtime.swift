public import Logging
public import NIOCore
import NIOConcurrencyHelpers
import AuditCore
import IdentityCore
import ProxyTransport
import ProxyConfig
import ProxyModel

/// The current snapshot, swapped atomically on reload. Each request reads it once, at its head.
public final class SnapshotBox: Sendable {
    private let box: NIOLockedValueBox<RuntimeSnapshot>

    public init(_ snapshot: RuntimeSnapshot) {
        self.box = NIOLockedValueBox(snapshot)
    }

    public var current: RuntimeSnapshot { self.box.withLockedValue { $0 } }

    public func replace(with snapshot: RuntimeSnapshot) {
        self.box.withLockedValue { $0 = snapshot }
    }
}

/// Readiness as `/readyz` reports it.
public final class Readiness: Sendable {
    private struct State {
        var configLoaded = false
        var draining = false
    }
    private let state = NIOLockedValueBox(State())

    public init() {}

    public func markConfigLoaded() { self.state.withLockedValue { $0.configLoaded = true } }
    public func markDraining() { self.state.withLockedValue { $0.draining = true } }

    public var isReady: Bool { self.state.withLockedValue { $0.configLoaded && !$0.draining } }
    public var isDraining: Bool { self.state.withLockedValue { $0.draining } }
}

/// What all listeners share.
public final class ProxyRuntime: Sendable {
    public let snapshots: SnapshotBox
    public let readiness: Readiness
    public let logger: Logger
    public let counters: ProxyCounters
    /// The audit trail's request-path side (nil only in tests that do not audit).
    public let audit: AuditRecorder?
    let stages: RequestStages
    private let loops: [ObjectIdentifier: NIOLoopBoundBox<LoopContext?>]

    public init(snapshot: RuntimeSnapshot, group: any EventLoopGroup, logger: Logger, audit: AuditRecorder? = nil) {
        self.audit = audit
        self.snapshots = SnapshotBox(snapshot)
        self.readiness = Readiness()
        self.logger = logger
        self.counters = ProxyCounters()
        self.stages = RequestStages(counters: self.counters)
        var loops: [ObjectIdentifier: NIOLoopBoundBox<LoopContext?>] = [:]
        for loop in group.makeIterator() {
            // Created empty off the loop; filled on first use, on the loop.
            loops[ObjectIdentifier(loop)] = NIOLoopBoundBox.makeEmptyBox(valueType: LoopContext.self, eventLoop: loop)
        }
        self.loops = loops
    }

    /// Ready to serve: configuration loaded, not draining, and every issuer has keys.
    public var isReady: Bool { self.readiness.isReady && self.snapshots.current.identity.allLoaded }

    /// Why not ready, for `/readyz`.
    public var readinessStatus: String {
        if self.readiness.isDraining { return "draining" }
        if !self.readiness.isReady { return "starting" }
        let missing = self.snapshots.current.identity.stores.values.filter { !$0.isLoaded }.map(\.config.name).sorted()
        return missing.isEmpty ? "ready" : "waiting for keys of issuer(s) \(missing.joined(separator: ", "))"
    }

    /// The per-event-loop state; must be called on `eventLoop`.
    func loopContext(for eventLoop: any EventLoop) -> LoopContext {
        guard let box = self.loops[ObjectIdentifier(eventLoop)] else {
            preconditionFailure("event loop not part of the runtime's group")
        }
        if let context = box.value { return context }
        let context = LoopContext(eventLoop: eventLoop, logger: self.logger)
        box.value = context
        return context
    }

    /// Writes `auth.suppressed` events for every pending count (at shutdown: nothing counted is lost).
    public func flushSuppressedAuthFailures() async {
        guard let audit = self.audit else { return }
        let counters = self.counters
        for box in self.loops.values {
            try? await box.eventLoop.submit {
                box.value?.reportSuppressedAuthFailures(audit: audit, counters: counters, force: true)
            }.get()
        }
    }

    /// Drops pools of upstreams that the new snapshot no longer uses (their idle connections close).
    public func retireUnusedPools(keeping snapshot: RuntimeSnapshot) {
        let keys = Set(snapshot.config.routes.map { UpstreamKey($0.upstream) })
        for box in self.loops.values {
            box.eventLoop.execute {
                box.value?.retirePools(except: keys)
            }
        }
    }
}

/// State confined to one event loop: upstream pools and the request id generator. No locks.
final class LoopContext {
    let eventLoop: any EventLoop
    let logger: Logger
    private var pools: [UpstreamKey: UpstreamPool] = [:]
    private var random: FastRandom
    /// Verified tokens of this loop (no locks: one cache per event loop).
    var tokenCache = VerifiedTokenCache()
    /// Rate limit of authentication-failure audit events, per client address.
    var authFailures = AuthFailureLimiter()
    /// Allowed exchanges still running, for `http.request.long_running`: one sweep per loop instead of a
    /// timer per request.
    var longRunning: [ObjectIdentifier: LongRunningEntry] = [:]
    var longRunningSweepScheduled = false

    init(eventLoop: any EventLoop, logger: Logger) {
        self.eventLoop = eventLoop
        self.logger = logger
        var seed = SystemRandomNumberGenerator()
        self.random = FastRandom(seed: seed.next())
    }

    func pool(for key: UpstreamKey, tls: UpstreamTLSContextProvider?) -> UpstreamPool {
        if let pool = self.pools[key] { return pool }
        let pool = UpstreamPool(key: key, tls: tls, eventLoop: self.eventLoop, logger: self.logger)
        self.pools[key] = pool
        return pool
    }

    /// `auth.suppressed` events for addresses idle for 10 s (all of them with `force`).
    func reportSuppressedAuthFailures(audit: AuditRecorder, counters: ProxyCounters, force: Bool) {
        let now = WallClock.nowMicroseconds()
        for (address, count) in self.authFailures.sweep(now: now, idleAfter: 10_000_000, force: force) {
            let event = AuditEvent(
                kind: AuditKind.authSuppressed,
                time: AuditTime(microseconds: now),
                fields: [
                    "client": .object(["address": .string(address)]),
                    "count": .integer(Int64(count)),
                    "reason": .string("rate_limited"),
                ]
            )
            if !audit.queue.offer(event) { counters.auditDropped() }
        }
    }

    /// Watches an allowed exchange; its handler records the long-running event once it passes `deadline`.
    func watchLongRunning(_ exchange: Exchange, deadline: NIODeadline, interval: TimeAmount) {
        self.longRunning[ObjectIdentifier(exchange)] = LongRunningEntry(exchange: exchange, deadline: deadline)
        guard !self.longRunningSweepScheduled else { return }
        self.longRunningSweepScheduled = true
        self.scheduleLongRunningSweep(interval: interval)
    }

    private func scheduleLongRunningSweep(interval: TimeAmount) {
        self.eventLoop.assumeIsolated().scheduleTask(in: interval) { [self] in
            let now = NIODeadline.now()
            for (key, entry) in self.longRunning where entry.deadline <= now || entry.exchange.audited {
                self.longRunning[key] = nil
                if !entry.exchange.audited {
                    entry.exchange.server.recordLongRunning(entry.exchange)
                }
            }
            if self.longRunning.isEmpty {
                self.longRunningSweepScheduled = false
            } else {
                self.scheduleLongRunningSweep(interval: interval)
            }
        }
    }

    func unwatchLongRunning(_ exchange: Exchange) {
        self.longRunning[ObjectIdentifier(exchange)] = nil
    }

    func retirePools(except keys: Set<UpstreamKey>) {
        for (key, pool) in self.pools where !keys.contains(key) {
            pool.closeIdle()
            self.pools[key] = nil
        }
    }

    /// 128 random bits as 32 lower-case hex characters.
    func makeRequestID() -> String {
        let hi = self.random.next()
        let lo = self.random.next()
        return String(unsafeUninitializedCapacity: 32) { buffer in
            let digits: StaticString = "0123456789abcdef"
            let table = digits.utf8Start
            var value = hi
            for i in 0..<16 {
                buffer[15 - i] = table[Int(value & 0xF)]
                value >>= 4
            }
            value = lo
            for i in 0..<16 {
                buffer[31 - i] = table[Int(value & 0xF)]
                value >>= 4
            }
            return 32
        }
    }
}

@available(*, unavailable)
extension LoopContext: Sendable {}

struct LongRunningEntry {
    /// Strong (a weak reference would give every allowed exchange a refcount side table); the entry goes when
    /// the exchange is audited (`unwatchLongRunning`: its end, or its connection's close). The exchange names
    /// its handler.
    let exchange: Exchange
    let deadline: NIODeadline
}

/// wyrand: fast, good-quality, not cryptographic (request ids need uniqueness, not secrecy).
struct FastRandom {
    private var state: UInt64
    init(seed: UInt64) { self.state = seed }
    mutating func next() -> UInt64 {
        self.state &+= 0xa076_1d64_78bd_642f
        let product = self.state.multipliedFullWidth(by: self.state ^ 0xe703_7ed1_a0b4_28db)
        return product.high ^ product.low
    }
}
