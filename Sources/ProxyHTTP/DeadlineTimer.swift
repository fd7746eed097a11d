import NIOCore

/// A timeout whose deadline moves with every request (idle, header read, response, upstream idle), kept
/// with one scheduled task instead of a schedule and a cancel per request. Moving the deadline later, or
/// clearing it, costs nothing: when the task fires early it re-arms for the current deadline, or does
/// nothing. Only a deadline earlier than the pending task reschedules. Confined to one event loop.
final class DeadlineTimer {
    private let eventLoop: any EventLoop
    private let onExpiry: () -> Void
    private var scheduled: Scheduled<Void>?
    private var firesAt = NIODeadline.distantFuture
    /// The current deadline; nil: nothing to time.
    private(set) var deadline: NIODeadline?

    /// `onExpiry` runs on the loop when the deadline passes. It may hold its owner strongly (a weak capture would
    /// give the owner a refcount side table, slowing every retain and release of it): the owner must then
    /// ``cancel()`` the timer when it goes away, which drops the pending task and with it the cycle.
    init(eventLoop: any EventLoop, onExpiry: @escaping () -> Void) {
        self.eventLoop = eventLoop
        self.onExpiry = onExpiry
    }

    var isSet: Bool { self.deadline != nil }

    func set(_ deadline: NIODeadline) {
        self.deadline = deadline
        if self.scheduled == nil || deadline < self.firesAt {
            self.arm(deadline)
        }
    }

    /// Clears the deadline; a pending task fires later and finds nothing to do.
    func clear() {
        self.deadline = nil
    }

    /// Clears the deadline and drops the pending task (the owner goes away).
    func cancel() {
        self.deadline = nil
        self.scheduled?.cancel()
        self.scheduled = nil
        self.firesAt = .distantFuture
    }

    private func arm(_ at: NIODeadline) {
        self.scheduled?.cancel()
        self.firesAt = at
        // The pending task holds the timer until it fires or is cancelled (no weak reference: see init).
        self.scheduled = self.eventLoop.assumeIsolated().scheduleTask(deadline: at) { [self] in
            self.fired()
        }
    }

    private func fired() {
        self.scheduled = nil
        self.firesAt = .distantFuture
        guard let deadline = self.deadline else { return }
        if deadline <= self.eventLoop.now {
            self.deadline = nil
            self.onExpiry()
        } else {
            self.arm(deadline)
        }
    }
}

@available(*, unavailable)
extension DeadlineTimer: Sendable {}
