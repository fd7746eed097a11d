import Foundation
import PolicyCore
import ProxyModel
import Testing

@testable import ProxyConfig

/// Parses `yaml` (named `policy.yaml`, relative paths against `/etc/portcullis`).
func parse(
    _ yaml: String,
    checkFiles: Bool = false,
    baseDirectory: String = "/etc/portcullis"
)
    -> Result<LoadedConfig, ConfigLoadError>
{
    ConfigLoader.parse(
        yaml: yaml,
        file: "policy.yaml",
        baseDirectory: baseDirectory,
        options: .init(checkFiles: checkFiles)
    )
}

/// Every diagnostic (errors and warnings) of a parse; empty when it loaded without warnings.
func diagnostics(
    _ yaml: String,
    checkFiles: Bool = false,
    baseDirectory: String = "/etc/portcullis"
) -> [ConfigDiagnostic] {
    switch parse(yaml, checkFiles: checkFiles, baseDirectory: baseDirectory) {
    case .success(let loaded): return loaded.warnings
    case .failure(let error): return error.diagnostics
    }
}

/// Expects exactly one diagnostic whose message contains `message`, at `line`:`column` with `severity`.
@discardableResult
func expectDiagnostic(
    _ yaml: String,
    line: Int,
    column: Int,
    _ message: String,
    severity: ConfigDiagnostic.Severity = .error,
    checkFiles: Bool = false,
    baseDirectory: String = "/etc/portcullis",
    sourceLocation: Testing.SourceLocation = #_sourceLocation
) -> ConfigDiagnostic? {
    let found = diagnostics(yaml, checkFiles: checkFiles, baseDirectory: baseDirectory)
    let matching = found.filter { $0.message.contains(message) }
    #expect(
        matching.count == 1,
        "expected one diagnostic containing \"\(message)\", got:\n\(found.map(\.description).joined(separator: "\n"))",
        sourceLocation: sourceLocation
    )
    guard let diagnostic = matching.first else { return nil }
    #expect(diagnostic.location.file == "policy.yaml", sourceLocation: sourceLocation)
    #expect(diagnostic.location.line == line, "line of: \(diagnostic)", sourceLocation: sourceLocation)
    #expect(diagnostic.location.column == column, "column of: \(diagnostic)", sourceLocation: sourceLocation)
    #expect(diagnostic.severity == severity, "severity of: \(diagnostic)", sourceLocation: sourceLocation)
    return diagnostic
}

/// Expects the YAML to load, and returns the config.
func expectValid(
    _ yaml: String,
    checkFiles: Bool = false,
    baseDirectory: String = "/etc/portcullis",
    sourceLocation: Testing.SourceLocation = #_sourceLocation
) -> LoadedConfig? {
    switch parse(yaml, checkFiles: checkFiles, baseDirectory: baseDirectory) {
    case .success(let loaded): return loaded
    case .failure(let error):
        Issue.record("expected a valid policy, got:\n\(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// Lines 1-5: version and one http listener `web` plus an admin listener `ops`, then `routes:` on line 9
/// (prepend to route snippets that start at line 10).
let head = """
    version: 1
    listeners:
      - { name: web, address: "0.0.0.0:8080", protocol: http }
      - { name: ops, address: "127.0.0.1:9901", protocol: admin }
    issuers:
      - { name: corp, issuer: "https://corp.example.com", audiences: [airflow] }
      - { name: other, issuer: "https://other.example.com", audiences: [other] }
      - { name: bare, issuer: "https://bare.example.com" }
    routes:

    """

/// A temporary folder removed when the value is dropped at the end of a test.
final class TemporaryDirectory {
    let path: String

    init() throws {
        let path = NSTemporaryDirectory() + "portcullis-config-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        self.path = path
    }

    @discardableResult
    func write(_ relativePath: String, _ contents: String = "placeholder\n") throws -> String {
        let full = self.path + "/" + relativePath
        let folder = String(full[..<full.lastIndex(of: "/")!])
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try contents.write(toFile: full, atomically: true, encoding: .utf8)
        return full
    }

    deinit { try? FileManager.default.removeItem(atPath: self.path) }
}
