package import AuditCore
package import ProxyConfig
import ProxyModel

/// How a batch goes on the wire for each collector, and what the collector's answer means. Pure: no I/O,
/// no clock (the caller passes `now`), so every byte is unit-tested.
package struct HTTPAuditWireFormat: Sendable {
    package let format: AuditHTTPSinkConfig.Format
    package let instance: String
    /// Elasticsearch `_index` (default `portcullis-audit`) or Splunk `index` (omitted when nil).
    package let index: String?
    package let sourceType: String
    /// Loki labels set by configuration; they win over the defaults (`job`, `instance`).
    package let labels: [String: String]

    package static let defaultElasticsearchIndex = "portcullis-audit"
    package static let defaultSourceType = "portcullis:audit"

    package init(config: AuditHTTPSinkConfig, instance: String) {
        self.format = config.format
        self.instance = instance
        self.index = config.index
        self.sourceType = config.sourceType ?? Self.defaultSourceType
        self.labels = config.labels
    }

    package var contentType: String {
        switch self.format {
        case .ndjson, .elasticsearch: return "application/x-ndjson"
        case .splunkHEC, .loki: return "application/json"
        }
    }

    /// The Authorization scheme when the config names none.
    package static func defaultAuthScheme(_ format: AuditHTTPSinkConfig.Format) -> String {
        switch format {
        case .splunkHEC: return "Splunk"
        case .elasticsearch: return "ApiKey"
        case .ndjson, .loki: return "Bearer"
        }
    }

    /// About how many bytes the envelope adds to each event's line (for `batch.max_bytes`).
    package var overheadPerEvent: Int {
        switch self.format {
        case .ndjson: return 1
        case .splunkHEC:
            return 100 + self.instance.utf8.count + self.sourceType.utf8.count + (self.index?.utf8.count ?? 0)
        case .loki: return 32
        case .elasticsearch: return 110 + (self.index ?? Self.defaultElasticsearchIndex).utf8.count
        }
    }

    // MARK: - Request bodies

    package func body(_ events: some Collection<SealedAuditEvent>) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(events.reduce(0) { $0 + $1.line.count + self.overheadPerEvent } + 64)
        switch self.format {
        case .ndjson:
            for event in events {
                out.append(contentsOf: event.line)
                out.append(UInt8(ascii: "\n"))
            }
        case .splunkHEC:
            // HEC's event endpoint takes JSON objects one after the other ("batched events").
            for event in events {
                Self.append("{\"time\":", to: &out)
                Self.append(Self.epochSeconds(event.time), to: &out)
                Self.append(",\"host\":", to: &out)
                CanonicalJSON.writeString(self.instance, to: &out)
                Self.append(",\"source\":\"portcullis\",\"sourcetype\":", to: &out)
                CanonicalJSON.writeString(self.sourceType, to: &out)
                if let index = self.index {
                    Self.append(",\"index\":", to: &out)
                    CanonicalJSON.writeString(index, to: &out)
                }
                Self.append(",\"event\":", to: &out)
                out.append(contentsOf: event.line)
                out.append(UInt8(ascii: "}"))
            }
        case .loki:
            // One stream (this instance), entries in chain order.
            Self.append("{\"streams\":[{\"stream\":", to: &out)
            CanonicalJSON.write(.object(self.streamLabels.mapValues(JSONValue.string)), to: &out)
            Self.append(",\"values\":[", to: &out)
            for (entryIndex, event) in events.enumerated() {
                if entryIndex > 0 { out.append(UInt8(ascii: ",")) }
                Self.append("[\"", to: &out)
                Self.append(Self.epochNanoseconds(event.time), to: &out)
                Self.append("\",", to: &out)
                CanonicalJSON.writeString(String(decoding: event.line, as: UTF8.self), to: &out)
                out.append(UInt8(ascii: "]"))
            }
            Self.append("]}]}", to: &out)
        case .elasticsearch:
            let index = self.index ?? Self.defaultElasticsearchIndex
            for event in events {
                Self.append("{\"create\":{\"_index\":", to: &out)
                CanonicalJSON.writeString(index, to: &out)
                Self.append(",\"_id\":", to: &out)
                CanonicalJSON.writeString(event.hash, to: &out)
                Self.append("}}\n", to: &out)
                out.append(contentsOf: event.line)
                out.append(UInt8(ascii: "\n"))
            }
        }
        return out
    }

    /// Loki stream labels: `job` and `instance`, then the configured ones (which win). Few and fixed, as
    /// Loki wants: never `seq` or `hash` (a stream per event would ruin its index); `kind` and the rest
    /// are in the line, for `| json`.
    package var streamLabels: [String: String] {
        var labels = ["job": "portcullis", "instance": self.instance]
        for (name, value) in self.labels { labels[name] = value }
        return labels
    }

    /// `1767225600.123456`: what Splunk's `time` takes (seconds, with the microseconds as decimals).
    package static func epochSeconds(_ time: AuditTime) -> String {
        let micros = time.microseconds
        let seconds = micros >= 0 ? micros / 1_000_000 : -((-micros + 999_999) / 1_000_000)
        let fraction = micros - seconds * 1_000_000
        let digits = String(fraction)
        return "\(seconds)." + String(repeating: "0", count: 6 - digits.count) + digits
    }

    /// Loki's timestamps: nanoseconds since the epoch, as a decimal string.
    package static func epochNanoseconds(_ time: AuditTime) -> String {
        String(time.microseconds * 1000)
    }

    private static func append(_ text: String, to out: inout [UInt8]) {
        out.append(contentsOf: text.utf8)
    }

    // MARK: - Answers

    /// What the collector's answer means for the batch that was sent (`eventCount` events).
    package func outcome(
        status: Int,
        retryAfter: String?,
        body: [UInt8],
        eventCount: Int,
        nowSeconds: Int64
    ) -> HTTPAuditOutcome {
        switch status {
        case 200..<300:
            return self.successOutcome(status: status, body: body, eventCount: eventCount)
        case 408, 429, 500..<600:
            let wait: Duration?
            if status == 429 || status == 503, let retryAfter {
                wait = HTTPAuditBackoff.retryAfter(retryAfter, nowSeconds: nowSeconds)
            } else {
                wait = nil
            }
            return .retry(reason: "HTTP \(status)" + Self.detailSuffix(body), retryAfter: wait)
        default:
            // Other 4xx (bad request, bad token, too large...), and redirects (not followed): sending the
            // same bytes again gets the same answer.
            return .rejected(status: status, detail: Self.detail(body))
        }
    }

    private func successOutcome(status: Int, body: [UInt8], eventCount: Int) -> HTTPAuditOutcome {
        switch self.format {
        case .ndjson, .loki:
            return .delivered
        case .splunkHEC:
            // {"text":"Success","code":0}; a 2xx with another code is not a success.
            if case .success(.object(let object)) = StrictJSON.parse(body, maxBytes: max(body.count, 1)),
                let code = object["code"]?.int64Value, code != 0
            {
                return .rejected(status: status, detail: Self.detail(body))
            }
            return .delivered
        case .elasticsearch:
            return Self.bulkOutcome(body: body, eventCount: eventCount)
        }
    }

    /// `_bulk` answers 200 even when items failed: `errors` says whether any did, `items` (in request
    /// order) carries each one's status. 201 is created, 409 already exists (a replay: delivered before).
    static func bulkOutcome(body: [UInt8], eventCount: Int) -> HTTPAuditOutcome {
        guard case .success(.object(let object)) = StrictJSON.parse(body, maxDepth: 128, maxBytes: max(body.count, 1))
        else {
            return .retry(reason: "unreadable _bulk response" + Self.detailSuffix(body), retryAfter: nil)
        }
        if object["errors"] == .bool(false) { return .delivered }
        guard let items = object["items"]?.arrayValue, items.count == eventCount else {
            return .retry(reason: "_bulk response without one item per event", retryAfter: nil)
        }
        var retry: [Int] = []
        var rejected: [Int] = []
        var retryError: String?
        var rejectedError: String?
        for (position, item) in items.enumerated() {
            guard let result = item.objectValue?.values.first?.objectValue, let status = result["status"]?.int64Value
            else {
                retry.append(position)
                continue
            }
            let error = result["error"]?.objectValue
            let description = {
                "item status \(status) \(error?["type"]?.stringValue ?? "") \(error?["reason"]?.stringValue ?? "")"
            }
            switch status {
            case 200..<300, 409:
                continue
            case 408, 429, 500..<600:
                retry.append(position)
                if retryError == nil { retryError = description() }
            default:
                rejected.append(position)
                if rejectedError == nil { rejectedError = description() }
            }
        }
        if retry.isEmpty && rejected.isEmpty { return .delivered }
        return .partial(retry: retry, rejected: rejected, detail: Self.truncate(rejectedError ?? retryError ?? ""))
    }

    /// The collector's answer for the log: printable ASCII, at most 512 bytes.
    static func detail(_ body: [UInt8]) -> String {
        var text = [UInt8]()
        for byte in body.prefix(512) {
            text.append((0x20...0x7E).contains(byte) ? byte : UInt8(ascii: "?"))
        }
        return String(decoding: text, as: UTF8.self) + (body.count > 512 ? "..." : "")
    }

    static func detailSuffix(_ body: [UInt8]) -> String {
        body.isEmpty ? "" : ": " + Self.detail(body)
    }

    static func truncate(_ text: String) -> String {
        text.utf8.count <= 512 ? text : String(decoding: text.utf8.prefix(512), as: UTF8.self) + "..."
    }
}

/// What a collector's answer means for the batch.
package enum HTTPAuditOutcome: Sendable, Equatable {
    case delivered
    /// Send again after a backoff (network error, timeout, 408, 429, 5xx), no sooner than `retryAfter`.
    case retry(reason: String, retryAfter: Duration?)
    /// The collector refused the batch and would refuse it again (4xx other than 408 and 429).
    case rejected(status: Int, detail: String)
    /// Elasticsearch `_bulk` took some items: positions (in the batch sent) to send again, and to set aside;
    /// `detail` is the first refused item's error (else the first one to retry).
    case partial(retry: [Int], rejected: [Int], detail: String)
}

/// Exponential backoff with full jitter (a uniform delay between zero and the exponential cap), and the
/// `Retry-After` header.
package struct HTTPAuditBackoff: Sendable {
    package var initial: Duration
    package var maximum: Duration

    /// The longest a `Retry-After` is followed (a collector asking for more is asked again then).
    package static let longestRetryAfter: Duration = .seconds(300)

    package init(initial: Duration, maximum: Duration) {
        self.initial = initial
        self.maximum = max(maximum, initial)
    }

    /// The cap for the delay after failed attempt `attempt` (0 for the first): initial * 2^attempt, at most
    /// `maximum`.
    package func cap(attempt: Int) -> Duration {
        let factor = Double(1 << min(max(attempt, 0), 40))
        let seconds = min(Self.seconds(self.initial) * factor, Self.seconds(self.maximum))
        return .nanoseconds(Int64(seconds * 1e9))
    }

    /// The delay after failed attempt `attempt`: `jitter` (uniform in 0...1) times the cap, and never
    /// sooner than the collector's `Retry-After`.
    package func delay(attempt: Int, jitter: Double, retryAfter: Duration? = nil) -> Duration {
        let fraction = min(max(jitter, 0), 1)
        let jittered = Duration.nanoseconds(Int64(Self.seconds(self.cap(attempt: attempt)) * fraction * 1e9))
        guard let retryAfter else { return jittered }
        return max(jittered, min(retryAfter, max(Self.longestRetryAfter, self.maximum)))
    }

    /// `Retry-After` (RFC 9110 10.2.3): delay-seconds, or an HTTP-date in any of its three forms.
    package static func retryAfter(_ value: String, nowSeconds: Int64) -> Duration? {
        let text = Self.trimmingSpaces(value)
        if !text.isEmpty, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }) {
            guard let seconds = Int64(text.prefix(12)) else { return nil }
            return .seconds(seconds)
        }
        guard let date = self.httpDate(String(text)) else { return nil }
        return .seconds(max(0, date - nowSeconds))
    }

    /// Seconds since the epoch of an HTTP-date: IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, the obsolete
    /// RFC 850 form `Sunday, 06-Nov-94 08:49:37 GMT` and asctime `Sun Nov  6 08:49:37 1994`.
    package static func httpDate(_ text: String) -> Int64? {
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
        var day: Int?
        var month: Int?
        var year: Int?
        var clock: String?
        if fields.count == 6, fields[5] == "GMT" {
            // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
            day = fields[1].count == 2 ? Int(fields[1]) : nil
            month = months.firstIndex(of: fields[2]).map { $0 + 1 }
            year = fields[3].count == 4 ? Int(fields[3]) : nil
            clock = fields[4]
        } else if fields.count == 4, fields[3] == "GMT" {
            // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
            let parts = fields[1].split(separator: "-").map(String.init)
            guard parts.count == 3, parts[2].count == 2, let shortYear = Int(parts[2]) else { return nil }
            day = Int(parts[0])
            month = months.firstIndex(of: parts[1]).map { $0 + 1 }
            // RFC 9110 5.6.7: a two-digit year more than 50 years in the future is in the past century.
            year = shortYear < 70 ? 2000 + shortYear : 1900 + shortYear
            clock = fields[2]
        } else if fields.count == 5 {
            // asctime: Sun Nov  6 08:49:37 1994
            month = months.firstIndex(of: fields[1]).map { $0 + 1 }
            day = Int(fields[2])
            clock = fields[3]
            year = fields[4].count == 4 ? Int(fields[4]) : nil
        }
        guard let day, let month, let year, let clock, (1...31).contains(day), clock.utf8.count == 8 else { return nil }
        func pad(_ value: Int, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        let rfc3339 = "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(clock)Z"
        return AuditTime(rfc3339: rfc3339)?.seconds
    }

    private static func trimmingSpaces(_ value: String) -> Substring {
        var text = value[...]
        while let first = text.first, first == " " || first == "\t" { text = text.dropFirst() }
        while let last = text.last, last == " " || last == "\t" { text = text.dropLast() }
        return text
    }

    static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) * 1e-18
    }
}
