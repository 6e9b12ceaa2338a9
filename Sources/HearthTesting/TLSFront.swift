import Crypto
import Foundation
package import NIOCore
import NIOPosix
import NIOSSL
import SwiftASN1
import X509

/// An owner's server behind TLS, as Caddy or nginx put it in front of Ollama or llama-server on a LAN: a loopback
/// HTTPS port whose certificate (for `localhost` and 127.0.0.1) comes from a certificate authority made for the test,
/// passing the plain bytes on to the server at `target`. Everything in it is real TLS; only the authority is the
/// test's own, which is why a client must be told to trust `authorityPEM`.
package final class TLSFront: Sendable {
    /// The authority's certificate, PEM: what the owner would give with `--backend-ca-file`.
    package let authorityPEM: String
    private let server: any Channel
    package var port: Int { server.localAddress!.port! }

    package init(to target: Int) async throws {
        let now = Date()
        let authorityKey = P256.Signing.PrivateKey()
        let authorityName = try DistinguishedName { CommonName("Hearth test authority") }
        let authority = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: Certificate.PublicKey(authorityKey.publicKey),
            notValidBefore: now - 3600,
            notValidAfter: now + 86400,
            issuer: authorityName,
            subject: authorityName,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true))
            },
            issuerPrivateKey: Certificate.PrivateKey(authorityKey)
        )
        let serverKey = P256.Signing.PrivateKey()
        let leaf = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: Certificate.PublicKey(serverKey.publicKey),
            notValidBefore: now - 3600,
            notValidAfter: now + 86400,
            issuer: authorityName,
            subject: try DistinguishedName { CommonName("localhost") },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                SubjectAlternativeNames([.dnsName("localhost"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))])
                try ExtendedKeyUsage([.serverAuth])
            },
            issuerPrivateKey: Certificate.PrivateKey(authorityKey)
        )
        authorityPEM = try authority.serializeAsPEM().pemString
        var serializer = DER.Serializer()
        try serializer.serialize(leaf)
        let configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: serializer.serializedBytes, format: .der))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(serverKey.pemRepresentation.utf8), format: .pem))
        )
        let context = try NIOSSLContext(configuration: configuration)
        server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { inbound in
                ClientBootstrap(group: inbound.eventLoop)
                    .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                    .connect(host: "127.0.0.1", port: target)
                    .flatMap { outbound in
                        inbound.eventLoop.makeCompletedFuture {
                            try inbound.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                            try inbound.pipeline.syncOperations.addHandler(Passer(to: outbound))
                            try outbound.pipeline.syncOperations.addHandler(Passer(to: inbound))
                        }
                    }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
    }

    package func close() {
        server.close(promise: nil)
    }

    /// Passes what one side reads to the other; either closing closes both.
    private final class Passer: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let peer: any Channel

        init(to peer: any Channel) { self.peer = peer }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            peer.writeAndFlush(unwrapInboundIn(data), promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            peer.close(promise: nil)
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}
