import Crypto
import Foundation
import HearthCore
import NIOCore
import NIOPosix

/// SHA-256 of files, computed off the cooperative thread pool.
enum FileDigest {
    /// Threads of their own: hashing a model takes seconds to minutes, and NIO's shared pool must stay free for the
    /// short blocking work (a download's writes, an engine's launch) that would otherwise wait behind it.
    private static let hashers: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: System.coreCount)
        pool.start()
        return pool
    }()

    /// Hashes the file at `path` in 4 MiB reads, on threads kept for hashing.
    /// - Throws: when the file cannot be read.
    static func sha256(ofFileAt path: String) async throws -> HearthCore.SHA256Digest {
        try await hashers.runIfActive {
            try sha256Blocking(path: path)
        }
    }

    static func sha256Blocking(path: String) throws -> HearthCore.SHA256Digest {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        var hasher = SHA256()
        while let data = try handle.read(upToCount: 4 << 20), !data.isEmpty {
            hasher.update(data: data)
        }
        return HearthCore.SHA256Digest(hex: Hex.encode(hasher.finalize()))!
    }
}
