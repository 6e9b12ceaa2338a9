import Crypto
import Foundation
public import HearthCore
import NIOPosix

/// SHA-256 of files, computed off the cooperative thread pool.
public enum FileDigest {
    /// Hashes the file at `path` in 4 MiB reads on NIO's blocking-work pool.
    /// - Throws: when the file cannot be read.
    public static func sha256(ofFileAt path: String) async throws -> HearthCore.SHA256Digest {
        try await NIOThreadPool.singleton.runIfActive {
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
