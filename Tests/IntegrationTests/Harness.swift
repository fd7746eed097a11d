import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

enum HarnessError: Error, CustomStringConvertible {
    case missingTool(String)
    case timeout(String)
    case failed(String)

    var description: String {
        switch self {
        case .missingTool(let t): return "required tool missing: \(t) (the test script installs it; tests never skip)"
        case .timeout(let what): return "timed out: \(what)"
        case .failed(let what): return what
        }
    }
}

/// Package root, from this file's path.
let packageRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// The built `portcullis` binary: $PORTCULLIS_BIN, or .build/debug/portcullis (the test script builds it first).
func portcullisBinary() throws -> String {
    if let path = ProcessInfo.processInfo.environment["PORTCULLIS_BIN"], FileManager.default.isExecutableFile(atPath: path) {
        return path
    }
    let path = packageRoot.appendingPathComponent(".build/debug/portcullis").path
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw HarnessError.missingTool("portcullis binary at \(path); run `swift build` first")
    }
    return path
}

func which(_ tool: String) throws -> String {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let path = "\(dir)/\(tool)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    throw HarnessError.missingTool(tool)
}

/// A free TCP port on 127.0.0.1 (bound and released; the proxy binds it right after).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw HarnessError.failed("socket()") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw HarnessError.failed("bind()") }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    return Int(UInt16(bigEndian: addr.sin_port))
}

func makeTempDir() throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("portcullis-it-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

/// Runs a command to completion with a deadline; returns exit status, stdout and stderr.
@discardableResult
func run(_ executable: String, _ arguments: [String], timeout: TimeInterval = 120, stdin: Data? = nil) throws -> (
    status: Int32, stdout: String, stderr: String
) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let input = Pipe()
    process.standardInput = input
    try process.run()
    if let stdin { input.fileHandleForWriting.write(stdin) }
    try? input.fileHandleForWriting.close()
    // Drain pipes concurrently to avoid blocking on full pipe buffers.
    let outData = NIOLockedData()
    let errData = NIOLockedData()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
        outData.set(out.fileHandleForReading.readDataToEndOfFile())
        group.leave()
    }
    group.enter()
    DispatchQueue.global().async {
        errData.set(err.fileHandleForReading.readDataToEndOfFile())
        group.leave()
    }
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(10_000) }
    if process.isRunning {
        process.terminate()
        throw HarnessError.timeout("\(executable) \(arguments.joined(separator: " "))")
    }
    process.waitUntilExit()
    group.wait()
    return (process.terminationStatus, String(decoding: outData.get(), as: UTF8.self), String(decoding: errData.get(), as: UTF8.self))
}

final class NIOLockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func set(_ d: Data) { self.lock.withLock { self.data = d } }
    func get() -> Data { self.lock.withLock { self.data } }
}

/// curl with `-s -S`; returns (http status, body, headers text, curl exit code).
struct CurlResult {
    var status: Int
    var body: String
    var headers: String
    var exitCode: Int32

    func header(_ name: String) -> String? {
        for line in self.headers.split(whereSeparator: \.isNewline) {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == name.lowercased() {
                return parts[1].trimmingCharacters(in: .whitespaces)
            }
        }
        return nil
    }
}

func curl(_ arguments: [String], timeout: TimeInterval = 120) throws -> CurlResult {
    let curlPath = try which("curl")
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(at: dir) }
    let headerFile = dir.appendingPathComponent("headers").path
    let result = try run(
        curlPath,
        ["-s", "-S", "-D", headerFile, "-w", "\n%{http_code}", "--max-time", String(Int(timeout))] + arguments,
        timeout: timeout + 10
    )
    var body = result.stdout
    var status = 0
    if let newline = body.lastIndex(of: "\n") {
        status = Int(body[body.index(after: newline)...]) ?? 0
        body = String(body[..<newline])
    }
    let headers = (try? String(contentsOfFile: headerFile, encoding: .utf8)) ?? ""
    return CurlResult(status: status, body: body, headers: headers, exitCode: result.status)
}

/// The proxy as a child process: its own signals, memory and logs.
final class ProxyProcess: @unchecked Sendable {
    let process: Process
    let configPath: String
    let logPath: String
    let dir: URL

    var pid: Int32 { self.process.processIdentifier }

    /// Writes `config` to a temp file and starts `portcullis serve` on it; waits until `waitPort` accepts.
    /// `standardOutput`: where stdout goes (default: the log file); the audit tests give a pipe.
    /// `launcher`: a command that execs the proxy (e.g. `taskset -c 0`); the pid stays the proxy's.
    init(
        config: String,
        waitPort: Int,
        extraArguments: [String] = [],
        dir: URL? = nil,
        standardOutput: Pipe? = nil,
        launcher: [String] = []
    ) throws {
        self.dir = try dir ?? makeTempDir()
        self.configPath = self.dir.appendingPathComponent("policy.yaml").path
        self.logPath = self.dir.appendingPathComponent("portcullis.log").path
        try config.write(toFile: self.configPath, atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: self.logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: self.logPath))
        self.process = Process()
        let arguments = ["serve", "--config", self.configPath, "--log-level", "trace"] + extraArguments
        if let command = launcher.first {
            self.process.executableURL = URL(fileURLWithPath: command)
            self.process.arguments = Array(launcher.dropFirst()) + [try portcullisBinary()] + arguments
        } else {
            self.process.executableURL = URL(fileURLWithPath: try portcullisBinary())
            self.process.arguments = arguments
        }
        self.process.standardError = log
        self.process.standardOutput = standardOutput ?? log
        // NIO's strict mode turns misuse (e.g. scheduling on a shut-down loop) into a crash the tests see.
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFTNIO_STRICT"] = "1"
        self.process.environment = environment
        try self.process.run()
        do {
            try waitForPort(waitPort, process: self.process, logPath: self.logPath)
        } catch {
            // Never leave a proxy we started running.
            kill(self.process.processIdentifier, SIGKILL)
            self.process.waitUntilExit()
            throw error
        }
    }

    var log: String { (try? String(contentsOfFile: self.logPath, encoding: .utf8)) ?? "" }

    func signal(_ sig: Int32) { kill(self.pid, sig) }

    /// Peak resident set size (VmHWM) in KiB.
    func peakRSSKiB() -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(self.pid)/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
        }
        return nil
    }

    /// Waits for exit; returns the exit status or nil on timeout.
    func waitForExit(timeout: TimeInterval) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while self.process.isRunning && Date() < deadline { usleep(20_000) }
        return self.process.isRunning ? nil : self.process.terminationStatus
    }

    /// Stops the process we started (by its PID) and removes its files.
    func stop() {
        if self.process.isRunning {
            kill(self.pid, SIGKILL)
            self.process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: self.dir)
    }
}

func waitForPort(_ port: Int, process: Process? = nil, logPath: String? = nil, timeout: TimeInterval = 30) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if let process, !process.isRunning {
            let log = logPath.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } ?? ""
            throw HarnessError.failed("portcullis exited with \(process.terminationStatus) before listening:\n\(log)")
        }
        if let client = try? RawClient(port: port) {
            client.close()
            return
        }
        usleep(50_000)
    }
    throw HarnessError.timeout("port \(port) to accept connections")
}

/// A plain TCP client for what curl will not send (framing attacks, pipelining, slow headers).
final class RawClient {
    private var fd: Int32
    /// Bytes received but not yet returned by `readResponses`.
    private var pending: [UInt8] = []

    /// `receiveTimeout` is the poll step of the read loops, which enforce their own deadlines.
    init(port: Int, receiveTimeout: TimeInterval = 0.05) throws {
        self.fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard self.fd >= 0 else { throw HarnessError.failed("socket()") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(self.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            Glibc.close(self.fd)
            self.fd = -1  // deinit runs after a throwing init: never close the number twice
            throw HarnessError.failed("connect to \(port) refused")
        }
        self.setReceiveTimeout(receiveTimeout)
    }

    func setReceiveTimeout(_ seconds: TimeInterval) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
        setsockopt(self.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ text: String) throws {
        try self.send(Array(text.utf8))
    }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(self.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw HarnessError.failed("send failed") }
            offset += n
        }
    }

    /// Reads until the peer closes or the timeout passes; returns what arrived and whether the peer closed.
    func readUntilClose(timeout: TimeInterval = 10) -> (text: String, closed: Bool) {
        var data: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while Date() < deadline {
            let n = buffer.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return (String(decoding: data, as: UTF8.self), true) }
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { continue }
                return (String(decoding: data, as: UTF8.self), true)
            }
            data.append(contentsOf: buffer[0..<n])
        }
        return (String(decoding: data, as: UTF8.self), false)
    }

    /// Reads until `count` complete HTTP responses (with Content-Length bodies) arrived, or timeout.
    func readResponses(_ count: Int, timeout: TimeInterval = 10) -> [String] {
        var data = self.pending
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while Date() < deadline {
            let responses = Self.splitResponses(data)
            if responses.count >= count {
                let used = responses.prefix(count).reduce(0) { $0 + $1.utf8.count }
                self.pending = Array(data[used...])
                return Array(responses.prefix(count))
            }
            let n = buffer.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { break }
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { continue }
                break
            }
            data.append(contentsOf: buffer[0..<n])
        }
        self.pending = []
        return Self.splitResponses(data)
    }

    static func splitResponses(_ data: [UInt8]) -> [String] {
        var responses: [String] = []
        var text = Substring(String(decoding: data, as: UTF8.self))
        while let headerEnd = text.range(of: "\r\n\r\n") {
            let head = text[..<headerEnd.lowerBound]
            var length = 0
            for line in head.split(separator: "\r\n") {
                let parts = line.split(separator: ":", maxSplits: 1)
                if parts.count == 2, parts[0].lowercased() == "content-length" {
                    length = Int(parts[1].trimmingCharacters(in: .whitespaces)) ?? 0
                }
            }
            let bodyStart = headerEnd.upperBound
            guard text.utf8.distance(from: bodyStart, to: text.endIndex) >= length else { break }
            let bodyEnd = text.utf8.index(bodyStart, offsetBy: length)
            responses.append(String(text[text.startIndex..<bodyEnd]))
            text = text[bodyEnd...]
        }
        return responses
    }

    func close() {
        if self.fd >= 0 {
            Glibc.close(self.fd)
            self.fd = -1
        }
    }

    deinit { self.close() }
}

/// Polls `condition` until true or the timeout passes.
func eventually(timeout: TimeInterval = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}
