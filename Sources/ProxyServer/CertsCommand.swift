import Foundation
import ProxyTransport

extension PortcullisCommands {
    /// `portcullis certs dev`: a development CA, a server certificate for the names, a client certificate
    /// with a SPIFFE ID, a revoked client certificate and a CRL. Keys are written 0600; git ignores them.
    public static func certsDev(directory: String, serverNames: [String], spiffeID: String) -> Int32 {
        do {
            let files = try DevCertificates.generate(in: directory, serverNames: serverNames, clientSPIFFEID: spiffeID)
            let lines = [
                "CA:              \(files.caCertificate)  (key \(files.caPrivateKey))",
                "server:          \(files.serverCertificate)  (key \(files.serverPrivateKey)) for \(serverNames.joined(separator: ", "))",
                "client:          \(files.clientCertificate)  (key \(files.clientPrivateKey)) \(spiffeID)",
                "revoked client:  \(files.revokedClientCertificate)  (key \(files.revokedClientPrivateKey))",
                "CRL:             \(files.crl)",
            ]
            FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
            return Exit.success
        } catch {
            FileHandle.standardError.write(Data("portcullis certs dev: \(error)\n".utf8))
            return Exit.environment
        }
    }
}
