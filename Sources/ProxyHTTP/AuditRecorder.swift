public import AuditCore
import NIOCore
public import ProxyConfig
public import ProxyModel

/// The request path's side of the audit trail: a slot reserved when a request is admitted, an event
/// submitted when it completes. Encoding and writing happen on the audit writer thread (ProxyAudit).
public final class AuditRecorder: Sendable {
    public let queue: AuditQueue
    let failClosed: Bool
    let longRequestThreshold: TimeAmount
    let authFailureRate: Double
    let authFailureBurst: Double

    public init(queue: AuditQueue, config: AuditConfig) {
        self.queue = queue
        self.failClosed = config.onOverflow == .failClosed
        self.longRequestThreshold = TimeAmount(config.longRequestThreshold)
        self.authFailureRate = Double(config.authFailureRate)
        self.authFailureBurst = Double(config.authFailureBurst)
    }

    /// Process and control events (start, stop, reload): never dropped.
    public func record(kind: String, fields: [String: JSONValue]) {
        self.queue.force(AuditEvent(kind: kind, time: AuditTime(microseconds: WallClock.nowMicroseconds()), fields: fields))
    }
}

extension AuditDecision {
    /// The decision class of a request that ended with `reason` before reaching the upstream.
    static func of(_ reason: ReasonCode) -> AuditDecision {
        switch reason.status {
        case 401, 403, 404, 421: return .deny
        default: return .error
        }
    }
}

extension ReasonCode {
    /// Authentication failures: recorded subject to the per-address rate limit.
    var isAuthenticationFailure: Bool { self.status == 401 }
}

/// Per event loop (no locks): a token bucket per client address for authentication-failure events, and the
/// counts of events it suppressed, reported with the address's next recorded failure or, for an address
/// that went quiet, by an `auth.suppressed` event from the periodic sweep.
struct AuthFailureLimiter {
    struct Bucket {
        var tokens: Double
        var last: Int64
        var suppressed: Int
    }

    static let maximumAddresses = 10_000
    private(set) var buckets: [String: Bucket] = [:]
    var sweepScheduled = false

    /// Whether to record a failure from `address` now, and how many were suppressed before it.
    mutating func admit(address: String, now: Int64, rate: Double, burst: Double) -> (record: Bool, suppressedBefore: Int) {
        var bucket = self.buckets[address] ?? Bucket(tokens: burst, last: now, suppressed: 0)
        let elapsed = Double(max(0, now - bucket.last)) / 1_000_000
        bucket.tokens = min(burst, bucket.tokens + elapsed * rate)
        bucket.last = now
        if bucket.tokens >= 1 {
            bucket.tokens -= 1
            let suppressed = bucket.suppressed
            bucket.suppressed = 0
            self.buckets[address] = bucket
            return (true, suppressed)
        }
        bucket.suppressed += 1
        self.buckets[address] = bucket
        return (false, 0)
    }

    /// Removes idle addresses; returns the suppressed counts of those that have any (to be reported).
    mutating func sweep(now: Int64, idleAfter: Int64, force: Bool) -> [(String, Int)] {
        var report: [(String, Int)] = []
        for (address, bucket) in self.buckets where force || now - bucket.last >= idleAfter {
            if bucket.suppressed > 0 { report.append((address, bucket.suppressed)) }
            self.buckets[address] = nil
        }
        return report
    }

    var isFull: Bool { self.buckets.count >= Self.maximumAddresses }
    var isEmpty: Bool { self.buckets.isEmpty }
}
