public import AuditCore

/// Where sealed events go. The audit writer thread calls every sink with each sealed batch, in chain
/// order, and never from an event loop. A sink that cannot keep up may block in `write` (backpressure:
/// the buffer in front of the writer fills, and `on_overflow` decides); it must never lose an event it
/// accepted without saying so in the log.
public protocol AuditSink: AnyObject, Sendable {
    /// For logs and errors: `file /var/log/portcullis/audit.jsonl`, `http https://...`.
    var name: String { get }
    /// Called on the writer thread with consecutive events of the chain.
    func write(_ batch: [SealedAuditEvent]) throws
    /// Called on the writer thread about every 100 ms and after each batch: time-based work (fsync,
    /// rotation by age). Cheap when there is nothing to do.
    func tick(now: AuditTime) throws
    /// Makes what `write` accepted durable now (a file sink fsyncs). The writer calls it just before it
    /// persists the chain head, so that the head never vouches for events a crash could still take away.
    /// Network sinks keep their own durability (the spool) and need not do anything.
    func sync(now: AuditTime) throws
    /// Writes out what is pending and releases resources, waiting at most `deadline` seconds for network
    /// sinks to deliver (what is left stays in their spool). Called once, on the writer thread, at shutdown.
    func close(deadline: Double)
}

extension AuditSink {
    public func sync(now: AuditTime) throws {}
}
