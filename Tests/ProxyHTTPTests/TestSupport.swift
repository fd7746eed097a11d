import NIOEmbedded
import Logging

@testable import ProxyHTTP

enum LoopContextForTests {
    static func make() -> LoopContext {
        LoopContext(eventLoop: EmbeddedEventLoop(), logger: Logger(label: "test"))
    }
}
