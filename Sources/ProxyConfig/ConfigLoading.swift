import Crypto
import Foundation
import ProxyModel

// Entry points behind ``ConfigLoader``: read the file, digest it, compose, walk, and sort what was found.

func _load(path: String, options: ConfigLoadOptions) -> Result<LoadedConfig, ConfigLoadError> {
    let currentDirectory = FileManager.default.currentDirectoryPath
    let absolute = ValueSyntax.absolutePath(path, base: currentDirectory, currentDirectory: currentDirectory)
    func failure(_ reason: String) -> Result<LoadedConfig, ConfigLoadError> {
        .failure(
            ConfigLoadError(diagnostics: [
                ConfigDiagnostic(
                    .error,
                    "cannot read policy file: \(reason)",
                    at: SourceLocation(file: path, line: 1, column: 1)
                )
            ])
        )
    }
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: absolute, isDirectory: &isDirectory) else {
        return failure("no such file: \(absolute)")
    }
    guard !isDirectory.boolValue else { return failure("\(absolute) is a directory") }
    let data: Data
    do {
        data = try Data(contentsOf: URL(fileURLWithPath: absolute))
    } catch {
        return failure("\(absolute): \(error.localizedDescription)")
    }
    guard let text = String(data: data, encoding: .utf8) else { return failure("\(absolute) is not valid UTF-8") }
    let baseDirectory = String(absolute[..<(absolute.lastIndex(of: "/") ?? absolute.startIndex)])
    return _parse(
        text: text,
        digest: sha256Hex(data),
        file: path,
        absolutePath: absolute,
        baseDirectory: baseDirectory.isEmpty ? "/" : baseDirectory,
        options: options
    )
}

func _parse(
    yaml: String,
    file: String,
    baseDirectory: String,
    options: ConfigLoadOptions
) -> Result<LoadedConfig, ConfigLoadError> {
    _parse(
        text: yaml,
        digest: sha256Hex(Data(yaml.utf8)),
        file: file,
        absolutePath: file,
        baseDirectory: baseDirectory,
        options: options
    )
}

private func _parse(
    text: String,
    digest: String,
    file: String,
    absolutePath: String,
    baseDirectory: String,
    options: ConfigLoadOptions
) -> Result<LoadedConfig, ConfigLoadError> {
    let source = YAMLSource.compose(text, file: file)
    let reader = NodeReader(file: file, source: source)
    var config: PortcullisConfig?
    if let root = source.root {
        let parser = PolicyParser(
            reader: reader,
            baseDirectory: baseDirectory,
            currentDirectory: FileManager.default.currentDirectoryPath,
            options: options
        )
        config = parser.parse(root)
    } else if source.diagnostics.isEmpty {
        reader.report(
            ConfigDiagnostic(
                .error,
                "the policy file is empty (it needs at least 'version: 1' and 'listeners')",
                at: SourceLocation(file: file, line: 1, column: 1)
            )
        )
    }

    let all = orderedDiagnostics(source.diagnostics + reader.diagnostics)
    let errors = all.filter { $0.severity == .error }
    let warnings = all.filter { $0.severity == .warning }
    guard errors.isEmpty, let config else {
        return .failure(ConfigLoadError(diagnostics: errors.isEmpty ? internalFailure(file) : errors + warnings))
    }
    return .success(LoadedConfig(config: config, path: absolutePath, digest: digest, warnings: warnings))
}

/// In file order (stable for one location), without repeats (a mapping reached twice through a YAML
/// alias reports its problems once).
func orderedDiagnostics(_ diagnostics: [ConfigDiagnostic]) -> [ConfigDiagnostic] {
    var seen = Set<String>()
    let unique = diagnostics.filter { seen.insert($0.description).inserted }
    return unique.enumerated().sorted { lhs, rhs in
        let (l, r) = (lhs.element.location, rhs.element.location)
        if l.line != r.line { return l.line < r.line }
        if l.column != r.column { return l.column < r.column }
        return lhs.offset < rhs.offset
    }.map(\.element)
}

/// Never expected: no config and no error. Fails closed with a diagnostic rather than an empty list.
private func internalFailure(_ file: String) -> [ConfigDiagnostic] {
    [
        ConfigDiagnostic(
            .error,
            "the policy file could not be read as a configuration",
            at: SourceLocation(file: file, line: 1, column: 1)
        )
    ]
}

func sha256Hex(_ data: Data) -> String {
    let hexDigits = Array("0123456789abcdef".utf8)
    var bytes: [UInt8] = []
    bytes.reserveCapacity(64)
    for byte in SHA256.hash(data: data) {
        bytes.append(hexDigits[Int(byte >> 4)])
        bytes.append(hexDigits[Int(byte & 0x0F)])
    }
    return String(decoding: bytes, as: UTF8.self)
}
