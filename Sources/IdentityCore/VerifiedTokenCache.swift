import Crypto

/// A bounded cache of verified tokens, so that a repeated token costs a SHA-256 and a dictionary
/// lookup instead of a signature verification.
///
/// - Keyed by the SHA-256 of the token bytes together with the issuer and the audiences it was
///   verified for: a token valid for one route's audience is no hit for another route's.
/// - An entry is good until its `exp`: a lookup at or after `exp` is a miss and drops the entry.
///   (The verifier's clock skew is not applied here; a token inside the skew is verified again.)
/// - Bounded by entry count and by an estimate of bytes held (``entryCost(token:audiences:issuer:)``);
///   the least recently used entry goes first.
/// - ``removeAll(keysNotIn:issuer:)`` drops entries whose key left the issuer's set after a refresh.
///
/// A value type and not thread-safe: the proxy keeps one per event loop.
public struct VerifiedTokenCache {
    public let maxEntries: Int
    public let maxBytes: Int
    public private(set) var totalBytes = 0
    public private(set) var hits = 0
    public private(set) var misses = 0
    public private(set) var evictions = 0

    struct Key: Hashable {
        var digest: SHA256Digest
        var issuer: String
        /// Sorted and without duplicates, so the order a route lists them in does not matter.
        var audiences: [String]
    }

    struct Node {
        var key: Key
        var value: VerifiedToken
        var cost: Int
        var previous: Int
        var next: Int
    }

    /// Slots of a doubly linked list in recency order (head = most recent); freed slots are reused.
    private var nodes: [Node] = []
    private var freeSlots: [Int] = []
    private var index: [Key: Int] = [:]
    private var head = -1
    private var tail = -1

    public init(maxEntries: Int = 10_000, maxBytes: Int = 16 << 20) {
        self.maxEntries = max(0, maxEntries)
        self.maxBytes = max(0, maxBytes)
    }

    public var count: Int { self.index.count }

    /// Bytes an entry is charged: the token's length (a proxy for its claims held in the principal)
    /// plus the issuer, the audiences and a fixed overhead.
    public static func entryCost(token: some StringProtocol, audiences: [String], issuer: String) -> Int {
        256 + token.utf8.count + issuer.utf8.count + audiences.reduce(0) { $0 + $1.utf8.count + 16 }
    }

    /// The proxy's call (a token sliced out of its header): concrete, so that it is not called
    /// unspecialized from another module.
    public mutating func lookup(token: Substring, audiences: [String], issuer: String, now: Int64) -> VerifiedToken? {
        self.lookup(key: Self.key(token: token, audiences: audiences, issuer: issuer), now: now)
    }

    public mutating func lookup(
        token: some StringProtocol,
        audiences: [String],
        issuer: String,
        now: Int64
    ) -> VerifiedToken? {
        self.lookup(key: Self.key(token: token, audiences: audiences, issuer: issuer), now: now)
    }

    private mutating func lookup(key: Key, now: Int64) -> VerifiedToken? {
        guard let slot = self.index[key] else {
            self.misses += 1
            return nil
        }
        let value = self.nodes[slot].value
        if value.expiresAt <= now {
            self.remove(slot: slot)
            self.misses += 1
            return nil
        }
        self.moveToFront(slot)
        self.hits += 1
        return value
    }

    /// Remembers a verified token for these audiences. `issuer` defaults to the token's issuer (and
    /// must be what later lookups pass); with `now`, a token already expired is not stored.
    public mutating func insert(
        token: some StringProtocol,
        audiences: [String],
        issuer: String? = nil,
        verified: VerifiedToken,
        now: Int64? = nil
    ) {
        if let now, verified.expiresAt <= now { return }
        guard self.maxEntries > 0 else { return }
        let issuer = issuer ?? verified.issuer
        let key = Self.key(token: token, audiences: audiences, issuer: issuer)
        let cost = Self.entryCost(token: token, audiences: audiences, issuer: issuer)
        guard cost <= self.maxBytes else { return }
        if let existing = self.index[key] { self.remove(slot: existing) }
        while self.index.count >= self.maxEntries || self.totalBytes + cost > self.maxBytes, self.tail >= 0 {
            self.remove(slot: self.tail)
            self.evictions += 1
        }
        let node = Node(key: key, value: verified, cost: cost, previous: -1, next: self.head)
        let slot: Int
        if let free = self.freeSlots.popLast() {
            slot = free
            self.nodes[slot] = node
        } else {
            slot = self.nodes.count
            self.nodes.append(node)
        }
        if self.head >= 0 { self.nodes[self.head].previous = slot }
        self.head = slot
        if self.tail < 0 { self.tail = slot }
        self.index[key] = slot
        self.totalBytes += cost
    }

    /// Drops the issuer's entries verified by a key that is not in `set` (compared by key material,
    /// RFC 7638 thumbprint; entries without a thumbprint by `kid`). Call after every key-set swap.
    public mutating func removeAll(keysNotIn set: JWKSet, issuer: String) {
        let thumbprints = Set(set.keys.map(\.thumbprint))
        self.removeAll { entryIssuer, value in
            guard entryIssuer == issuer else { return false }
            if let thumbprint = value.keyThumbprint { return !thumbprints.contains(thumbprint) }
            guard let keyID = value.keyID else { return true }
            return !set.keyIDs.contains(keyID)
        }
    }

    /// Drops entries whose `kid` is not in `keyIDs` (entries verified without a kid included), for
    /// one issuer or, with `issuer: nil`, for all.
    public mutating func removeAll(keyIDsNotIn keyIDs: Set<String>, issuer: String? = nil) {
        self.removeAll { entryIssuer, value in
            if let issuer, entryIssuer != issuer { return false }
            guard let keyID = value.keyID else { return true }
            return !keyIDs.contains(keyID)
        }
    }

    public mutating func removeAll() {
        self.nodes.removeAll()
        self.freeSlots.removeAll()
        self.index.removeAll()
        self.head = -1
        self.tail = -1
        self.totalBytes = 0
    }

    private mutating func removeAll(where shouldRemove: (_ issuer: String, _ value: VerifiedToken) -> Bool) {
        let doomed = self.index.values.filter { shouldRemove(self.nodes[$0].key.issuer, self.nodes[$0].value) }
        for slot in doomed { self.remove(slot: slot) }
    }

    private static func key(token: some StringProtocol, audiences: [String], issuer: String) -> Key {
        var hasher = SHA256()
        // Hashed in place (a token is a slice of the request's header value): no 1 KB copy per request.
        let hashed: Void? = token.utf8.withContiguousStorageIfAvailable { hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }
        if hashed == nil {
            var copy = String(token)
            copy.withUTF8 { hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }
        }
        // A route's audiences are usually one, or already in order: then there is nothing to sort or allocate.
        var isSortedUnique = true
        for index in audiences.indices.dropFirst() where !(audiences[index - 1] < audiences[index]) {
            isSortedUnique = false
            break
        }
        if isSortedUnique {
            return Key(digest: hasher.finalize(), issuer: issuer, audiences: audiences)
        }
        var sorted = audiences.sorted()
        if sorted.count > 1 {
            var unique: [String] = []
            unique.reserveCapacity(sorted.count)
            for audience in sorted where unique.last != audience { unique.append(audience) }
            sorted = unique
        }
        return Key(digest: hasher.finalize(), issuer: issuer, audiences: sorted)
    }

    private mutating func unlink(_ slot: Int) {
        let node = self.nodes[slot]
        if node.previous >= 0 { self.nodes[node.previous].next = node.next } else { self.head = node.next }
        if node.next >= 0 { self.nodes[node.next].previous = node.previous } else { self.tail = node.previous }
    }

    private mutating func moveToFront(_ slot: Int) {
        guard self.head != slot else { return }
        self.unlink(slot)
        self.nodes[slot].previous = -1
        self.nodes[slot].next = self.head
        if self.head >= 0 { self.nodes[self.head].previous = slot }
        self.head = slot
        if self.tail < 0 { self.tail = slot }
    }

    private mutating func remove(slot: Int) {
        self.unlink(slot)
        let node = self.nodes[slot]
        self.index[node.key] = nil
        self.totalBytes -= node.cost
        self.freeSlots.append(slot)
    }
}
