public import ProxyModel

/// One problem found in a policy file.
public struct ConfigDiagnostic: Sendable, Equatable, CustomStringConvertible {
    public enum Severity: String, Sendable { case error, warning }
    public var location: SourceLocation
    public var severity: Severity
    public var message: String

    public init(_ severity: Severity, _ message: String, at location: SourceLocation) {
        self.severity = severity
        self.message = message
        self.location = location
    }

    /// `file:line:column: error: message`
    public var description: String { "\(self.location): \(self.severity.rawValue): \(self.message)" }
}

/// The result of loading a policy file.
public struct LoadedConfig: Sendable {
    public var config: PortcullisConfig
    /// Absolute path of the file read.
    public var path: String
    /// SHA-256 of the file's bytes, lower-case hex (for reload logs and audit).
    public var digest: String
    /// Warnings (errors make the load fail).
    public var warnings: [ConfigDiagnostic]
}

/// A load that failed: every problem found, in file order. Never empty.
public struct ConfigLoadError: Error, Sendable, CustomStringConvertible {
    public var diagnostics: [ConfigDiagnostic]
    public init(diagnostics: [ConfigDiagnostic]) { self.diagnostics = diagnostics }
    public var description: String { self.diagnostics.map(\.description).joined(separator: "\n") }
}

public struct ConfigLoadOptions: Sendable {
    /// Check that referenced files exist and are readable (`portcullis check --no-files` turns it off).
    public var checkFiles: Bool
    public init(checkFiles: Bool = true) { self.checkFiles = checkFiles }
}

public enum ConfigLoader {
    /// Reads and validates the file at `path`. Blocking file I/O: call it off the event loop.
    public static func load(path: String, options: ConfigLoadOptions = .init()) -> Result<LoadedConfig, ConfigLoadError> {
        _load(path: path, options: options)
    }

    /// Validates YAML text. `file` names it in diagnostics; relative paths inside resolve against `baseDirectory`.
    public static func parse(
        yaml: String,
        file: String,
        baseDirectory: String,
        options: ConfigLoadOptions = .init()
    ) -> Result<LoadedConfig, ConfigLoadError> {
        _parse(yaml: yaml, file: file, baseDirectory: baseDirectory, options: options)
    }
}
