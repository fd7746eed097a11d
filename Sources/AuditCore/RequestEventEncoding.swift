import Crypto

/// The request path's event, sealed without building a JSON tree: members written straight into one buffer
/// in RFC 8785 order (all names are ASCII, so byte order is UTF-16 order), hashed, and the `hash` member
/// spliced in at its place (between `duration_us` and `host`, both always present). Produces exactly the
/// bytes of the generic path (``HTTPRequestRecord/members`` through ``CanonicalJSON``); a test holds the
/// two together.
extension AuditChain {
    mutating func sealRequest(_ record: HTTPRequestRecord, kind: String, time: AuditTime) -> SealedAuditEvent {
        // The writer owns the only reference to its buffer: a second one (a local `out` passed in) made the
        // first append copy it into a fresh, small buffer that then grew by doubling. The buffer is the chain's
        // scratch, swapped in and out (a move, not a copy), so its capacity is kept from event to event.
        var w = CanonicalWriter(capacity: 0)
        swap(&w.out, &self.scratch)
        w.out.removeAll(keepingCapacity: true)
        if w.out.capacity < 1024 { w.out.reserveCapacity(1024) }
        defer { swap(&w.out, &self.scratch) }
        w.begin()
        if record.aborted { w.key("aborted"); w.raw("true") }
        w.key("bytes_in"); w.integer(record.bytesIn)
        w.key("bytes_out"); w.integer(record.bytesOut)
        w.key("client")
        w.begin()
        w.key("address"); w.string(record.clientAddress)
        if let port = record.clientPort { w.key("port"); w.integer(Int64(port)) }
        w.end()
        w.key("decision"); w.string(record.decision.rawValue)
        w.key("duration_us"); w.integer(record.durationMicros)
        let hashPosition = w.out.count
        w.key("host"); w.string(record.host)
        if let identity = record.identity {
            w.key("identity")
            w.begin()
            if let v = identity.clientCertificateSubject { w.key("client_cert_subject"); w.string(v) }
            if let v = identity.email { w.key("email"); w.string(v) }
            if !identity.groups.isEmpty {
                w.key("groups")
                w.out.append(UInt8(ascii: "["))
                for (index, group) in identity.groups.enumerated() {
                    if index > 0 { w.out.append(UInt8(ascii: ",")) }
                    CanonicalJSON.writeString(group, to: &w.out)
                }
                w.out.append(UInt8(ascii: "]"))
            }
            if let v = identity.issuer { w.key("issuer"); w.string(v) }
            if let v = identity.spiffeID { w.key("spiffe_id"); w.string(v) }
            if let v = identity.subject { w.key("subject"); w.string(v) }
            w.end()
        }
        w.key("instance"); w.string(self.instance)
        w.key("kind"); w.string(kind)
        w.key("listener"); w.string(record.listener)
        w.key("method"); w.string(record.method)
        w.key("path"); w.string(record.path)
        w.key("prev_hash"); w.string(self.head)
        if let query = record.query { w.key("query"); w.string(query) }
        w.key("reason"); w.string(record.reason)
        w.key("request_id"); w.string(record.requestID)
        if let route = record.route { w.key("route"); w.string(route) }
        if let rule = record.rule { w.key("rule"); w.integer(Int64(rule)) }
        w.key("schema"); w.integer(auditSchemaVersion)
        w.key("seq"); w.integer(Int64(self.nextSeq))
        w.key("status"); w.integer(Int64(record.status))
        if record.suppressedBefore > 0 { w.key("suppressed_before"); w.integer(Int64(record.suppressedBefore)) }
        w.key("time")
        w.out.append(UInt8(ascii: "\""))
        time.writeRFC3339(to: &w.out)
        w.out.append(UInt8(ascii: "\""))
        if record.tlsVersion != nil || record.sni != nil {
            w.key("tls")
            w.begin()
            if let sni = record.sni { w.key("sni"); w.string(sni) }
            if let version = record.tlsVersion { w.key("version"); w.string(version) }
            w.end()
        }
        if let ttfb = record.timeToFirstByteMicros { w.key("ttfb_us"); w.integer(ttfb) }
        if let upstream = record.upstream { w.key("upstream"); w.string(upstream) }
        if let userAgent = record.userAgent { w.key("user_agent"); w.string(userAgent) }
        w.end()

        // hash over the event without `hash`, then the line with it, at its sorted place.
        let hash = self.key.map { Hex.encode(digest: HMAC<SHA256>.authenticationCode(for: w.out, using: $0)) }
            ?? Hex.encode(digest: SHA256.hash(data: w.out))
        var line = [UInt8]()
        line.reserveCapacity(w.out.count + 74)
        line.append(contentsOf: w.out[0..<hashPosition])
        // At hashPosition the next member's comma follows: the hash member brings its own leading one.
        line.append(contentsOf: ",\"hash\":\"".utf8)
        line.append(contentsOf: hash.utf8)
        line.append(UInt8(ascii: "\""))
        line.append(contentsOf: w.out[hashPosition...])
        let sealed = SealedAuditEvent(seq: self.nextSeq, hash: hash, kind: kind, time: time, line: line)
        self.nextSeq += 1
        self.head = hash
        return sealed
    }
}

/// Writes one canonical JSON object member by member; the caller gives members in sorted order.
struct CanonicalWriter {
    var out: [UInt8]
    private var first = true

    init(capacity: Int) {
        self.out = []
        self.out.reserveCapacity(capacity)
    }

    mutating func begin() {
        self.out.append(UInt8(ascii: "{"))
        self.first = true
    }

    mutating func end() {
        self.out.append(UInt8(ascii: "}"))
        self.first = false
    }

    /// A member name (ASCII, needing no escapes) and its colon.
    mutating func key(_ name: StaticString) {
        if !self.first { self.out.append(UInt8(ascii: ",")) }
        self.first = false
        self.out.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { self.out.append(contentsOf: $0) }
        self.out.append(UInt8(ascii: "\""))
        self.out.append(UInt8(ascii: ":"))
    }

    mutating func string(_ value: String) {
        CanonicalJSON.writeString(value, to: &self.out)
    }

    mutating func integer(_ value: Int64) {
        CanonicalJSON.writeInteger(value, to: &self.out)
    }

    mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { self.out.append(contentsOf: $0) }
    }
}
