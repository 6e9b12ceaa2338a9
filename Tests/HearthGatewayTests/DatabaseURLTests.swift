import Testing

@testable import HearthStore

/// `--database` URLs as libpq reads them, and a clear refusal of anything else.
struct DatabaseURLTests {
    @Test func readsHostPortUserDatabaseAndOptions() throws {
        let url = try DatabaseURL("postgres://hearth:secret@db.example:6543/ledger?sslmode=disable&connect_timeout=30")
        #expect(url.host == "db.example")
        #expect(url.port == 6543)
        #expect(url.user == "hearth")
        #expect(url.password == "secret")
        #expect(url.database == "ledger")
        #expect(url.tls == .disable)
        #expect(url.connectTimeout == .seconds(30))
        #expect(!url.description.contains("secret"))

        let socket = try DatabaseURL("postgresql://hearth@/ledger?host=/run/postgresql")
        #expect(socket.socketDirectory == "/run/postgresql")
        #expect(socket.tls == .disable)
        #expect(socket.connectTimeout == nil)
        // Elsewhere than loopback, TLS is required unless the URL says otherwise.
        #expect(try DatabaseURL("postgres://hearth@db.example/ledger").tls == .require)
    }

    @Test(arguments: [
        ("mysql://hearth@db/ledger", "unsupported database scheme"),
        ("postgres://hearth@db/ledger?sslmode=verify-full", "sslmode"),
        ("postgres://hearth@db/ledger?connect_timeout=0", "connect_timeout"),
        ("postgres://hearth@db/ledger?connect_timeout=soon", "connect_timeout"),
        ("postgres://hearth@db/ledger?pool=9", "unknown database URL option 'pool'"),
        ("postgres://hearth@db:70000/ledger", "out of range"),
        ("postgres://hearth@/ledger", "names no host"),
    ])
    func refusesWhatItCannotUseSayingWhy(_ text: String, _ reason: String) {
        #expect {
            try DatabaseURL(text)
        } throws: { error in
            "\(error)".contains(reason)
        }
    }
}
