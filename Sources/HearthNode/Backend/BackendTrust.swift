package import NIOSSL

/// The certificates an owner's `https` server is checked against: the system's roots, and the authorities the owner
/// names (`--backend-ca-file`: a server on their LAN with a certificate of their own CA). The server's name is
/// checked as any client checks it; nothing here turns verification off.
package final class BackendTrust: Sendable, Equatable {
    /// For AsyncHTTPClient (the monitor's looks, embeddings).
    let configuration: TLSConfiguration
    /// For `EngineConnection` (completions): made once, as a context is costly to make.
    let context: NIOSSLContext

    /// Trusts `certificates` beside the system's roots.
    /// - Throws: `BackendSettingsError` when BoringSSL refuses them.
    package init(certificates: [NIOSSLCertificate]) throws(BackendSettingsError) {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.additionalTrustRoots = [.certificates(certificates)]
        self.configuration = configuration
        do {
            context = try NIOSSLContext(configuration: configuration)
        } catch {
            throw BackendSettingsError("the certificates of --backend-ca-file cannot be used: \(error)")
        }
    }

    /// The certificates of a PEM file's text, as `--backend-ca-file` gives it.
    /// - Throws: `BackendSettingsError` when it holds none.
    package static func certificates(pem text: String, from source: String) throws(BackendSettingsError) -> [NIOSSLCertificate] {
        let certificates = (try? NIOSSLCertificate.fromPEMBytes(Array(text.utf8))) ?? []
        guard !certificates.isEmpty else {
            throw BackendSettingsError("\(source) holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        }
        return certificates
    }

    package static func == (lhs: BackendTrust, rhs: BackendTrust) -> Bool { lhs === rhs }
}
