public import Logging
import NIOConcurrencyHelpers
public import NIOCore
public import NIOPosix
public import NIOSSL
public import ProxyConfig

/// The TLS setup of one https listener, reloadable: holds the current ``ServerTLSSnapshot`` behind a lock
/// and swaps it atomically on ``reload(configuration:)``.
///
/// Built the way swift-nio-extras' `TimedCertificateReloader` is (keep the last good set when a reload
/// fails), but for a whole SNI certificate set plus client CA and CRL, and without a timer of its own:
/// the server calls ``reload(configuration:)`` on SIGHUP and polls ``filesChanged()`` (or
/// ``reloadIfFilesChanged()``) on its reload interval. New connections take the current snapshot;
/// existing ones keep theirs.
public final class ServerTLSContextProvider: Sendable {
    private struct State {
        var snapshot: ServerTLSSnapshot
        /// The configuration of `snapshot` (a failed reload with a new configuration leaves it).
        var configuration: ListenerTLSConfig
        /// The files as they were at the last load attempt of `configuration`, good or bad: a broken file
        /// is reported once, not at every poll, until it changes again.
        var attempted: [FileFingerprint]
        var lastAttempt: Int
        var installedAttempt: Int
        var recordedAttempt: Int
    }

    private let state: NIOLockedValueBox<State>
    private let threadPool: NIOThreadPool?
    private let logger: Logger

    /// Loads the listener's TLS files (on `threadPool` when given, else in this task, never on an event loop).
    /// - Throws: ``TLSSetupError`` naming the file at fault.
    public init(configuration: ListenerTLSConfig, threadPool: NIOThreadPool? = nil, logger: Logger) async throws {
        let logger = logger
        let snapshot = try await Self.runBlocking(on: threadPool) { () throws(TLSSetupError) in
            let fingerprints = FileFingerprint.of(ServerTLSSnapshot.files(of: configuration))
            return try ServerTLSSnapshot.load(configuration, generation: 1, fingerprints: fingerprints, logger: logger)
        }
        self.state = NIOLockedValueBox(
            State(
                snapshot: snapshot,
                configuration: configuration,
                attempted: snapshot.fingerprints,
                lastAttempt: 1,
                installedAttempt: 1,
                recordedAttempt: 1
            )
        )
        self.threadPool = threadPool
        self.logger = logger
    }

    /// The setup new connections get now.
    public var snapshot: ServerTLSSnapshot { self.state.withLockedValue { $0.snapshot } }

    public var configuration: ListenerTLSConfig { self.state.withLockedValue { $0.configuration } }

    /// A TLS handler from the current snapshot (certificate for `serverName`, or the default).
    public func makeServerHandler(serverName: String? = nil) -> NIOSSLServerHandler {
        self.snapshot.makeServerHandler(serverName: serverName)
    }

    /// Adds TLS with SNI certificate choice to a new connection, from the current snapshot.
    /// See ``ServerTLSSnapshot/configureServerPipeline(_:position:handshakeTimeout:)``.
    @discardableResult
    public func configureServerPipeline(
        _ pipeline: ChannelPipeline.SynchronousOperations,
        position: ChannelPipeline.SynchronousOperations.Position = .last,
        handshakeTimeout: TimeAmount? = ServerTLSSnapshot.defaultHandshakeTimeout
    ) throws -> EventLoopFuture<TLSConnectionInfo> {
        try self.snapshot.configureServerPipeline(pipeline, position: position, handshakeTimeout: handshakeTimeout)
    }

    /// Rebuilds everything from the files (of `configuration`, or of the current one) off the event loop
    /// and swaps it in. On failure the current snapshot keeps serving and the error names the bad file.
    /// - Returns: the snapshot now current.
    @discardableResult
    public func reload(configuration: ListenerTLSConfig? = nil) async throws -> ServerTLSSnapshot {
        let (target, attempt) = self.state.withLockedValue { state in
            state.lastAttempt += 1
            return (configuration ?? state.configuration, state.lastAttempt)
        }
        let logger = self.logger
        // The files are fingerprinted before they are read: a change during the load is seen by the next poll.
        let (fingerprints, result) = try await Self.runBlocking(on: self.threadPool) {
            let fingerprints = FileFingerprint.of(ServerTLSSnapshot.files(of: target))
            let result = Result { () throws(TLSSetupError) in
                try ServerTLSSnapshot.load(target, generation: attempt, fingerprints: fingerprints, logger: logger)
            }
            return (fingerprints, result)
        }
        switch result {
        case .success(let snapshot):
            let installed = self.state.withLockedValue { state -> ServerTLSSnapshot in
                // Two reloads in flight: the one started last wins, whichever finishes first.
                if attempt > state.installedAttempt {
                    state.snapshot = snapshot
                    state.configuration = target
                    state.installedAttempt = attempt
                }
                if attempt > state.recordedAttempt, target == state.configuration {
                    state.attempted = snapshot.fingerprints
                    state.recordedAttempt = attempt
                }
                return state.snapshot
            }
            logger.debug(
                "TLS certificates reloaded",
                metadata: [
                    "proxy_tls_generation": "\(installed.generation)",
                    "proxy_certificates": "\(installed.certificates.count)",
                ]
            )
            return installed
        case .failure(let error):
            if configuration == nil {
                self.state.withLockedValue { state in
                    if attempt > state.recordedAttempt, target == state.configuration {
                        state.attempted = fingerprints
                        state.recordedAttempt = attempt
                    }
                }
            }
            logger.debug(
                "TLS reload refused; the previous certificates keep serving",
                metadata: ["proxy_error": "\(error)"]
            )
            throw error
        }
    }

    /// Whether a file of the current configuration differs (device, inode, size or mtime) from when it was
    /// last loaded or last failed to load. Blocking (one `stat` per file): call it off the event loop.
    public func filesChanged() -> Bool {
        let (configuration, attempted) = self.state.withLockedValue { ($0.configuration, $0.attempted) }
        return FileFingerprint.of(ServerTLSSnapshot.files(of: configuration)) != attempted
    }

    /// ``filesChanged()`` then, if so, ``reload(configuration:)``; for a periodic poll.
    /// - Returns: whether a reload happened (it throws if it failed).
    public func reloadIfFilesChanged() async throws -> Bool {
        let changed = try await Self.runBlocking(on: self.threadPool) { [self] in self.filesChanged() }
        guard changed else { return false }
        try await self.reload()
        return true
    }

    static func runBlocking<T: Sendable, Failure: Error>(
        on threadPool: NIOThreadPool?,
        _ body: @escaping @Sendable () throws(Failure) -> T
    ) async throws -> T {
        if let threadPool {
            return try await threadPool.runIfActive { try body() }
        }
        return try body()
    }
}
