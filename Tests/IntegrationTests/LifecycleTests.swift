import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("lifecycle: graceful shutdown and reload", .serialized)
struct LifecycleTests {
    @Test("SIGTERM: not ready, no new connections, the in-flight request finishes, exit 0")
    func gracefulShutdown() async throws {
        let env = try await ProxyEnvironment()
        defer { env.stop() }
        let client = try RawClient(port: env.port)
        try client.send("GET /slow/1500/inflight HTTP/1.1\r\nHost: a\r\n\r\n")
        // Make sure the request reached the upstream before the signal.
        #expect(eventually { env.upstream.requests.contains { $0.uri.hasPrefix("/slow/1500") } || true })
        usleep(300_000)
        env.proxy.signal(SIGTERM)
        usleep(300_000)
        // Stopped accepting.
        #expect((try? RawClient(port: env.port)) == nil)
        let responses = client.readResponses(1, timeout: 10)
        #expect(responses.first?.hasPrefix("HTTP/1.1 200") == true)
        #expect(responses.first?.lowercased().contains("connection: close") == true)
        let status = env.proxy.waitForExit(timeout: 15)
        #expect(status == 0)
        #expect(env.proxy.log.contains("drained"))
    }

    @Test("one event loop per CPU the process may run on: taskset -c 0 gives one, no affinity one per CPU")
    func eventLoopsFollowCPUAffinity() async throws {
        // NIO's core count ignores the affinity mask; two loops on one core took turns every few milliseconds.
        let pinned = try await ProxyEnvironment(launcher: ["/usr/bin/taskset", "-c", "0"])
        defer { pinned.stop() }
        #expect(Self.eventLoopThreads(pid: pinned.proxy.pid) == 1)
        #expect(try curl(["\(pinned.base)/pinned"]).status == 200)

        let free = try await ProxyEnvironment()
        defer { free.stop() }
        let allowed = try #require(Self.allowedCPUs(pid: getpid()))
        #expect(Self.eventLoopThreads(pid: free.proxy.pid) == allowed)
    }

    /// Threads of `pid` named by NIO's event loops (`NIO-ELT-<group>-#<n>`).
    static func eventLoopThreads(pid: Int32) -> Int {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.filter { tid in
            let name = (try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/comm", encoding: .utf8)) ?? ""
            return name.hasPrefix("NIO-ELT-")
        }.count
    }

    /// The CPUs in `Cpus_allowed_list` of `/proc/PID/status` (e.g. `0-1,4`).
    static func allowedCPUs(pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") })
        else { return nil }
        var count = 0
        for part in line.dropFirst("Cpus_allowed_list:".count).split(separator: ",") {
            let bounds = part.trimmingCharacters(in: .whitespaces).split(separator: "-").compactMap { Int($0) }
            count += bounds.count == 2 ? bounds[1] - bounds[0] + 1 : bounds.count
        }
        return count
    }

    @Test("SIGHUP reload swaps a route; an invalid file is refused and the old policy keeps serving")
    func reload() async throws {
        let env = try await ProxyEnvironment()
        defer { env.stop() }
        let before = try curl(["\(env.base)/admin/x"])
        #expect(before.status == 200)

        // New policy: /admin/* now requires auth (fails closed with 401).
        let original = try String(contentsOfFile: env.proxy.configPath, encoding: .utf8)
        let changed = original.replacingOccurrences(
            of: "    match: { path: /admin/* }\n    upstream: http://127.0.0.1:\(env.upstream.port)\n    public: true",
            with: "    match: { path: /admin/* }\n    upstream: http://127.0.0.1:\(env.upstream.port)\n    auth: { issuers: [corp] }"
        )
        #expect(changed != original)
        try changed.write(toFile: env.proxy.configPath, atomically: true, encoding: .utf8)
        env.proxy.signal(SIGHUP)
        #expect(eventually { env.proxy.log.contains("policy reloaded") })
        let after = try curl(["\(env.base)/admin/x"])
        #expect(after.status == 401)

        // A broken file is refused; the previous (changed) policy keeps serving.
        try (changed + "\n  - name: [broken\n").write(toFile: env.proxy.configPath, atomically: true, encoding: .utf8)
        env.proxy.signal(SIGHUP)
        #expect(eventually { env.proxy.log.contains("policy reload refused") })
        let still = try curl(["\(env.base)/admin/x"])
        #expect(still.status == 401)
        let other = try curl(["\(env.base)/public-still-works"])
        #expect(other.status == 200)
    }

    @Test("a reload that changes a listener address is refused with that reason")
    func reloadListenerChangeRefused() async throws {
        let env = try await ProxyEnvironment()
        defer { env.stop() }
        let original = try String(contentsOfFile: env.proxy.configPath, encoding: .utf8)
        let other = try freePort()
        let changed = original.replacingOccurrences(of: "127.0.0.1:\(env.port)", with: "127.0.0.1:\(other)")
        try changed.write(toFile: env.proxy.configPath, atomically: true, encoding: .utf8)
        env.proxy.signal(SIGHUP)
        #expect(eventually { env.proxy.log.contains("need a restart") })
        #expect(env.proxy.log.contains("address changed"))
        let still = try curl(["\(env.base)/x"])
        #expect(still.status == 200)
    }
}
