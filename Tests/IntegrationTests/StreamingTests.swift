import Foundation
import Testing

@Suite("streaming 256 MiB through the proxy with bounded memory", .serialized)
struct StreamingTests {
    static let size = 256 * 1024 * 1024
    /// The proxy may not hold a body in memory: its peak RSS stays far below the 256 MiB it streams.
    static let rssLimitKiB = 96 * 1024

    @Test("256 MiB upload and 256 MiB download stream through; peak RSS stays bounded")
    func largeBodies() async throws {
        let env = try await ProxyEnvironment()
        defer { env.stop() }

        // Upload from a sparse-free file of zeros (curl -T streams it; it does not load it whole).
        let file = env.dir.appendingPathComponent("upload.bin")
        _ = FileManager.default.createFile(atPath: file.path, contents: nil)
        let handle = try FileHandle(forWritingTo: file)
        let block = Data(count: 1024 * 1024)
        for _ in 0..<(Self.size / block.count) { handle.write(block) }
        try handle.close()

        let upload = try curl(["-T", file.path, "-X", "POST", "\(env.base)/upload"], timeout: 300)
        #expect(upload.status == 200)
        #expect(upload.body.contains("body-bytes \(Self.size)"))
        try? FileManager.default.removeItem(at: file)

        let download = try curl(["-o", "/dev/null", "-w", "%{size_download}", "\(env.base)/download/\(Self.size)"], timeout: 300)
        #expect(download.status == 200 || download.body.contains("\(Self.size)"))
        #expect(download.body.hasPrefix("\(Self.size)"))

        let peak = try #require(env.proxy.peakRSSKiB())
        #expect(peak < Self.rssLimitKiB, "peak RSS \(peak) KiB")
    }
}
