import AsyncHTTPClient
public import AuditCore
import CompressNIO
import Foundation
public import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
public import ProxyConfig
import ProxyModel

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `{type: http}`: ships sealed events to a collector in batched POSTs (gzip'ed by default), in the wire
/// format of plain NDJSON, Splunk HEC, Grafana Loki or Elasticsearch/OpenSearch `_bulk`.
///
/// Delivery is at least once: a batch is sent until the collector takes it, and every event carries its
/// hash as a stable id (Elasticsearch `_id`; in the line for the others) so that a collector can drop
/// repeats. Batches go out one at a time, oldest first.
///
/// - `write` (the audit writer thread) appends to a backlog in memory and cuts it into batches of
///   `batch.max_events` / `batch.max_bytes`; `tick` cuts a partial batch once it is `flush_interval` old.
///   The backlog holds at most `batch.max_events * 4` events. Beyond that, and while the collector
///   fails, batches go to the spool directory (when configured) up to `spool.max_size`. When neither has
///   room, `write` blocks until the shipper makes room or `close` is called: an accepted event is
///   never dropped.
/// - A task owned by the sink sends the oldest batch (spooled batches of an earlier run first), with
///   exponential backoff and full jitter between attempts, no sooner than a 429/503's `Retry-After`.
/// - A batch the collector refuses for good (4xx other than 408 and 429) moves to `rejected/` in the
///   spool directory with an error in the log (status and the collector's answer); without a spool it
///   is retried at the longest backoff.
/// - `close` delivers what it can within its deadline and spools the rest.
///
/// The token is read once, at start, and never logged.
public final class HTTPAuditSink: AuditSink, @unchecked Sendable {
    // @unchecked: `state` is only touched with `condition` locked; every other stored property is a let
    // of a Sendable type.

    public let name: String
    private let config: AuditHTTPSinkConfig
    private let wire: HTTPAuditWireFormat
    private let backoff: HTTPAuditBackoff
    /// `<scheme> <token>`; only ever put in the request's header.
    private let authorization: String?
    /// To blank the token out of a collector's answer before it is logged.
    private let token: String?
    private let spool: AuditSpool?
    private let client: HTTPClient
    private let logger: Logger
    private let jitter: @Sendable () -> Double
    private let memoryLimit: Int
    private let batchMaxEvents: Int
    private let requestTimeout: TimeAmount

    private let condition = NSCondition()
    private var state: State

    /// A run of consecutive events, sent as one request.
    private struct Batch {
        /// Its order (and spool file name); numbers only grow, across restarts too.
        let number: UInt64
        /// Events (0 for a batch found on disk at start, until read).
        let count: Int
        /// The events while in memory; nil once they are only in the spool file.
        var events: [SealedAuditEvent]?
        /// Size of its spool file, once written.
        var spooled: Int64?
        var spooling = false
        var inFlight = false
    }

    private struct State {
        var pending: [SealedAuditEvent] = []
        var pendingBytes = 0
        var pendingSince: ContinuousClock.Instant?
        /// Oldest first; the shipper works on `batches[0]`.
        var batches: [Batch] = []
        /// Events held only in memory: `pending` plus the batches without a spool file.
        var memoryEvents = 0
        /// Bytes in the spool directory, `rejected/` included.
        var spoolBytes: Int64 = 0
        var nextNumber: UInt64 = 0
        /// false from a failed attempt to the next success: new batches go to the spool meanwhile.
        var healthy = true
        var spoolFullReported = false
        var spoolErrorReported = false
        var writing = false
        var closing = false
        var stopping = false
        var shipperFinished = false
        var waiter: CheckedContinuation<Void, Never>?
        var shipper: Task<Void, Never>?
        var deliveredEvents: UInt64 = 0
    }

    private struct Job: Sendable {
        let number: UInt64
        let events: [SealedAuditEvent]?
    }

    /// Resolves the token (a clear error when its file or variable is missing), opens the spool directory
    /// and starts shipping, spooled batches of an earlier run first.
    public convenience init(config: AuditHTTPSinkConfig, instance: String, logger: Logger) throws {
        try self.init(config: config, instance: instance, logger: logger, jitter: { Double.random(in: 0...1) })
    }

    /// `jitter` returns the fraction (0...1) of the backoff cap to wait; tests pass a fixed sequence.
    package init(
        config: AuditHTTPSinkConfig,
        instance: String,
        logger: Logger,
        jitter: @escaping @Sendable () -> Double
    ) throws {
        guard let url = URL(string: config.url), let scheme = url.scheme?.lowercased(),
            scheme == "http" || scheme == "https", let host = url.host, !host.isEmpty
        else {
            throw HTTPAuditSinkError(.invalidURL, "audit http sink: url must be http:// or https:// with a host")
        }
        let name = "http " + Self.withoutUserInfo(config.url)
        self.name = name
        self.config = config
        self.wire = HTTPAuditWireFormat(config: config, instance: instance)
        self.backoff = HTTPAuditBackoff(initial: config.retryInitialBackoff, maximum: config.retryMaxBackoff)
        self.jitter = jitter
        self.batchMaxEvents = max(1, config.batchMaxEvents)
        self.memoryLimit = max(1, config.batchMaxEvents) * 4
        let requestTimeout = TimeAmount.nanoseconds(Int64(HTTPAuditBackoff.seconds(config.timeout) * 1e9))
        self.requestTimeout = requestTimeout

        let token = try config.token.map(Self.resolveToken)
        self.token = token
        self.authorization = token.map {
            (config.authScheme ?? HTTPAuditWireFormat.defaultAuthScheme(config.format)) + " " + $0
        }

        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        if let caFile = config.caFile {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            } catch {
                throw HTTPAuditSinkError(.caFile, "audit http sink: ca_file \(caFile): \(error)")
            }
        }

        var logger = logger
        logger[metadataKey: "proxy_sink"] = "\(name)"
        self.logger = logger

        let spool = try config.spoolDirectory.map { directory throws(HTTPAuditSinkError) in
            try AuditSpool(directory: directory)
        }
        self.spool = spool
        let inventory = try spool?.scan() ?? AuditSpool.Inventory()
        var initial = State()
        initial.nextNumber = inventory.nextNumber
        initial.batches = inventory.files.map { Batch(number: $0.number, count: 0, events: nil, spooled: $0.bytes) }
        initial.spoolBytes = inventory.files.reduce(0) { $0 + $1.bytes } + inventory.rejectedBytes
        self.state = initial

        var configuration = HTTPClient.Configuration(
            tlsConfiguration: tls,
            redirectConfiguration: .disallow,
            timeout: HTTPClient.Configuration.Timeout(connect: requestTimeout, read: requestTimeout)
        )
        // The shipper retries with its own backoff (and spools meanwhile): a refused connection must fail the
        // attempt at once, not be retried inside the client until the request's deadline.
        configuration.connectionPool.retryConnectionEstablishment = false
        self.client = HTTPClient(
            eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
            configuration: configuration,
            backgroundActivityLogger: logger
        )

        for note in inventory.notes {
            logger.warning("audit spool repaired", metadata: ["proxy_detail": "\(note)"])
        }
        if !inventory.files.isEmpty, let spool {
            logger.info(
                "audit spool: sending batches left by an earlier run first",
                metadata: [
                    "proxy_batches": "\(inventory.files.count)",
                    "proxy_bytes": "\(inventory.files.reduce(0) { $0 + $1.bytes })",
                    "proxy_path": "\(spool.directory)",
                ]
            )
        }
        if inventory.rejectedFiles > 0, let spool {
            logger.warning(
                "audit spool: refused batches stay in rejected/; move one into the spool directory to resend it",
                metadata: ["proxy_files": "\(inventory.rejectedFiles)", "proxy_path": "\(spool.rejectedDirectory)"]
            )
        }
        self.state.shipper = Task { await self.runShipper() }
    }

    // MARK: - Writer thread

    public func write(_ batch: [SealedAuditEvent]) throws {
        guard !batch.isEmpty else { return }
        self.condition.lock()
        defer { self.condition.unlock() }
        guard !self.state.closing else { throw HTTPAuditSinkError(.closed, "\(self.name) is closed") }
        self.state.writing = true
        defer {
            self.state.writing = false
            self.condition.broadcast()
        }
        var next = batch.startIndex
        while next < batch.endIndex {
            if self.state.closing {
                // close() from another thread while we waited for room: keep everything, close() spools it.
                self.appendPendingLocked(batch[next...])
                break
            }
            let room = self.memoryLimit - self.state.memoryEvents
            if room > 0 {
                let end = min(batch.endIndex, next + room)
                self.appendPendingLocked(batch[next..<end])
                next = end
                if self.cutLocked(all: false) { self.wakeShipperLocked() }
                continue
            }
            if self.spillLocked(includeInFlight: !self.state.healthy, force: false) { continue }
            // No room in memory nor in the spool: hold the writer back until the shipper makes some.
            self.wakeShipperLocked()
            _ = self.condition.wait(until: Date(timeIntervalSinceNow: 0.5))
        }
        if self.spool != nil, !self.state.healthy || self.state.memoryEvents >= self.memoryLimit {
            _ = self.spillLocked(includeInFlight: !self.state.healthy, force: false)
        }
    }

    public func tick(now: AuditTime) throws {
        self.condition.lock()
        defer { self.condition.unlock() }
        guard !self.state.closing else { return }
        if let since = self.state.pendingSince, ContinuousClock.now - since >= self.config.flushInterval {
            if self.cutLocked(all: true) { self.wakeShipperLocked() }
        }
        if self.spool != nil, !self.state.healthy {
            _ = self.spillLocked(includeInFlight: true, force: false)
        }
    }

    public func close(deadline: Double) {
        let end = Date(timeIntervalSinceNow: max(0, deadline))
        self.condition.lock()
        guard !self.state.closing else {
            self.condition.unlock()
            return
        }
        self.state.closing = true
        self.condition.broadcast()
        while self.state.writing {
            _ = self.condition.wait(until: Date(timeIntervalSinceNow: 0.1))
        }
        if self.cutLocked(all: true) { self.wakeShipperLocked() }
        while !self.state.batches.isEmpty {
            if !self.condition.wait(until: end) { break }
        }
        self.state.stopping = true
        self.wakeShipperLocked()
        let shipper = self.state.shipper
        self.condition.unlock()

        shipper?.cancel()

        self.condition.lock()
        let stopBy = Date(timeIntervalSinceNow: 5)
        while !self.state.shipperFinished {
            if !self.condition.wait(until: stopBy) { break }
        }
        _ = self.spillLocked(includeInFlight: true, force: true)
        let lost = self.state.memoryEvents
        let spooledBatches = self.state.batches.count { $0.spooled != nil }
        let delivered = self.state.deliveredEvents
        self.condition.unlock()

        if lost > 0 {
            self.logger.error(
                "audit events not delivered and not spooled at shutdown: lost",
                metadata: ["proxy_events": "\(lost)", "proxy_spool": "\(self.spool?.directory ?? "none")"]
            )
        } else if spooledBatches > 0 {
            self.logger.info(
                "audit batches left in the spool for the next start",
                metadata: ["proxy_batches": "\(spooledBatches)", "proxy_delivered": "\(delivered)"]
            )
        }
        do {
            try self.client.syncShutdown()
        } catch {
            self.logger.debug("http client shutdown", metadata: ["proxy_error": "\(error)"])
        }
    }

    // MARK: - Backlog (condition locked)

    private func appendPendingLocked(_ events: ArraySlice<SealedAuditEvent>) {
        if self.state.pending.isEmpty { self.state.pendingSince = .now }
        for event in events {
            self.state.pending.append(event)
            self.state.pendingBytes += event.line.count + self.wire.overheadPerEvent
        }
        self.state.memoryEvents += events.count
    }

    /// Cuts full batches off the backlog (and the partial rest when `all`); true when it cut one.
    private func cutLocked(all: Bool) -> Bool {
        var cut = false
        while !self.state.pending.isEmpty {
            var count = 0
            var bytes = 0
            while count < self.state.pending.count, count < self.batchMaxEvents {
                let size = self.state.pending[count].line.count + self.wire.overheadPerEvent
                if count > 0, bytes + size > self.config.batchMaxBytes { break }
                bytes += size
                count += 1
            }
            guard count < self.state.pending.count || count == self.batchMaxEvents || all else { break }
            let events = Array(self.state.pending.prefix(count))
            self.state.pending.removeFirst(count)
            self.state.pendingBytes -= bytes
            self.state.batches.append(Batch(number: self.state.nextNumber, count: count, events: events))
            self.state.nextNumber += 1
            cut = true
        }
        if cut { self.state.pendingSince = self.state.pending.isEmpty ? nil : .now }
        return cut
    }

    /// Writes batches held in memory to the spool, oldest first, while it has room (`force`: regardless).
    /// Unlocks around the file writes. True when it spooled at least one.
    private func spillLocked(includeInFlight: Bool, force: Bool) -> Bool {
        guard let spool = self.spool else { return false }
        var progress = false
        while let index = self.state.batches.firstIndex(where: {
            $0.events != nil && $0.spooled == nil && !$0.spooling && (includeInFlight || !$0.inFlight)
        }) {
            let number = self.state.batches[index].number
            let events = self.state.batches[index].events ?? []
            let bytes = AuditSpool.size(of: events)
            if !force, self.state.spoolBytes > 0, self.state.spoolBytes + bytes > self.config.spoolMaxBytes {
                if !self.state.spoolFullReported {
                    self.state.spoolFullReported = true
                    self.logger.warning(
                        "audit spool full: holding back the audit writer until the collector takes batches",
                        metadata: [
                            "proxy_bytes": "\(self.state.spoolBytes)",
                            "proxy_max_bytes": "\(self.config.spoolMaxBytes)",
                        ]
                    )
                }
                break
            }
            self.state.spoolBytes += bytes
            self.state.batches[index].spooling = true
            self.condition.unlock()
            var failure: HTTPAuditSinkError?
            do {
                try spool.write(events, number: number)
            } catch {
                failure = error
            }
            self.condition.lock()
            let current = self.state.batches.firstIndex { $0.number == number }
            if let failure {
                self.state.spoolBytes -= bytes
                if let current { self.state.batches[current].spooling = false }
                if !self.state.spoolErrorReported {
                    self.state.spoolErrorReported = true
                    self.logger.error(
                        "cannot write to the audit spool; holding the batches in memory",
                        metadata: ["proxy_error": "\(failure)"]
                    )
                }
                break
            }
            self.state.spoolErrorReported = false
            if let current {
                self.state.batches[current].spooling = false
                self.state.batches[current].spooled = bytes
                self.state.batches[current].events = nil
                self.state.memoryEvents -= self.state.batches[current].count
                progress = true
                self.condition.broadcast()
            } else {
                // Delivered while we wrote it.
                spool.remove(number)
                self.state.spoolBytes -= bytes
            }
        }
        return progress
    }

    private func wakeShipperLocked() {
        if let waiter = self.state.waiter {
            self.state.waiter = nil
            waiter.resume()
        }
    }

    private func locked<T>(_ body: () -> T) -> T {
        self.condition.lock()
        defer { self.condition.unlock() }
        return body()
    }

    // MARK: - Shipper

    private func runShipper() async {
        while let job = await self.nextJob() {
            await self.deliver(job)
        }
        self.locked {
            self.state.shipperFinished = true
            self.condition.broadcast()
        }
    }

    /// The oldest batch, or nil once `close` says stop.
    private func nextJob() async -> Job? {
        while true {
            let job: Job?? = self.locked {
                if self.state.stopping { return .some(nil) }
                guard !self.state.batches.isEmpty else { return nil }
                self.state.batches[0].inFlight = true
                return Job(number: self.state.batches[0].number, events: self.state.batches[0].events)
            }
            if let job { return job }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                self.condition.lock()
                if self.state.batches.isEmpty, !self.state.stopping {
                    self.state.waiter = continuation
                    self.condition.unlock()
                } else {
                    self.condition.unlock()
                    continuation.resume()
                }
            }
        }
    }

    private func deliver(_ job: Job) async {
        var events: [SealedAuditEvent]
        if let inMemory = job.events {
            events = inMemory
        } else if let spool = self.spool {
            do {
                events = try await NIOThreadPool.singleton.runIfActive { try spool.read(job.number) }
            } catch let error as HTTPAuditSinkError {
                let target = spool.setAside(job.number)
                self.logger.error(
                    "unreadable audit spool file set aside, not sent",
                    metadata: ["proxy_error": "\(error)", "proxy_path": "\(target)"]
                )
                self.finish(job.number, delivered: 0, fileGone: true)
                return
            } catch {
                return  // stopping
            }
        } else {
            self.finish(job.number, delivered: 0, fileGone: true)
            return
        }
        let batchEvents = events.count
        if events.isEmpty {
            self.finish(job.number, delivered: 0, fileGone: false)
            return
        }
        var attempt = 0
        var part = 0
        while !self.locked({ self.state.stopping }) {
            let delay: Duration
            switch await self.post(events) {
            case .delivered:
                self.finish(job.number, delivered: batchEvents, fileGone: false)
                return

            case .retry(let reason, let retryAfter):
                self.markUnhealthy(reason: reason)
                delay = self.backoff.delay(attempt: attempt, jitter: self.jitter(), retryAfter: retryAfter)
                attempt += 1

            case .rejected(let status, let detail):
                if await self.keepRejected(events, name: Self.baseName(job.number), status: status, detail: detail) {
                    self.finish(job.number, delivered: 0, fileGone: false)
                    return
                }
                delay = self.backoff.maximum

            case .partial(let retry, let rejected, let detail):
                var keep = retry
                var refusedKept = true
                if !rejected.isEmpty {
                    part += 1
                    let refused = rejected.map { events[$0] }
                    let name = Self.baseName(job.number) + "-part" + String(part)
                    refusedKept = await self.keepRejected(refused, name: name, status: 200, detail: detail)
                    if !refusedKept { keep += rejected }
                }
                if !retry.isEmpty { self.markUnhealthy(reason: "_bulk items to retry: \(detail)") }
                events = keep.sorted().map { events[$0] }
                if events.isEmpty {
                    self.finish(job.number, delivered: batchEvents, fileGone: false)
                    return
                }
                delay =
                    refusedKept
                    ? self.backoff.delay(attempt: attempt, jitter: self.jitter()) : self.backoff.maximum
                attempt += 1
            }
            self.logger.debug(
                "audit batch: next attempt",
                metadata: [
                    "proxy_batch": "\(job.number)", "proxy_attempt": "\(attempt)",
                    "proxy_delay_ms": "\(Int(HTTPAuditBackoff.seconds(delay) * 1000))",
                ]
            )
            do {
                try await Task.sleep(for: delay)
            } catch {
                return  // stopping
            }
        }
    }

    /// One POST of `events`; never throws: errors are outcomes.
    private func post(_ events: [SealedAuditEvent]) async -> HTTPAuditOutcome {
        var request = HTTPClientRequest(url: self.config.url)
        request.method = .POST
        request.headers.add(name: "User-Agent", value: "portcullis")
        request.headers.add(name: "Content-Type", value: self.wire.contentType)
        if let authorization = self.authorization {
            request.headers.add(name: "Authorization", value: authorization)
        }
        var body = ByteBuffer(bytes: self.wire.body(events))
        if self.config.gzip {
            do {
                body = try body.compress(with: ZlibAlgorithm.gzip)
                request.headers.add(name: "Content-Encoding", value: "gzip")
            } catch {
                self.logger.warning("gzip failed; sending uncompressed", metadata: ["proxy_error": "\(error)"])
                body = ByteBuffer(bytes: self.wire.body(events))
            }
        }
        request.body = .bytes(body)
        do {
            let response = try await self.client.execute(request, timeout: self.requestTimeout, logger: self.logger)
            // Enough for a _bulk answer (one item per event); error answers are only logged, truncated.
            let limit = self.config.format == .elasticsearch ? 64 * 1024 * 1024 : 64 * 1024
            var answer = [UInt8]()
            for try await chunk in response.body where answer.count < limit {
                answer.append(contentsOf: chunk.readableBytesView.prefix(limit - answer.count))
            }
            return self.wire.outcome(
                status: Int(response.status.code),
                retryAfter: response.headers.first(name: "Retry-After"),
                body: answer,
                eventCount: events.count,
                nowSeconds: Int64(Date().timeIntervalSince1970)
            )
        } catch {
            return .retry(reason: "\(error)", retryAfter: nil)
        }
    }

    /// A delivered (or set aside) batch leaves the queue and the spool.
    private func finish(_ number: UInt64, delivered: Int, fileGone: Bool) {
        let spooledBefore = self.locked { self.state.batches.first { $0.number == number }?.spooled != nil }
        if spooledBefore, !fileGone { self.spool?.remove(number) }
        let (removeAfter, recovered) = self.locked { () -> (Bool, Bool) in
            guard let index = self.state.batches.firstIndex(where: { $0.number == number }) else {
                return (false, false)
            }
            let batch = self.state.batches.remove(at: index)
            if let bytes = batch.spooled {
                // A file set aside moved into rejected/: its bytes are still in the spool directory.
                if !fileGone { self.state.spoolBytes -= bytes }
            } else {
                self.state.memoryEvents -= batch.count
            }
            self.state.deliveredEvents += UInt64(delivered)
            let recovered = delivered > 0 && !self.state.healthy
            if delivered > 0 {
                self.state.healthy = true
                self.state.spoolFullReported = false
            }
            self.condition.broadcast()
            return (batch.spooled != nil && !spooledBefore && !fileGone, recovered)
        }
        if removeAfter { self.spool?.remove(number) }
        if recovered {
            self.logger.info("audit collector reachable again", metadata: ["proxy_batch": "\(number)"])
        }
    }

    private func markUnhealthy(reason: String) {
        let first = self.locked { () -> Bool in
            defer { self.state.healthy = false }
            return self.state.healthy
        }
        let reason = self.redacted(reason)
        if first {
            let holding =
                self.spool.map { "spooling to \($0.directory)" } ?? "holding up to \(self.memoryLimit) events in memory"
            self.logger.warning(
                "audit collector unavailable; retrying with backoff, \(holding)",
                metadata: ["proxy_error": "\(reason)"]
            )
        } else {
            self.logger.debug("audit collector still unavailable", metadata: ["proxy_error": "\(reason)"])
        }
    }

    /// Keeps refused events in `rejected/` and logs why; false (keep retrying) without a spool or when
    /// the file cannot be written.
    private func keepRejected(_ events: [SealedAuditEvent], name: String, status: Int, detail: String) async -> Bool {
        let answer = self.redacted(detail)
        guard let spool = self.spool else {
            self.logger.error(
                "audit collector refused a batch; no spool to keep it in, retrying at the longest backoff",
                metadata: [
                    "proxy_status": "\(status)", "proxy_response": "\(answer)", "proxy_events": "\(events.count)",
                ]
            )
            return false
        }
        do {
            let (path, bytes) = try await NIOThreadPool.singleton.runIfActive { try spool.reject(events, name: name) }
            self.locked { self.state.spoolBytes += bytes }
            self.logger.error(
                "audit collector refused a batch; kept in the spool's rejected/ folder, not sent again",
                metadata: [
                    "proxy_status": "\(status)", "proxy_response": "\(answer)", "proxy_events": "\(events.count)",
                    "proxy_path": "\(path)",
                ]
            )
            return true
        } catch {
            self.logger.error(
                "audit collector refused a batch and it cannot be kept in rejected/; retrying at the longest backoff",
                metadata: ["proxy_status": "\(status)", "proxy_response": "\(answer)", "proxy_error": "\(error)"]
            )
            return false
        }
    }

    private func redacted(_ text: String) -> String {
        guard let token = self.token else { return text }
        return text.replacingOccurrences(of: token, with: "<redacted>")
    }

    private static func baseName(_ number: UInt64) -> String {
        String(AuditSpool.fileName(number).dropLast(".ndjson".count))
    }

    // MARK: - Configuration

    /// The token from `token_file` (trimmed) or `token_env`. Errors name the file or variable, never the
    /// value.
    static func resolveToken(_ reference: SecretReference) throws(HTTPAuditSinkError) -> String {
        let raw: String
        let origin: String
        switch reference {
        case .file(let path):
            origin = "token_file \(path)"
            guard let data = FileManager.default.contents(atPath: path) else {
                throw HTTPAuditSinkError(.token, "audit http sink: \(origin): cannot read the file")
            }
            raw = String(decoding: data, as: UTF8.self)
        case .environment(let name):
            origin = "token_env \(name)"
            guard let value = getenv(name) else {
                throw HTTPAuditSinkError(.token, "audit http sink: \(origin): the variable is not set")
            }
            raw = String(cString: value)
        }
        let token = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else { throw HTTPAuditSinkError(.token, "audit http sink: \(origin): empty") }
        guard token.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw HTTPAuditSinkError(
                .token,
                "audit http sink: \(origin): holds characters an HTTP header cannot carry (space, control or non-ASCII)"
            )
        }
        return token
    }

    /// `https://user:pass@host/x` → `https://host/x`, for names and logs.
    static func withoutUserInfo(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://") else { return url }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        guard let at = rest[..<authorityEnd].lastIndex(of: "@") else { return url }
        return String(url[..<schemeEnd.upperBound]) + String(rest[rest.index(after: at)...])
    }
}

/// Why an HTTP audit sink could not start or take events. The description never holds the token.
public struct HTTPAuditSinkError: Error, CustomStringConvertible, Hashable, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Sendable {
            case invalidURL = "invalid_url"
            case token
            case caFile = "ca_file"
            case spool
            case spoolCorrupt = "spool_corrupt"
            case closed
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        public static let invalidURL = Code(.invalidURL)
        /// The token file or variable is missing, empty or unusable.
        public static let token = Code(.token)
        public static let caFile = Code(.caFile)
        public static let spool = Code(.spool)
        public static let spoolCorrupt = Code(.spoolCorrupt)
        /// `write` after `close`.
        public static let closed = Code(.closed)

        public var description: String { self.base.rawValue }
    }

    public let code: Code
    public let detail: String

    package init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { self.detail }

    public static func == (lhs: HTTPAuditSinkError, rhs: HTTPAuditSinkError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }
}
