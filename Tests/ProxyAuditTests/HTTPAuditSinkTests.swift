import AuditCore
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOHTTP1
import ProxyAudit
import ProxyConfig
import ProxyModel
import Testing

// Serialized: several tests measure delays between requests, which parallel tests on two cores would skew.
@Suite("HTTPAuditSink", .serialized)
struct HTTPAuditSinkTests {
    // MARK: - Formats on the wire

    @Test(
        "each format delivers batches the collector accepts, every event byte-identical",
        arguments: FakeCollector.API.allCases
    )
    func eachFormatDeliversByteIdenticalEvents(api: FakeCollector.API) async throws {
        let token = "tok-\(api)-5ecr3t-value"
        let collector = FakeCollector(api: api, token: token)
        try await collector.start()
        let directory = try HTTPSinkFixture.temporaryDirectory()
        defer { HTTPSinkFixture.remove(directory) }
        var config = HTTPSinkFixture.config(collector, batch: 4)
        config.token = .file(try HTTPSinkFixture.writeFile(directory + "/token", "\(token)\n"))
        config.index = api == .elasticsearch || api == .splunk ? "audit-idx" : nil
        config.labels = api == .loki ? ["env": "test"] : [:]
        let log = HTTPSinkTestLog()
        let sink = try HTTPAuditSink(config: config, instance: HTTPSinkFixture.instance, logger: log.logger())
        var chain = HTTPSinkFixture.chain()
        let events = HTTPSinkFixture.events(10, chain: &chain)
        for chunk in [events[0..<3], events[3..<6], events[6..<9], events[9..<10]] {
            try sink.write(Array(chunk))
        }
        let arrived = await HTTPSinkFixture.eventually(ticking: sink) { collector.events.count == 10 }
        await HTTPSinkFixture.close(sink, deadline: 1)
        await collector.stop()

        #expect(arrived)
        let received = collector.events
        #expect(received.map(\.line) == events.map(\.line))
        #expect(received.map(\.id) == events.map(\.hash))
        #expect(collector.duplicates == 0)
        // Batches of batch.max_events, the rest after flush_interval: 4 + 4 + 2.
        let requests = collector.requests
        #expect(
            requests.map(\.ids)
                == [Array(events[0..<4]), Array(events[4..<8]), Array(events[8..<10])].map { $0.map(\.hash) }
        )
        let expectedStatus: UInt = api == .loki ? 204 : 200
        #expect(requests.allSatisfy { $0.status == expectedStatus && $0.method == "POST" })
        #expect(requests.allSatisfy { $0.headers.first(name: "Content-Encoding") == "gzip" })
        let scheme = ["ndjson": "Bearer", "splunk": "Splunk", "loki": "Bearer", "elasticsearch": "ApiKey"][
            api.rawValue
        ]!
        #expect(requests.allSatisfy { $0.headers.first(name: "Authorization") == "\(scheme) \(token)" })

        switch api {
        case .ndjson:
            #expect(requests.allSatisfy { $0.headers.first(name: "Content-Type") == "application/x-ndjson" })
        case .splunk:
            for (event, stored) in zip(events, received) {
                #expect(stored.fields["time"] == HTTPSinkFixture.splunkTime(event.time))
                #expect(stored.fields["host"] == HTTPSinkFixture.instance)
                #expect(stored.fields["source"] == "portcullis")
                #expect(stored.fields["sourcetype"] == "portcullis:audit")
                #expect(stored.fields["index"] == "audit-idx")
            }
        case .loki:
            #expect(requests.allSatisfy { $0.headers.first(name: "Content-Type") == "application/json" })
            for (event, stored) in zip(events, received) {
                #expect(stored.fields["ts"] == String(event.time.microseconds * 1000))
                #expect(stored.fields["label.job"] == "portcullis")
                #expect(stored.fields["label.instance"] == HTTPSinkFixture.instance)
                #expect(stored.fields["label.env"] == "test")
                // Few, fixed labels: no seq, no hash, no kind.
                let labels = stored.fields.keys.filter { $0.hasPrefix("label.") }.sorted()
                #expect(labels == ["label.env", "label.instance", "label.job"])
            }
        case .elasticsearch:
            #expect(requests.allSatisfy { $0.headers.first(name: "Content-Type") == "application/x-ndjson" })
            #expect(received.allSatisfy { $0.fields["_index"] == "audit-idx" })
        }
        #expect(!log.entries.contains { $0.text.contains(token) })
    }

    @Test("a partial batch waits for flush_interval, then goes out")
    func partialBatchWaitsForFlushInterval() async throws {
        let collector = FakeCollector(api: .ndjson, token: nil)
        try await collector.start()
        let config = HTTPSinkFixture.config(collector, batch: 100, flush: .milliseconds(300))
        let sink = try HTTPAuditSink(
            config: config,
            instance: HTTPSinkFixture.instance,
            logger: HTTPSinkTestLog().logger()
        )
        var chain = HTTPSinkFixture.chain()
        let events = HTTPSinkFixture.events(3, chain: &chain)
        let written = ContinuousClock.now
        try sink.write(events)
        let early = await HTTPSinkFixture.eventually(within: 0.15, ticking: sink) { !collector.requests.isEmpty }
        let arrived = await HTTPSinkFixture.eventually(ticking: sink) { collector.events.count == 3 }
        let firstRequest = collector.requests.first?.at
        await HTTPSinkFixture.close(sink, deadline: 1)
        await collector.stop()

        #expect(!early)
        #expect(arrived)
        #expect(collector.requests.count == 1)
        if let firstRequest { #expect(firstRequest - written >= .milliseconds(300)) }
    }

    @Test("gzip: Content-Encoding set and the body smaller; gzip: false sends it as is")
    func gzipIsUsedAndCanBeTurnedOff() async throws {
        for gzip in [true, false] {
            let collector = FakeCollector(api: .ndjson, token: nil)
            try await collector.start()
            var config = HTTPSinkFixture.config(collector, batch: 20)
            config.gzip = gzip
            let sink = try HTTPAuditSink(
                config: config,
                instance: HTTPSinkFixture.instance,
                logger: HTTPSinkTestLog().logger()
            )
            var chain = HTTPSinkFixture.chain()
            let events = HTTPSinkFixture.events(20, chain: &chain)
            try sink.write(events)
            let arrived = await HTTPSinkFixture.eventually(ticking: sink) { collector.events.count == 20 }
            await HTTPSinkFixture.close(sink, deadline: 1)
            await collector.stop()

            #expect(arrived)
            let request = try #require(collector.requests.first)
            let plainSize = events.reduce(0) { $0 + $1.line.count + 1 }
            #expect(request.bodyBytes == plainSize)
            if gzip {
                #expect(request.headers.first(name: "Content-Encoding") == "gzip")
                #expect(request.wireBytes < plainSize / 3)
            } else {
                #expect(request.headers.first(name: "Content-Encoding") == nil)
                #expect(request.wireBytes == plainSize)
            }
            #expect(collector.events.map(\.line) == events.map(\.line))
        }
    }

    // MARK: - Outages and retries

    @Test("collector down for a while, then back on the same port: every event once, oldest first")
    func collectorDownThenBack() async throws {
        let collector = FakeCollector(api: .elasticsearch, token: "es-key")
        try await collector.start()
        let spool = try HTTPSinkFixture.temporaryDirectory()
        defer { HTTPSinkFixture.remove(spool) }
        var config = HTTPSinkFixture.config(collector, batch: 3, spool: spool)
        config.token = .file(try HTTPSinkFixture.writeFile(spool + "-token", "es-key"))
        defer { HTTPSinkFixture.remove(spool + "-token") }
        let sink = try HTTPAuditSink(
            config: config,
            instance: HTTPSinkFixture.instance,
            logger: HTTPSinkTestLog().logger()
        )
        var chain = HTTPSinkFixture.chain()
        let before = HTTPSinkFixture.events(5, chain: &chain)
        try sink.write(before)
        #expect(await HTTPSinkFixture.eventually(ticking: sink) { collector.events.count == 5 })

        await collector.stop()
        let during = HTTPSinkFixture.events(12, chain: &chain)
        for chunk in stride(from: 0, to: during.count, by: 4) {
            try sink.write(Array(during[chunk..<chunk + 4]))
            _ = await HTTPSinkFixture.eventually(within: 0.1, ticking: sink) { false }
        }
        // While it is down the batches wait in the spool.
        let spooled = await HTTPSinkFixture.eventually(ticking: sink) {
            HTTPSinkFixture.spoolLines(spool).count == during.count
        }
        #expect(spooled)
        let refused = collector.requests.count

        try await collector.start()
        let arrived = await HTTPSinkFixture.eventually(ticking: sink) { collector.events.count == 17 }
        let emptied = await HTTPSinkFixture.eventually(ticking: sink) { HTTPSinkFixture.spoolLines(spool).isEmpty }
        await HTTPSinkFixture.close(sink, deadline: 1)
        await collector.stop()

        #expect(refused == 2)  // the first two batches (5 events), nothing reached it while it was down
        #expect(arrived)
        #expect(emptied)
        #expect(collector.events.map(\.id) == (before + during).map(\.hash))
        #expect(collector.events.map(\.line) == (before + during).map(\.line))
    }

    @Test("500s are retried with exponential backoff and full jitter")
    func serverErrorsAreRetriedWithGrowingJitteredBackoff() async throws {
        let collector = FakeCollector(api: .ndjson, token: nil)
        try await collector.start()
        collector.failNext([.serverError, .serverError, .serverError])
        var config = HTTPSinkFixture.config(collector, batch: 2)
        config.retryInitialBackoff = .milliseconds(300)
        config.retryMaxBackoff = .seconds(5)
        let fractions = [0.5, 0.4, 0.3]
        let calls = NIOLockedValueBox(0)
        let sink = try HTTPAuditSink(
            config: config,
            instance: HTTPSinkFixture.instance,
            logger: HTTPSinkTestLog().logger(),
            jitter: {
                calls.withLockedValue { count in
                    defer { count += 1 }
                    return fractions[min(count, fractions.count - 1)]
                }
            }
        )
        var chain = HTTPSinkFixture.chain()
        let events = HTTPSinkFixture.events(2, chain: &chain)
        try sink.write(events)
        let arrived = await HTTPSinkFixture.eventually(ticking: sink) { collector.events.count == 2 }
        await HTTPSinkFixture.close(sink, deadline: 1)
        await collector.stop()

        #expect(arrived)
        let requests = collector.requests
        #expect(requests.map(\.status) == [500, 500, 500, 200])
        #expect(calls.withLockedValue { $0 } == 3)
        // Caps 300, 600, 1200 ms; delays = fraction x cap = 150, 240, 360 ms: they grow, and stay below the cap.
        let caps = [0.3, 0.6, 1.2]
        #expect(zip(fractions, caps).allSatisfy { $0 * $1 < $1 })
        let delays = zip(fractions, caps).map { $0 * $1 }
        #expect(delays == delays.sorted() && Set(delays).count == 3)
        for attempt in 0..<3 {
            let gap = HTTPSinkFixture.seconds(requests[attempt + 1].at - requests[attempt].at)
            // The jittered delay is a floor (fixed jitter); the ceiling is generous because a loaded 2-core
            // machine delays timers (the pure backoff test checks the jitter bounds exactly), but it still
            // catches waiting for retry.max_backoff (5 s).
            #expect(gap >= delays[attempt] - 0.005, "attempt \(attempt): \(gap)s")
            #expect(gap < delays[attempt] + 2.0, "attempt \(attempt): \(gap)s")
        }
        #expect(collector.events.map(\.line) == events.map(\.line))
    }

    @Test("backoff: uniform between zero and a cap that doubles up to retry.max_backoff")
    func backoffStaysWithinFullJitterBounds() {
        let backoff = HTTPAuditBackoff(initial: .milliseconds(100), maximum: .seconds(2))
        #expect(
            (0..<7).map { backoff.cap(attempt: $0) }
                == [100, 200, 400, 800, 1600, 2000, 2000].map { Duration.milliseconds($0) }
        )
        var previousMean = 0.0
        for attempt in 0..<6 {
            let cap = HTTPSinkFixture.seconds(backoff.cap(attempt: attempt))
            let samples = (0..<200).map { _ in
                HTTPSinkFixture.seconds(backoff.delay(attempt: attempt, jitter: Double.random(in: 0...1)))
            }
            #expect(samples.allSatisfy { $0 >= 0 && $0 <= cap })
            #expect(samples.min()! < cap / 4 && samples.max()! > cap * 3 / 4)
            let mean = samples.reduce(0, +) / Double(samples.count)
            if attempt < 5 { #expect(mean > previousMean) }
            previousMean = mean
        }
        // Retry-After is a floor, not a cap.
        #expect(backoff.delay(attempt: 0, jitter: 1, retryAfter: .seconds(7)) == .seconds(7))
        #expect(backoff.delay(attempt: 9, jitter: 1, retryAfter: .seconds(1)) == .seconds(2))
        #expect(backoff.delay(attempt: 0, jitter: 0, retryAfter: .seconds(86_400)) == .seconds(300))
    }

    @Test("429 with Retry-After: 1 is not retried before a second")
    func retryAfterIsHonoured() async throws {
        let collector = FakeCollector(api: .loki, token: nil)
        try await collector.start()
        collector.failNext([.tooManyRequests(retryAfter: "1")])
        var config = HTTPSinkFixture.config(collector, batch: 2)
        config.retryInitialBackoff = .milliseconds(10)
        let sink = try HTTPAuditSink(
            config: config,
            instance: HTTPSinkFixture.instance,
            logger: HTTPSinkTestLog().logger()
        )
        var chain = HTTPSinkFixture.chain()
        let events = HTTPSinkFixture.events(2, chain: &chain)
        try sink.write(events)
        let arrived = await HTTPSinkFixture.eventually(ticking: sink) { collector.events.count == 2 }
        await HTTPSinkFixture.close(sink, deadline: 1)
        await collector.stop()

        #expect(arrived)
        let requests = collector.requests
        #expect(requests.map(\.status) == [429, 204])
        if requests.count == 2 {
            let gap = HTTPSinkFixture.seconds(requests[1].at - requests[0].at)
            #expect(gap >= 0.995, "retried after \(gap)s")
            #expect(gap < 1.8, "retried after \(gap)s")
        }
    }

    @Test("Retry-After: delay-seconds or an HTTP-date in its three forms")
    func retryAfterParsing() {
        let now: Int64 = 1_445_412_450  // 2015-10-21T07:27:30Z
        #expect(HTTPAuditBackoff.retryAfter("120", nowSeconds: now) == .seconds(120))
        #expect(HTTPAuditBackoff.retryAfter(" 1 ", nowSeconds: now) == .seconds(1))
        #expect(HTTPAuditBackoff.retryAfter("Wed, 21 Oct 2015 07:28:00 GMT", nowSeconds: now) == .seconds(30))
        #expect(HTTPAuditBackoff.retryAfter("Wednesday, 21-Oct-15 07:28:00 GMT", nowSeconds: now) == .seconds(30))
        #expect(HTTPAuditBackoff.retryAfter("Wed Oct 21 07:28:00 2015", nowSeconds: now) == .seconds(30))
        #expect(HTTPAuditBackoff.retryAfter("Wed, 21 Oct 2015 07:00:00 GMT", nowSeconds: now) == .seconds(0))
        #expect(HTTPAuditBackoff.retryAfter("-5", nowSeconds: now) == nil)
        #expect(HTTPAuditBackoff.retryAfter("1.5", nowSeconds: now) == nil)
        #expect(HTTPAuditBackoff.retryAfter("soon", nowSeconds: now) == nil)
        #expect(HTTPAuditBackoff.retryAfter("Wed, 32 Oct 2015 07:28:00 GMT", nowSeconds: now) == nil)
    }

    @Test("answers: 2xx delivered, 408/429/5xx retried (Retry-After on 429/503 only), other 4xx refused")
    func answersAreClassified() {
        let ndjson = HTTPAuditWireFormat(config: AuditHTTPSinkConfig(url: "http://x/"), instance: "i")
        let retryAfter = "3"
        #expect(ndjson.outcome(status: 204, retryAfter: nil, body: [], eventCount: 1, nowSeconds: 0) == .delivered)
        #expect(
            ndjson.outcome(status: 429, retryAfter: retryAfter, body: [], eventCount: 1, nowSeconds: 0)
                == .retry(reason: "HTTP 429", retryAfter: .seconds(3))
        )
        #expect(
            ndjson.outcome(status: 503, retryAfter: retryAfter, body: [], eventCount: 1, nowSeconds: 0)
                == .retry(reason: "HTTP 503", retryAfter: .seconds(3))
        )
        #expect(
            ndjson.outcome(status: 500, retryAfter: retryAfter, body: [], eventCount: 1, nowSeconds: 0)
                == .retry(reason: "HTTP 500", retryAfter: nil)
        )
        #expect(
            ndjson.outcome(status: 408, retryAfter: nil, body: [], eventCount: 1, nowSeconds: 0)
                == .retry(reason: "HTTP 408", retryAfter: nil)
        )
        #expect(
            ndjson.outcome(status: 413, retryAfter: nil, body: Array("too big".utf8), eventCount: 1, nowSeconds: 0)
                == .rejected(status: 413, detail: "too big")
        )
        #expect(
            ndjson.outcome(status: 302, retryAfter: nil, body: [], eventCount: 1, nowSeconds: 0)
                == .rejected(status: 302, detail: "")
        )

        let splunk = HTTPAuditWireFormat(
            config: AuditHTTPSinkConfig(url: "http://x/", format: .splunkHEC),
            instance: "i"
        )
        let busy = Array(#"{"text":"Server is busy","code":9}"#.utf8)
        #expect(
            splunk.outcome(
                status: 200,
                retryAfter: nil,
                body: Array(#"{"text":"Success","code":0}"#.utf8),
                eventCount: 1,
                nowSeconds: 0
            ) == .delivered
        )
        #expect(
            splunk.outcome(status: 503, retryAfter: nil, body: busy, eventCount: 1, nowSeconds: 0)
                == .retry(reason: "HTTP 503: " + String(decoding: busy, as: UTF8.self), retryAfter: nil)
        )
        #expect(
            splunk.outcome(
                status: 400,
                retryAfter: nil,
                body: Array(#"{"text":"Invalid data format","code":6}"#.utf8),
                eventCount: 1,
                nowSeconds: 0
            ) == .rejected(status: 400, detail: #"{"text":"Invalid data format","code":6}"#)
        )

        let es = HTTPAuditWireFormat(
            config: AuditHTTPSinkConfig(url: "http://x/_bulk", format: .elasticsearch),
            instance: "i"
        )
        let bulk = #"""
            {"took":30,"errors":true,"items":[
            {"create":{"_index":"a","_id":"1","_version":1,"result":"created","status":201}},
            {"create":{"_index":"a","_id":"2","status":409,"error":{"type":"version_conflict_engine_exception","reason":"document already exists"}}},
            {"create":{"_index":"a","_id":"3","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected"}}},
            {"create":{"_index":"a","_id":"4","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse"}}},
            {"create":{"_index":"a","_id":"5","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}}]}
            """#
        guard
            case .partial(let retry, let rejected, _) = es.outcome(
                status: 200,
                retryAfter: nil,
                body: Array(bulk.utf8),
                eventCount: 5,
                nowSeconds: 0
            )
        else {
            Issue.record("expected a partial outcome")
            return
        }
        #expect(retry == [2, 4])
        #expect(rejected == [3])
        #expect(
            es.outcome(
                status: 200,
                retryAfter: nil,
                body: Array(#"{"took":1,"errors":false,"items":[]}"#.utf8),
                eventCount: 3,
                nowSeconds: 0
            ) == .delivered
        )
        #expect(
            es.outcome(status: 200, retryAfter: nil, body: Array("<html>".utf8), eventCount: 1, nowSeconds: 0)
                == .retry(reason: "unreadable _bulk response: <html>", retryAfter: nil)
        )
    }

    // MARK: - Spool

    @Test("events written while the collector is down land in the spool; a new sink on it sends them first")
    func spoolKeepsEventsAndANewSinkReplaysThemFirst() async throws {
        let collector = FakeCollector(api: .ndjson, token: nil)
        try await collector.start()
        await collector.stop()  // its port refuses connections now
        let spool = try HTTPSinkFixture.temporaryDirectory()
        defer { HTTPSinkFixture.remove(spool) }
        let config = HTTPSinkFixture.config(collector, batch: 3, spool: spool)
        var chain = HTTPSinkFixture.chain()
        let old = HTTPSinkFixture.events(7, chain: &chain)

        let first = try HTTPAuditSink(
            config: config,
            instance: HTTPSinkFixture.instance,
            logger: HTTPSinkTestLog().logger()
        )
        try first.write(Array(old[0..<4]))
        try first.write(Array(old[4..<7]))
        let spooled = await HTTPSinkFixture.eventually(ticking: first) { HTTPSinkFixture.spoolLines(spool).count == 7 }
        #expect(spooled)
        await HTTPSinkFixture.close(first, deadline: 0.2)
        #expect(HTTPSinkFixture.spoolLines(spool) == old.map(\.line))

        try await collector.start()
        let log = HTTPSinkTestLog()
        let second = try HTTPAuditSink(config: config, instance: HTTPSinkFixture.instance, logger: log.logger())
        let new = HTTPSinkFixture.events(4, chain: &chain)
        try second.write(new)
        let arrived = await HTTPSinkFixture.eventually(ticking: second) { collector.events.count == 11 }
        await HTTPSinkFixture.close(second, deadline: 1)
        await collector.stop()

        #expect(arrived)
        #expect(collector.events.map(\.line) == (old + new).map(\.line))
        #expect(HTTPSinkFixture.spoolLines(spool).isEmpty)
        #expect(log.entries.contains { $0.level == .info && $0.message.contains("earlier run") })
    }

    @Test("spool full and backlog full: write blocks until the collector takes batches")
    func fullSpoolBlocksTheWriter() async throws {
        let collector = FakeCollector(api: .ndjson, token: nil)
        try await collector.start()
        await collector.stop()
        let spool = try HTTPSinkFixture.temporaryDirectory()
        defer { HTTPSinkFixture.remove(spool) }
        var chain = HTTPSinkFixture.chain()
        let events = HTTPSinkFixture.events(30, chain: &chain)
        let eventBytes = Int64(events.map(\.line.count).max()! + 1)
        // Room for two batches of two events in the spool (not three), and 2 x 4 events in memory.
        let config = HTTPSinkFixture.config(collector, batch: 2, spool: spool, spoolMax: eventBytes * 5)
        let log = HTTPSinkTestLog()
        let sink = try HTTPAuditSink(config: config, instance: HTTPSinkFixture.instance, logger: log.logger())
        let writer = HTTPSinkWriterThread(sink: sink, events: events)
        writer.start()

        let stalled = await HTTPSinkFixture.eventually(within: 3) {
            HTTPSinkFixture.spoolLines(spool).count == 4 && writer.accepted >= 12
        }
        try await Task.sleep(for: .milliseconds(400))
        let acceptedWhileFull = writer.accepted
        let spoolBytes = HTTPSinkFixture.spoolBytes(spool)
        #expect(stalled)
        #expect(!writer.finished)
        #expect(acceptedWhileFull <= 8 + 4 + 1)
        #expect(spoolBytes <= eventBytes * 5)
        #expect(log.entries.contains { $0.level == .warning && $0.message.contains("spool full") })

        try await collector.start()
        let finished = await HTTPSinkFixture.eventually(within: 8) { writer.finished }
        let arrived = await HTTPSinkFixture.eventually(within: 8, ticking: sink) { collector.events.count == 30 }
        await HTTPSinkFixture.close(sink, deadline: 1)
        await collector.stop()

        #expect(finished)
        #expect(writer.error == nil)
        #expect(arrived)
        #expect(collector.events.map(\.line) == events.map(\.line))
    }

    @Test("close releases a writer blocked on a full spool, and spools what it held")
    func closeReleasesABlockedWriter() async throws {
        let collector = FakeCollector(api: .ndjson, token: nil)
        try await collector.start()
        await collector.stop()
        let spool = try HTTPSinkFixture.temporaryDirectory()
        defer { HTTPSinkFixture.remove(spool) }
        var chain = HTTPSinkFixture.chain()
        let events = HTTPSinkFixture.events(20, chain: &chain)
        // Room for two batches of two events in the spool (not three), and 2 x 4 events in memory.
        let config = HTTPSinkFixture.config(
            collector,
            batch: 2,
            spool: spool,
            spoolMax: Int64(events.map(\.line.count).max()! + 1) * 5
        )
        let log = HTTPSinkTestLog()
        let sink = try HTTPAuditSink(config: config, instance: HTTPSinkFixture.instance, logger: log.logger())
        // One write of all 20: it takes what fits (4 spooled, 8 in memory) and waits for room.
        let writer = HTTPSinkWriterThread(sink: sink, events: events, chunk: events.count)
        writer.start()
        let stalled = await HTTPSinkFixture.eventually(within: 3) { HTTPSinkFixture.spoolLines(spool).count == 4 }
        try await Task.sleep(for: .milliseconds(300))
        #expect(stalled)
        #expect(!writer.finished)
        #expect(HTTPSinkFixture.spoolLines(spool).count == 4)

        await HTTPSinkFixture.close(sink, deadline: 0)
        let released = await HTTPSinkFixture.eventually(within: 3) { writer.finished }
        #expect(released)
        #expect(writer.accepted == 20)
        #expect(HTTPSinkFixture.spoolLines(spool) == events.map(\.line))
        #expect(!log.entries.contains { $0.level == .error })
    }

    @Test("without a spool: at most batch.max_events x 4 events in memory, then write blocks")
    func withoutSpoolTheBacklogIsBounded() async throws {
        let collector = FakeCollector(api: .ndjson, token: nil)
        try await collector.start()
        await collector.stop()
        var chain = HTTPSinkFixture.chain()
        let events = HTTPSinkFixture.events(20, chain: &chain)
        let config = HTTPSinkFixture.config(collector, batch: 3)
        let sink = try HTTPAuditSink(
            config: config,
            instance: HTTPSinkFixture.instance,
            logger: HTTPSinkTestLog().logger()
        )
        let writer = HTTPSinkWriterThread(sink: sink, events: events)
        writer.start()
        let stalled = await HTTPSinkFixture.eventually(within: 3) { writer.accepted == 12 }
        try await Task.sleep(for: .milliseconds(300))
        #expect(stalled)
        #expect(writer.accepted == 12)
        #expect(!writer.finished)

        try await collector.start()
        let finished = await HTTPSinkFixture.eventually(within: 5) { writer.finished }
        let arrived = await HTTPSinkFixture.eventually(within: 5, ticking: sink) { collector.events.count == 20 }
        await HTTPSinkFixture.close(sink, deadline: 1)
        await collector.stop()
        #expect(finished)
        #expect(arrived)
        #expect(collector.events.map(\.line) == events.map(\.line))
    }

    @Test("spool files: atomic, read back whole; a crash's .tmp is kept when whole, set aside when torn")
    func spoolFilesSurviveACrash() throws {
        let directory = try HTTPSinkFixture.temporaryDirectory()
        defer { HTTPSinkFixture.remove(directory) }
        var chain = HTTPSinkFixture.chain()
        let events = HTTPSinkFixture.events(6, chain: &chain)
        let spool = try AuditSpool(directory: directory)
        try spool.write(events[0..<2], number: 3)
        #expect(try spool.read(3) == Array(events[0..<2]))
        // A whole batch not yet renamed, and one cut short.
        _ = try HTTPSinkFixture.writeFile(
            spool.path(7) + ".tmp",
            String(decoding: AuditSpool.encode(events[2..<4]), as: UTF8.self)
        )
        var torn = AuditSpool.encode(events[4..<6])
        torn.removeLast(10)
        _ = try HTTPSinkFixture.writeFile(spool.path(8) + ".tmp", String(decoding: torn, as: UTF8.self))
        _ = try HTTPSinkFixture.writeFile(directory + "/notes.txt", "ignored")

        let inventory = try AuditSpool(directory: directory).scan()
        #expect(inventory.files.map(\.number) == [3, 7])
        #expect(inventory.nextNumber == 9)
        #expect(inventory.rejectedFiles == 1)
        #expect(try spool.read(7) == Array(events[2..<4]))
        let rejected = try FileManager.default.contentsOfDirectory(atPath: spool.rejectedDirectory)
        #expect(rejected == [AuditSpool.fileName(8) + ".partial"])

        _ = try HTTPSinkFixture.writeFile(spool.path(9), "{\"not\":\"an event\"}\n")
        #expect(throws: HTTPAuditSinkError(.spoolCorrupt, "")) { try spool.read(9) }
    }

    // MARK: - Refusals and the token

    @Test("wrong or missing Splunk token: 403/401, the batch is kept in rejected/ and the error logged")
    func refusedBatchIsKeptInRejected() async throws {
        let collector = FakeCollector(api: .splunk, token: "the-right-token")
        try await collector.start()
        let spool = try HTTPSinkFixture.temporaryDirectory()
        defer { HTTPSinkFixture.remove(spool) }
        let secret = "wrong-token-9f8e7d6c"
        let variable = "PORTCULLIS_TEST_HEC_TOKEN_\(UInt32.random(in: 0...UInt32.max))"
        setenv(variable, secret, 1)
        defer { unsetenv(variable) }
        var config = HTTPSinkFixture.config(collector, batch: 3, spool: spool)
        config.token = .environment(variable)
        let log = HTTPSinkTestLog()
        let sink = try HTTPAuditSink(config: config, instance: HTTPSinkFixture.instance, logger: log.logger())
        var chain = HTTPSinkFixture.chain()
        let events = HTTPSinkFixture.events(3, chain: &chain)
        try sink.write(events)
        let rejectedDirectory = spool + "/rejected"
        let kept = await HTTPSinkFixture.eventually(ticking: sink) {
            HTTPSinkFixture.spoolLines(rejectedDirectory).count == 3
        }
        await HTTPSinkFixture.close(sink, deadline: 1)

        #expect(kept)
        #expect(HTTPSinkFixture.spoolLines(rejectedDirectory) == events.map(\.line))
        #expect(collector.requests.map(\.status) == [403])
        #expect(collector.events.isEmpty)
        let error = try #require(log.entries.first { $0.level == .error })
        #expect(error.metadata["proxy_status"] == "403")
        #expect(error.metadata["proxy_response"] == #"{"text":"Invalid token","code":4}"#)
        #expect(!log.entries.contains { $0.text.contains(secret) })

        // No token at all: 401, code 2.
        let noToken = HTTPSinkFixture.config(collector, batch: 3, spool: spool)
        let second = try HTTPAuditSink(config: noToken, instance: HTTPSinkFixture.instance, logger: log.logger())
        let more = HTTPSinkFixture.events(2, chain: &chain)
        try second.write(more)
        let keptToo = await HTTPSinkFixture.eventually(ticking: second) {
            HTTPSinkFixture.spoolLines(rejectedDirectory).count == 5
        }
        await HTTPSinkFixture.close(second, deadline: 1)
        await collector.stop()
        #expect(keptToo)
        #expect(collector.requests.map(\.status) == [403, 401])
        #expect(log.entries.contains { $0.metadata["proxy_response"] == #"{"text":"Token is required","code":2}"# })
        #expect(HTTPSinkFixture.spoolLines(spool).isEmpty)
    }

    @Test("without a spool a refused batch is retried at the longest backoff until the collector takes it")
    func refusedBatchWithoutSpoolIsRetried() async throws {
        let collector = FakeCollector(api: .elasticsearch, token: "the-right-key")
        try await collector.start()
        let directory = try HTTPSinkFixture.temporaryDirectory()
        defer { HTTPSinkFixture.remove(directory) }
        let secret = "Zm9vOmJhcg-wrong-api-key"
        var config = HTTPSinkFixture.config(collector, batch: 2)
        config.token = .file(try HTTPSinkFixture.writeFile(directory + "/key", "  \(secret)\n\n"))
        config.retryMaxBackoff = .milliseconds(150)
        let log = HTTPSinkTestLog()
        let sink = try HTTPAuditSink(config: config, instance: HTTPSinkFixture.instance, logger: log.logger())
        var chain = HTTPSinkFixture.chain()
        let events = HTTPSinkFixture.events(2, chain: &chain)
        try sink.write(events)
        let refusedAgain = await HTTPSinkFixture.eventually(ticking: sink) { collector.requests.count >= 3 }
        #expect(refusedAgain)
        #expect(collector.requests.allSatisfy { $0.status == 401 })
        if collector.requests.count >= 3 {
            let gap = HTTPSinkFixture.seconds(collector.requests[2].at - collector.requests[1].at)
            #expect(gap >= 0.145, "retried after \(gap)s")
        }

        collector.setToken(secret)
        let arrived = await HTTPSinkFixture.eventually(ticking: sink) { collector.events.count == 2 }
        await HTTPSinkFixture.close(sink, deadline: 1)
        await collector.stop()

        #expect(arrived)
        #expect(collector.events.map(\.line) == events.map(\.line))
        let error = try #require(log.entries.first { $0.level == .error })
        #expect(error.metadata["proxy_status"] == "401")
        #expect(error.metadata["proxy_response"]?.contains("security_exception") == true)
        #expect(!log.entries.contains { $0.text.contains(secret) })
    }

    @Test("the token never reaches the log, even when a collector echoes it back")
    func tokenNeverAppearsInLogs() async throws {
        let secret = "s3cr3t-bearer-token-abcdef"
        let collector = FakeCollector(api: .ndjson, token: secret)
        try await collector.start()
        collector.failNext([
            .serverError,
            FakeCollector.Reply(status: .badRequest, body: "bad request; you sent Authorization: Bearer \(secret)"),
        ])
        let directory = try HTTPSinkFixture.temporaryDirectory()
        defer { HTTPSinkFixture.remove(directory) }
        var config = HTTPSinkFixture.config(collector, batch: 2, spool: directory + "/spool")
        config.token = .file(try HTTPSinkFixture.writeFile(directory + "/token", secret))
        let log = HTTPSinkTestLog()
        let sink = try HTTPAuditSink(config: config, instance: HTTPSinkFixture.instance, logger: log.logger())
        var chain = HTTPSinkFixture.chain()
        let events = HTTPSinkFixture.events(4, chain: &chain)
        try sink.write(events)
        let arrived = await HTTPSinkFixture.eventually(ticking: sink) { collector.events.count == 2 }
        await HTTPSinkFixture.close(sink, deadline: 1)
        await collector.stop()

        #expect(arrived)
        #expect(collector.requests.map(\.status) == [500, 400, 200])
        let entries = log.entries
        #expect(entries.count > 3)  // trace lines of the HTTP client too
        #expect(
            entries.contains {
                $0.metadata["proxy_response"] == "bad request; you sent Authorization: Bearer <redacted>"
            }
        )
        #expect(!entries.contains { $0.text.contains(secret) })
    }

    @Test("token: from a file (trimmed) or a variable; errors name the source, never the value")
    func tokenResolution() async throws {
        let directory = try HTTPSinkFixture.temporaryDirectory()
        defer { HTTPSinkFixture.remove(directory) }
        let logger = HTTPSinkTestLog().logger()
        func sinkError(_ token: SecretReference) async -> HTTPAuditSinkError? {
            var config = AuditHTTPSinkConfig(url: "http://127.0.0.1:9/ingest")
            config.token = token
            do {
                let sink = try HTTPAuditSink(config: config, instance: "i", logger: logger)
                await HTTPSinkFixture.close(sink, deadline: 0)
                return nil
            } catch let error as HTTPAuditSinkError {
                return error
            } catch {
                return nil
            }
        }
        #expect(await sinkError(.file(try HTTPSinkFixture.writeFile(directory + "/ok", "token\n"))) == nil)
        let missing = try #require(await sinkError(.file(directory + "/missing")))
        #expect(missing.code == .token && missing.description.contains(directory + "/missing"))
        let empty = try #require(await sinkError(.file(try HTTPSinkFixture.writeFile(directory + "/empty", " \n"))))
        #expect(empty.code == .token && empty.description.contains("empty"))
        let spaced = try #require(
            await sinkError(.file(try HTTPSinkFixture.writeFile(directory + "/spaced", "two words")))
        )
        #expect(spaced.code == .token && !spaced.description.contains("two words"))
        let variable = "PORTCULLIS_TEST_UNSET_\(UInt32.random(in: 0...UInt32.max))"
        let unset = try #require(await sinkError(.environment(variable)))
        #expect(unset.code == .token && unset.description.contains(variable))
        #expect(throws: HTTPAuditSinkError(.invalidURL, "")) {
            try HTTPAuditSink(config: AuditHTTPSinkConfig(url: "ftp://x/"), instance: "i", logger: logger)
        }
    }

    @Test("https: the collector's certificate is checked against ca_file (and refused without it)")
    func httpsWithCAFile() async throws {
        let directory = try HTTPSinkFixture.temporaryDirectory()
        defer { HTTPSinkFixture.remove(directory) }
        let certificates = try HTTPSinkTestCertificates.make(in: directory)
        let collector = FakeCollector(api: .loki, token: nil, tls: try certificates.serverContext())
        try await collector.start()
        var chain = HTTPSinkFixture.chain()
        let events = HTTPSinkFixture.events(3, chain: &chain)

        var trusted = HTTPSinkFixture.config(collector, batch: 3)
        trusted.caFile = certificates.caFile
        let sink = try HTTPAuditSink(
            config: trusted,
            instance: HTTPSinkFixture.instance,
            logger: HTTPSinkTestLog().logger()
        )
        try sink.write(events)
        let arrived = await HTTPSinkFixture.eventually(ticking: sink) { collector.events.count == 3 }
        await HTTPSinkFixture.close(sink, deadline: 1)
        #expect(arrived)
        #expect(collector.url.hasPrefix("https://"))
        #expect(collector.events.map(\.line) == events.map(\.line))

        // The system's trust store does not know this CA: nothing reaches the collector.
        let log = HTTPSinkTestLog()
        let untrusting = try HTTPAuditSink(
            config: HTTPSinkFixture.config(collector, batch: 3),
            instance: HTTPSinkFixture.instance,
            logger: log.logger()
        )
        try untrusting.write(HTTPSinkFixture.events(3, chain: &chain))
        let failed = await HTTPSinkFixture.eventually(ticking: untrusting) {
            log.entries.contains { $0.level == .warning && $0.message.contains("collector unavailable") }
        }
        await HTTPSinkFixture.close(untrusting, deadline: 0)
        await collector.stop()
        #expect(failed)
        #expect(collector.requests.count == 1)
        #expect(
            log.entries.contains {
                $0.level == .error && $0.message.contains("lost") && $0.metadata["proxy_events"] == "3"
            }
        )

        var missing = trusted
        missing.caFile = directory + "/no-such-ca.pem"
        #expect(throws: HTTPAuditSinkError(.caFile, "")) {
            try HTTPAuditSink(config: missing, instance: HTTPSinkFixture.instance, logger: log.logger())
        }
    }

    // MARK: - Elasticsearch items

    @Test("_bulk: only items answered 429/5xx are sent again; 409 counts as delivered; a 400 item is set aside")
    func elasticsearchRetriesOnlyFailedItems() async throws {
        let collector = FakeCollector(api: .elasticsearch, token: nil)
        try await collector.start()
        let spool = try HTTPSinkFixture.temporaryDirectory()
        defer { HTTPSinkFixture.remove(spool) }
        var chain = HTTPSinkFixture.chain()
        let events = HTTPSinkFixture.events(6, chain: &chain)
        collector.failItemsOnce([events[1].hash: 429, events[3].hash: 503, events[4].hash: 400])
        let config = HTTPSinkFixture.config(collector, batch: 6, spool: spool)
        let log = HTTPSinkTestLog()
        let sink = try HTTPAuditSink(config: config, instance: HTTPSinkFixture.instance, logger: log.logger())
        try sink.write(events)
        let arrived = await HTTPSinkFixture.eventually(ticking: sink) {
            collector.events.count == 5 && collector.requests.count == 2
        }
        let setAside = await HTTPSinkFixture.eventually(ticking: sink) {
            HTTPSinkFixture.spoolLines(spool + "/rejected").count == 1
        }
        await HTTPSinkFixture.close(sink, deadline: 1)

        #expect(arrived)
        #expect(setAside)
        #expect(collector.requests.map(\.ids) == [events.map(\.hash), [events[1].hash, events[3].hash]])
        #expect(Set(collector.events.map(\.id)) == Set([0, 1, 2, 3, 5].map { events[$0].hash }))
        #expect(HTTPSinkFixture.spoolLines(spool + "/rejected") == [events[4].line])
        #expect(
            log.entries.contains {
                $0.level == .error && $0.metadata["proxy_response"]?.contains("mapper_parsing_exception") == true
            }
        )

        // Sent again (a replay after a crash): 409 for what is there, delivered, no retry.
        let replay = try HTTPAuditSink(
            config: HTTPSinkFixture.config(collector, batch: 6),
            instance: HTTPSinkFixture.instance,
            logger: log.logger()
        )
        try replay.write(events)
        let stored = await HTTPSinkFixture.eventually(ticking: replay) { collector.events.count == 6 }
        try await Task.sleep(for: .milliseconds(100))
        await HTTPSinkFixture.close(replay, deadline: 1)
        await collector.stop()
        #expect(stored)
        #expect(collector.requests.count == 3)
        #expect(collector.duplicates == 5)
    }

    // MARK: - Bytes of each format

    @Test("request bodies, byte for byte")
    func wireBodies() {
        var chain = HTTPSinkFixture.chain()
        let events = HTTPSinkFixture.events(2, chain: &chain)
        let line0 = String(decoding: events[0].line, as: UTF8.self)
        let line1 = String(decoding: events[1].line, as: UTF8.self)
        func body(
            _ format: AuditHTTPSinkConfig.Format,
            _ edit: (inout AuditHTTPSinkConfig) -> Void = { _ in }
        ) -> String {
            var config = AuditHTTPSinkConfig(url: "http://x/", format: format)
            edit(&config)
            return String(decoding: HTTPAuditWireFormat(config: config, instance: "web-1").body(events), as: UTF8.self)
        }
        #expect(body(.ndjson) == line0 + "\n" + line1 + "\n")
        #expect(
            body(.splunkHEC) { $0.index = "main" }
                == #"{"time":1767225600.000000,"host":"web-1","source":"portcullis","sourcetype":"portcullis:audit","index":"main","event":"#
                + line0 + "}"
                + #"{"time":1767225601.234567,"host":"web-1","source":"portcullis","sourcetype":"portcullis:audit","index":"main","event":"#
                + line1 + "}"
        )
        #expect(
            body(.elasticsearch)
                == #"{"create":{"_index":"portcullis-audit","_id":"\#(events[0].hash)"}}"# + "\n" + line0 + "\n"
                + #"{"create":{"_index":"portcullis-audit","_id":"\#(events[1].hash)"}}"# + "\n" + line1 + "\n"
        )
        // Loki: the line as a JSON string (its quotes, backslashes and tab escaped), nanoseconds as a string.
        let escaped0 = line0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\t", with: "\\t")
        let loki = body(.loki) { $0.labels = ["team": "data"] }
        #expect(
            loki.hasPrefix(
                #"{"streams":[{"stream":{"instance":"web-1","job":"portcullis","team":"data"},"values":[["1767225600000000000","#
                    + "\"" + escaped0 + "\"]"
            )
        )
        #expect(loki.hasSuffix(#""]]}]}"#))
        #expect(HTTPAuditWireFormat.epochSeconds(AuditTime(microseconds: 1_767_225_601_000_042)) == "1767225601.000042")
        #expect(
            HTTPAuditWireFormat.epochNanoseconds(AuditTime(microseconds: 1_767_225_601_000_042))
                == "1767225601000042000"
        )
    }
}

// MARK: - Fixtures

enum HTTPSinkFixture {
    static let instance = "test-instance-1"

    static func chain() -> AuditChain {
        AuditChain(instance: self.instance)
    }

    /// Sealed events from a real chain: request events with two policy reloads among them, with lines of a
    /// few hundred bytes (escapes, non-ASCII and repetition included).
    static func events(_ count: Int, chain: inout AuditChain) -> [SealedAuditEvent] {
        (0..<count).map { _ in
            let n = chain.nextSeq
            let kind = n % 3 == 2 ? AuditKind.policyReload : AuditKind.httpRequest
            let time = AuditTime(microseconds: 1_767_225_600_000_000 + Int64(n) * 1_234_567)
            return chain.seal(
                AuditEvent(
                    kind: kind,
                    time: time,
                    fields: [
                        "request_id": .string("req-\(n)"),
                        "method": .string("GET"),
                        "path": .string("/api/v1/dags/example_dag_\(n)/dagRuns"),
                        "status": .integer(200),
                        "note": .string("quoted \"text\", a \\ backslash, caf\u{e9} and a tab\t"),
                        "user_agent": .string(String(repeating: "Mozilla/5.0 (X11; Linux x86_64) ", count: 4)),
                    ]
                )
            )
        }
    }

    static func config(
        _ collector: FakeCollector,
        batch: Int,
        flush: Duration = .milliseconds(50),
        spool: String? = nil,
        spoolMax: Int64 = 1 << 30
    ) -> AuditHTTPSinkConfig {
        let format: AuditHTTPSinkConfig.Format =
            switch collector.api {
            case .ndjson: .ndjson
            case .splunk: .splunkHEC
            case .loki: .loki
            case .elasticsearch: .elasticsearch
            }
        return AuditHTTPSinkConfig(
            url: collector.url,
            format: format,
            batchMaxEvents: batch,
            flushInterval: flush,
            timeout: .seconds(1),
            retryInitialBackoff: .milliseconds(20),
            retryMaxBackoff: .milliseconds(100),
            spoolDirectory: spool,
            spoolMaxBytes: spoolMax
        )
    }

    /// What Splunk's `time` must read: seconds, a dot, six digits.
    static func splunkTime(_ time: AuditTime) -> String {
        String(format: "%lld.%06lld", time.microseconds / 1_000_000, time.microseconds % 1_000_000)
    }

    /// Polls `condition` (ticking the sink like the writer thread does) until it holds or time runs out.
    static func eventually(
        within seconds: Double = 5,
        ticking sink: HTTPAuditSink? = nil,
        _ condition: () -> Bool
    ) async -> Bool {
        let end = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < end {
            if let sink { try? sink.tick(now: AuditTime(microseconds: Int64(Date().timeIntervalSince1970 * 1e6))) }
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return condition()
    }

    /// `close` blocks: run it on a thread of its own, as the audit writer does.
    static func close(_ sink: HTTPAuditSink, deadline: Double) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread {
                sink.close(deadline: deadline)
                continuation.resume()
            }.start()
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) * 1e-18
    }

    static func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "portcullis-http-sink-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    @discardableResult
    static func writeFile(_ path: String, _ text: String) throws -> String {
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        return path
    }

    /// The lines of the `*.ndjson` files in `directory`, files in name order.
    static func spoolLines(_ directory: String) -> [[UInt8]] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter {
            $0.hasSuffix(".ndjson")
        }.sorted()
        return names.flatMap { name -> [[UInt8]] in
            let bytes = [UInt8](FileManager.default.contents(atPath: directory + "/" + name) ?? Data())
            return bytes.split(separator: UInt8(ascii: "\n")).map(Array.init)
        }
    }

    static func spoolBytes(_ directory: String) -> Int64 {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter {
            $0.hasSuffix(".ndjson")
        }
        return names.reduce(0) { total, name in
            total + Int64(FileManager.default.contents(atPath: directory + "/" + name)?.count ?? 0)
        }
    }
}

/// The audit writer thread, for tests where `write` blocks: `chunk` events per call, counting what it accepted.
final class HTTPSinkWriterThread: Sendable {
    private struct Progress {
        var accepted = 0
        var finished = false
        var error: String?
    }

    private let sink: HTTPAuditSink
    private let events: [SealedAuditEvent]
    private let chunk: Int
    private let progress = NIOLockedValueBox(Progress())

    init(sink: HTTPAuditSink, events: [SealedAuditEvent], chunk: Int = 1) {
        self.sink = sink
        self.events = events
        self.chunk = chunk
    }

    var accepted: Int { self.progress.withLockedValue { $0.accepted } }
    var finished: Bool { self.progress.withLockedValue { $0.finished } }
    var error: String? { self.progress.withLockedValue { $0.error } }

    func start() {
        Thread {
            for start in stride(from: 0, to: self.events.count, by: self.chunk) {
                let batch = Array(self.events[start..<min(start + self.chunk, self.events.count)])
                do {
                    try self.sink.write(batch)
                } catch {
                    self.progress.withLockedValue { $0.error = "\(error)" }
                    break
                }
                self.progress.withLockedValue { $0.accepted += batch.count }
            }
            self.progress.withLockedValue { $0.finished = true }
        }.start()
    }
}
