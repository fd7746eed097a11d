import AuditCore
import Foundation
import Logging
import ProxyConfig
import ProxyModel
import Testing

@testable import ProxyAudit

/// A temporary folder for one test, removed at the end.
final class AuditTestDirectory {
    let path: String

    init() throws {
        self.path = NSTemporaryDirectory() + "portcullis-audit-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: self.path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: self.path) }

    func files() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: self.path)) ?? []).sorted()
    }

    func read(_ name: String) -> [UInt8] { Array(FileManager.default.contents(atPath: self.path + "/" + name) ?? Data()) }
}

@Suite("audit pipeline: file sink, chain across restarts, HMAC, checkpoints, drops")
struct AuditPipelineTests {
    let logger = Logger(label: "audit-tests")

    func event(_ n: Int, padding: Int = 0) -> AuditEvent {
        AuditEvent(
            kind: AuditKind.policyReload,
            time: AuditTime(microseconds: 1_795_000_000_000_000 + Int64(n)),
            fields: ["n": .integer(Int64(n)), "pad": .string(String(repeating: "x", count: padding))]
        )
    }

    /// Runs a pipeline over `config` until `events` are written, then stops it.
    @discardableResult
    func run(
        _ config: AuditConfig,
        events: [AuditEvent],
        hmacKey: [UInt8]? = nil,
        signer: CheckpointSigner? = nil,
        instance: String = "i-1"
    ) throws -> AuditPipeline {
        var sinks: [any AuditSink] = []
        for sink in config.sinks {
            if case .file(let file) = sink { sinks.append(try FileAuditSink(config: file, logger: self.logger)) }
        }
        let pipeline = AuditPipeline(config: config, instance: instance, sinks: sinks, hmacKey: hmacKey, signer: signer, logger: self.logger)
        pipeline.start()
        for event in events { pipeline.queue.force(event) }
        pipeline.stop(deadline: 1)
        return pipeline
    }

    func config(_ dir: AuditTestDirectory, maxSize: Int64 = 100 << 20, keep: Int = 10, checkpoint: AuditCheckpointConfig? = nil)
        -> AuditConfig
    {
        AuditConfig(
            checkpoint: checkpoint,
            sinks: [.file(AuditFileSinkConfig(path: dir.path + "/audit.jsonl", maxSize: maxSize, keep: keep, fsyncInterval: .zero))]
        )
    }

    func verify(_ dir: AuditTestDirectory, head: Bool = true, hmacKey: [UInt8]? = nil, publicKey: [UInt8]? = nil) throws
        -> AuditVerificationReport
    {
        let files = dir.files().filter { $0.hasSuffix(".jsonl") }
        let headValue = head ? AuditHead(json: dir.read("audit.jsonl.head")) : nil
        if head { #expect(headValue != nil, "the head was persisted") }
        return AuditVerifier.verify(
            files: files.map { ($0, dir.read($0)) },
            head: headValue,
            checkpointKey: try publicKey.map { try CheckpointVerifier(rawPublicKey: $0) },
            hmacKey: hmacKey
        )
    }

    func lines(_ bytes: [UInt8]) -> [[String: JSONValue]] {
        bytes.split(separator: UInt8(ascii: "\n")).compactMap {
            if case .success(.object(let object)) = StrictJSON.parse($0) { return object }
            return nil
        }
    }

    @Test("size rotation keeps the newest N files, each within max_size, named in rotation order; the rest verifies")
    func sizeRotation() throws {
        let dir = try AuditTestDirectory()
        try self.run(self.config(dir, maxSize: 4096, keep: 3), events: (0..<60).map { self.event($0, padding: 300) })
        let rotated = dir.files().filter { $0.hasPrefix("audit-") && $0.hasSuffix(".jsonl") }
        #expect(rotated.count == 3, "\(dir.files())")
        for name in rotated + ["audit.jsonl"] {
            #expect(dir.read(name).count <= 4096, "\(name) is \(dir.read(name).count) bytes")
        }
        // Counters increase with rotation order.
        let counters = rotated.compactMap { Int($0.dropFirst("audit-".count).prefix(10)) }
        #expect(counters == counters.sorted() && Set(counters).count == 3)
        let report = try self.verify(dir)
        #expect(report.isVerified, "\(String(describing: report.finding))")
        #expect(report.summary.startsMidChain, "older files were removed by rotate.keep")
        #expect(report.summary.lastSeq == 60)  // the chain start is seq 0, then 60 events
    }

    @Test("age rotation: a file older than max_age is rotated at the next tick")
    func ageRotation() throws {
        let dir = try AuditTestDirectory()
        let sink = try FileAuditSink(
            config: AuditFileSinkConfig(path: dir.path + "/audit.jsonl", maxAge: .seconds(60), keep: 5),
            logger: self.logger
        )
        var chain = AuditChain(instance: "i-1")
        try sink.write([chain.seal(self.event(1))])
        try sink.tick(now: AuditTime(microseconds: AuditClock.now().microseconds + 30_000_000))
        #expect(dir.files() == ["audit.jsonl"], "not old enough yet")
        try sink.tick(now: AuditTime(microseconds: AuditClock.now().microseconds + 61_000_000))
        try sink.write([chain.seal(self.event(2))])
        sink.close(deadline: 0)
        let rotated = dir.files().filter { $0.hasPrefix("audit-") }
        #expect(rotated.count == 1)
        #expect(self.lines(dir.read(rotated[0])).count == 1 && self.lines(dir.read("audit.jsonl")).count == 1)
    }

    @Test("a restart continues the chain from the persisted head: one chain, no second chain_start")
    func restartContinuesTheChain() throws {
        let dir = try AuditTestDirectory()
        let config = self.config(dir)
        let first = try self.run(config, events: (0..<5).map { self.event($0) })
        #expect(first.sealedCount == 6)  // the chain start and 5 events
        let second = try self.run(config, events: (5..<9).map { self.event($0) })
        #expect(second.sealedCount == 4)
        let report = try self.verify(dir)
        #expect(report.isVerified, "\(String(describing: report.finding))")
        #expect(report.summary.chainRestarts.isEmpty && report.summary.events == 10)
        let kinds = self.lines(dir.read("audit.jsonl")).compactMap { $0["kind"]?.stringValue }
        #expect(kinds.filter { $0 == AuditKind.chainStart }.count == 1)
    }

    @Test("a partial last line (killed while writing) is cut off at the next start, and the chain goes on")
    func partialLineIsCut() throws {
        let dir = try AuditTestDirectory()
        let config = self.config(dir)
        try self.run(config, events: (0..<3).map { self.event($0) })
        let handle = try #require(FileHandle(forWritingAtPath: dir.path + "/audit.jsonl"))
        handle.seekToEndOfFile()
        handle.write(Data("{\"bytes_in\":0,\"cli".utf8))
        try handle.close()
        try self.run(config, events: [self.event(3)])
        let bytes = dir.read("audit.jsonl")
        #expect(bytes.last == UInt8(ascii: "\n"))
        #expect(!String(decoding: bytes, as: UTF8.self).contains("\"cli"))
        let report = try self.verify(dir)
        #expect(report.isVerified, "\(String(describing: report.finding))")
        #expect(report.summary.events == 5)
    }

    @Test("without the head: a new chain whose chain_start says why and names the previous chain's last record")
    func lostHeadStartsANewChain() throws {
        let dir = try AuditTestDirectory()
        let config = self.config(dir)
        try self.run(config, events: (0..<3).map { self.event($0) })
        let last = try #require(self.lines(dir.read("audit.jsonl")).last)
        try FileManager.default.removeItem(atPath: dir.path + "/audit.jsonl.head")
        try self.run(config, events: [self.event(3)])
        let events = self.lines(dir.read("audit.jsonl"))
        let start = try #require(events.last { $0["kind"]?.stringValue == AuditKind.chainStart })
        #expect(start["seq"]?.int64Value == 0 && start["reason"]?.stringValue == "head_missing")
        #expect(start["previous"]?.objectValue?["hash"] == last["hash"])
        #expect(start["previous"]?.objectValue?["seq"] == last["seq"])
        let report = try self.verify(dir)
        #expect(report.isVerified, "\(String(describing: report.finding))")
        #expect(report.summary.chainRestarts.count == 1)
    }

    @Test("another instance's head is not continued")
    func otherInstanceHead() throws {
        let dir = try AuditTestDirectory()
        let config = self.config(dir)
        try self.run(config, events: [self.event(0)], instance: "i-1")
        try self.run(config, events: [self.event(1)], instance: "i-2")
        let starts = self.lines(dir.read("audit.jsonl")).filter { $0["kind"]?.stringValue == AuditKind.chainStart }
        #expect(starts.map { $0["reason"]?.stringValue } == ["head_missing", "head_other_instance"])
    }

    @Test("HMAC: the chain verifies with the key; an attacker re-hashing an edit without the key is caught")
    func hmacChain() throws {
        let dir = try AuditTestDirectory()
        let key = Array("0123456789abcdef0123456789abcdef".utf8)
        try self.run(self.config(dir), events: (0..<4).map { self.event($0) }, hmacKey: key)
        #expect(try self.verify(dir, hmacKey: key).isVerified)
        let unkeyed = try self.verify(dir, hmacKey: nil)
        #expect(unkeyed.finding?.kind == .altered && unkeyed.finding?.line == 1)
        // Edit line 3 and rebuild the rest of the chain with plain SHA-256 (no key): caught with the key.
        var events = self.lines(dir.read("audit.jsonl"))
        events[2]["n"] = .integer(99)
        var previous = events[1]["hash"]!.stringValue!
        var rebuilt: [UInt8] = []
        for (index, var event) in events.enumerated() {
            if index >= 2 {
                event["prev_hash"] = .string(previous)
                event["hash"] = .string(AuditChain.hash(members: event, hmacKey: nil))
            }
            previous = event["hash"]!.stringValue!
            rebuilt += CanonicalJSON.encode(.object(event)) + [UInt8(ascii: "\n")]
        }
        try Data(rebuilt).write(to: URL(fileURLWithPath: dir.path + "/audit.jsonl"))
        let caught = try self.verify(dir, head: false, hmacKey: key)
        #expect(caught.finding?.kind == .altered && caught.finding?.line == 3, "\(String(describing: caught.finding))")
    }

    @Test("signed checkpoints every N events verify with the public key")
    func checkpoints() throws {
        let dir = try AuditTestDirectory()
        let signer = try CheckpointSigner(rawPrivateKey: Array(repeating: 7, count: 32))
        let config = self.config(dir, checkpoint: AuditCheckpointConfig(keyFile: "unused", everyEvents: 3))
        try self.run(config, events: (0..<9).map { self.event($0) }, signer: signer)
        let kinds = self.lines(dir.read("audit.jsonl")).compactMap { $0["kind"]?.stringValue }
        // After every 3 events (the chain start counts), and one at shutdown for the rest: the end is anchored.
        #expect(kinds.filter { $0 == AuditKind.checkpoint }.count == 4, "\(kinds)")
        #expect(kinds.last == AuditKind.checkpoint)
        let report = try self.verify(dir, publicKey: signer.rawPublicKey)
        #expect(report.isVerified, "\(String(describing: report.finding))")
        #expect(report.summary.checkpointsVerified == 4)
        let other = try CheckpointSigner(rawPrivateKey: Array(repeating: 8, count: 32))
        #expect(try self.verify(dir, publicKey: other.rawPublicKey).finding?.kind == .signatureInvalid)
    }

    @Test("drop mode: events offered to a full buffer are counted and reported by an audit.dropped event")
    func droppedEventsAreReported() throws {
        let dir = try AuditTestDirectory()
        var config = self.config(dir)
        config.bufferEvents = 16
        config.onOverflow = .drop
        let file = AuditFileSinkConfig(path: dir.path + "/audit.jsonl")
        let sink = try FileAuditSink(config: file, logger: self.logger)
        let pipeline = AuditPipeline(config: config, instance: "i-1", sinks: [sink], hmacKey: nil, signer: nil, logger: self.logger)
        // Not started yet: the buffer fills (the chain_start event is forced in at start).
        var accepted = 0
        for n in 0..<40 where pipeline.queue.offer(self.event(n)) { accepted += 1 }
        #expect(accepted == 16)
        pipeline.start()
        pipeline.stop(deadline: 1)
        let events = self.lines(dir.read("audit.jsonl"))
        let dropped = try #require(events.first { $0["kind"]?.stringValue == AuditKind.dropped })
        #expect(dropped["count"]?.int64Value == 24)
        #expect(events.filter { $0["kind"]?.stringValue == AuditKind.policyReload }.count == 16)
    }

    @Test("a sink that fails is retried with the writer held back; nothing is skipped")
    func failingSinkIsRetried() throws {
        let flaky = FlakySink(failures: 3)
        let pipeline = AuditPipeline(
            config: AuditConfig(sinks: []),
            instance: "i-1",
            sinks: [flaky],
            hmacKey: nil,
            signer: nil,
            logger: self.logger
        )
        pipeline.start()
        for n in 0..<5 { pipeline.queue.force(self.event(n)) }
        pipeline.stop(deadline: 5)
        let seqs = flaky.received.map(\.seq)
        #expect(seqs == Array(0..<UInt64(seqs.count)) && seqs.count == 6, "\(seqs)")
        #expect(flaky.attempts >= 4)
    }
}

extension AuditPipelineTests {
    @Test("the head is persisted at the file sink's fsync cadence, never for events not yet synced")
    func headFollowsTheSinksSync() throws {
        let dir = try AuditTestDirectory()
        let spy = SyncSpySink(headFile: dir.path + "/audit.head")
        // fsync every 600 ms: after the first head (written at the first tick), the next is due 600 ms later,
        // not at the writer's next 100 ms tick.
        let file = AuditFileSinkConfig(path: dir.path + "/audit.jsonl", fsyncInterval: .milliseconds(600))
        let config = AuditConfig(headFile: dir.path + "/audit.head", sinks: [.file(file)])
        let pipeline = AuditPipeline(
            config: config,
            instance: "i-1",
            sinks: [try FileAuditSink(config: file, logger: self.logger), spy],
            hmacKey: nil,
            signer: nil,
            logger: self.logger
        )
        pipeline.start()
        defer { pipeline.stop(deadline: 1) }
        for n in 0..<10 { pipeline.queue.force(self.event(n)) }
        usleep(100_000)
        let first = try #require(AuditHead(json: dir.read("audit.head")), "the first head is written at once")
        #expect(first.seq <= 10)  // chain_start and up to 10 events, as the writer's first batch took them
        for n in 10..<20 { pipeline.queue.force(self.event(n)) }
        usleep(150_000)
        let unchanged = try #require(AuditHead(json: dir.read("audit.head")))
        #expect(unchanged.seq == first.seq, "the head was rewritten before the fsync interval was over")
        usleep(800_000)
        let later = try #require(AuditHead(json: dir.read("audit.head")))
        #expect(later.seq == 20)
        pipeline.stop(deadline: 1)  // the writer thread is done with the spy
        // Each head on disk was written after some sync and names only events the sinks had been handed before
        // it: at sync i, the head on disk names a seq below the count received at sync i - 1.
        let syncs = spy.syncs
        #expect(syncs.count >= 2)
        for i in syncs.indices.dropFirst() {
            if let seq = syncs[i].headSeqOnDisk {
                #expect(seq < syncs[i - 1].received, "sync \(i): the head names seq \(seq), the sinks had \(syncs[i - 1].received)")
            }
        }
    }
}

extension AuditPipelineTests {
    @Test("a sink that cannot sync gets no head written for its events, neither while running nor at shutdown")
    func noHeadWithoutSync() throws {
        let dir = try AuditTestDirectory()
        let sink = SyncFailingSink()
        let pipeline = AuditPipeline(
            config: AuditConfig(headFile: dir.path + "/audit.head", sinks: []),
            instance: "i-1",
            sinks: [sink],
            hmacKey: nil,
            signer: nil,
            logger: self.logger
        )
        pipeline.start()
        for n in 0..<5 { pipeline.queue.force(self.event(n)) }
        usleep(300_000)
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/audit.head"))
        pipeline.stop(deadline: 1)
        #expect(sink.received == 6)
        #expect(sink.syncAttempts >= 2)
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/audit.head"))
    }
}

/// Takes every batch but fails every `sync` (a disk that cannot fsync).
final class SyncFailingSink: AuditSink, @unchecked Sendable {
    let name = "sync-failing"
    private(set) var received = 0
    private(set) var syncAttempts = 0
    struct Failure: Error {}
    func write(_ batch: [SealedAuditEvent]) throws { self.received += batch.count }
    func sync(now: AuditTime) throws {
        self.syncAttempts += 1
        throw Failure()
    }
    func tick(now: AuditTime) throws {}
    func close(deadline: Double) {}
}

/// Records, at each `sync`, how many events it has received and the seq of the head on disk at that moment.
final class SyncSpySink: AuditSink, @unchecked Sendable {
    let name = "sync-spy"
    let headFile: String
    private var received = 0
    private(set) var syncs: [(received: Int, headSeqOnDisk: UInt64?)] = []

    init(headFile: String) { self.headFile = headFile }

    func write(_ batch: [SealedAuditEvent]) throws { self.received += batch.count }

    func sync(now: AuditTime) throws {
        let head = FileManager.default.contents(atPath: self.headFile).flatMap { AuditHead(json: Array($0)) }
        self.syncs.append((self.received, head?.seq))
    }

    func tick(now: AuditTime) throws {}
    func close(deadline: Double) {}
}

/// Fails its first `failures` writes.
final class FlakySink: AuditSink, @unchecked Sendable {
    let name = "flaky"
    private var remaining: Int
    private(set) var received: [SealedAuditEvent] = []
    private(set) var attempts = 0

    init(failures: Int) { self.remaining = failures }

    struct Failure: Error {}

    func write(_ batch: [SealedAuditEvent]) throws {
        self.attempts += 1
        if self.remaining > 0 {
            self.remaining -= 1
            throw Failure()
        }
        self.received += batch
    }

    func tick(now: AuditTime) throws {}
    func close(deadline: Double) {}
}
