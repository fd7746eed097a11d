import ProxyModel
import Testing

@testable import IdentityCore

@Suite("Verified token cache")
struct VerifiedTokenCacheTests {
    static let issuer = "https://issuer.example"

    static func verified(
        _ subject: String,
        exp: Int64,
        kid: String? = "k1",
        thumbprint: String? = nil,
        issuer: String = issuer
    ) -> VerifiedToken {
        VerifiedToken(
            principal: Principal(issuer: issuer, subject: subject, expiresAt: exp),
            expiresAt: exp,
            keyID: kid,
            issuer: issuer,
            keyThumbprint: thumbprint
        )
    }

    @Test func hitUntilExpThenMissAndRemoved() {
        var cache = VerifiedTokenCache()
        cache.insert(token: "tok-a", audiences: ["airflow"], verified: Self.verified("alice", exp: 1_000), now: 900)
        #expect(cache.count == 1)
        #expect(
            cache.lookup(token: "tok-a", audiences: ["airflow"], issuer: Self.issuer, now: 900)?.principal.subject
                == "alice"
        )
        #expect(cache.lookup(token: "tok-a", audiences: ["airflow"], issuer: Self.issuer, now: 999) != nil)
        #expect(cache.lookup(token: "tok-a", audiences: ["airflow"], issuer: Self.issuer, now: 1_000) == nil)
        #expect(cache.count == 0)
        #expect(cache.totalBytes == 0)
        #expect(cache.hits == 2)
        #expect(cache.misses == 1)
    }

    @Test func expiredTokensAreNotStored() {
        var cache = VerifiedTokenCache()
        cache.insert(token: "old", audiences: ["a"], verified: Self.verified("x", exp: 100), now: 100)
        #expect(cache.count == 0)
    }

    @Test func otherTokensMiss() {
        var cache = VerifiedTokenCache()
        cache.insert(token: "tok-a", audiences: ["airflow"], verified: Self.verified("alice", exp: 1_000))
        #expect(cache.lookup(token: "tok-b", audiences: ["airflow"], issuer: Self.issuer, now: 0) == nil)
        #expect(cache.lookup(token: "tok-a ", audiences: ["airflow"], issuer: Self.issuer, now: 0) == nil)
        #expect(
            cache.lookup(token: Substring("xtok-a").dropFirst(), audiences: ["airflow"], issuer: Self.issuer, now: 0)
                != nil
        )
    }

    @Test func audiencesAndIssuerArePartOfTheKey() {
        var cache = VerifiedTokenCache()
        cache.insert(token: "tok", audiences: ["airflow", "api"], verified: Self.verified("alice", exp: 1_000))
        // Same token, another route's audiences: a miss (it must be verified against those).
        #expect(cache.lookup(token: "tok", audiences: ["billing"], issuer: Self.issuer, now: 0) == nil)
        #expect(cache.lookup(token: "tok", audiences: ["airflow"], issuer: Self.issuer, now: 0) == nil)
        #expect(
            cache.lookup(token: "tok", audiences: ["airflow", "api", "billing"], issuer: Self.issuer, now: 0) == nil
        )
        // Same audiences in another order or repeated: a hit.
        #expect(cache.lookup(token: "tok", audiences: ["api", "airflow"], issuer: Self.issuer, now: 0) != nil)
        #expect(cache.lookup(token: "tok", audiences: ["api", "airflow", "api"], issuer: Self.issuer, now: 0) != nil)
        #expect(
            cache.lookup(token: "tok", audiences: ["airflow", "api"], issuer: "https://other.example", now: 0) == nil
        )
        // Both routes can hold their own entry.
        cache.insert(token: "tok", audiences: ["billing"], verified: Self.verified("alice", exp: 1_000))
        #expect(cache.count == 2)
    }

    @Test func evictsLeastRecentlyUsedByCount() {
        var cache = VerifiedTokenCache(maxEntries: 3)
        for name in ["a", "b", "c"] {
            cache.insert(token: name, audiences: ["x"], verified: Self.verified(name, exp: 1_000))
        }
        #expect(cache.lookup(token: "a", audiences: ["x"], issuer: Self.issuer, now: 0) != nil)  // a is now most recent
        cache.insert(token: "d", audiences: ["x"], verified: Self.verified("d", exp: 1_000))
        #expect(cache.count == 3)
        #expect(cache.evictions == 1)
        #expect(cache.lookup(token: "b", audiences: ["x"], issuer: Self.issuer, now: 0) == nil)  // b was least recent
        for name in ["a", "c", "d"] {
            #expect(cache.lookup(token: name, audiences: ["x"], issuer: Self.issuer, now: 0)?.principal.subject == name)
        }
    }

    @Test func evictsByBytes() {
        let token = String(repeating: "t", count: 1_000)
        let cost = VerifiedTokenCache.entryCost(token: token + "0", audiences: ["x"], issuer: Self.issuer)
        var cache = VerifiedTokenCache(maxEntries: 100, maxBytes: cost * 3)
        for index in 0..<5 {
            cache.insert(token: token + "\(index)", audiences: ["x"], verified: Self.verified("\(index)", exp: 1_000))
            #expect(cache.totalBytes <= cost * 3)
        }
        #expect(cache.count == 3)
        #expect(cache.lookup(token: token + "0", audiences: ["x"], issuer: Self.issuer, now: 0) == nil)
        #expect(cache.lookup(token: token + "1", audiences: ["x"], issuer: Self.issuer, now: 0) == nil)
        #expect(cache.lookup(token: token + "4", audiences: ["x"], issuer: Self.issuer, now: 0) != nil)
        // An entry larger than the whole budget is not stored and evicts nothing.
        cache.insert(
            token: String(repeating: "z", count: cost * 4),
            audiences: ["x"],
            verified: Self.verified("big", exp: 1_000)
        )
        #expect(cache.count == 3)
    }

    @Test func reinsertingReplacesTheEntry() {
        var cache = VerifiedTokenCache(maxEntries: 2)
        cache.insert(token: "a", audiences: ["x"], verified: Self.verified("first", exp: 1_000))
        cache.insert(token: "a", audiences: ["x"], verified: Self.verified("second", exp: 2_000))
        #expect(cache.count == 1)
        #expect(
            cache.lookup(token: "a", audiences: ["x"], issuer: Self.issuer, now: 1_500)?.principal.subject == "second"
        )
    }

    @Test func removesEntriesWhoseKeyLeftTheSet() {
        let rotatedOut = TestSigner.otherP256.jwk(kid: "old")
        let kept = TestSigner.p256.jwk(kid: "new")
        var cache = VerifiedTokenCache()
        cache.insert(
            token: "t-old",
            audiences: ["x"],
            verified: Self.verified("o", exp: 1_000, kid: "old", thumbprint: rotatedOut.thumbprint)
        )
        cache.insert(
            token: "t-new",
            audiences: ["x"],
            verified: Self.verified("n", exp: 1_000, kid: "new", thumbprint: kept.thumbprint)
        )
        cache.insert(
            token: "t-other",
            audiences: ["x"],
            verified: Self.verified("i", exp: 1_000, kid: "old", issuer: "https://other.example")
        )
        cache.removeAll(keysNotIn: JWKSet(keys: [kept]), issuer: Self.issuer)
        #expect(cache.lookup(token: "t-old", audiences: ["x"], issuer: Self.issuer, now: 0) == nil)
        #expect(cache.lookup(token: "t-new", audiences: ["x"], issuer: Self.issuer, now: 0) != nil)
        #expect(cache.lookup(token: "t-other", audiences: ["x"], issuer: "https://other.example", now: 0) != nil)

        // Same kid, new key material: the old entries go too.
        let reused = TestSigner.otherP256.jwk(kid: "new")
        cache.removeAll(keysNotIn: JWKSet(keys: [reused]), issuer: Self.issuer)
        #expect(cache.lookup(token: "t-new", audiences: ["x"], issuer: Self.issuer, now: 0) == nil)
    }

    @Test func removesByKeyID() {
        var cache = VerifiedTokenCache()
        cache.insert(token: "1", audiences: ["x"], verified: Self.verified("1", exp: 1_000, kid: "k1"))
        cache.insert(token: "2", audiences: ["x"], verified: Self.verified("2", exp: 1_000, kid: "k2"))
        cache.insert(token: "3", audiences: ["x"], verified: Self.verified("3", exp: 1_000, kid: nil))
        cache.removeAll(keyIDsNotIn: ["k2"])
        #expect(cache.count == 1)
        #expect(cache.lookup(token: "2", audiences: ["x"], issuer: Self.issuer, now: 0) != nil)
        cache.removeAll()
        #expect(cache.count == 0)
    }

    @Test func staysConsistentUnderChurn() {
        var cache = VerifiedTokenCache(maxEntries: 50, maxBytes: 1 << 20)
        var generator = SplitMix(seed: 42)
        for step in 0..<5_000 {
            let name = "t\(generator.next() % 200)"
            let now = Int64(step)
            if generator.next() % 3 == 0 {
                cache.insert(
                    token: name,
                    audiences: ["x"],
                    verified: Self.verified(name, exp: now + Int64(generator.next() % 100) + 1),
                    now: now
                )
            } else if let hit = cache.lookup(token: name, audiences: ["x"], issuer: Self.issuer, now: now) {
                #expect(hit.principal.subject == name)
                #expect(hit.expiresAt > now)
            }
            #expect(cache.count <= 50)
        }
    }

    @Test func verifierAndCacheTogether() throws {
        let keys = Mint.keySet([.p256], kids: ["p256"])
        let token = Mint.token(.ES256, kid: "p256")
        var cache = VerifiedTokenCache()
        #expect(cache.lookup(token: token, audiences: ["airflow"], issuer: Mint.issuer, now: Mint.now) == nil)
        let verified = try #require(
            TokenVerifier.verify(token, keys: keys, policy: Mint.policy, audiences: ["airflow"], now: Mint.now).verified
        )
        cache.insert(token: token, audiences: ["airflow"], issuer: Mint.issuer, verified: verified)
        #expect(cache.lookup(token: token, audiences: ["airflow"], issuer: Mint.issuer, now: Mint.now) == verified)
        #expect(cache.lookup(token: token, audiences: ["airflow"], issuer: Mint.issuer, now: verified.expiresAt) == nil)
    }
}

/// Deterministic pseudo-random numbers for the churn test.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { self.state = seed }
    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
