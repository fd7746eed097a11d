import NIOCore
import NIOEmbedded
import Testing

@testable import ProxyHTTP

@Suite("DeadlineTimer: one lazily re-armed task per timeout")
struct DeadlineTimerTests {
    final class Box {
        var fired = 0
    }

    func make() -> (EmbeddedEventLoop, DeadlineTimer, Box) {
        let loop = EmbeddedEventLoop()
        let box = Box()
        let timer = DeadlineTimer(eventLoop: loop) { box.fired += 1 }
        return (loop, timer, box)
    }

    @Test("a deadline moved later fires at the later time, once")
    func movedLater() {
        let (loop, timer, box) = self.make()
        let start = loop.now
        timer.set(start + .seconds(10))
        timer.set(start + .seconds(20))
        loop.advanceTime(to: start + .seconds(15))
        #expect(box.fired == 0, "the first task fired early and re-armed")
        loop.advanceTime(to: start + .seconds(21))
        #expect(box.fired == 1)
        loop.advanceTime(to: start + .seconds(60))
        #expect(box.fired == 1)
        #expect(!timer.isSet)
    }

    @Test("a deadline moved earlier reschedules")
    func movedEarlier() {
        let (loop, timer, box) = self.make()
        let start = loop.now
        timer.set(start + .seconds(10))
        timer.set(start + .seconds(5))
        loop.advanceTime(to: start + .seconds(6))
        #expect(box.fired == 1)
        loop.advanceTime(to: start + .seconds(11))
        #expect(box.fired == 1, "the abandoned task does not fire again")
    }

    @Test("a cleared deadline never fires; set again, it does")
    func cleared() {
        let (loop, timer, box) = self.make()
        let start = loop.now
        timer.set(start + .seconds(10))
        timer.clear()
        loop.advanceTime(to: start + .seconds(11))
        #expect(box.fired == 0)
        timer.set(start + .seconds(12))
        loop.advanceTime(to: start + .seconds(13))
        #expect(box.fired == 1)
        timer.set(start + .seconds(20))
        timer.cancel()
        loop.advanceTime(to: start + .seconds(30))
        #expect(box.fired == 1)
    }
}
