import Synchronization
public import IdentityCore
public import NIOCore
import NIOConcurrencyHelpers
public import ProxyConfig
import ProxyModel

/// Asks for an issuer's JWKS to be fetched again because a token named a key the set does not hold.
/// Implementations rate-limit and single-flight the fetch; `done` completes when it finished, or at once
/// when no new fetch is allowed yet.
public protocol JWKSRefetching: Sendable {
    func unknownKeyID(issuer: String, done: EventLoopPromise<Void>)
}

/// The keys of one issuer: written by the JWKS service, read by every request (one lock read).
public final class IssuerKeyStore: Sendable {
    public let config: IssuerConfig
    public let policy: IssuerPolicy
    private let keys: NIOLockedValueBox<JWKSet?>
    private let refetcher = NIOLockedValueBox<(any JWKSRefetching)?>(nil)

    public init(config: IssuerConfig, keys: JWKSet? = nil) {
        self.config = config
        self.policy = IssuerStoreSupport.policy(for: config)
        self.keys = NIOLockedValueBox(keys)
    }

    /// nil until the first successful load: the issuer then fails closed (503).
    public var current: JWKSet? { self.keys.withLockedValue { $0 } }
    public var isLoaded: Bool { self.current != nil }

    public func replace(with set: JWKSet) {
        self.keys.withLockedValue { $0 = set }
    }

    public func setRefetcher(_ refetcher: (any JWKSRefetching)?) {
        self.refetcher.withLockedValue { $0 = refetcher }
    }

    func requestRefetch(done: EventLoopPromise<Void>) {
        if let refetcher = self.refetcher.withLockedValue({ $0 }) {
            refetcher.unknownKeyID(issuer: self.config.name, done: done)
        } else {
            done.succeed(())
        }
    }

    /// Same place to get keys from (so a reload keeps the keys already loaded).
    func hasSameKeySource(as other: IssuerConfig) -> Bool {
        self.config.issuer == other.issuer && self.config.jwksURI == other.jwksURI
            && self.config.jwksFile == other.jwksFile
    }
}

/// The issuer's verification policy, from its configuration (one place, for the proxy and the tools).
public enum IssuerStoreSupport {
    public static func policy(for config: IssuerConfig) -> IssuerPolicy {
        IssuerPolicy(
            issuer: config.issuer,
            algorithms: Set(config.algorithms.compactMap(JWSAlgorithm.init(rawValue:))),
            clockSkew: config.clockSkew.components.seconds,
            groupsClaim: config.groupsClaim,
            emailClaim: config.emailClaim,
            requiredType: config.requiredType,
            maxTokenBytes: config.maxTokenBytes
        )
    }
}

/// Every issuer of a snapshot. A reload builds a new registry that keeps the loaded keys of issuers
/// whose key source did not change.
public final class IdentityRegistry: Sendable {
    public let stores: [String: IssuerKeyStore]

    public init(issuers: [IssuerConfig], previous: IdentityRegistry? = nil) {
        var stores: [String: IssuerKeyStore] = [:]
        for issuer in issuers {
            let old = previous?.stores[issuer.name]
            let keys = (old?.hasSameKeySource(as: issuer) ?? false) ? old?.current : nil
            stores[issuer.name] = IssuerKeyStore(config: issuer, keys: keys)
        }
        self.stores = stores
    }

    /// Every issuer has keys (readiness).
    public var allLoaded: Bool { self.stores.values.allSatisfy(\.isLoaded) }
}

/// Counters for tests and (later) metrics.
public final class ProxyCounters: Sendable {
    // Atomics, not locks: the cache-hit counter moves on every authenticated request.
    private let tokenVerifications = Atomic<Int>(0)
    private let tokenCacheHits = Atomic<Int>(0)

    public init() {}

    func countVerification() { self.tokenVerifications.add(1, ordering: .relaxed) }
    func countCacheHit() { self.tokenCacheHits.add(1, ordering: .relaxed) }

    public var verifications: Int { self.tokenVerifications.load(ordering: .relaxed) }
    public var cacheHits: Int { self.tokenCacheHits.load(ordering: .relaxed) }

    // audit
    private let auditRefusals = Atomic<Int>(0)
    private let auditSuppressions = Atomic<Int>(0)
    private let auditDrops = Atomic<Int>(0)

    func auditRefused() { self.auditRefusals.add(1, ordering: .relaxed) }
    func auditSuppressed() { self.auditSuppressions.add(1, ordering: .relaxed) }
    func auditDropped() { self.auditDrops.add(1, ordering: .relaxed) }

    /// Requests refused with 503 because the audit buffer was full (fail_closed).
    public var auditRefusedCount: Int { self.auditRefusals.load(ordering: .relaxed) }
    /// Authentication-failure events the per-address rate limit kept out.
    public var auditSuppressedCount: Int { self.auditSuppressions.load(ordering: .relaxed) }
    /// Events that found no room in the buffer (drop mode, or events without a reserved slot).
    public var auditDroppedCount: Int { self.auditDrops.load(ordering: .relaxed) }
}
