import Foundation
import NIOCore
import NIOSSL
import PostgresNIO

/// Where the gateway's database is: `postgres://user:password@host:port/database` (also `postgresql://`), with
/// `?sslmode=disable|require` (default `disable` on a loopback host, `require` elsewhere) and `?host=/run/postgresql`
/// for a Unix socket folder, and `?connect_timeout=SECONDS` (default 10), as libpq reads them.
package struct DatabaseURL: Sendable, Equatable, CustomStringConvertible {
    enum TLSMode: String, Sendable {
        case disable
        case require
    }

    var host: String?
    var socketDirectory: String?
    var port: Int
    var user: String
    var password: String?
    var database: String
    var tls: TLSMode
    /// How long opening a connection may take; `nil` for postgres-nio's default (10 s).
    var connectTimeout: Duration?

    /// - Throws: `DatabaseURLError` naming what is wrong.
    package init(_ text: String) throws(DatabaseURLError) {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
            throw DatabaseURLError("'\(Self.redacted(text))' is not a URL; expected postgres://user:password@host:port/database")
        }
        guard scheme == "postgres" || scheme == "postgresql" else {
            throw DatabaseURLError("unsupported database scheme '\(scheme)'; expected postgres://…")
        }
        let query = Dictionary((components.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { _, last in last })
        for name in query.keys where !["sslmode", "host", "connect_timeout"].contains(name) {
            throw DatabaseURLError("unknown database URL option '\(name)' (known: sslmode, host, connect_timeout)")
        }
        let path = components.percentEncodedPath.drop { $0 == "/" }
        database = path.removingPercentEncoding ?? String(path)
        user = components.user ?? ProcessInfo.processInfo.environment["USER"] ?? "postgres"
        password = components.password
        if let port = components.port {
            guard (1...65535).contains(port) else { throw DatabaseURLError("port \(port) is out of range") }
            self.port = port
        } else {
            port = 5432
        }
        let host = components.host.flatMap { $0.isEmpty ? nil : $0 }
        socketDirectory = query["host"].flatMap { $0.hasPrefix("/") ? $0 : nil }
        self.host = host ?? query["host"].flatMap { $0.hasPrefix("/") || $0.isEmpty ? nil : $0 }
        guard self.host != nil || socketDirectory != nil else {
            throw DatabaseURLError("the database URL names no host (postgres://user@host/database) and no socket folder (?host=/run/postgresql)")
        }
        if database.isEmpty { database = user }
        if let timeout = query["connect_timeout"] {
            guard let seconds = Int(timeout), (1...3600).contains(seconds) else {
                throw DatabaseURLError("connect_timeout '\(timeout)' is not a number of seconds from 1 to 3600")
            }
            connectTimeout = .seconds(seconds)
        }
        switch query["sslmode"] {
        case nil:
            tls = socketDirectory != nil || ["localhost", "127.0.0.1", "::1", "[::1]"].contains(self.host ?? "") ? .disable : .require
        case let mode?:
            guard let parsed = TLSMode(rawValue: mode) else {
                throw DatabaseURLError("sslmode '\(mode)' is not supported (disable or require)")
            }
            tls = parsed
        }
    }

    /// The URL with its password hidden, for logs and errors.
    package var description: String {
        let place = socketDirectory.map { "?host=\($0)" } ?? ""
        return "postgres://\(user)\(password == nil ? "" : ":***")@\(host ?? ""):\(port)/\(database)\(place)"
    }

    static func redacted(_ text: String) -> String {
        guard let at = text.lastIndex(of: "@"), let scheme = text.range(of: "://"), scheme.upperBound < at else { return text }
        let credentials = text[scheme.upperBound..<at]
        guard let colon = credentials.firstIndex(of: ":") else { return text }
        return String(text[..<colon]) + ":***" + String(text[at...])
    }

    func postgresConfiguration() throws -> PostgresConnection.Configuration {
        var configuration: PostgresConnection.Configuration
        if let socketDirectory {
            let path = (socketDirectory as NSString).appendingPathComponent(".s.PGSQL.\(port)")
            configuration = PostgresConnection.Configuration(unixSocketPath: path, username: user, password: password, database: database)
        } else {
            let tlsSetting: PostgresConnection.Configuration.TLS =
                switch tls {
                case .disable: .disable
                case .require: .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
                }
            configuration = PostgresConnection.Configuration(
                host: host ?? "localhost",
                port: port,
                username: user,
                password: password,
                database: database,
                tls: tlsSetting
            )
        }
        if let connectTimeout { configuration.options.connectTimeout = TimeAmount(connectTimeout) }
        return configuration
    }
}

package struct DatabaseURLError: Error, CustomStringConvertible, Equatable {
    package var description: String
    init(_ description: String) { self.description = description }
}
