public import ProxyModel

/// `audit:`: where the audit trail goes and how it behaves under pressure. Without an `audit:` section the
/// trail goes to stdout (and `check` warns).
public struct AuditConfig: Sendable, Equatable {
    public enum OverflowMode: String, Sendable, Equatable {
        /// New requests get 503 `audit_unavailable` until the writer catches up (the default).
        case failClosed = "fail_closed"
        /// Requests go ahead; lost events are counted and reported by an `audit.dropped` event.
        case drop
    }

    public var onOverflow: OverflowMode
    /// Capacity of the in-memory buffer between the request path and the writer, in events.
    public var bufferEvents: Int
    /// A request still running after this gets an `http.request.long_running` event. Default 10 s.
    public var longRequestThreshold: Duration
    /// Authentication failures recorded per client address: `rate` per second, bursts of `burst`.
    public var authFailureRate: Int
    public var authFailureBurst: Int
    /// Where the chain head is persisted (default: the first file sink's path + `.head`).
    public var headFile: String?
    /// An HMAC-SHA-256 key: without it nobody holding only the files can rebuild the chain.
    public var hmacKeyFile: String?
    public var checkpoint: AuditCheckpointConfig?
    public var sinks: [AuditSinkConfig]
    /// true when the file has no `audit:` section (stdout only).
    public var isDefault: Bool
    public var location: SourceLocation?

    public init(
        onOverflow: OverflowMode = .failClosed,
        bufferEvents: Int = 65_536,
        longRequestThreshold: Duration = .seconds(10),
        authFailureRate: Int = 10,
        authFailureBurst: Int = 20,
        headFile: String? = nil,
        hmacKeyFile: String? = nil,
        checkpoint: AuditCheckpointConfig? = nil,
        sinks: [AuditSinkConfig] = [.stdout],
        isDefault: Bool = false,
        location: SourceLocation? = nil
    ) {
        self.onOverflow = onOverflow
        self.bufferEvents = bufferEvents
        self.longRequestThreshold = longRequestThreshold
        self.authFailureRate = authFailureRate
        self.authFailureBurst = authFailureBurst
        self.headFile = headFile
        self.hmacKeyFile = hmacKeyFile
        self.checkpoint = checkpoint
        self.sinks = sinks
        self.isDefault = isDefault
        self.location = location
    }

    /// No `audit:` section: stdout, defaults.
    public static let `default` = AuditConfig(isDefault: true)

    /// The persisted head's path: `head_file`, else next to the first file sink, else none.
    public var effectiveHeadFile: String? {
        if let headFile { return headFile }
        for sink in self.sinks {
            if case .file(let file) = sink { return file.path + ".head" }
        }
        return nil
    }
}

/// `audit.checkpoint`: signed checkpoints every `every_events` events or `interval`, whichever is first.
public struct AuditCheckpointConfig: Sendable, Equatable {
    /// An Ed25519 private key: PEM (PKCS #8, as `openssl genpkey -algorithm ed25519` writes it).
    public var keyFile: String
    public var everyEvents: Int
    public var interval: Duration

    public init(keyFile: String, everyEvents: Int = 1000, interval: Duration = .seconds(60)) {
        self.keyFile = keyFile
        self.everyEvents = everyEvents
        self.interval = interval
    }
}

public enum AuditSinkConfig: Sendable, Equatable {
    case stdout
    case file(AuditFileSinkConfig)
    case http(AuditHTTPSinkConfig)
    case syslog(AuditSyslogSinkConfig)

    public var typeName: String {
        switch self {
        case .stdout: return "stdout"
        case .file: return "file"
        case .http: return "http"
        case .syslog: return "syslog"
        }
    }
}

/// `{type: file}`: JSON lines, rotated by size and age.
public struct AuditFileSinkConfig: Sendable, Equatable {
    public var path: String
    /// Rotate when the active file would exceed this many bytes (default 100 MiB).
    public var maxSize: Int64
    /// Rotate when the active file is older than this (default: never by age).
    public var maxAge: Duration?
    /// Rotated files kept (oldest deleted first). Default 10.
    public var keep: Int
    /// How often written events are fsync'ed (default 1 s; 0: after every batch).
    public var fsyncInterval: Duration

    public init(path: String, maxSize: Int64 = 100 * 1024 * 1024, maxAge: Duration? = nil, keep: Int = 10, fsyncInterval: Duration = .seconds(1)) {
        self.path = path
        self.maxSize = maxSize
        self.maxAge = maxAge
        self.keep = keep
        self.fsyncInterval = fsyncInterval
    }
}

/// A secret given by reference: `_file` (a file, trimmed) or `_env` (an environment variable).
public enum SecretReference: Sendable, Equatable {
    case file(String)
    case environment(String)
}

/// `{type: http}`: batched POSTs to a collector.
public struct AuditHTTPSinkConfig: Sendable, Equatable {
    public enum Format: String, Sendable, Equatable, CaseIterable {
        /// One event per line, `application/x-ndjson`.
        case ndjson
        /// Splunk HTTP Event Collector: `/services/collector/event`, `Authorization: Splunk <token>`.
        case splunkHEC = "splunk_hec"
        /// Grafana Loki push API: `/loki/api/v1/push`, JSON streams.
        case loki
        /// Elasticsearch / OpenSearch `_bulk` with `create` actions and `_id` = the event's hash.
        case elasticsearch
    }

    public var url: String
    public var format: Format
    public var token: SecretReference?
    /// The Authorization scheme for `token` (default by format: `Splunk` for splunk_hec, `ApiKey` for
    /// elasticsearch, `Bearer` otherwise).
    public var authScheme: String?
    public var gzip: Bool
    public var batchMaxEvents: Int
    public var batchMaxBytes: Int
    /// A partial batch is sent after this long.
    public var flushInterval: Duration
    public var timeout: Duration
    public var retryInitialBackoff: Duration
    public var retryMaxBackoff: Duration
    /// Where batches wait while the collector is down (replayed oldest first). Without it, the sink holds
    /// at most `batch_max_events * 4` events in memory and then holds back the writer.
    public var spoolDirectory: String?
    public var spoolMaxBytes: Int64
    /// Elasticsearch index, or Splunk index.
    public var index: String?
    /// Splunk sourcetype (default `portcullis:audit`).
    public var sourceType: String?
    /// Loki stream labels, added to `{job: portcullis, instance: <id>}` (low cardinality: never seq or hash;
    /// not `kind` either, which would split a batch into streams and lose its order).
    public var labels: [String: String]
    /// CA bundle for an https collector (default: the system's).
    public var caFile: String?

    public init(
        url: String,
        format: Format = .ndjson,
        token: SecretReference? = nil,
        authScheme: String? = nil,
        gzip: Bool = true,
        batchMaxEvents: Int = 500,
        batchMaxBytes: Int = 1024 * 1024,
        flushInterval: Duration = .seconds(1),
        timeout: Duration = .seconds(10),
        retryInitialBackoff: Duration = .milliseconds(500),
        retryMaxBackoff: Duration = .seconds(30),
        spoolDirectory: String? = nil,
        spoolMaxBytes: Int64 = 1024 * 1024 * 1024,
        index: String? = nil,
        sourceType: String? = nil,
        labels: [String: String] = [:],
        caFile: String? = nil
    ) {
        self.url = url
        self.format = format
        self.token = token
        self.authScheme = authScheme
        self.gzip = gzip
        self.batchMaxEvents = batchMaxEvents
        self.batchMaxBytes = batchMaxBytes
        self.flushInterval = flushInterval
        self.timeout = timeout
        self.retryInitialBackoff = retryInitialBackoff
        self.retryMaxBackoff = retryMaxBackoff
        self.spoolDirectory = spoolDirectory
        self.spoolMaxBytes = spoolMaxBytes
        self.index = index
        self.sourceType = sourceType
        self.labels = labels
        self.caFile = caFile
    }
}

/// `{type: syslog}`: RFC 5424 messages over TCP with TLS (RFC 5425 octet-counting framing).
public struct AuditSyslogSinkConfig: Sendable, Equatable {
    public var address: HostPort
    /// false only for a local relay on loopback (plain TCP, RFC 6587 octet counting).
    public var tls: Bool
    public var caFile: String?
    public var certificateFile: String?
    public var privateKeyFile: String?
    /// The name the server's certificate must carry (default: the address's host).
    public var serverName: String?
    public var appName: String
    /// Syslog facility number (default 13, log audit).
    public var facility: Int

    public init(
        address: HostPort,
        tls: Bool = true,
        caFile: String? = nil,
        certificateFile: String? = nil,
        privateKeyFile: String? = nil,
        serverName: String? = nil,
        appName: String = "portcullis",
        facility: Int = 13
    ) {
        self.address = address
        self.tls = tls
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.privateKeyFile = privateKeyFile
        self.serverName = serverName
        self.appName = appName
        self.facility = facility
    }
}
