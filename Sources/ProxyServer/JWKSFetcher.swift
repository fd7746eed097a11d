import AsyncHTTPClient
import Foundation
import IdentityCore
import NIOCore
import NIOHTTP1
import ProxyConfig
import ProxyModel

/// Fetches an issuer's key set: from `jwks_file`, from `jwks_uri`, or through OIDC discovery
/// (`{issuer}/.well-known/openid-configuration` → `jwks_uri`). HTTPS only, plain HTTP only to loopback
/// addresses; no redirects; bounded sizes and times.
struct JWKSFetcher: Sendable {
    struct Fetched: Sendable {
        var keys: JWKSet
        /// Cache-Control max-age of the JWKS response, when given.
        var maxAge: Int64?
    }

    struct FetchError: Error, CustomStringConvertible {
        var description: String
    }

    static let requestTimeout: TimeAmount = .seconds(5)

    let client: HTTPClient

    func fetch(_ issuer: IssuerConfig) async throws -> Fetched {
        if let file = issuer.jwksFile {
            let data = try Data(contentsOf: URL(fileURLWithPath: file))
            guard data.count <= JWKSet.maxDocumentBytes else { throw FetchError(description: "\(file): larger than 1 MiB") }
            switch JWKSet.parse(Array(data)) {
            case .success(let keys): return Fetched(keys: keys, maxAge: nil)
            case .failure(let error): throw FetchError(description: "\(file): \(error)")
            }
        }
        let jwksURI: String
        if let uri = issuer.jwksURI {
            jwksURI = uri
        } else {
            jwksURI = try await self.discoverJWKSURI(issuer: issuer.issuer)
        }
        let (body, headers) = try await self.get(jwksURI)
        switch JWKSet.parse(body) {
        case .success(let keys): return Fetched(keys: keys, maxAge: Self.maxAge(headers))
        case .failure(let error): throw FetchError(description: "\(jwksURI): \(error)")
        }
    }

    func discoverJWKSURI(issuer: String) async throws -> String {
        let base = issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer
        let url = base + "/.well-known/openid-configuration"
        let (body, _) = try await self.get(url)
        guard case .success(let document) = StrictJSON.parse(body), let object = document.objectValue else {
            throw FetchError(description: "\(url): not a JSON object")
        }
        // OpenID Connect Discovery 1.0 section 4.3: the document's issuer must be exactly ours.
        guard object["issuer"]?.stringValue == issuer else {
            throw FetchError(description: "\(url): 'issuer' does not match \(issuer)")
        }
        guard let jwksURI = object["jwks_uri"]?.stringValue else {
            throw FetchError(description: "\(url): no 'jwks_uri'")
        }
        guard Self.isAllowedURL(jwksURI) else {
            throw FetchError(description: "\(url): jwks_uri must be https (http only for loopback)")
        }
        return jwksURI
    }

    private func get(_ url: String) async throws -> ([UInt8], HTTPHeaders) {
        guard Self.isAllowedURL(url) else { throw FetchError(description: "\(url): https only (http for loopback)") }
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "accept", value: "application/json")
        request.headers.add(name: "user-agent", value: "portcullis")
        let response = try await self.client.execute(request, timeout: Self.requestTimeout)
        guard response.status == .ok else {
            throw FetchError(description: "\(url): HTTP \(response.status.code)")
        }
        let body = try await response.body.collect(upTo: JWKSet.maxDocumentBytes)
        return (Array(body.readableBytesView), response.headers)
    }

    static func maxAge(_ headers: HTTPHeaders) -> Int64? {
        let values = headers["cache-control"]
        guard !values.isEmpty else { return nil }
        return JWKSRefreshStateMachine.maxAge(cacheControl: values.joined(separator: ", "))
    }

    /// https anywhere; http only to loopback hosts.
    static func isAllowedURL(_ text: String) -> Bool {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), let host = url.host?.lowercased() else {
            return false
        }
        if scheme == "https" { return true }
        guard scheme == "http" else { return false }
        return host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
    }
}
