import CompressNIO
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import ProxyModel

/// A local collector on 127.0.0.1 that speaks one API's real wire format: plain NDJSON, Splunk HEC
/// (`/services/collector/event`), Grafana Loki push (`/loki/api/v1/push`) or Elasticsearch `_bulk`.
/// It checks each request as strictly as the real service (method, path, content type, content
/// encoding, Authorization scheme and token, body shape) and answers with the real status and body when
/// something is wrong. Gzip bodies are inflated. Events are stored once, in order of first arrival;
/// repeats are counted (by the event's hash; Loki by timestamp and line; Elasticsearch by `_id`, with 409).
///
/// It can be stopped (connections refused, open ones closed) and started again on the same port, and
/// told to answer the next requests with errors (500, 429 with Retry-After, 503).
final class FakeCollector: @unchecked Sendable {
    // @unchecked: every var below is guarded by `lock`.

    enum API: String, Sendable, CaseIterable, CustomStringConvertible {
        case ndjson, splunk, loki, elasticsearch

        var path: String {
            switch self {
            case .ndjson: return "/ingest"
            case .splunk: return "/services/collector/event"
            case .loki: return "/loki/api/v1/push"
            case .elasticsearch: return "/_bulk"
            }
        }

        var description: String { self.rawValue }
    }

    struct Reply: Sendable {
        var status: HTTPResponseStatus
        var headers: [(String, String)] = []
        var body: [UInt8] = []

        init(status: HTTPResponseStatus, headers: [(String, String)] = [], body: String = "") {
            self.status = status
            self.headers = headers
            self.body = Array(body.utf8)
        }

        static let serverError = Reply(status: .internalServerError, body: "internal error")

        static func tooManyRequests(retryAfter: String) -> Reply {
            Reply(status: .tooManyRequests, headers: [("Retry-After", retryAfter)], body: "rate limited")
        }
    }

    /// One request as it arrived.
    struct Received: Sendable {
        var at: ContinuousClock.Instant
        var method: String
        var uri: String
        var headers: HTTPHeaders
        /// Bytes on the wire (compressed when gzip'ed) and after inflating.
        var wireBytes: Int
        var bodyBytes: Int
        var status: UInt
        /// The event ids the request carried, repeats included.
        var ids: [String]
    }

    /// One stored event.
    struct Event: Sendable {
        var id: String
        /// The event's line as received (Splunk: the raw bytes of `event`; Loki: the decoded string).
        var line: [UInt8]
        /// Per-API fields: Splunk `time` (raw), `host`, `source`, `sourcetype`, `index`; Loki `ts` and the
        /// labels as `label.<name>`; Elasticsearch `_index`.
        var fields: [String: String]
    }

    let api: API
    private let lock = NIOLock()
    private var token: String?
    private var requestLog: [Received] = []
    private var stored: [Event] = []
    private var seen: Set<String> = []
    private var duplicateCount = 0
    private var failures: [Reply] = []
    private var itemFailures: [String: UInt] = [:]
    private var server: (any Channel)?
    private var children: [ObjectIdentifier: any Channel] = [:]
    private var boundPort = 0
    private let tls: NIOSSLContext?

    /// `tls`: serve HTTPS with this context.
    init(api: API, token: String?, tls: NIOSSLContext? = nil) {
        self.api = api
        self.token = token
        self.tls = tls
    }

    var port: Int { self.lock.withLock { self.boundPort } }
    var url: String { "\(self.tls == nil ? "http" : "https")://127.0.0.1:\(self.port)\(self.api.path)" }
    var requests: [Received] { self.lock.withLock { self.requestLog } }
    var events: [Event] { self.lock.withLock { self.stored } }
    var duplicates: Int { self.lock.withLock { self.duplicateCount } }

    func setToken(_ token: String?) {
        self.lock.withLock { self.token = token }
    }

    /// The next requests get these answers, one each, before anything else is checked.
    func failNext(_ replies: [Reply]) {
        self.lock.withLock { self.failures.append(contentsOf: replies) }
    }

    /// Elasticsearch: the next time these `_id`s come, their item gets this status.
    func failItemsOnce(_ items: [String: UInt]) {
        self.lock.withLock { self.itemFailures.merge(items) { $1 } }
    }

    /// Listens on 127.0.0.1: the port of the previous start, or a free one the first time.
    func start() async throws {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                self.register(channel)
                return channel.eventLoop.makeCompletedFuture {
                    if let tls = self.tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                    }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(FakeCollectorHandler(collector: self))
                }
            }
            .bind(host: "127.0.0.1", port: self.port)
            .get()
        self.lock.withLock {
            self.server = channel
            self.boundPort = channel.localAddress?.port ?? 0
        }
    }

    /// Closes the listener and every open connection: new connections are refused.
    func stop() async {
        let (server, children) = self.lock.withLock { () -> ((any Channel)?, [any Channel]) in
            defer {
                self.server = nil
                self.children = [:]
            }
            return (self.server, Array(self.children.values))
        }
        try? await server?.close()
        for child in children {
            try? await child.close()
        }
    }

    private func register(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        self.lock.withLock { self.children[id] = channel }
        channel.closeFuture.whenComplete { _ in
            self.lock.withLock { _ = self.children.removeValue(forKey: id) }
        }
    }

    // MARK: - Requests

    func handle(head: HTTPRequestHead, wire: [UInt8]) -> Reply {
        self.lock.withLock {
            var ids: [String] = []
            var bodyBytes = wire.count
            let reply = self.process(head: head, wire: wire, ids: &ids, bodyBytes: &bodyBytes)
            self.requestLog.append(
                Received(
                    at: .now,
                    method: head.method.rawValue,
                    uri: head.uri,
                    headers: head.headers,
                    wireBytes: wire.count,
                    bodyBytes: bodyBytes,
                    status: reply.status.code,
                    ids: ids
                )
            )
            return reply
        }
    }

    private func process(head: HTTPRequestHead, wire: [UInt8], ids: inout [String], bodyBytes: inout Int) -> Reply {
        let path = String(head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
        guard path == self.api.path else { return self.notFound(path) }
        guard head.method == .POST else { return self.methodNotAllowed(head.method, path: path) }
        if !self.failures.isEmpty { return self.failures.removeFirst() }
        if let refusal = self.checkAuthorization(head.headers) { return refusal }
        let body: [UInt8]
        switch head.headers.first(name: "Content-Encoding")?.lowercased() {
        case nil, "identity":
            body = wire
        case "gzip":
            var buffer = ByteBuffer(bytes: wire)
            guard let inflated = try? buffer.decompress(with: ZlibAlgorithm.gzip, maxSize: 64 << 20) else {
                return Reply(status: .badRequest, body: "invalid gzip body")
            }
            body = Array(inflated.readableBytesView)
        case let other?:
            return Reply(status: .unsupportedMediaType, body: "unsupported Content-Encoding \(other)")
        }
        bodyBytes = body.count
        let contentType = head.headers.first(name: "Content-Type")?.lowercased()
            .split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) }
        switch self.api {
        case .ndjson: return self.ndjson(body, contentType: contentType, ids: &ids)
        case .splunk: return self.splunk(body, ids: &ids)
        case .loki: return self.loki(body, contentType: contentType, ids: &ids)
        case .elasticsearch: return self.bulk(body, contentType: contentType, ids: &ids)
        }
    }

    private func notFound(_ path: String) -> Reply {
        switch self.api {
        case .splunk:
            return Reply(
                status: .notFound,
                body: #"{"text":"The requested URL was not found on this server.","code":404}"#
            )
        case .elasticsearch:
            return Reply(
                status: .badRequest,
                body: #"{"error":"no handler found for uri [\#(path)] and method [POST]"}"#
            )
        default: return Reply(status: .notFound, body: "404 page not found\n")
        }
    }

    private func methodNotAllowed(_ method: HTTPMethod, path: String) -> Reply {
        switch self.api {
        case .elasticsearch:
            return Reply(
                status: .methodNotAllowed,
                body:
                    #"{"error":"Incorrect HTTP method for uri [\#(path)] and method [\#(method.rawValue)], allowed: [POST, PUT]","status":405}"#
            )
        case .splunk: return Reply(status: .methodNotAllowed, body: #"{"text":"Method Not Allowed","code":404}"#)
        default: return Reply(status: .methodNotAllowed, body: "405 method not allowed\n")
        }
    }

    private func checkAuthorization(_ headers: HTTPHeaders) -> Reply? {
        let header = headers.first(name: "Authorization")
        let parts = header.map { $0.split(separator: " ", maxSplits: 1).map(String.init) } ?? []
        let scheme = parts.first?.lowercased()
        let credential = parts.count == 2 ? parts[1] : nil
        switch self.api {
        case .splunk:
            // HEC: "Authorization: Splunk <token>" (code 2 without it, 3 malformed, 4 unknown token).
            guard header != nil else {
                return Reply(status: .unauthorized, body: #"{"text":"Token is required","code":2}"#)
            }
            guard scheme == "splunk", let credential else {
                return Reply(status: .unauthorized, body: #"{"text":"Invalid authorization","code":3}"#)
            }
            guard credential == self.token else {
                return Reply(status: .forbidden, body: #"{"text":"Invalid token","code":4}"#)
            }
            return nil
        case .elasticsearch:
            guard let token = self.token else { return nil }
            let challenge = [("WWW-Authenticate", #"ApiKey, Basic realm="security", charset="UTF-8""#)]
            guard header != nil else {
                let reason = "missing authentication credentials for REST request [/_bulk]"
                return Reply(status: .unauthorized, headers: challenge, body: Self.securityException(reason))
            }
            guard scheme == "apikey", credential == token else {
                let reason =
                    "unable to authenticate with provided credentials and anonymous access is not allowed for this request"
                return Reply(status: .unauthorized, headers: challenge, body: Self.securityException(reason))
            }
            return nil
        case .ndjson, .loki:
            guard let token = self.token else { return nil }
            guard scheme == "bearer", credential == token else {
                return Reply(status: .unauthorized, headers: [("WWW-Authenticate", "Bearer")], body: "unauthorized\n")
            }
            return nil
        }
    }

    private static func securityException(_ reason: String) -> String {
        #"{"error":{"root_cause":[{"type":"security_exception","reason":"\#(reason)"}],"type":"security_exception","reason":"\#(reason)"},"status":401}"#
    }

    /// Stores an event unless its key was seen; true when new.
    private func store(_ event: Event, key: String) -> Bool {
        guard self.seen.insert(key).inserted else {
            self.duplicateCount += 1
            return false
        }
        self.stored.append(event)
        return true
    }

    private static func hash(ofLine line: some Collection<UInt8>) -> String? {
        guard case .success(.object(let object)) = StrictJSON.parse(line, maxBytes: 1 << 24),
            let hash = object["hash"]?.stringValue, hash.utf8.count == 64
        else { return nil }
        return hash
    }

    // MARK: NDJSON

    private func ndjson(_ body: [UInt8], contentType: String?, ids: inout [String]) -> Reply {
        guard contentType == "application/x-ndjson" else {
            return Reply(status: .unsupportedMediaType, body: "expected application/x-ndjson\n")
        }
        guard body.last == UInt8(ascii: "\n") else {
            return Reply(status: .badRequest, body: "every line must end with a newline\n")
        }
        var events: [Event] = []
        for line in body.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast() {
            guard let hash = Self.hash(ofLine: line) else {
                return Reply(status: .badRequest, body: "line is not an audit event\n")
            }
            events.append(Event(id: hash, line: Array(line), fields: [:]))
        }
        for event in events {
            ids.append(event.id)
            _ = self.store(event, key: event.id)
        }
        return Reply(
            status: .ok,
            headers: [("Content-Type", "application/json")],
            body: #"{"accepted":\#(events.count)}"#
        )
    }

    // MARK: Splunk HEC

    private func splunk(_ body: [UInt8], ids: inout [String]) -> Reply {
        func invalid(_ number: Int) -> Reply {
            Reply(
                status: .badRequest,
                body: #"{"text":"Invalid data format","code":6,"invalid-event-number":\#(number)}"#
            )
        }
        guard let objects = JSONScan.concatenatedValues(body) else { return invalid(0) }
        guard !objects.isEmpty else { return Reply(status: .badRequest, body: #"{"text":"No data","code":5}"#) }
        var events: [Event] = []
        for (number, range) in objects.enumerated() {
            guard case .success(.object(let object)) = StrictJSON.parse(body[range], maxBytes: 1 << 24) else {
                return invalid(number)
            }
            guard object["event"] != nil, let eventRange = JSONScan.member(body, in: range, key: "event") else {
                return Reply(
                    status: .badRequest,
                    body: #"{"text":"Event field is required","code":12,"invalid-event-number":\#(number)}"#
                )
            }
            guard let hash = Self.hash(ofLine: body[eventRange]) else { return invalid(number) }
            var fields: [String: String] = [:]
            if let time = object["time"] {
                switch time {
                case .number, .integer: break
                default: return invalid(number)
                }
                if let timeRange = JSONScan.member(body, in: range, key: "time") {
                    fields["time"] = String(decoding: body[timeRange], as: UTF8.self)
                }
            }
            for key in ["host", "source", "sourcetype", "index"] {
                guard let value = object[key] else { continue }
                guard let text = value.stringValue else { return invalid(number) }
                fields[key] = text
            }
            events.append(Event(id: hash, line: Array(body[eventRange]), fields: fields))
        }
        for event in events {
            ids.append(event.id)
            _ = self.store(event, key: event.id)
        }
        return Reply(
            status: .ok,
            headers: [("Content-Type", "application/json; charset=UTF-8")],
            body: #"{"text":"Success","code":0}"#
        )
    }

    // MARK: Loki

    private func loki(_ body: [UInt8], contentType: String?, ids: inout [String]) -> Reply {
        guard contentType == "application/json" else {
            // Loki reads anything else as snappy-compressed protobuf.
            return Reply(status: .badRequest, body: "snappy: corrupt input\n")
        }
        guard case .success(.object(let push)) = StrictJSON.parse(body, maxBytes: 1 << 26),
            let streams = push["streams"]?.arrayValue
        else {
            return Reply(status: .badRequest, body: "loghttp.PushRequest: ReadObject: expect { or n\n")
        }
        var events: [(Event, String)] = []
        for stream in streams {
            guard let labels = stream.objectValue?["stream"]?.objectValue, !labels.isEmpty else {
                return Reply(status: .badRequest, body: "error at least one label pair is required per stream\n")
            }
            var fields: [String: String] = [:]
            for (name, value) in labels {
                guard Self.isLabelName(name), let text = value.stringValue else {
                    return Reply(status: .badRequest, body: "error parsing labels: invalid label \(name)\n")
                }
                fields["label." + name] = text
            }
            let streamKey = labels.keys.sorted().map { "\($0)=\(labels[$0]?.stringValue ?? "")" }.joined(separator: ",")
            guard let values = stream.objectValue?["values"]?.arrayValue else {
                return Reply(status: .badRequest, body: "error parsing values: values is required\n")
            }
            for value in values {
                guard let pair = value.arrayValue, pair.count == 2 || pair.count == 3,
                    let timestamp = pair[0].stringValue, !timestamp.isEmpty,
                    timestamp.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
                    let line = pair[1].stringValue
                else {
                    return Reply(
                        status: .badRequest,
                        body: "error parsing values: expected [\"<unix epoch in nanoseconds>\", \"<log line>\"]\n"
                    )
                }
                guard let hash = Self.hash(ofLine: Array(line.utf8)) else {
                    return Reply(status: .badRequest, body: "line is not an audit event\n")
                }
                var entryFields = fields
                entryFields["ts"] = timestamp
                events.append(
                    (
                        Event(id: hash, line: Array(line.utf8), fields: entryFields),
                        streamKey + "|" + timestamp + "|" + line
                    )
                )
            }
        }
        for (event, key) in events {
            ids.append(event.id)
            _ = self.store(event, key: key)
        }
        return Reply(status: .noContent)
    }

    private static func isLabelName(_ name: String) -> Bool {
        guard let first = name.utf8.first,
            first == UInt8(ascii: "_") || (0x41...0x5A).contains(first) || (0x61...0x7A).contains(first)
        else { return false }
        return name.utf8.allSatisfy {
            $0 == UInt8(ascii: "_") || (0x30...0x39).contains($0) || (0x41...0x5A).contains($0)
                || (0x61...0x7A).contains($0)
        }
    }

    // MARK: Elasticsearch _bulk

    private func bulk(_ body: [UInt8], contentType: String?, ids: inout [String]) -> Reply {
        guard contentType == "application/x-ndjson" || contentType == "application/json" else {
            return Reply(
                status: .notAcceptable,
                body: #"{"error":"Content-Type header [\#(contentType ?? "")] is not supported","status":406}"#
            )
        }
        func illegal(_ reason: String) -> Reply {
            Reply(
                status: .badRequest,
                headers: [("Content-Type", "application/json")],
                body:
                    #"{"error":{"root_cause":[{"type":"illegal_argument_exception","reason":"\#(reason)"}],"type":"illegal_argument_exception","reason":"\#(reason)"},"status":400}"#
            )
        }
        guard body.last == UInt8(ascii: "\n") else {
            return illegal("The bulk request must be terminated by a newline [\\\\n]")
        }
        let lines = body.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast().map(
            Array.init
        )
        guard !lines.isEmpty else {
            return Reply(
                status: .badRequest,
                body:
                    #"{"error":{"type":"action_request_validation_exception","reason":"Validation Failed: 1: no requests added;"},"status":400}"#
            )
        }
        guard lines.count % 2 == 0 else { return illegal("The bulk request must be terminated by a newline [\\\\n]") }
        var actions: [(index: String, id: String, line: [UInt8])] = []
        for pair in stride(from: 0, to: lines.count, by: 2) {
            guard case .success(.object(let action)) = StrictJSON.parse(lines[pair]), action.count == 1,
                let create = action["create"]?.objectValue, let index = create["_index"]?.stringValue,
                let id = create["_id"]?.stringValue
            else {
                return illegal(
                    "Malformed action/metadata line [\(pair + 1)], expected a create action with _index and _id"
                )
            }
            guard case .success(.object) = StrictJSON.parse(lines[pair + 1], maxBytes: 1 << 24) else {
                return illegal("failed to parse document at line [\(pair + 2)]")
            }
            actions.append((index, id, lines[pair + 1]))
        }
        var items: [String] = []
        var errors = false
        for action in actions {
            ids.append(action.id)
            let status: UInt
            if let failure = self.itemFailures.removeValue(forKey: action.id) {
                status = failure
            } else if self.seen.contains(action.id) {
                self.duplicateCount += 1
                status = 409
            } else {
                _ = self.store(
                    Event(id: action.id, line: action.line, fields: ["_index": action.index]),
                    key: action.id
                )
                status = 201
            }
            let head = #""_index":"\#(action.index)","_id":"\#(action.id)""#
            switch status {
            case 201:
                items.append(
                    #"{"create":{\#(head),"_version":1,"result":"created","_shards":{"total":2,"successful":1,"failed":0},"_seq_no":\#(self.stored.count - 1),"_primary_term":1,"status":201}}"#
                )
            case 409:
                errors = true
                items.append(
                    #"{"create":{\#(head),"status":409,"error":{"type":"version_conflict_engine_exception","reason":"[\#(action.id)]: version conflict, document already exists (current version [1])"}}}"#
                )
            case 429:
                errors = true
                items.append(
                    #"{"create":{\#(head),"status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"}}}"#
                )
            default:
                errors = true
                items.append(
                    #"{"create":{\#(head),"status":\#(status),"error":{"type":"mapper_parsing_exception","reason":"failed to parse"}}}"#
                )
            }
        }
        return Reply(
            status: .ok,
            headers: [("Content-Type", "application/json")],
            body: #"{"took":3,"errors":\#(errors),"items":[\#(items.joined(separator: ","))]}"#
        )
    }
}

/// The NIOHTTP1 side of ``FakeCollector``: collects a request and writes the collector's answer.
final class FakeCollectorHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let collector: FakeCollector
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []

    init(collector: FakeCollector) {
        self.collector = collector
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            self.body = []
        case .body(let chunk):
            self.body.append(contentsOf: chunk.readableBytesView)
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            let reply = self.collector.handle(head: head, wire: self.body)
            var headers = HTTPHeaders(reply.headers)
            if reply.status != .noContent {
                headers.replaceOrAdd(name: "Content-Length", value: String(reply.body.count))
            }
            context.write(
                self.wrapOutboundOut(
                    .head(HTTPResponseHead(version: head.version, status: reply.status, headers: headers))
                ),
                promise: nil
            )
            if !reply.body.isEmpty {
                context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: reply.body)))), promise: nil)
            }
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}

@available(*, unavailable)
extension FakeCollectorHandler: Sendable {}

/// Byte ranges of JSON values, for checking that a collector got the exact bytes of an event.
enum JSONScan {
    static func skipWhitespace(_ bytes: [UInt8], _ index: Int) -> Int {
        var index = index
        while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
        return index
    }

    /// Where the value starting at `start` ends (exclusive); nil when it is cut short.
    static func valueEnd(_ bytes: [UInt8], _ start: Int) -> Int? {
        guard start < bytes.count else { return nil }
        switch bytes[start] {
        case UInt8(ascii: "\""):
            var index = start + 1
            while index < bytes.count {
                if bytes[index] == UInt8(ascii: "\\") {
                    index += 2
                } else if bytes[index] == UInt8(ascii: "\"") {
                    return index + 1
                } else {
                    index += 1
                }
            }
            return nil
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            var index = start
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: "\""):
                    guard let end = self.valueEnd(bytes, index) else { return nil }
                    index = end
                    continue
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 { return index + 1 }
                default:
                    break
                }
                index += 1
            }
            return nil
        default:
            var index = start
            while index < bytes.count,
                ![UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x09, 0x0A, 0x0D].contains(
                    bytes[index]
                )
            {
                index += 1
            }
            return index
        }
    }

    /// The values of concatenated JSON text (`{...}{...}`, whitespace allowed between them).
    static func concatenatedValues(_ bytes: [UInt8]) -> [Range<Int>]? {
        var ranges: [Range<Int>] = []
        var index = self.skipWhitespace(bytes, 0)
        while index < bytes.count {
            guard let end = self.valueEnd(bytes, index) else { return nil }
            ranges.append(index..<end)
            index = self.skipWhitespace(bytes, end)
        }
        return ranges
    }

    /// The raw bytes of member `key` of the object in `range`.
    static func member(_ bytes: [UInt8], in range: Range<Int>, key: String) -> Range<Int>? {
        guard bytes[range.lowerBound] == UInt8(ascii: "{") else { return nil }
        var index = range.lowerBound + 1
        while true {
            index = self.skipWhitespace(bytes, index)
            guard index < range.upperBound, bytes[index] == UInt8(ascii: "\""),
                let keyEnd = self.valueEnd(bytes, index),
                case .success(.string(let name)) = StrictJSON.parse(bytes[index..<keyEnd])
            else { return nil }
            index = self.skipWhitespace(bytes, keyEnd)
            guard index < range.upperBound, bytes[index] == UInt8(ascii: ":") else { return nil }
            let valueStart = self.skipWhitespace(bytes, index + 1)
            guard let valueEnd = self.valueEnd(bytes, valueStart) else { return nil }
            if name == key { return valueStart..<valueEnd }
            index = self.skipWhitespace(bytes, valueEnd)
            guard index < range.upperBound, bytes[index] == UInt8(ascii: ",") else { return nil }
            index += 1
        }
    }
}

/// A CA and a server certificate for 127.0.0.1 (IP SAN) signed by it, made with the `openssl` CLI.
struct HTTPSinkTestCertificates: Sendable {
    let caFile: String
    let certificateFile: String
    let keyFile: String

    static func make(in directory: String) throws -> HTTPSinkTestCertificates {
        func run(_ arguments: [String]) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["openssl"] + arguments
            process.currentDirectoryURL = URL(fileURLWithPath: directory)
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw HTTPAuditSinkTestFailure("openssl \(arguments.prefix(2).joined(separator: " ")) failed")
            }
        }
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        try run(
            ["req", "-x509"] + ec + [
                "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Portcullis HTTP Sink Test CA",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ]
        )
        try run(["req"] + ec + ["-keyout", "server-key.pem", "-out", "server.csr", "-subj", "/CN=127.0.0.1"])
        try "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n".write(
            toFile: directory + "/server.ext",
            atomically: true,
            encoding: .utf8
        )
        try run([
            "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-set_serial", "7",
            "-days", "2", "-extfile", "server.ext", "-out", "server.pem",
        ])
        return HTTPSinkTestCertificates(
            caFile: directory + "/ca.pem",
            certificateFile: directory + "/server.pem",
            keyFile: directory + "/server-key.pem"
        )
    }

    func serverContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(self.certificateFile).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: self.keyFile, format: .pem))
        )
        configuration.minimumTLSVersion = .tlsv12
        return try NIOSSLContext(configuration: configuration)
    }
}

struct HTTPAuditSinkTestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Log lines kept in memory, to check what the sink said (and that it never said the token).
final class HTTPSinkTestLog: Sendable {
    struct Entry: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]

        var text: String {
            ([self.message] + self.metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }).joined(
                separator: " "
            )
        }
    }

    private let box = NIOLockedValueBox<[Entry]>([])

    var entries: [Entry] { self.box.withLockedValue { $0 } }

    /// A logger at trace level (so that AsyncHTTPClient's own lines are caught too).
    func logger(label: String = "test") -> Logger {
        var logger = Logger(label: label) { _ in Handler(log: self) }
        logger.logLevel = .trace
        return logger
    }

    fileprivate func append(_ entry: Entry) {
        self.box.withLockedValue { $0.append(entry) }
    }

    struct Handler: LogHandler {
        let log: HTTPSinkTestLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        var metadataProvider: Logger.MetadataProvider?

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { self.metadata[key] }
            set { self.metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var merged = self.metadata
            if let provided = self.metadataProvider?.get() { merged.merge(provided) { $1 } }
            if let metadata = event.metadata { merged.merge(metadata) { $1 } }
            self.log.append(
                Entry(
                    level: event.level,
                    message: "\(event.message)",
                    metadata: merged.mapValues { "\($0)" }
                )
            )
        }
    }
}
