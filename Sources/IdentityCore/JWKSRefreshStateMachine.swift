/// When to fetch one issuer's JWKS. Pure: no I/O, no clock (time is passed in, seconds since the
/// epoch or any monotonic seconds). The JWKS service feeds it events and runs the action returned.
///
/// - Start: fetch at once.
/// - Success: refresh at `max-age` from Cache-Control, clamped to
///   [``Configuration/minRefreshInterval``, ``Configuration/maxRefreshInterval``]; without one,
///   ``Configuration/defaultRefreshInterval``. The backoff is reset.
/// - Failure: retry after the current backoff (``Configuration/initialBackoff`` doubling up to
///   ``Configuration/maxBackoff``). The caller keeps serving its last good set.
/// - Unknown `kid`: at most one fetch per ``Configuration/minUnknownKeyInterval`` (counted from the
///   start of the last fetch of any kind), and single-flight: while a fetch is in flight, an unknown
///   kid waits for it rather than starting another. So a flood of random kids costs one fetch.
public struct JWKSRefreshStateMachine: Sendable {
    public struct Configuration: Sendable, Hashable {
        public var minRefreshInterval: Int64 = 300
        public var maxRefreshInterval: Int64 = 86_400
        public var defaultRefreshInterval: Int64 = 3_600
        public var initialBackoff: Int64 = 5
        public var maxBackoff: Int64 = 300
        public var minUnknownKeyInterval: Int64 = 30

        public init() {}
    }

    public enum Action: Sendable, Hashable {
        /// Start a fetch now (the machine is now in flight until `fetchSucceeded` or `fetchFailed`).
        case fetch
        /// Arm the refresh timer for this instant (replacing any earlier one).
        case scheduleRefresh(at: Int64)
        /// A fetch is in flight: wait for its result (bounded by the caller), then verify again.
        case waitForInFlightFetch
        case none
    }

    enum State: Sendable {
        case initial
        case fetching(Progress)
        case waiting(Progress, refreshAt: Int64)
        case modifying
    }

    struct Progress: Sendable {
        var hasKeys = false
        /// Delay before the retry after the next failure.
        var backoff: Int64
        /// Start of the last fetch, for the unknown-kid rate limit.
        var lastFetchStartedAt: Int64?
    }

    public let configuration: Configuration
    private var state: State = .initial

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    /// True once a fetch has succeeded (a key set was loaded at least once).
    public var hasKeys: Bool {
        switch self.state {
        case .initial, .modifying: return false
        case .fetching(let progress), .waiting(let progress, _): return progress.hasKeys
        }
    }

    /// True while a fetch is in flight.
    public var isFetching: Bool {
        if case .fetching = self.state { return true }
        return false
    }

    /// The instant of the next scheduled refresh, when one is scheduled.
    public var nextRefreshAt: Int64? {
        if case .waiting(_, let at) = self.state { return at }
        return nil
    }

    // MARK: - Events

    public mutating func started(now: Int64) -> Action {
        switch self.state {
        case .initial:
            self.state = .fetching(Progress(backoff: self.configuration.initialBackoff, lastFetchStartedAt: now))
            return .fetch
        case .fetching, .waiting:
            return .none
        case .modifying:
            preconditionFailure("JWKSRefreshStateMachine in modifying state")
        }
    }

    /// `maxAge`: the Cache-Control max-age of the response, nil when it had none.
    public mutating func fetchSucceeded(maxAge: Int64?, now: Int64) -> Action {
        switch self.state {
        case .fetching(var progress):
            self.state = .modifying
            progress.hasKeys = true
            progress.backoff = self.configuration.initialBackoff
            let interval = self.refreshInterval(maxAge: maxAge)
            let at = now.addingSaturated(interval)
            self.state = .waiting(progress, refreshAt: at)
            return .scheduleRefresh(at: at)
        case .initial, .waiting:
            return .none
        case .modifying:
            preconditionFailure("JWKSRefreshStateMachine in modifying state")
        }
    }

    public mutating func fetchFailed(now: Int64) -> Action {
        switch self.state {
        case .fetching(var progress):
            self.state = .modifying
            let delay = progress.backoff
            progress.backoff = min(self.configuration.maxBackoff, progress.backoff.addingSaturated(progress.backoff))
            let at = now.addingSaturated(delay)
            self.state = .waiting(progress, refreshAt: at)
            return .scheduleRefresh(at: at)
        case .initial, .waiting:
            return .none
        case .modifying:
            preconditionFailure("JWKSRefreshStateMachine in modifying state")
        }
    }

    /// A token named a kid the current set does not hold.
    public mutating func unknownKeySeen(now: Int64) -> Action {
        switch self.state {
        case .initial:
            return .none
        case .fetching:
            return .waitForInFlightFetch
        case .waiting(var progress, _):
            if let last = progress.lastFetchStartedAt,
                now < last.addingSaturated(self.configuration.minUnknownKeyInterval)
            {
                return .none
            }
            self.state = .modifying
            progress.lastFetchStartedAt = now
            self.state = .fetching(progress)
            return .fetch
        case .modifying:
            preconditionFailure("JWKSRefreshStateMachine in modifying state")
        }
    }

    /// The refresh timer fired. A timer that fires early (or a stale one) does nothing.
    public mutating func timerFired(now: Int64) -> Action {
        switch self.state {
        case .waiting(var progress, let refreshAt):
            guard now >= refreshAt else { return .none }
            self.state = .modifying
            progress.lastFetchStartedAt = now
            self.state = .fetching(progress)
            return .fetch
        case .initial, .fetching:
            return .none
        case .modifying:
            preconditionFailure("JWKSRefreshStateMachine in modifying state")
        }
    }

    // MARK: - Helpers

    /// The refresh interval for a response with this max-age, clamped to the configured bounds.
    public func refreshInterval(maxAge: Int64?) -> Int64 {
        guard let maxAge else { return self.configuration.defaultRefreshInterval }
        return min(self.configuration.maxRefreshInterval, max(self.configuration.minRefreshInterval, maxAge))
    }

    /// The `max-age` of a Cache-Control header value (`public, max-age=3600`), nil when absent or
    /// malformed. `no-cache` and `no-store` give 0 (the clamp then applies the minimum interval).
    public static func maxAge(cacheControl: String) -> Int64? {
        var result: Int64?
        for directive in cacheControl.split(separator: ",") {
            let trimmed = directive.drop(while: { $0 == " " || $0 == "\t" })
            let parts = trimmed.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = parts[0].lowercased().trimmingSuffix(while: { $0 == " " || $0 == "\t" })
            switch name {
            case "no-cache", "no-store":
                return 0
            case "max-age":
                guard parts.count == 2 else { return nil }
                var value = parts[1].trimmingSuffix(while: { $0 == " " || $0 == "\t" })
                if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 {
                    value = String(value.dropFirst().dropLast())
                }
                guard !value.isEmpty, value.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
                else {
                    return nil
                }
                result = Int64(value) ?? .max
            default:
                continue
            }
        }
        return result
    }
}

extension StringProtocol {
    fileprivate func trimmingSuffix(while predicate: (Character) -> Bool) -> String {
        var end = self.endIndex
        while end > self.startIndex {
            let before = self.index(before: end)
            guard predicate(self[before]) else { break }
            end = before
        }
        return String(self[self.startIndex..<end])
    }
}
