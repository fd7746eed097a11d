public import AuditCore
import Foundation
public import Logging
public import ProxyConfig
import ProxyModel
import Synchronization

/// The audit writer: one thread that drains the request path's buffer, seals events into the chain,
/// hands each sealed batch to every sink, writes signed checkpoints and persists the chain head.
/// The request path only touches ``queue``.
public final class AuditPipeline: @unchecked Sendable {
    // @unchecked: `chain`, `sinks` and the counters below are confined to the writer thread once started
    // (before start, to the thread calling start); `control` is the only state shared across threads.
    public let queue: AuditQueue
    public let config: AuditConfig
    public let instance: String
    private let logger: Logger
    private var sinks: [any AuditSink]
    private var chain: AuditChain
    private let signer: CheckpointSigner?
    private let headFile: String?
    /// Why the chain did not continue a persisted head (nil: it continues); becomes the chain_start event.
    private var chainStart: [String: JSONValue]?

    private struct Control: ~Copyable {
        var stopping = false
        var stopped = false
        var sealedTotal: UInt64 = 0
    }
    private let control = Mutex(Control())
    private let finished = DispatchSemaphore(value: 0)
    private var thread: Thread?

    // writer-thread state
    private var eventsSinceCheckpoint = 0
    private var lastCheckpoint = AuditTime(microseconds: 0)
    private var lastTick = AuditTime(microseconds: 0)
    private var persistedHead: String?
    private var lastHeadWrite = AuditTime(microseconds: 0)

    /// - Parameters:
    ///   - sinks: built by the caller (``AuditSinkFactory``), in config order.
    ///   - hmacKey: the chain's HMAC key, if configured.
    ///   - signer: the checkpoint key, if configured.
    public init(
        config: AuditConfig,
        instance: String,
        sinks: [any AuditSink],
        hmacKey: [UInt8]?,
        signer: CheckpointSigner?,
        logger: Logger
    ) {
        self.config = config
        self.instance = instance
        self.queue = AuditQueue(capacity: config.bufferEvents)
        self.sinks = sinks
        self.signer = signer
        self.logger = logger
        self.headFile = config.effectiveHeadFile
        let recovery = ChainRecovery.recover(
            instance: instance,
            headFile: config.effectiveHeadFile,
            activeFile: config.sinks.lazy.compactMap { sink -> String? in
                if case .file(let file) = sink { return file.path }
                return nil
            }.first,
            hmacKey: hmacKey,
            logger: logger
        )
        self.chain = AuditChain(instance: instance, nextSeq: recovery.nextSeq, head: recovery.head, hmacKey: hmacKey)
        self.chainStart = recovery.chainStart
        self.persistedHead = recovery.nextSeq == 0 ? nil : recovery.head
    }

    /// The seq and hash the chain continues from (for logs and tests).
    public var startingPoint: (nextSeq: UInt64, head: String, newChain: Bool) {
        (self.chain.nextSeq, self.chain.head, self.chainStart != nil)
    }

    /// The writer thread's name.
    public static let threadName = "audit-writer"

    /// Linux: `/proc/thread-self/comm` (what `pthread_setname_np` does; Swift's Glibc module does not export
    /// it, and `prctl` is variadic). Best effort.
    private static func nameCurrentThread(_ name: String) {
        #if os(Linux)
        let fd = open("/proc/thread-self/comm", O_WRONLY)
        guard fd >= 0 else { return }
        let bytes = Array(name.utf8.prefix(15))
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        #endif
    }

    public func start() {
        if let chainStart = self.chainStart {
            // The first event of a new chain says why there is a new chain.
            self.queue.force(AuditEvent(kind: AuditKind.chainStart, time: AuditClock.now(), fields: chainStart))
            self.chainStart = nil
        }
        let thread = Thread { [self] in
            // The kernel's name for the thread (`ps -L`, `/proc/PID/task/TID/comm`, the benchmark's per-thread
            // CPU): at most 15 bytes. Foundation's `Thread.name` does not set it on Linux.
            Self.nameCurrentThread(Self.threadName)
            self.run()
        }
        thread.name = Self.threadName
        thread.stackSize = 1 << 20
        self.thread = thread
        thread.start()
    }

    /// Writes everything queued, closes the sinks (network sinks get `deadline` seconds to deliver) and
    /// returns when the writer thread has ended.
    public func stop(deadline: Double = 5) {
        let alreadyStopping = self.control.withLock { control -> Bool in
            defer {
                if !control.stopping {
                    // Written under the lock the writer reads `stopping` with: it sees the deadline too.
                    self.closeDeadline = deadline
                    control.stopping = true
                }
            }
            return control.stopping
        }
        guard !alreadyStopping, self.thread != nil else { return }
        self.finished.wait()
    }

    private var closeDeadline: Double = 5

    /// Events sealed so far (all sinks were handed them).
    public var sealedCount: UInt64 { self.control.withLock { $0.sealedTotal } }

    // MARK: - writer thread

    private func run() {
        // Signals are for the lifecycle's handlers (SIGTERM, SIGINT, SIGHUP): a process-directed signal
        // delivered to this thread would be lost (they are ignored here), so this thread never takes them.
        var mask = sigset_t()
        sigemptyset(&mask)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2] { sigaddset(&mask, signal) }
        pthread_sigmask(SIG_BLOCK, &mask, nil)
        var batch: [AuditEvent] = []
        batch.reserveCapacity(1024)
        var sealed: [SealedAuditEvent] = []
        sealed.reserveCapacity(1100)
        while true {
            batch.removeAll(keepingCapacity: true)
            let dropped = self.queue.drain(into: &batch, max: 1024)
            let now = AuditClock.now()
            if dropped > 0 {
                batch.append(AuditEvent(kind: AuditKind.dropped, time: now, fields: ["count": .integer(Int64(dropped))]))
                self.logger.error(
                    "audit events dropped: the buffer was full (on_overflow: drop)",
                    metadata: ["proxy_audit_dropped": "\(dropped)"]
                )
            }
            let stopping = self.control.withLock { $0.stopping }
            if batch.isEmpty {
                if let signer = self.signer, self.eventsSinceCheckpoint > 0,
                    now.microseconds - self.lastCheckpoint.microseconds >= self.checkpointIntervalMicros || stopping
                {
                    sealed.removeAll(keepingCapacity: true)
                    self.appendCheckpoint(signer: signer, now: now, to: &sealed)
                    self.deliver(sealed)
                    continue
                }
                self.tick(now: now, force: stopping)
                if stopping && self.queue.queued == 0 { break }
                usleep(2000)
                continue
            }
            sealed.removeAll(keepingCapacity: true)
            for event in batch {
                sealed.append(self.chain.seal(event))
                self.eventsSinceCheckpoint += 1
                if let signer = self.signer, let every = self.config.checkpoint?.everyEvents,
                    self.eventsSinceCheckpoint >= every
                {
                    self.appendCheckpoint(signer: signer, now: event.time, to: &sealed)
                }
            }
            self.deliver(sealed)
            self.tick(now: now, force: false)
            // A batch that did not fill up means the writer has caught up: wait for more rather than come back for
            // the few events submitted meanwhile (a write per handful of events, and a thread that competes with
            // the event loops for the core).
            if batch.count < 1024 { usleep(2000) }
        }
        var synced = true
        for sink in self.sinks where !self.sync(sink, now: AuditClock.now()) { synced = false }
        for sink in self.sinks { sink.close(deadline: self.closeDeadline) }
        if synced && self.headMoved {
            self.writeHead(now: AuditClock.now())
        }
        self.control.withLock { $0.stopped = true }
        self.finished.signal()
    }

    private var checkpointIntervalMicros: Int64 { self.config.checkpoint?.interval.microseconds ?? Int64.max }

    private func appendCheckpoint(signer: CheckpointSigner, now: AuditTime, to sealed: inout [SealedAuditEvent]) {
        do {
            let fields = try signer.checkpoint(instance: self.instance, seq: self.chain.nextSeq - 1, hash: self.chain.head)
            sealed.append(self.chain.seal(AuditEvent(kind: AuditKind.checkpoint, time: now, fields: fields)))
        } catch {
            self.logger.error("audit checkpoint could not be signed", metadata: ["proxy_error": "\(error)"])
        }
        self.eventsSinceCheckpoint = 0
        self.lastCheckpoint = now
    }

    /// Every sink gets the batch; a failing sink is retried (with the writer held back, so the buffer
    /// fills and `on_overflow` applies) until it takes the batch or the process stops.
    private func deliver(_ sealed: [SealedAuditEvent]) {
        guard !sealed.isEmpty else { return }
        for sink in self.sinks {
            var delay: UInt32 = 100_000
            var failures = 0
            var stoppingSince: ContinuousClock.Instant?
            while true {
                do {
                    try sink.write(sealed)
                    if failures > 0 {
                        self.logger.notice("audit sink recovered", metadata: ["proxy_audit_sink": "\(sink.name)"])
                    }
                    break
                } catch {
                    failures += 1
                    if failures == 1 || failures % 10 == 0 {
                        self.logger.error(
                            "audit sink failed; retrying (requests wait for the audit buffer)",
                            metadata: ["proxy_audit_sink": "\(sink.name)", "proxy_error": "\(error)"]
                        )
                    }
                    if stoppingSince == nil && self.control.withLock({ $0.stopping }) { stoppingSince = .now }
                    // Shutting down: a sink that still fails after the close deadline gets no more tries.
                    if let since = stoppingSince, ContinuousClock.now - since > .seconds(self.closeDeadline) {
                        self.logger.critical(
                            "audit sink failed at shutdown: events not written to it",
                            metadata: ["proxy_audit_sink": "\(sink.name)", "proxy_audit_events": "\(sealed.count)"]
                        )
                        break
                    }
                    usleep(delay)
                    delay = min(delay * 2, 2_000_000)
                }
            }
        }
        self.control.withLock { $0.sealedTotal += UInt64(sealed.count) }
    }

    private func tick(now: AuditTime, force: Bool) {
        guard force || now.microseconds - self.lastTick.microseconds >= 100_000 else { return }
        self.lastTick = now
        // The head is persisted at the file sink's fsync cadence, right after the sinks made their events
        // durable: a head written (and fsynced) more often than the events it names would, after a power
        // loss, claim events the file no longer has, and `audit verify --head` would report a truncation.
        let headDue = self.headMoved && (force || now.microseconds - self.lastHeadWrite.microseconds >= self.headIntervalMicros)
        var synced = true
        for sink in self.sinks {
            // No head for events that may not be durable (the next tick tries again); that sink skips its tick.
            if headDue && !self.sync(sink, now: now) {
                synced = false
                continue
            }
            do {
                try sink.tick(now: now)
            } catch {
                self.logger.error("audit sink tick failed", metadata: ["proxy_audit_sink": "\(sink.name)", "proxy_error": "\(error)"])
            }
        }
        if headDue && synced { self.writeHead(now: now) }
    }

    /// Makes the sink's events durable; false (logged) when it could not.
    private func sync(_ sink: any AuditSink, now: AuditTime) -> Bool {
        do {
            try sink.sync(now: now)
            return true
        } catch {
            self.logger.error("audit sink sync failed", metadata: ["proxy_audit_sink": "\(sink.name)", "proxy_error": "\(error)"])
            return false
        }
    }

    /// The chain has events the persisted head does not name yet (and there is a head file to write).
    private var headMoved: Bool {
        self.headFile != nil && self.chain.nextSeq > 0 && self.persistedHead != self.chain.head
    }

    /// How often the head is persisted: the first file sink's `fsync_interval` (at least 100 ms; 1 s without
    /// a file sink).
    private var headIntervalMicros: Int64 {
        for sink in self.config.sinks {
            if case .file(let file) = sink { return max(file.fsyncInterval.microseconds, 100_000) }
        }
        return 1_000_000
    }

    /// Persists the chain head: a temporary file written and fsynced, then renamed over the head file.
    private func writeHead(now: AuditTime) {
        guard let headFile = self.headFile else { return }
        let head = AuditHead(instance: self.instance, seq: self.chain.nextSeq - 1, hash: self.chain.head, time: now)
        let temporary = headFile + ".tmp"
        do {
            let directory = (headFile as NSString).deletingLastPathComponent
            if !directory.isEmpty && !FileManager.default.fileExists(atPath: directory) {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
            try Self.writeDurably(head.json, to: temporary)
            if rename(temporary, headFile) != 0 { throw AuditIOError(operation: "rename", path: headFile, errno: errno) }
            self.persistedHead = head.hash
            self.lastHeadWrite = now
        } catch {
            self.logger.error("audit head not persisted", metadata: ["proxy_audit_head": "\(headFile)", "proxy_error": "\(error)"])
        }
    }

    /// open (truncating), write everything, fsync, close.
    private static func writeDurably(_ bytes: [UInt8], to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw AuditIOError(operation: "open", path: path, errno: errno) }
        defer { close(fd) }
        try writeAll(bytes, to: fd, path: path)
        if fsync(fd) != 0 { throw AuditIOError(operation: "fsync", path: path, errno: errno) }
    }
}
