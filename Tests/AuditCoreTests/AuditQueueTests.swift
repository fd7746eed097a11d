import ProxyModel
import Testing

@testable import AuditCore

@Suite("Audit queue")
struct AuditQueueTests {
    static func ids(_ events: [AuditEvent]) -> [String] {
        events.map { $0.members["request_id"]?.stringValue ?? "?" }
    }

    @Test("reserve takes slots up to capacity; submit fills them; release gives one back")
    func reserve() {
        let queue = AuditQueue(capacity: 2)
        #expect(queue.reserve())
        #expect(queue.reserve())
        #expect(!queue.reserve())
        #expect(queue.occupancy == 2)
        #expect(queue.queued == 0)
        queue.release()
        #expect(queue.occupancy == 1)
        #expect(queue.reserve())
        queue.submit(reserved: Fixture.event(1))
        #expect(queue.queued == 1)
        #expect(queue.occupancy == 2)
        #expect(!queue.reserve())
    }

    @Test("offer enqueues while there is room and counts what it drops; drain reports and resets the count")
    func offerAndDrop() {
        let queue = AuditQueue(capacity: 3)
        #expect(queue.reserve())
        #expect(queue.offer(Fixture.event(1)))
        #expect(queue.offer(Fixture.event(2)))
        #expect(!queue.offer(Fixture.event(3)))  // the reserved slot is not given away
        #expect(!queue.offer(Fixture.event(4)))
        var batch: [AuditEvent] = []
        #expect(queue.drain(into: &batch, max: 10) == 2)
        #expect(Self.ids(batch) == ["a-1", "a-2"])
        #expect(queue.occupancy == 1)  // the reservation remains
        batch.removeAll()
        #expect(queue.drain(into: &batch, max: 10) == 0)
        #expect(batch.isEmpty)
    }

    @Test("force enqueues beyond capacity (control events are never lost)")
    func force() {
        let queue = AuditQueue(capacity: 1)
        #expect(queue.offer(Fixture.event(1)))
        queue.force(Fixture.event(2))
        queue.force(Fixture.event(3))
        #expect(queue.queued == 3)
        #expect(!queue.reserve())
        var batch: [AuditEvent] = []
        _ = queue.drain(into: &batch, max: 10)
        #expect(Self.ids(batch) == ["a-1", "a-2", "a-3"])
    }

    @Test("drain takes at most max, oldest first, appending to the batch")
    func drainOrder() {
        let queue = AuditQueue(capacity: 10)
        for i in 1...5 { queue.offer(Fixture.event(i)) }
        var batch = [Fixture.event(0)]
        _ = queue.drain(into: &batch, max: 2)
        #expect(Self.ids(batch) == ["a-0", "a-1", "a-2"])
        #expect(queue.queued == 3)
        batch.removeAll()
        _ = queue.drain(into: &batch, max: 100)
        #expect(Self.ids(batch) == ["a-3", "a-4", "a-5"])
        #expect(queue.queued == 0)
        #expect(queue.reserve())
    }

    @Test("reservations and offers from many threads never exceed capacity")
    func concurrent() async {
        let queue = AuditQueue(capacity: 100)
        let admitted = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var n = 0
                    for _ in 0..<50 where queue.reserve() {
                        n += 1
                        queue.submit(reserved: Fixture.event(n))
                    }
                    return n
                }
            }
            return await group.reduce(0, +)
        }
        #expect(admitted == 100)
        #expect(queue.queued == 100)
        var batch: [AuditEvent] = []
        #expect(queue.drain(into: &batch, max: 1000) == 0)
        #expect(batch.count == 100)
    }
}
