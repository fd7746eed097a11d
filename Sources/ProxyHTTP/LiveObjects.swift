import Synchronization

/// How many of the request path's per-connection objects are alive now (admin `/metrics`). The request path
/// holds these objects with strong references whose cycles it ends itself (weak references would give them
/// refcount side tables, and every retain and release the runtime's slow path): a count that keeps growing
/// while connections come and go is a cycle that nothing ended, a leak.
enum LiveObjects {
    static let connectionHandlers = Atomic<Int>(0)
    static let exchanges = Atomic<Int>(0)
    static let upstreamConnections = Atomic<Int>(0)

    static var prometheusText: String {
        "# TYPE portcullis_live_connection_handlers gauge\n"
            + "portcullis_live_connection_handlers \(Self.connectionHandlers.load(ordering: .relaxed))\n"
            + "# TYPE portcullis_live_exchanges gauge\n"
            + "portcullis_live_exchanges \(Self.exchanges.load(ordering: .relaxed))\n"
            + "# TYPE portcullis_live_upstream_connections gauge\n"
            + "portcullis_live_upstream_connections \(Self.upstreamConnections.load(ordering: .relaxed))"
    }
}
