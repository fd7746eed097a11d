import AuditCore
import Foundation
public import Logging
public import ProxyConfig

/// Builds the audit pipeline of a configuration: keys read, sinks opened, chain recovered.
public enum AuditSetup {
    public struct SetupError: Error, CustomStringConvertible {
        public var description: String
    }

    public static func makePipeline(config: AuditConfig, instance: String, logger: Logger) throws -> AuditPipeline {
        var hmacKey: [UInt8]?
        if let path = config.hmacKeyFile {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw SetupError(description: "audit.hmac_key_file: cannot read \(path)")
            }
            do {
                hmacKey = try AuditHMACKey.fromFile(bytes: Array(data))
            } catch {
                throw SetupError(description: "audit.hmac_key_file: \(error)")
            }
        }
        var signer: CheckpointSigner?
        if let checkpoint = config.checkpoint {
            guard let data = FileManager.default.contents(atPath: checkpoint.keyFile) else {
                throw SetupError(description: "audit.checkpoint.key_file: cannot read \(checkpoint.keyFile)")
            }
            do {
                signer = try CheckpointSigner(rawPrivateKey: try Ed25519KeyFile.privateKey(pem: String(decoding: data, as: UTF8.self)))
            } catch {
                throw SetupError(description: "audit.checkpoint.key_file: \(error)")
            }
        }
        var sinks: [any AuditSink] = []
        for sink in config.sinks {
            do {
                sinks.append(try self.makeSink(sink, instance: instance, logger: logger))
            } catch {
                for opened in sinks { opened.close(deadline: 0) }
                throw SetupError(description: "audit sink \(sink.typeName): \(error)")
            }
        }
        return AuditPipeline(config: config, instance: instance, sinks: sinks, hmacKey: hmacKey, signer: signer, logger: logger)
    }

    static func makeSink(_ sink: AuditSinkConfig, instance: String, logger: Logger) throws -> any AuditSink {
        switch sink {
        case .stdout: return StdoutAuditSink()
        case .file(let file): return try FileAuditSink(config: file, logger: logger)
        case .http(let http): return try HTTPAuditSink(config: http, instance: instance, logger: logger)
        case .syslog(let syslog): return try SyslogAuditSink(config: syslog, instance: instance, logger: logger)
        }
    }
}
