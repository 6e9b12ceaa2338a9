package import AsyncHTTPClient
import Foundation
package import HearthCore
import NIOCore
import NIOHTTP1

/// Why a GGUF header could not be read from a file or a URL.
package struct GGUFSourceError: Error, Sendable, CustomStringConvertible {
    package var description: String
    init(_ description: String) { self.description = description }
}

/// Reads GGUF headers without the weights: from a local file, or from a URL with HTTP Range requests that fetch only
/// the header. The first read takes 1 MiB; when the header is longer, the read grows (to what the reader says it
/// needs, at least double) up to 256 MiB, which no honest header reaches.
package enum GGUFSource {
    static let firstRead = 1 << 20
    static let largestRead = 256 << 20

    /// The header of the file at `path`.
    /// - Throws: `GGUFSourceError` naming the file and what is wrong with it.
    package static func header(atPath path: String) async throws -> GGUFHeader {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw GGUFSourceError("cannot open \(path)") }
        defer { try? handle.close() }
        return try await grow(name: path) { length in
            try handle.seek(toOffset: 0)
            return Array(try handle.read(upToCount: length) ?? Data())
        }
    }

    /// The header of the file at `url`, and the file's size when the server states it.
    /// - Throws: `GGUFSourceError` for HTTP failures and corrupt headers.
    package static func header(url: String, client: HTTPClient = .shared) async throws -> (header: GGUFHeader, sizeBytes: UInt64?) {
        var total: UInt64?
        let header = try await grow(name: url) { length in
            var request = HTTPClientRequest(url: url)
            request.headers.add(name: "range", value: "bytes=0-\(length - 1)")
            let response: HTTPClientResponse
            do {
                response = try await client.execute(request, timeout: .seconds(60))
            } catch {
                throw GGUFSourceError("cannot fetch \(url): \(error)")
            }
            switch response.status {
            case .partialContent:
                total = response.headers.first(name: "content-range").flatMap(Self.totalSize)
            case .ok:
                // The server ignores ranges: read the start of the whole body and stop.
                total = response.headers.first(name: "content-length").flatMap { UInt64($0) }
            default:
                throw GGUFSourceError("\(url) answered HTTP \(response.status.code)")
            }
            var bytes: [UInt8] = []
            for try await chunk in response.body {
                bytes += chunk.readableBytesView.prefix(length - bytes.count)
                if bytes.count >= length { break }
            }
            return bytes
        }
        return (header, total)
    }

    /// Reads the first `length` bytes with `read`, growing `length` while the header is cut short.
    static func grow(name: String, read: (Int) async throws -> [UInt8]) async throws -> GGUFHeader {
        var length = firstRead
        while true {
            let bytes = try await read(length)
            switch Result(catching: { () throws(GGUFError) in try GGUFHeader(bytes: bytes) }) {
            case .success(let header):
                return header
            case .failure(let error) where error.code == .truncated && bytes.count >= length && length < largestRead:
                length = min(largestRead, max(Int(clamping: error.neededBytes ?? 0), length * 2))
            case .failure(let error) where error.code == .truncated:
                throw GGUFSourceError("\(name): the file ends inside its GGUF header (\(bytes.count) bytes)")
            case .failure(let error):
                throw GGUFSourceError("\(name): \(error.description)")
            }
        }
    }

    /// The total in `Content-Range: bytes 0-1023/98362432`.
    static func totalSize(_ contentRange: String) -> UInt64? {
        contentRange.split(separator: "/").last.flatMap { UInt64($0) }
    }
}
