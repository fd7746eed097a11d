import ProxyModel
import Yams

extension PolicyParser {
    static let auditKeys = [
        "on_overflow", "buffer_events", "long_request_threshold", "auth_failure_limit", "head_file", "hmac_key_file",
        "checkpoint", "sinks",
    ]
    static let auditFailureLimitKeys = ["rate", "burst"]
    static let auditCheckpointKeys = ["key_file", "every_events", "interval"]
    static let auditSinkTypes = ["stdout", "file", "http", "syslog"]
    static let fileSinkKeys = ["type", "path", "rotate", "fsync_interval"]
    static let rotateKeys = ["max_size", "max_age", "keep"]
    static let httpSinkKeys = [
        "type", "url", "format", "token_file", "token_env", "auth_scheme", "gzip", "batch", "timeout", "retry", "spool",
        "index", "sourcetype", "labels", "ca_file",
    ]
    static let batchKeys = ["max_events", "max_bytes", "flush_interval"]
    static let retryKeys = ["initial_backoff", "max_backoff"]
    static let spoolKeys = ["directory", "max_size"]
    static let syslogSinkKeys = [
        "type", "address", "tls", "ca_file", "certificate", "private_key", "server_name", "app_name", "facility",
    ]

    func parseAudit(_ node: Node) -> AuditConfig? {
        let reader = self.reader
        guard let fields = reader.fields(node, path: "audit", place: "in audit", allowed: Self.auditKeys) else {
            return nil
        }
        var config = AuditConfig(location: reader.location(node))
        if let entry = fields["on_overflow"], let text = reader.string(entry.value, path: "audit.on_overflow") {
            if let mode = AuditConfig.OverflowMode(rawValue: text) {
                config.onOverflow = mode
            } else {
                reader.error("audit.on_overflow: expected fail_closed or drop, got '\(text)'", at: entry.value)
            }
        }
        if let entry = fields["buffer_events"],
            let value = reader.int(entry.value, path: "audit.buffer_events", in: 16...16_777_216)
        {
            config.bufferEvents = value
        }
        if let entry = fields["long_request_threshold"],
            let value = reader.duration(entry.value, path: "audit.long_request_threshold", positive: true)
        {
            config.longRequestThreshold = value
        }
        if let entry = fields["auth_failure_limit"],
            let limit = reader.fields(
                entry.value,
                path: "audit.auth_failure_limit",
                place: "in audit.auth_failure_limit",
                allowed: Self.auditFailureLimitKeys
            )
        {
            if let rate = limit["rate"], let value = reader.int(rate.value, path: "audit.auth_failure_limit.rate", in: 1...1_000_000) {
                config.authFailureRate = value
            }
            if let burst = limit["burst"],
                let value = reader.int(burst.value, path: "audit.auth_failure_limit.burst", in: 1...1_000_000)
            {
                config.authFailureBurst = value
            }
        }
        if let entry = fields["head_file"], let text = reader.nonEmptyString(entry.value, path: "audit.head_file") {
            config.headFile = self.outputPath(text)
        }
        if let entry = fields["hmac_key_file"] {
            config.hmacKeyFile = self.file(entry.value, path: "audit.hmac_key_file")
        }
        if let entry = fields["checkpoint"] {
            config.checkpoint = self.parseCheckpoint(entry.value)
        }
        if let entry = reader.required(fields, "sinks", context: "audit") {
            config.sinks = self.parseSinks(entry.value) ?? []
        }
        return config
    }

    func outputPath(_ text: String) -> String {
        ValueSyntax.absolutePath(text, base: self.baseDirectory, currentDirectory: self.currentDirectory)
    }

    private func parseCheckpoint(_ node: Node) -> AuditCheckpointConfig? {
        let reader = self.reader
        guard
            let fields = reader.fields(
                node,
                path: "audit.checkpoint",
                place: "in audit.checkpoint",
                allowed: Self.auditCheckpointKeys
            )
        else { return nil }
        guard let keyEntry = reader.required(fields, "key_file", context: "audit.checkpoint"),
            let keyFile = self.file(keyEntry.value, path: "audit.checkpoint.key_file")
        else { return nil }
        var checkpoint = AuditCheckpointConfig(keyFile: keyFile)
        if let entry = fields["every_events"],
            let value = reader.int(entry.value, path: "audit.checkpoint.every_events", in: 1...100_000_000)
        {
            checkpoint.everyEvents = value
        }
        if let entry = fields["interval"],
            let value = reader.duration(entry.value, path: "audit.checkpoint.interval", positive: true)
        {
            checkpoint.interval = value
        }
        return checkpoint
    }

    private func parseSinks(_ node: Node) -> [AuditSinkConfig]? {
        let reader = self.reader
        guard let items = reader.list(node, path: "audit.sinks") else { return nil }
        if items.isEmpty {
            reader.error("audit.sinks: at least one sink is required (stdout, file, http or syslog)", at: node)
            return nil
        }
        var sinks: [AuditSinkConfig] = []
        var filePaths: [String: Node] = [:]
        for (index, item) in items.enumerated() {
            let path = "audit.sinks[\(index)]"
            guard case .mapping = item else {
                reader.error("\(path): expected a mapping with 'type', got \(reader.kind(item).phrase)", at: item)
                continue
            }
            guard let typeNode = self.mappingValue(item, "type") else {
                reader.error("\(path): missing key 'type' (one of \(Self.auditSinkTypes.joined(separator: ", ")))", at: item)
                continue
            }
            guard let type = reader.string(typeNode, path: "\(path).type") else { continue }
            switch type {
            case "stdout":
                if reader.fields(item, path: path, place: "in a stdout sink", allowed: ["type"]) != nil {
                    sinks.append(.stdout)
                }
            case "file":
                if let sink = self.parseFileSink(item, path: path) {
                    if let first = filePaths[sink.path] {
                        reader.error(
                            "\(path).path: \(sink.path) is already written by the sink at line \(reader.location(first).line)",
                            at: item
                        )
                    } else {
                        filePaths[sink.path] = item
                        sinks.append(.file(sink))
                    }
                }
            case "http":
                if let sink = self.parseHTTPSink(item, path: path) { sinks.append(.http(sink)) }
            case "syslog":
                if let sink = self.parseSyslogSink(item, path: path) { sinks.append(.syslog(sink)) }
            default:
                let hint = ValueSyntax.suggestion(for: type, among: Self.auditSinkTypes).map { " (did you mean '\($0)'?)" } ?? ""
                reader.error(
                    "\(path).type: unknown sink type '\(type)'\(hint); expected one of \(Self.auditSinkTypes.joined(separator: ", "))",
                    at: typeNode
                )
            }
        }
        return sinks
    }

    private func mappingValue(_ node: Node, _ key: String) -> Node? {
        guard case .mapping(let mapping) = node else { return nil }
        for (k, v) in mapping {
            if case .scalar(let scalar) = k, self.reader.source.key(scalar.string) == key { return v }
        }
        return nil
    }

    private func parseFileSink(_ node: Node, path: String) -> AuditFileSinkConfig? {
        let reader = self.reader
        guard let fields = reader.fields(node, path: path, place: "in a file sink", allowed: Self.fileSinkKeys),
            let pathEntry = reader.required(fields, "path", context: "\(path) (file sink)"),
            let text = reader.nonEmptyString(pathEntry.value, path: "\(path).path")
        else { return nil }
        var sink = AuditFileSinkConfig(path: self.outputPath(text))
        if let entry = fields["rotate"],
            let rotate = reader.fields(entry.value, path: "\(path).rotate", place: "in \(path).rotate", allowed: Self.rotateKeys)
        {
            if let size = rotate["max_size"], let value = reader.size(size.value, path: "\(path).rotate.max_size") {
                if value < 4096 {
                    reader.error("\(path).rotate.max_size: must be at least 4KiB", at: size.value)
                } else {
                    sink.maxSize = value
                }
            }
            if let age = rotate["max_age"],
                let value = reader.duration(age.value, path: "\(path).rotate.max_age", positive: true)
            {
                sink.maxAge = value
            }
            if let keep = rotate["keep"], let value = reader.int(keep.value, path: "\(path).rotate.keep", in: 1...100_000) {
                sink.keep = value
            }
        }
        if let entry = fields["fsync_interval"], let value = reader.duration(entry.value, path: "\(path).fsync_interval") {
            sink.fsyncInterval = value
        }
        return sink
    }

    private func parseHTTPSink(_ node: Node, path: String) -> AuditHTTPSinkConfig? {
        let reader = self.reader
        guard let fields = reader.fields(node, path: path, place: "in an http sink", allowed: Self.httpSinkKeys),
            let urlEntry = reader.required(fields, "url", context: "\(path) (http sink)"),
            let url = reader.nonEmptyString(urlEntry.value, path: "\(path).url")
        else { return nil }
        switch ValueSyntax.parseURL(url) {
        case .failure(let failure):
            reader.error("\(path).url: \(failure.message)", at: urlEntry.value)
            return nil
        case .success(let parts):
            guard parts.scheme == "http" || parts.scheme == "https" else {
                reader.error("\(path).url: scheme must be http or https, got '\(parts.scheme)'", at: urlEntry.value)
                return nil
            }
            if parts.hasFragment {
                reader.error("\(path).url: may not carry a fragment", at: urlEntry.value)
                return nil
            }
        }
        var sink = AuditHTTPSinkConfig(url: url)
        if let entry = fields["format"], let text = reader.string(entry.value, path: "\(path).format") {
            if let format = AuditHTTPSinkConfig.Format(rawValue: text) {
                sink.format = format
            } else {
                let names = AuditHTTPSinkConfig.Format.allCases.map(\.rawValue)
                let hint = ValueSyntax.suggestion(for: text, among: names).map { " (did you mean '\($0)'?)" } ?? ""
                reader.error("\(path).format: unknown format '\(text)'\(hint); expected one of \(names.joined(separator: ", "))", at: entry.value)
            }
        }
        if let fileEntry = fields["token_file"], fields["token_env"] != nil {
            reader.error("\(path): give token_file or token_env, not both", at: fileEntry.key)
        } else if let entry = fields["token_file"] {
            if let file = self.file(entry.value, path: "\(path).token_file") { sink.token = .file(file) }
        } else if let entry = fields["token_env"], let name = reader.nonEmptyString(entry.value, path: "\(path).token_env") {
            sink.token = .environment(name)
        }
        if let entry = fields["auth_scheme"], let text = reader.nonEmptyString(entry.value, path: "\(path).auth_scheme") {
            if text.contains(where: { $0 == " " || $0.isNewline }) {
                reader.error("\(path).auth_scheme: one word, like Bearer, Splunk, ApiKey or Basic", at: entry.value)
            } else {
                sink.authScheme = text
            }
        }
        if let entry = fields["gzip"], let value = reader.bool(entry.value, path: "\(path).gzip") { sink.gzip = value }
        if let entry = fields["batch"],
            let batch = reader.fields(entry.value, path: "\(path).batch", place: "in \(path).batch", allowed: Self.batchKeys)
        {
            if let e = batch["max_events"], let v = reader.int(e.value, path: "\(path).batch.max_events", in: 1...100_000) {
                sink.batchMaxEvents = v
            }
            if let e = batch["max_bytes"], let v = reader.size(e.value, path: "\(path).batch.max_bytes") {
                if v < 1024 || v > 64 * 1024 * 1024 {
                    reader.error("\(path).batch.max_bytes: must be between 1KiB and 64MiB", at: e.value)
                } else {
                    sink.batchMaxBytes = Int(v)
                }
            }
            if let e = batch["flush_interval"],
                let v = reader.duration(e.value, path: "\(path).batch.flush_interval", positive: true)
            {
                sink.flushInterval = v
            }
        }
        if let entry = fields["timeout"], let v = reader.duration(entry.value, path: "\(path).timeout", positive: true) {
            sink.timeout = v
        }
        if let entry = fields["retry"],
            let retry = reader.fields(entry.value, path: "\(path).retry", place: "in \(path).retry", allowed: Self.retryKeys)
        {
            if let e = retry["initial_backoff"],
                let v = reader.duration(e.value, path: "\(path).retry.initial_backoff", positive: true)
            {
                sink.retryInitialBackoff = v
            }
            if let e = retry["max_backoff"], let v = reader.duration(e.value, path: "\(path).retry.max_backoff", positive: true) {
                sink.retryMaxBackoff = v
            }
        }
        if let entry = fields["spool"],
            let spool = reader.fields(entry.value, path: "\(path).spool", place: "in \(path).spool", allowed: Self.spoolKeys)
        {
            if let e = reader.required(spool, "directory", context: "\(path).spool"),
                let text = reader.nonEmptyString(e.value, path: "\(path).spool.directory")
            {
                sink.spoolDirectory = self.outputPath(text)
            }
            if let e = spool["max_size"], let v = reader.size(e.value, path: "\(path).spool.max_size") {
                sink.spoolMaxBytes = v
            }
        }
        if let entry = fields["index"], let text = reader.nonEmptyString(entry.value, path: "\(path).index") {
            sink.index = text
        }
        if let entry = fields["sourcetype"], let text = reader.nonEmptyString(entry.value, path: "\(path).sourcetype") {
            sink.sourceType = text
        }
        if let entry = fields["labels"], case .mapping(let mapping) = entry.value {
            for (key, _, value) in reader.pairs(mapping, path: "\(path).labels", place: "in \(path).labels") {
                if let text = reader.string(value, path: "\(path).labels.\(key)") { sink.labels[key] = text }
            }
        } else if let entry = fields["labels"] {
            reader.error("\(path).labels: expected a mapping of label names to values", at: entry.value)
        }
        if let entry = fields["ca_file"] { sink.caFile = self.file(entry.value, path: "\(path).ca_file") }
        return sink
    }

    private func parseSyslogSink(_ node: Node, path: String) -> AuditSyslogSinkConfig? {
        let reader = self.reader
        guard let fields = reader.fields(node, path: path, place: "in a syslog sink", allowed: Self.syslogSinkKeys),
            let addressEntry = reader.required(fields, "address", context: "\(path) (syslog sink)"),
            let text = reader.nonEmptyString(addressEntry.value, path: "\(path).address")
        else { return nil }
        let address: HostPort
        switch ValueSyntax.parseHostPort(text) {
        case .success(let value): address = value
        case .failure(let failure):
            reader.error("\(path).address: \(failure.message)", at: addressEntry.value)
            return nil
        }
        var sink = AuditSyslogSinkConfig(address: address)
        if let entry = fields["tls"], let value = reader.bool(entry.value, path: "\(path).tls") {
            sink.tls = value
            let loopback = CIDR.parse("127.0.0.0/8")!
            let isLoopback =
                address.host == "localhost"
                || IPAddress.parse(address.host).map { loopback.contains($0) || "\($0)" == "::1" } ?? false
            if !value && !isLoopback {
                reader.error("\(path).tls: plain TCP is only allowed to a loopback relay; audit events leave the box over TLS", at: entry.value)
            }
        }
        if let entry = fields["ca_file"] { sink.caFile = self.file(entry.value, path: "\(path).ca_file") }
        if let entry = fields["certificate"] { sink.certificateFile = self.file(entry.value, path: "\(path).certificate") }
        if let entry = fields["private_key"] { sink.privateKeyFile = self.file(entry.value, path: "\(path).private_key") }
        if (sink.certificateFile == nil) != (sink.privateKeyFile == nil), fields["certificate"] != nil || fields["private_key"] != nil {
            reader.error("\(path): certificate and private_key go together (client authentication to the syslog server)", at: node)
        }
        if let entry = fields["server_name"], let text = reader.nonEmptyString(entry.value, path: "\(path).server_name") {
            sink.serverName = text
        }
        if let entry = fields["app_name"], let text = reader.nonEmptyString(entry.value, path: "\(path).app_name") {
            if text.utf8.count > 48 || !text.utf8.allSatisfy({ $0 >= 33 && $0 <= 126 }) {
                reader.error("\(path).app_name: at most 48 printable ASCII characters without spaces (RFC 5424)", at: entry.value)
            } else {
                sink.appName = text
            }
        }
        if let entry = fields["facility"], let value = reader.int(entry.value, path: "\(path).facility", in: 0...23) {
            sink.facility = value
        }
        return sink
    }
}
