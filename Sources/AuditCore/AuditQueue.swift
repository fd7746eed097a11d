import Synchronization

/// The bounded buffer between the request path and the audit writer. The request path never encodes or
/// writes: it reserves a slot when a request is admitted (so that its event cannot be lost later) and
/// fills it when the response completes; the writer thread drains batches.
///
/// `on_overflow: fail_closed`: a request that cannot reserve a slot is refused (503 `audit_unavailable`).
/// `on_overflow: drop`: it goes ahead; if its event finds no room it is counted, and the writer reports the
/// count in an `audit.dropped` event once there is room again.
public final class AuditQueue: Sendable {
    private struct State: ~Copyable {
        var events: [AuditEvent] = []
        var reserved = 0
        var dropped: UInt64 = 0
    }

    public let capacity: Int
    private let state: Mutex<State>

    public init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        var initial = State()
        initial.events.reserveCapacity(min(capacity, 4096))
        self.state = Mutex(initial)
    }

    /// Takes a slot for an event to come. false when the buffer is full.
    public func reserve() -> Bool {
        self.state.withLock { state in
            guard state.events.count + state.reserved < self.capacity else { return false }
            state.reserved += 1
            return true
        }
    }

    /// Gives back a slot that will not be used.
    public func release() {
        self.state.withLock { state in
            if state.reserved > 0 { state.reserved -= 1 }
        }
    }

    /// Enqueues into a slot taken by ``reserve()``. Always succeeds.
    public func submit(reserved event: AuditEvent) {
        self.state.withLock { state in
            if state.reserved > 0 { state.reserved -= 1 }
            state.events.append(event)
        }
    }

    /// Enqueues without a reservation if there is room; otherwise counts the event as dropped.
    @discardableResult
    public func offer(_ event: AuditEvent) -> Bool {
        self.state.withLock { state in
            guard state.events.count + state.reserved < self.capacity else {
                state.dropped += 1
                return false
            }
            state.events.append(event)
            return true
        }
    }

    /// Enqueues even beyond capacity: rare control events (start, stop, reload) that must not be lost.
    public func force(_ event: AuditEvent) {
        self.state.withLock { $0.events.append(event) }
    }

    /// Moves up to `max` events, oldest first, into `batch`; returns the count of dropped events since the
    /// last call (the caller writes an `audit.dropped` event for them).
    public func drain(into batch: inout [AuditEvent], max: Int) -> UInt64 {
        self.state.withLock { state in
            let n = Swift.min(max, state.events.count)
            if n > 0 {
                batch.append(contentsOf: state.events[0..<n])
                state.events.removeFirst(n)
            }
            let dropped = state.dropped
            state.dropped = 0
            return dropped
        }
    }

    /// Queued plus reserved.
    public var occupancy: Int { self.state.withLock { $0.events.count + $0.reserved } }
    public var queued: Int { self.state.withLock { $0.events.count } }
}
