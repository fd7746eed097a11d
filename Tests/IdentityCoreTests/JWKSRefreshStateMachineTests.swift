import Testing

@testable import IdentityCore

@Suite("JWKS refresh state machine")
struct JWKSRefreshStateMachineTests {
    @Test func startFetchesThenSchedulesAtMaxAge() {
        var sm = JWKSRefreshStateMachine()
        #expect(!sm.hasKeys)
        #expect(sm.started(now: 0) == .fetch)
        #expect(sm.isFetching)
        #expect(sm.started(now: 1) == .none)  // started twice: no second fetch
        #expect(sm.fetchSucceeded(maxAge: 600, now: 2) == .scheduleRefresh(at: 602))
        #expect(sm.hasKeys)
        #expect(!sm.isFetching)
        #expect(sm.nextRefreshAt == 602)
        #expect(sm.timerFired(now: 601) == .none)  // early timer: nothing
        #expect(sm.timerFired(now: 602) == .fetch)
        #expect(sm.timerFired(now: 603) == .none)  // in flight
        #expect(sm.fetchSucceeded(maxAge: nil, now: 610) == .scheduleRefresh(at: 610 + 3_600))
    }

    @Test func eventsBeforeStartDoNothing() {
        var sm = JWKSRefreshStateMachine()
        #expect(sm.unknownKeySeen(now: 0) == .none)
        #expect(sm.timerFired(now: 0) == .none)
        #expect(sm.fetchSucceeded(maxAge: 10, now: 0) == .none)
        #expect(sm.fetchFailed(now: 0) == .none)
        #expect(!sm.hasKeys)
    }

    @Test func resultsWithoutAFetchInFlightAreIgnored() {
        var sm = JWKSRefreshStateMachine()
        _ = sm.started(now: 0)
        _ = sm.fetchSucceeded(maxAge: 600, now: 1)
        #expect(sm.fetchSucceeded(maxAge: 600, now: 2) == .none)
        #expect(sm.fetchFailed(now: 2) == .none)
        #expect(sm.nextRefreshAt == 601)
    }

    @Test(
        arguments: [
            (nil, 3_600), (0, 300), (1, 300), (299, 300), (300, 300), (301, 301), (7_200, 7_200),
            (86_400, 86_400), (86_401, 86_400), (Int64.max, 86_400), (-5, 300),
        ] as [(Int64?, Int64)]
    )
    func maxAgeIsClamped(maxAge: Int64?, interval: Int64) {
        var sm = JWKSRefreshStateMachine()
        _ = sm.started(now: 1_000)
        #expect(sm.fetchSucceeded(maxAge: maxAge, now: 1_000) == .scheduleRefresh(at: 1_000 + interval))
    }

    @Test func clampBoundsAreConfigurable() {
        var configuration = JWKSRefreshStateMachine.Configuration()
        configuration.minRefreshInterval = 60
        configuration.maxRefreshInterval = 120
        configuration.defaultRefreshInterval = 90
        var sm = JWKSRefreshStateMachine(configuration: configuration)
        _ = sm.started(now: 0)
        #expect(sm.fetchSucceeded(maxAge: 10, now: 0) == .scheduleRefresh(at: 60))
        _ = sm.timerFired(now: 60)
        #expect(sm.fetchSucceeded(maxAge: 1_000, now: 60) == .scheduleRefresh(at: 180))
        _ = sm.timerFired(now: 180)
        #expect(sm.fetchSucceeded(maxAge: nil, now: 180) == .scheduleRefresh(at: 270))
    }

    @Test func failuresBackOffExponentiallyAndSuccessResets() {
        var sm = JWKSRefreshStateMachine()
        var now: Int64 = 0
        #expect(sm.started(now: now) == .fetch)
        var delays: [Int64] = []
        for _ in 0..<9 {
            guard case .scheduleRefresh(let at) = sm.fetchFailed(now: now) else {
                Issue.record("expected a scheduled retry")
                return
            }
            delays.append(at - now)
            now = at
            #expect(sm.timerFired(now: now) == .fetch)
        }
        #expect(delays == [5, 10, 20, 40, 80, 160, 300, 300, 300])
        #expect(!sm.hasKeys)  // never loaded: the caller fails closed
        #expect(sm.fetchSucceeded(maxAge: nil, now: now) == .scheduleRefresh(at: now + 3_600))
        #expect(sm.hasKeys)
        now += 3_600
        #expect(sm.timerFired(now: now) == .fetch)
        #expect(sm.fetchFailed(now: now) == .scheduleRefresh(at: now + 5))  // backoff starts over
        #expect(sm.hasKeys)  // a failed refresh keeps the last good set
    }

    @Test func unknownKidIsSingleFlight() {
        var sm = JWKSRefreshStateMachine()
        _ = sm.started(now: 0)
        // While the start-up fetch is in flight, unknown kids wait for it.
        #expect(sm.unknownKeySeen(now: 1) == .waitForInFlightFetch)
        #expect(sm.unknownKeySeen(now: 2) == .waitForInFlightFetch)
        #expect(sm.fetchSucceeded(maxAge: 3_600, now: 3) == .scheduleRefresh(at: 3_603))
        // Within the interval since the last fetch started (0): rate-limited.
        #expect(sm.unknownKeySeen(now: 29) == .none)
        #expect(sm.unknownKeySeen(now: 30) == .fetch)
        #expect(sm.unknownKeySeen(now: 31) == .waitForInFlightFetch)
        #expect(sm.fetchSucceeded(maxAge: 3_600, now: 32) == .scheduleRefresh(at: 3_632))
        #expect(sm.unknownKeySeen(now: 59) == .none)
        #expect(sm.unknownKeySeen(now: 60) == .fetch)
    }

    @Test func aThousandUnknownKidsCostOneFetch() {
        var sm = JWKSRefreshStateMachine()
        _ = sm.started(now: 0)
        _ = sm.fetchSucceeded(maxAge: nil, now: 0)
        var fetches = 0
        var waits = 0
        var now: Int64 = 100
        for index in 0..<1_000 {
            switch sm.unknownKeySeen(now: now) {
            case .fetch: fetches += 1
            case .waitForInFlightFetch: waits += 1
            case .none, .scheduleRefresh: break
            }
            if index == 10 { _ = sm.fetchSucceeded(maxAge: nil, now: now) }
            if index % 100 == 99 { now += 2 }  // 1,000 kids over 20 s, inside one interval
        }
        #expect(fetches == 1)
        #expect(waits == 10)
        // Once the interval has passed, one more.
        #expect(sm.unknownKeySeen(now: 100 + 30) == .fetch)
    }

    @Test func unknownKidAfterAFailureIsStillRateLimited() {
        var sm = JWKSRefreshStateMachine()
        _ = sm.started(now: 0)
        #expect(sm.fetchFailed(now: 1) == .scheduleRefresh(at: 6))
        #expect(sm.unknownKeySeen(now: 2) == .none)
        #expect(sm.timerFired(now: 6) == .fetch)
        #expect(sm.fetchFailed(now: 7) == .scheduleRefresh(at: 17))
        #expect(sm.unknownKeySeen(now: 35) == .none)  // last fetch started at 6
        #expect(sm.unknownKeySeen(now: 36) == .fetch)
        // The unknown-kid fetch fails: the next retry uses the running backoff.
        #expect(sm.fetchFailed(now: 37) == .scheduleRefresh(at: 57))
    }

    @Test func minUnknownKeyIntervalIsConfigurable() {
        var configuration = JWKSRefreshStateMachine.Configuration()
        configuration.minUnknownKeyInterval = 5
        var sm = JWKSRefreshStateMachine(configuration: configuration)
        _ = sm.started(now: 0)
        _ = sm.fetchSucceeded(maxAge: nil, now: 0)
        #expect(sm.unknownKeySeen(now: 4) == .none)
        #expect(sm.unknownKeySeen(now: 5) == .fetch)
    }

    @Test(
        arguments: [
            ("max-age=600", 600), ("public, max-age=3600", 3_600), ("MAX-AGE=60, must-revalidate", 60),
            ("max-age=\"120\"", 120), ("no-cache", 0), ("no-store, max-age=600", 0), ("private", nil), ("", nil),
            ("max-age=", nil), ("max-age=-1", nil), ("max-age=1h", nil), ("max-age=99999999999999999999", Int64.max),
            ("s-maxage=10", nil),
        ] as [(String, Int64?)]
    )
    func cacheControlMaxAge(_ header: String, _ expected: Int64?) {
        #expect(JWKSRefreshStateMachine.maxAge(cacheControl: header) == expected)
    }
}
