import AuditCore
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ProxyConfig
import ProxyModel
import Testing

@testable import ProxyAudit

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The syslog sink against a real rsyslogd (RsyslogServer.swift) on 127.0.0.1, plus its pure parts (message
/// format, backoff, configuration checks). Serialized: each test runs its own rsyslogd, and the machines are small.
@Suite(.serialized, .timeLimit(.minutes(1)))
struct SyslogAuditSinkTests {
    static let appName = "portcullis-test"
    static let facility = 13
    /// Quick reconnects, so that the restart tests stay short.
    static let fastOptions = SyslogAuditSink.Options(
        writeTimeout: .seconds(5),
        initialBackoff: .milliseconds(100),
        maxBackoff: .milliseconds(400),
        backoffJitter: 0
    )

    // MARK: - against rsyslogd

    @Test func deliversEventsOverTLSWithClientCertificate() async throws {
        let directory = try TestDirectory("syslog-tls")
        defer { directory.remove() }
        let pki = try TestPKI.make(in: directory.path)
        let server = try RsyslogServer(
            directory: directory.path,
            pki: pki,
            transport: .tlsClientCertificate(permittedPeer: TestPKI.clientName)
        )
        try server.start()
        defer { server.stop(graceful: false) }
        let log = SyslogTestLog()
        let sink = try SyslogAuditSink(
            config: Self.config(
                port: server.port,
                caFile: pki.caFile,
                clientCertificate: (pki.clientCertificateFile, pki.clientKeyFile),
                serverName: "localhost"
            ),
            instance: "syslog-test",
            logger: log.logger,
            options: Self.fastOptions
        )
        var events = SyslogTestEvents()
        let batch = [
            events.request(decision: .allow, path: "/dags"),
            events.request(decision: .deny, path: "/admin"),
            events.fields(kind: AuditKind.policyReload, ["result": .string("applied")]),
            events.fields(kind: AuditKind.dropped, ["count": .integer(3)]),
        ]
        try sink.write(Array(batch[0..<2]))
        try sink.write(Array(batch[2...]))

        let received = try await server.waitForMessages(timeout: 5) { $0.count >= batch.count }
        try #require(received.count == batch.count, "rsyslog got \(received.count) messages; \(server.diagnostics)")
        let expectedSeverities = [6, 5, 6, 4]
        for ((event, message), severity) in zip(zip(batch, received), expectedSeverities) {
            #expect(message.priority == Self.facility * 8 + severity)
            #expect(message.appName == Self.appName)
            #expect(message.msgID == event.kind)
            #expect(message.procID == String(getpid()))
            #expect(message.hostname == SyslogMessageFormat.localHostname())
            #expect(message.timestamp == event.time.rfc3339)
            #expect(message.structuredData == "-")
            // The exact event line, and the same JSON when parsed back.
            #expect(Array(message.msg.utf8) == event.line)
            #expect(StrictJSON.parse(Array(message.msg.utf8)) == StrictJSON.parse(event.line))
            #expect(message.raw == String(decoding: sink.format.message(of: event), as: UTF8.self))
        }
        #expect(log.entries(containing: "syslog connection failed").isEmpty)

        sink.close(deadline: 3)
        #expect(!log.entries(containing: "every event delivered").isEmpty, "\(log.all)")
        #expect(log.entries(containing: "not delivered").isEmpty)
    }

    @Test func refusesServerWhoseCertificateIsFromAnotherCA() async throws {
        let directory = try TestDirectory("syslog-wrong-ca")
        defer { directory.remove() }
        let pki = try TestPKI.make(in: directory.path)
        let server = try RsyslogServer(directory: directory.path, pki: pki, transport: .tlsAnonymous)
        try server.start()
        defer { server.stop(graceful: false) }
        let log = SyslogTestLog()
        let sink = try SyslogAuditSink(
            config: Self.config(port: server.port, caFile: pki.otherCAFile),
            instance: "syslog-test",
            logger: log.logger,
            options: Self.fastOptions
        )
        var events = SyslogTestEvents()
        try sink.write([events.request(decision: .allow, path: "/a"), events.request(decision: .deny, path: "/b")])

        let failures = try await log.waitForEntries(containing: "syslog connection failed", timeout: 5)
        let failure = try #require(failures.first)
        #expect(failure.level == .error)
        #expect(failure.metadata["proxy_error"]?.contains("CERTIFICATE_VERIFY_FAILED") == true, "\(failure)")
        // A few more attempts, none of which may deliver anything.
        try await Task.sleep(for: .milliseconds(500))
        #expect(try server.messages().isEmpty)

        sink.close(deadline: 0.5)
        let closing = try #require(log.entries(containing: "not delivered").first, "\(log.all)")
        #expect(closing.level == .error)
        #expect(closing.metadata["proxy_audit_undelivered"] == "2")
        #expect(try server.messages().isEmpty)
    }

    @Test func refusesCertificateIssuedForAnotherName() async throws {
        let directory = try TestDirectory("syslog-wrong-name")
        defer { directory.remove() }
        let pki = try TestPKI.make(in: directory.path)
        let server = try RsyslogServer(directory: directory.path, pki: pki, transport: .tlsAnonymous)
        try server.start()
        defer { server.stop(graceful: false) }
        let log = SyslogTestLog()
        let sink = try SyslogAuditSink(
            config: Self.config(port: server.port, caFile: pki.caFile, serverName: "syslog.example.org"),
            instance: "syslog-test",
            logger: log.logger,
            options: Self.fastOptions
        )
        var events = SyslogTestEvents()
        try sink.write([events.request(decision: .allow, path: "/a")])

        let failures = try await log.waitForEntries(containing: "syslog connection failed", timeout: 5)
        let failure = try #require(failures.first, "\(log.all)")
        #expect(failure.metadata["proxy_error"]?.contains("failedToValidateHostname") == true, "\(failure)")
        try await Task.sleep(for: .milliseconds(300))
        #expect(try server.messages().isEmpty)
        sink.close(deadline: 0.3)
        #expect(log.entries(containing: "not delivered").first?.metadata["proxy_audit_undelivered"] == "1")
    }

    @Test func reconnectsAfterAGracefulServerRestart() async throws {
        let directory = try TestDirectory("syslog-restart")
        defer { directory.remove() }
        let pki = try TestPKI.make(in: directory.path)
        let server = try RsyslogServer(directory: directory.path, pki: pki, transport: .tlsAnonymous)
        try server.start()
        defer { server.stop(graceful: false) }
        let log = SyslogTestLog()
        let sink = try SyslogAuditSink(
            config: Self.config(port: server.port, caFile: pki.caFile),
            instance: "syslog-test",
            logger: log.logger,
            options: Self.fastOptions
        )
        var events = SyslogTestEvents()
        let before = (0..<10).map { events.request(decision: .allow, path: "/before/\($0)") }
        let during = (0..<10).map { events.request(decision: .deny, path: "/during/\($0)") }
        let after = (0..<10).map { events.request(decision: .allow, path: "/after/\($0)") }

        try sink.write(before)
        _ = try await server.waitForMessages(timeout: 5) { $0.count >= before.count }
        // SIGTERM: rsyslog closes the connection and exits; the sink notices, and queues while it is away.
        server.stop()
        let lost = try await log.waitForEntries(containing: "syslog connection lost", timeout: 3)
        #expect(lost.first?.level == .notice, "\(log.all)")
        try sink.write(during)
        try await Task.sleep(for: .milliseconds(300))
        try server.start()
        try sink.write(after)

        let expected = Set((before + during + after).map(\.hash))
        let received = try await server.waitForMessages(timeout: 8) { messages in
            expected.isSubset(of: Set(messages.compactMap(Self.hash(of:))))
        }
        let missing = expected.subtracting(received.compactMap(Self.hash(of:)))
        #expect(missing.isEmpty, "\(missing.count) of \(expected.count) events missing; \(server.diagnostics)")
        #expect(!log.entries(containing: "syslog server reachable again").isEmpty, "\(log.all)")
        sink.close(deadline: 3)
        #expect(!log.entries(containing: "every event delivered").isEmpty, "\(log.all)")
    }

    @Test func resendsWhatAFrozenAndKilledServerNeverRead() async throws {
        let directory = try TestDirectory("syslog-crash")
        defer { directory.remove() }
        let pki = try TestPKI.make(in: directory.path)
        // A certificate for the address's IP, verified without a server name (no SNI).
        let server = try RsyslogServer(
            directory: directory.path,
            pki: pki,
            transport: .tlsAnonymous,
            certificate: .ipAddress
        )
        try server.start()
        defer { server.stop(graceful: false) }
        let log = SyslogTestLog()
        let sink = try SyslogAuditSink(
            config: Self.config(port: server.port, caFile: pki.caFile, serverName: nil),
            instance: "syslog-test",
            logger: log.logger,
            options: Self.fastOptions
        )
        var events = SyslogTestEvents()
        let all = (0..<240).map { events.request(decision: $0 % 3 == 0 ? .deny : .allow, path: "/jobs/\($0)") }

        // A writer thread, as the audit pipeline has: 240 events in batches of 4, one batch every 10 ms. The server
        // freezes (SIGSTOP: what the sink writes now stays unread in the kernel's buffers, the writes succeed),
        // is killed (SIGKILL: the unread bytes are gone) and started again on the same port. Only the resend
        // window brings those events back.
        let writerResult = NIOLockedValueBox<String?>(nil)
        let writer = Thread {
            do {
                for start in stride(from: 0, to: all.count, by: 4) {
                    try sink.write(Array(all[start..<min(start + 4, all.count)]))
                    usleep(10_000)
                }
                writerResult.withLockedValue { $0 = "ok" }
            } catch {
                writerResult.withLockedValue { $0 = "\(error)" }
            }
        }
        writer.start()
        _ = try await server.waitForMessages(timeout: 5) { $0.count >= 40 }
        server.pause()
        try await Task.sleep(for: .milliseconds(300))
        server.stop(graceful: false)
        let beforeKill = try server.messages()
        #expect(beforeKill.count < all.count, "the server must go away while events are still coming")
        try await Task.sleep(for: .milliseconds(200))
        try server.start()

        let expected = Set(all.map(\.hash))
        let received = try await server.waitForMessages(timeout: 8) { messages in
            expected.isSubset(of: Set(messages.compactMap(Self.hash(of:))))
        }
        let missing = expected.subtracting(received.compactMap(Self.hash(of:)))
        // This failed in about 1 run in 10 while the sink's drain loop went on writing after a write had failed at
        // once with ECONNRESET: the requeued events went onto the dead connection and were never resent.
        #expect(missing.isEmpty, "\(missing.count) of \(all.count) events missing; \(server.diagnostics)")
        #expect(received.allSatisfy { Self.hash(of: $0) != nil })
        // What was written to the killed server was sent again (duplicates are allowed, losses are not).
        let lost = try #require(log.entries(containing: "syslog connection lost").first, "\(log.all)")
        #expect(Int(lost.metadata["proxy_audit_resend"] ?? "0") ?? 0 >= beforeKill.count)

        let deadline = Date(timeIntervalSinceNow: 5)
        while writerResult.withLockedValue({ $0 }) == nil && Date() < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(writerResult.withLockedValue { $0 } == "ok")
        sink.close(deadline: 3)
        #expect(!log.entries(containing: "every event delivered").isEmpty, "\(log.all)")
    }

    /// The deterministic form of the bug the crash test above caught in about 1 run in 10: a write that fails at
    /// once (the peer reset the connection) closes the channel inside `writeAndFlush`, the link's events go back
    /// to the backlog, and the drain loop must stop there. It went on (a closed channel still reports itself
    /// writable), moved the requeued events onto the dead connection, and they were never sent again.
    @Test func aResetMidDrainLosesNothing() async throws {
        let receiver = try ResettingTCPReceiver()
        defer { receiver.stop() }
        // The sink's own event loop, so that the test can hold it.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let log = SyslogTestLog()
        let sink = try SyslogAuditSink(
            config: AuditSyslogSinkConfig(address: HostPort(host: "127.0.0.1", port: receiver.port), tls: false),
            instance: "syslog-test",
            logger: log.logger,
            options: Self.fastOptions,
            eventLoopGroup: group
        )
        var events = SyslogTestEvents()
        let first = events.request(decision: .allow, path: "/first")
        try sink.write([first])
        _ = try await receiver.waitForHashes(timeout: 5) { $0.contains(first.hash) }
        try #require(receiver.connections.count == 1)

        // Hold the event loop, reset the connection, queue several writes' worth (64 KiB each), then let the loop
        // go: it drains before it polls the socket, so its first write meets the reset.
        let gate = DispatchSemaphore(value: 0)
        group.next().execute { gate.wait() }
        try receiver.resetConnection(0)
        usleep(50_000)
        let burst = (0..<400).map { events.request(decision: .allow, path: "/burst/\($0)") }
        #expect(burst.reduce(0) { $0 + $1.line.count } > 3 * SyslogConnection.maxChunkBytes)
        try sink.write(burst)
        gate.signal()

        let expected = Set(([first] + burst).map(\.hash))
        let received = try await receiver.waitForHashes(timeout: 5) { expected.isSubset(of: $0) }
        #expect(
            expected.subtracting(received).isEmpty,
            "\(expected.subtracting(received).count) of \(expected.count) events missing; \(log.all)"
        )
        // It was the reset that the sink met (not, say, a connection that never broke).
        #expect(receiver.connections.count >= 2)
        #expect(!log.entries(containing: "syslog connection lost").isEmpty, "\(log.all)")
        sink.close(deadline: 3)
        #expect(!log.entries(containing: "every event delivered").isEmpty, "\(log.all)")
        try await group.shutdownGracefully()
    }

    @Test func octetCountingCarriesNewlinesAndNonASCIIIntact() async throws {
        let directory = try TestDirectory("syslog-framing")
        defer { directory.remove() }
        let pki = try TestPKI.make(in: directory.path)
        let server = try RsyslogServer(directory: directory.path, pki: pki, transport: .tlsAnonymous)
        try server.start()
        defer { server.stop(graceful: false) }
        let log = SyslogTestLog()
        let sink = try SyslogAuditSink(
            config: Self.config(port: server.port, caFile: pki.caFile),
            instance: "syslog-test",
            logger: log.logger,
            options: Self.fastOptions
        )
        var events = SyslogTestEvents()
        let tricky = events.fields(
            kind: AuditKind.policyReload,
            [
                "note": .string("first line\nsecond line\r\n\tindented \"quoted\" back\\slash"),
                "name": .string("Zoë — ✓ 日本語 🚀 \u{2028}"),
                "big": .string(String(repeating: "ä€𝄞x", count: 5_000)),
            ]
        )
        let after = events.request(decision: .allow, path: "/after")
        #expect(tricky.line.contains(UInt8(ascii: "\\")))
        #expect(!tricky.line.contains(UInt8(ascii: "\n")))
        try sink.write([tricky, after])

        let received = try await server.waitForMessages(timeout: 5) { $0.count >= 2 }
        try #require(received.count == 2, "got \(received.count) messages; \(server.diagnostics)")
        #expect(Array(received[0].msg.utf8) == tricky.line)
        #expect(StrictJSON.parse(Array(received[0].msg.utf8)) == StrictJSON.parse(tricky.line))
        #expect(Array(received[1].msg.utf8) == after.line)
        let parsed = try #require(try? StrictJSON.parse(Array(received[0].msg.utf8)).get().objectValue)
        #expect(parsed["note"]?.stringValue == "first line\nsecond line\r\n\tindented \"quoted\" back\\slash")
        #expect(parsed["name"]?.stringValue == "Zoë — ✓ 日本語 🚀 \u{2028}")
        sink.close(deadline: 3)
    }

    @Test func writeBlocksWhileTheBacklogIsFullAndTheServerIsDown() async throws {
        let directory = try TestDirectory("syslog-backpressure")
        defer { directory.remove() }
        let pki = try TestPKI.make(in: directory.path)
        // The port of a server that is not running yet.
        let server = try RsyslogServer(directory: directory.path, pki: pki, transport: .tlsAnonymous)
        defer { server.stop(graceful: false) }
        let log = SyslogTestLog()
        var options = Self.fastOptions
        options.backlogCapacity = 4
        options.writeTimeout = .seconds(8)
        let sink = try SyslogAuditSink(
            config: Self.config(port: server.port, caFile: pki.caFile),
            instance: "syslog-test",
            logger: log.logger,
            options: options
        )
        var events = SyslogTestEvents()
        let first = (0..<4).map { _ in events.request(decision: .allow, path: "/first") }
        let second = (0..<2).map { _ in events.request(decision: .allow, path: "/second") }

        let started = Date()
        try sink.write(first)
        #expect(Date().timeIntervalSince(started) < 0.5)

        let returned = NIOLockedValueBox<Date?>(nil)
        let writer = Thread {
            try? sink.write(second)
            returned.withLockedValue { $0 = Date() }
        }
        writer.start()
        try await Task.sleep(for: .milliseconds(700))
        #expect(returned.withLockedValue { $0 } == nil, "write returned while the backlog was full")
        #expect(!log.entries(containing: "syslog connection failed").isEmpty)

        let serverStarted = Date()
        try server.start()
        let deadline = Date(timeIntervalSinceNow: 5)
        while returned.withLockedValue({ $0 }) == nil && Date() < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let unblocked = try #require(returned.withLockedValue { $0 }, "write still blocked after the server started")
        #expect(unblocked >= serverStarted)
        let received = try await server.waitForMessages(timeout: 5) { $0.count >= 6 }
        #expect(received.compactMap(Self.hash(of:)) == (first + second).map(\.hash))
        sink.close(deadline: 3)
    }

    @Test func writeThrowsAfterItsTimeoutAndCloseCountsUndelivered() throws {
        let log = SyslogTestLog()
        var options = Self.fastOptions
        options.backlogCapacity = 2
        options.writeTimeout = .milliseconds(300)
        // Nothing listens there.
        let port = try freeLoopbackPort()
        let sink = try SyslogAuditSink(
            config: AuditSyslogSinkConfig(address: HostPort(host: "127.0.0.1", port: port), tls: false),
            instance: "syslog-test",
            logger: log.logger,
            options: options
        )
        var events = SyslogTestEvents()
        try sink.write([events.request(decision: .allow, path: "/1"), events.request(decision: .allow, path: "/2")])
        let started = Date()
        let error = #expect(throws: SyslogSinkError.self) {
            try sink.write([events.request(decision: .allow, path: "/3")])
        }
        #expect(Date().timeIntervalSince(started) >= 0.29)
        #expect(error?.code == .backlogFull)
        #expect(error?.description.contains("unreachable") == true, "\(String(describing: error))")

        sink.close(deadline: 0.3)
        let closing = try #require(log.entries(containing: "not delivered").first, "\(log.all)")
        #expect(closing.metadata["proxy_audit_undelivered"] == "2")
        #expect(throws: SyslogSinkError.self) { try sink.write([events.request(decision: .allow, path: "/4")]) }
    }

    @Test func plainTCPToLoopback() async throws {
        let directory = try TestDirectory("syslog-plain")
        defer { directory.remove() }
        let server = try RsyslogServer(directory: directory.path, pki: nil, transport: .plain)
        try server.start()
        defer { server.stop(graceful: false) }
        let log = SyslogTestLog()
        let sink = try SyslogAuditSink(
            config: AuditSyslogSinkConfig(
                address: HostPort(host: "127.0.0.1", port: server.port),
                tls: false,
                appName: Self.appName
            ),
            instance: "syslog-test",
            logger: log.logger,
            options: Self.fastOptions
        )
        var events = SyslogTestEvents()
        let batch = (0..<20).map { events.request(decision: .allow, path: "/plain/\($0)") }
        try sink.write(batch)
        let received = try await server.waitForMessages(timeout: 5) { $0.count >= batch.count }
        #expect(received.map(\.msg) == batch.map { String(decoding: $0.line, as: UTF8.self) })
        // The half-close is answered by the server: everything confirmed.
        sink.close(deadline: 3)
        #expect(!log.entries(containing: "every event delivered").isEmpty, "\(log.all)")
    }

    // MARK: - pure parts

    @Test func messageFormatAndFraming() throws {
        let format = SyslogMessageFormat(facility: 13, hostname: "host 1\u{7}é", appName: "portcullis", processID: 4242)
        let event = SealedAuditEvent(
            seq: 7,
            hash: String(repeating: "ab", count: 32),
            kind: "http.request",
            time: AuditTime(rfc3339: "2026-11-22T09:15:04.123456Z")!,
            line: Array(#"{"decision":"deny","path":"/ü"}"#.utf8)
        )
        let message = String(decoding: format.message(of: event), as: UTF8.self)
        #expect(
            message
                == #"<109>1 2026-11-22T09:15:04.123456Z host_1___ portcullis 4242 http.request - {"decision":"deny","path":"/ü"}"#
        )

        var buffer = ByteBuffer()
        let written = format.appendFrame(of: event, to: &buffer)
        #expect(written == buffer.readableBytes)
        let frame = buffer.readBytes(length: buffer.readableBytes)!
        let space = try #require(frame.firstIndex(of: UInt8(ascii: " ")))
        let length = try #require(Int(String(decoding: frame[..<space], as: UTF8.self)))
        // MSG-LEN counts octets, not characters.
        #expect(length == frame.count - space - 1)
        #expect(length == message.utf8.count)
        #expect(length != message.count)
    }

    @Test func severityFollowsTheDecision() {
        func event(_ kind: String, _ line: String) -> SealedAuditEvent {
            SealedAuditEvent(seq: 0, hash: "h", kind: kind, time: AuditTime(microseconds: 0), line: Array(line.utf8))
        }
        #expect(SyslogMessageFormat.severity(of: event("http.request", #"{"decision":"allow"}"#)) == 6)
        #expect(SyslogMessageFormat.severity(of: event("http.request", #"{"decision":"deny"}"#)) == 5)
        #expect(SyslogMessageFormat.severity(of: event("http.request", #"{"decision":"error"}"#)) == 6)
        // The marker inside a string value is escaped, so it never matches.
        #expect(
            SyslogMessageFormat.severity(
                of: event("http.request", #"{"decision":"allow","path":"\"decision\":\"deny\""}"#)
            )
                == 6
        )
        #expect(SyslogMessageFormat.severity(of: event("http.request.long_running", #"{"decision":"deny"}"#)) == 5)
        #expect(SyslogMessageFormat.severity(of: event("auth.suppressed", "{}")) == 5)
        #expect(SyslogMessageFormat.severity(of: event("audit.dropped", "{}")) == 4)
        #expect(SyslogMessageFormat.severity(of: event("policy.reload", #"{"decision":"deny"}"#)) == 6)
    }

    @Test func headerFieldsArePrintableASCIIAndBounded() {
        #expect(SyslogMessageFormat.headerField("", maxLength: 32) == Array("-".utf8))
        #expect(SyslogMessageFormat.headerField("a b\u{0}c", maxLength: 32) == Array("a_b_c".utf8))
        #expect(SyslogMessageFormat.headerField(String(repeating: "k", count: 40), maxLength: 32).count == 32)
        #expect(SyslogMessageFormat.headerField("ü", maxLength: 32) == Array("__".utf8))
    }

    @Test func backoffDoublesUpToTheCapAndResets() {
        var backoff = SyslogBackoff(initial: .milliseconds(500), maximum: .seconds(30), jitter: 0.5)
        let delays = (0..<9).map { _ in backoff.nextDelay(random: 0) }
        #expect(delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30].map { Duration.milliseconds(Int64($0 * 1000)) })
        #expect(backoff.nextDelay(random: 1) == .seconds(15))
        backoff.reset()
        #expect(backoff.nextDelay(random: 0.5) == .milliseconds(375))
    }

    @Test func refusesUnusableConfigurations() throws {
        let logger = Logger(label: "syslog-test")
        func code(_ config: AuditSyslogSinkConfig) -> SyslogSinkError.Code? {
            do {
                _ = try SyslogAuditSink(config: config, instance: "t", logger: logger)
                return nil
            } catch let error as SyslogSinkError {
                return error.code
            } catch {
                return nil
            }
        }
        let remote = HostPort(host: "logs.example.com", port: 6514)
        #expect(code(AuditSyslogSinkConfig(address: remote, tls: false)) == .invalidConfiguration)
        #expect(code(AuditSyslogSinkConfig(address: remote, caFile: "/nonexistent/ca.pem")) == .invalidConfiguration)
        #expect(
            code(AuditSyslogSinkConfig(address: remote, caFile: nil, certificateFile: "/nonexistent/c.pem"))
                == .invalidConfiguration
        )
        #expect(code(AuditSyslogSinkConfig(address: remote, appName: "has space")) == .invalidConfiguration)
        #expect(code(AuditSyslogSinkConfig(address: remote, facility: 24)) == .invalidConfiguration)
        #expect(
            code(AuditSyslogSinkConfig(address: HostPort(host: "127.0.0.1", port: 6514), serverName: "10.0.0.1"))
                == .invalidConfiguration
        )
        // Not sendable as SNI (over 255 bytes).
        #expect(
            code(AuditSyslogSinkConfig(address: remote, serverName: String(repeating: "a", count: 300)))
                == .invalidConfiguration
        )
        // Valid: system trust roots, a loopback relay without TLS.
        #expect(code(AuditSyslogSinkConfig(address: remote)) == nil)
        #expect(code(AuditSyslogSinkConfig(address: HostPort(host: "127.0.0.1", port: 514), tls: false)) == nil)
    }

    // MARK: - helpers

    static func config(
        port: Int,
        caFile: String,
        clientCertificate: (String, String)? = nil,
        serverName: String? = "localhost"
    ) -> AuditSyslogSinkConfig {
        AuditSyslogSinkConfig(
            address: HostPort(host: "127.0.0.1", port: port),
            tls: true,
            caFile: caFile,
            certificateFile: clientCertificate?.0,
            privateKeyFile: clientCertificate?.1,
            serverName: serverName,
            appName: Self.appName,
            facility: Self.facility
        )
    }

    /// The `hash` member of the event a message carries.
    static func hash(of message: RsyslogServer.Message) -> String? {
        guard case .success(.object(let object)) = StrictJSON.parse(Array(message.msg.utf8)) else { return nil }
        return object["hash"]?.stringValue
    }
}

/// Sealed events of one chain, with increasing times.
struct SyslogTestEvents {
    var chain = AuditChain(instance: "syslog-test")
    var microseconds: Int64 = 1_795_000_000_123_456

    mutating func request(decision: AuditDecision, path: String) -> SealedAuditEvent {
        let record = HTTPRequestRecord(
            requestID: "req-\(self.chain.nextSeq)",
            listener: "web",
            route: "airflow",
            decision: decision,
            reason: decision == .deny ? "policy_denied" : "allowed",
            clientAddress: "192.0.2.10",
            method: "GET",
            host: "airflow.example.com",
            path: path,
            status: decision == .deny ? 403 : 200
        )
        return self.seal(AuditEvent(kind: AuditKind.httpRequest, time: self.nextTime(), payload: .request(record)))
    }

    mutating func fields(kind: String, _ fields: [String: JSONValue]) -> SealedAuditEvent {
        self.seal(AuditEvent(kind: kind, time: self.nextTime(), fields: fields))
    }

    private mutating func nextTime() -> AuditTime {
        self.microseconds += 1_234
        return AuditTime(microseconds: self.microseconds)
    }

    private mutating func seal(_ event: AuditEvent) -> SealedAuditEvent {
        self.chain.seal(event)
    }
}

/// Log lines captured for assertions.
final class SyslogTestLog: Sendable {
    struct Entry: Sendable, CustomStringConvertible {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
        var description: String { "[\(self.level)] \(self.message) \(self.metadata)" }
    }

    private let box = NIOLockedValueBox<[Entry]>([])

    var logger: Logger {
        let box = self.box
        var logger = Logger(label: "syslog-test") { _ in SyslogTestLogHandler(box: box) }
        logger.logLevel = .trace
        return logger
    }

    var all: [Entry] { self.box.withLockedValue { $0 } }

    /// Entries whose message contains `text`.
    func entries(containing text: String) -> [Entry] {
        self.all.filter { $0.message.contains(text) }
    }

    func waitForEntries(containing text: String, timeout: Double) async throws -> [Entry] {
        let deadline = Date(timeIntervalSinceNow: timeout)
        while true {
            let found = self.entries(containing: text)
            if !found.isEmpty || Date() >= deadline { return found }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

struct SyslogTestLogHandler: LogHandler {
    let box: NIOLockedValueBox<[SyslogTestLog.Entry]>
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    var metadataProvider: Logger.MetadataProvider?

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = self.metadata
        for (key, value) in event.metadata ?? [:] { merged[key] = value }
        let entry = SyslogTestLog.Entry(
            level: event.level,
            message: "\(event.message)",
            metadata: merged.mapValues { "\($0)" }
        )
        self.box.withLockedValue { $0.append(entry) }
    }
}
