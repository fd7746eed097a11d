import Foundation
import NIOConcurrencyHelpers
import ProxyModel

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A real `rsyslogd` (Debian's `rsyslog` and `rsyslog-gnutls` packages) for the syslog sink's tests: a child
/// process in the foreground with its own config, work directory, pid file and port on 127.0.0.1, started and
/// stopped by the pid it got. It receives on imtcp (TLS through the gtls driver, or plain TCP) and writes every
/// received message as one JSON object per line (rsyslog's `jsonf` template) to `messages.jsonl`. A missing
/// `rsyslogd` or `openssl` is an error: the tests that need them fail, they are never skipped.
final class RsyslogServer: @unchecked Sendable {
    // @unchecked: `pid` is read and written under `lock` only.

    enum Transport: Sendable {
        /// TLS, any client (`StreamDriver.AuthMode="anon"`).
        case tlsAnonymous
        /// TLS, the client must present a certificate from the test CA with this name (`x509/name`).
        case tlsClientCertificate(permittedPeer: String)
        /// Plain TCP (octet counting without TLS).
        case plain
    }

    /// One message as rsyslog parsed it.
    struct Message: Sendable, Equatable {
        var priority: Int
        var appName: String
        var msgID: String
        var procID: String
        var hostname: String
        var timestamp: String
        var structuredData: String
        var msg: String
        var raw: String
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Which server certificate rsyslog presents (both from the test CA).
    enum ServerCertificate: Sendable {
        /// SAN `DNS:localhost` only.
        case dnsName
        /// SAN `IP:127.0.0.1` only.
        case ipAddress
    }

    let directory: String
    let pki: TestPKI?
    let transport: Transport
    let certificate: ServerCertificate
    let port: Int
    var outputFile: String { self.directory + "/messages.jsonl" }
    var internalLog: String { self.directory + "/rsyslogd.log" }
    var configFile: String { self.directory + "/rsyslog.conf" }
    var pidFile: String { self.directory + "/rsyslogd.pid" }
    var stderrFile: String { self.directory + "/rsyslogd.stderr" }

    private let lock = NIOLock()
    /// The child we started, until it has been reaped.
    private var pid: pid_t?

    /// - Parameters:
    ///   - directory: an existing directory of the test's own (config, output, pid file, work directory).
    ///   - port: the port to listen on (default: a free one).
    init(
        directory: String,
        pki: TestPKI?,
        transport: Transport,
        certificate: ServerCertificate = .dnsName,
        port: Int? = nil
    ) throws {
        if case .plain = transport {} else if pki == nil { throw Failure("a TLS rsyslog needs certificates") }
        self.directory = directory
        self.pki = pki
        self.transport = transport
        self.certificate = certificate
        self.port = try port ?? freeLoopbackPort()
        try self.configuration.write(toFile: self.configFile, atomically: true, encoding: .utf8)
    }

    deinit {
        self.stop(graceful: false)
    }

    var configuration: String {
        var lines: [String] = []
        var global = [
            "workDirectory=\"\(self.directory)\"",
            "maxMessageSize=\"256k\"",
        ]
        let module: String
        switch self.transport {
        case .plain:
            module = #"module(load="imtcp")"#
        case .tlsAnonymous, .tlsClientCertificate:
            let pki = self.pki!
            let (certificateFile, keyFile) =
                self.certificate == .dnsName
                ? (pki.serverCertificateFile, pki.serverKeyFile) : (pki.serverIPCertificateFile, pki.serverIPKeyFile)
            global += [
                "defaultNetstreamDriverCAFile=\"\(pki.caFile)\"",
                "defaultNetstreamDriverCertFile=\"\(certificateFile)\"",
                "defaultNetstreamDriverKeyFile=\"\(keyFile)\"",
            ]
            if case .tlsClientCertificate(let peer) = self.transport {
                module =
                    #"module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="x509/name" PermittedPeer=[""#
                    + peer + #""])"#
            } else {
                module =
                    #"module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")"#
            }
        }
        lines.append("global(\n  " + global.joined(separator: "\n  ") + "\n)")
        lines.append(module)
        lines.append(
            """
            template(name="portcullisTest" type="list" option.jsonf="on") {
              property(outname="pri" name="pri" format="jsonf")
              property(outname="app" name="app-name" format="jsonf")
              property(outname="msgid" name="msgid" format="jsonf")
              property(outname="procid" name="procid" format="jsonf")
              property(outname="host" name="hostname" format="jsonf")
              property(outname="time" name="timereported" dateFormat="rfc3339" format="jsonf")
              property(outname="sd" name="structured-data" format="jsonf")
              property(outname="msg" name="msg" format="jsonf")
              property(outname="raw" name="rawmsg" format="jsonf")
            }
            ruleset(name="remote") {
              action(type="omfile" file="\(self.outputFile)" template="portcullisTest")
            }
            input(type="imtcp" address="127.0.0.1" port="\(self.port)" ruleset="remote")
            *.* action(type="omfile" file="\(self.internalLog)")
            """
        )
        return lines.joined(separator: "\n") + "\n"
    }

    /// Starts rsyslogd and waits (at most `timeout` seconds) until it accepts connections on the port.
    func start(timeout: Double = 5) throws {
        try self.lock.withLock {
            guard self.pid == nil else { throw Failure("rsyslogd already started") }
            self.cutTornLastLine()
            // -n: foreground; -C: no chdir to /; -f: our config; -i: our pid file.
            self.pid = try spawnWithDefaultSignals(
                executable: try findExecutable("rsyslogd"),
                arguments: ["-n", "-C", "-f", self.configFile, "-i", self.pidFile],
                output: self.stderrFile
            )
        }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while Date() < deadline {
            guard self.isRunning else {
                throw Failure("rsyslogd exited at start: \(self.diagnostics)")
            }
            if canConnect(port: self.port) { return }
            usleep(25_000)
        }
        self.stop(graceful: false)
        throw Failure("rsyslogd did not listen on 127.0.0.1:\(self.port) within \(timeout) s: \(self.diagnostics)")
    }

    /// Whether the rsyslogd this object started still runs (reaps it when it has exited).
    var isRunning: Bool {
        self.lock.withLock {
            guard let pid = self.pid else { return false }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                self.pid = nil
                return false
            }
            return true
        }
    }

    /// Freezes the rsyslogd this object started (SIGSTOP): it reads nothing more, what is sent to it waits in the
    /// kernel's buffers, and a later ``stop(graceful:)`` without grace loses it, as a crash would.
    func pause() {
        self.lock.withLock {
            if let pid = self.pid { kill(pid, SIGSTOP) }
        }
    }

    /// Stops the rsyslogd this object started (by its pid, nothing else) and waits for it to exit. Graceful:
    /// SIGTERM, then SIGKILL if it still runs after 5 s; otherwise SIGKILL at once (test teardown).
    func stop(graceful: Bool = true) {
        self.lock.withLock {
            guard let pid = self.pid else { return }
            defer { self.pid = nil }
            var status: Int32 = 0
            if graceful {
                kill(pid, SIGTERM)
                let deadline = Date(timeIntervalSinceNow: 5)
                while Date() < deadline {
                    if waitpid(pid, &status, WNOHANG) == pid { return }
                    usleep(10_000)
                }
            }
            kill(pid, SIGKILL)
            _ = waitpid(pid, &status, 0)
        }
    }

    /// What rsyslog wrote to stderr and its own log, for failure messages.
    var diagnostics: String {
        let stderr = (try? String(contentsOfFile: self.stderrFile, encoding: .utf8)) ?? ""
        let ownLog = (try? String(contentsOfFile: self.internalLog, encoding: .utf8)) ?? ""
        return "stderr: \(stderr.suffix(2000)) log: \(ownLog.suffix(2000))"
    }

    /// A SIGKILLed rsyslogd can leave half a line in its output file; the next instance appends after it.
    /// That half was never a received message: cut it, as the audit file sink does with its own file.
    private func cutTornLastLine() {
        guard let data = FileManager.default.contents(atPath: self.outputFile), let last = data.last,
            last != UInt8(ascii: "\n")
        else { return }
        let keep = (data.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 }) ?? 0
        _ = FileManager.default.createFile(atPath: self.outputFile, contents: data.prefix(keep))
    }

    /// The messages received so far (complete lines only).
    func messages() throws -> [Message] {
        guard let data = FileManager.default.contents(atPath: self.outputFile) else { return [] }
        var messages: [Message] = []
        var bytes = Array(data)
        // A line rsyslog is still writing is not complete yet.
        if let lastNewline = bytes.lastIndex(of: UInt8(ascii: "\n")) {
            bytes.removeSubrange((lastNewline + 1)...)
        } else {
            return []
        }
        for line in bytes.split(separator: UInt8(ascii: "\n")) where !line.isEmpty {
            guard case .success(.object(let object)) = StrictJSON.parse(line) else {
                throw Failure("rsyslog wrote a line that is not JSON: \(String(decoding: line, as: UTF8.self))")
            }
            func field(_ name: String) throws -> String {
                guard let value = object[name]?.stringValue else { throw Failure("no \(name) in rsyslog's line") }
                return value
            }
            guard let priority = Int(try field("pri")) else { throw Failure("pri is not a number") }
            messages.append(
                Message(
                    priority: priority,
                    appName: try field("app"),
                    msgID: try field("msgid"),
                    procID: try field("procid"),
                    hostname: try field("host"),
                    timestamp: try field("time"),
                    structuredData: try field("sd"),
                    msg: try field("msg"),
                    raw: try field("raw")
                )
            )
        }
        return messages
    }

    /// Polls the output until `done` holds (returns the messages) or `timeout` seconds pass (returns the
    /// messages so far; the caller's expectations then fail with them).
    func waitForMessages(timeout: Double, until done: ([Message]) -> Bool) async throws -> [Message] {
        let deadline = Date(timeIntervalSinceNow: timeout)
        while true {
            let messages = try self.messages()
            if done(messages) || Date() >= deadline { return messages }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}

/// A test CA, a server certificate for `localhost`, one for 127.0.0.1, a client certificate, and a second CA
/// that signed nothing here (what a sink that trusts the wrong CA has). Made with the `openssl` CLI in the test's
/// temporary directory.
struct TestPKI: Sendable {
    static let clientName = "portcullis-test-client"

    let caFile: String
    /// SAN `DNS:localhost` only (NIOSSL also accepts an IP SAN that matches the connected address, so a name
    /// check needs a certificate without one).
    let serverCertificateFile: String
    let serverKeyFile: String
    /// SAN `IP:127.0.0.1` only.
    let serverIPCertificateFile: String
    let serverIPKeyFile: String
    let clientCertificateFile: String
    let clientKeyFile: String
    let otherCAFile: String

    static func make(in directory: String) throws -> TestPKI {
        let openssl = try findExecutable("openssl")
        func run(_ arguments: [String]) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: openssl)
            process.arguments = arguments
            process.currentDirectoryURL = URL(fileURLWithPath: directory)
            let errors = Pipe()
            process.standardOutput = FileHandle.nullDevice
            process.standardError = errors
            try process.run()
            let output = errors.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw RsyslogServer.Failure(
                    "openssl \(arguments.first ?? "") failed: \(String(decoding: output, as: UTF8.self))"
                )
            }
        }
        func path(_ name: String) -> String { directory + "/" + name }
        func makeCA(_ name: String, subject: String) throws {
            try run([
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", path("\(name)-key.pem"), "-out", path("\(name).pem"), "-days", "2", "-subj", subject,
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ])
        }
        func makeLeaf(_ name: String, subject: String, extensions: String) throws {
            try run([
                "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", path("\(name)-key.pem"), "-out", path("\(name).csr"), "-subj", subject,
            ])
            try extensions.write(toFile: path("\(name).ext"), atomically: true, encoding: .utf8)
            try run([
                "x509", "-req", "-in", path("\(name).csr"), "-CA", path("ca.pem"), "-CAkey", path("ca-key.pem"),
                "-set_serial", String(UInt32.random(in: 1...UInt32.max)), "-days", "2", "-extfile", path("\(name).ext"),
                "-out", path("\(name).pem"),
            ])
        }
        try makeCA("ca", subject: "/CN=Portcullis Syslog Test CA")
        try makeCA("other-ca", subject: "/CN=Some Other CA")
        try makeLeaf(
            "server",
            subject: "/CN=localhost",
            extensions: """
                subjectAltName=DNS:localhost
                basicConstraints=critical,CA:FALSE
                keyUsage=critical,digitalSignature
                extendedKeyUsage=serverAuth

                """
        )
        try makeLeaf(
            "server-ip",
            subject: "/CN=127.0.0.1",
            extensions: """
                subjectAltName=IP:127.0.0.1
                basicConstraints=critical,CA:FALSE
                keyUsage=critical,digitalSignature
                extendedKeyUsage=serverAuth

                """
        )
        try makeLeaf(
            "client",
            subject: "/CN=\(Self.clientName)",
            extensions: """
                subjectAltName=DNS:\(Self.clientName)
                basicConstraints=critical,CA:FALSE
                keyUsage=critical,digitalSignature
                extendedKeyUsage=clientAuth

                """
        )
        return TestPKI(
            caFile: path("ca.pem"),
            serverCertificateFile: path("server.pem"),
            serverKeyFile: path("server-key.pem"),
            serverIPCertificateFile: path("server-ip.pem"),
            serverIPKeyFile: path("server-ip-key.pem"),
            clientCertificateFile: path("client.pem"),
            clientKeyFile: path("client-key.pem"),
            otherCAFile: path("other-ca.pem")
        )
    }
}

/// Starts `executable` with stdin from /dev/null and stdout and stderr appended to `output`, with an empty signal
/// mask and default SIGTERM, SIGINT and SIGHUP handling. (Foundation's `Process` passes on the mask of the thread
/// that spawns, and test runner threads block SIGTERM: rsyslogd would then ignore it.) Returns the child's pid.
func spawnWithDefaultSignals(executable: String, arguments: [String], output: String) throws -> pid_t {
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var mask = sigset_t()
    sigemptyset(&mask)
    posix_spawnattr_setsigmask(&attributes, &mask)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for signal in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&defaults, signal) }
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)

    let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    var pid: pid_t = 0
    let result = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
    guard result == 0 else {
        throw RsyslogServer.Failure("posix_spawn \(executable): \(String(cString: strerror(result)))")
    }
    return pid
}

/// A fresh directory under the system's temporary directory; `remove()` deletes it.
struct TestDirectory: Sendable {
    let path: String

    init(_ prefix: String) throws {
        let base = FileManager.default.temporaryDirectory.path
        self.path = "\(base)/\(prefix)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: self.path, withIntermediateDirectories: true)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: self.path)
    }
}

/// `name` in PATH or the sbin directories (rsyslogd lives in /usr/sbin, often not in a user's PATH).
func findExecutable(_ name: String) throws -> String {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
    let directories = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
    for directory in directories where !directory.isEmpty {
        let candidate = directory + "/" + name
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw RsyslogServer.Failure(
        "\(name) not found (install it: apt-get install \(name == "rsyslogd" ? "rsyslog rsyslog-gnutls" : name))"
    )
}

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0, read back, closed).
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw RsyslogServer.Failure("socket: errno \(errno)") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw RsyslogServer.Failure("bind: errno \(errno)") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { throw RsyslogServer.Failure("getsockname: errno \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Whether a TCP connection to 127.0.0.1:`port` succeeds (closed at once).
func canConnect(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    return result == 0
}
