import AsyncHTTPClient
import Foundation
import HearthCore
import NIOCore
import NIOHTTP1
import NIOPosix

/// Why a model could not be fetched. Every case leaves no unverified file under the final name.
enum ModelStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    case notPinned(ModelID)
    case noSource(ModelID)
    case diskFull(needed: UInt64, free: UInt64, directory: String)
    case hashMismatch(ModelID, expected: SHA256Digest, actual: SHA256Digest)
    case transfer(String)

    var description: String {
        switch self {
        case .notPinned(let id): "\(id) is not pinned in the catalog; it is never downloaded or loaded"
        case .noSource(let id): "\(id) has no http(s) source to download from"
        case .diskFull(let needed, let free, let directory):
            "not enough disk space in \(directory): the download needs \(needed.binaryBytes), \(free.binaryBytes) is free"
        case .hashMismatch(let id, let expected, let actual):
            "the download of \(id) has sha256 \(actual.hex), not the pinned \(expected.hex); it was deleted"
        case .transfer(let detail): detail
        }
    }
}

/// The node's model files, named by their SHA-256 (`<hash>.gguf`) in one folder.
///
/// A download goes to `<hash>.gguf.part`, resumes with an HTTP Range request after a dropped connection (or on the
/// next attempt), checks free disk space before it starts, hashes what it writes, and is renamed to its final name
/// only when the hash is the catalog's. Writes and hashing run on NIO's blocking pool in 4 MiB batches, so a download
/// never holds up the node's link or its engines. Two requests for the same file share one download.
package actor ModelStore {
    nonisolated let directory: String
    private let client: HTTPClient
    private var downloads: [SHA256Digest: Task<String, any Error>] = [:]

    /// Bytes written per batch, and how often a dropped transfer is resumed before giving up.
    static let batchBytes = 4 << 20
    static let attempts = 5

    init(directory: String, client: HTTPClient = .shared) {
        self.directory = directory
        self.client = client
    }

    nonisolated func path(for sha256: SHA256Digest) -> String {
        (directory as NSString).appendingPathComponent("\(sha256.hex).gguf")
    }

    nonisolated func partPath(for sha256: SHA256Digest) -> String { path(for: sha256) + ".part" }

    /// Whether the file for `sha256` is in the store (it is verified again when an engine loads it).
    nonisolated func contains(_ sha256: SHA256Digest) -> Bool {
        FileManager.default.fileExists(atPath: path(for: sha256))
    }

    /// The path of `entry`'s file, downloading it first when the store does not have it.
    /// - Parameter progress: bytes received so far and the total, after each batch.
    /// - Throws: `ModelStoreError`.
    func fetch(_ entry: CatalogEntry, progress: @escaping @Sendable (UInt64, UInt64) -> Void = { _, _ in }) async throws -> String {
        guard let sha256 = entry.sha256 else { throw ModelStoreError.notPinned(entry.id) }
        if contains(sha256) { return path(for: sha256) }
        if let running = downloads[sha256] { return try await running.value }
        let task = Task { try await self.download(entry, sha256: sha256, progress: progress) }
        downloads[sha256] = task
        defer { downloads[sha256] = nil }
        return try await task.value
    }

    private func download(_ entry: CatalogEntry, sha256: SHA256Digest, progress: @escaping @Sendable (UInt64, UInt64) -> Void) async throws -> String
    {
        let sources = entry.sources.filter { $0.hasPrefix("http://") || $0.hasPrefix("https://") }
        guard !sources.isEmpty else { throw ModelStoreError.noSource(entry.id) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let part = partPath(for: sha256)
        let have = Self.fileSize(atPath: part)
        let free = HardwareProbe.diskFree(at: directory)
        let needed = entry.sizeBytes - min(have, entry.sizeBytes)
        guard free >= needed else { throw ModelStoreError.diskFull(needed: needed, free: free, directory: directory) }

        var lastError = ModelStoreError.transfer("no attempt was made")
        for attempt in 0..<Self.attempts * sources.count {
            if attempt > 0 { try await Task.sleep(for: .milliseconds(min(4000, 250 << min(attempt, 4)))) }
            do {
                try await transfer(from: sources[attempt % sources.count], to: part, total: entry.sizeBytes, progress: progress)
                break
            } catch let error as ModelStoreError {
                if case .diskFull = error { throw error }
                lastError = error
            }
            if attempt == Self.attempts * sources.count - 1 { throw lastError }
        }
        let digest = try await FileDigest.sha256(ofFileAt: part)
        guard digest == sha256 else {
            try? FileManager.default.removeItem(atPath: part)
            throw ModelStoreError.hashMismatch(entry.id, expected: sha256, actual: digest)
        }
        // Same folder, so the rename is atomic: the final name only ever holds a verified file.
        guard rename(part, path(for: sha256)) == 0 else {
            throw ModelStoreError.transfer("cannot move \(part) into place: \(String(cString: strerror(errno)))")
        }
        return path(for: sha256)
    }

    /// Appends `url`'s bytes to `part`, from the byte after what it holds.
    private func transfer(from url: String, to part: String, total: UInt64, progress: @Sendable (UInt64, UInt64) -> Void) async throws {
        var offset = Self.fileSize(atPath: part)
        var request = HTTPClientRequest(url: url)
        if offset > 0 { request.headers.add(name: "range", value: "bytes=\(offset)-") }
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: .seconds(60))
        } catch {
            throw ModelStoreError.transfer("cannot reach \(url): \(error)")
        }
        switch response.status {
        case .ok:
            offset = 0  // the server sends the whole file: start over
        case .partialContent:
            break
        case .rangeNotSatisfiable where offset > 0:
            return  // the part already holds the whole file; the hash decides
        default:
            throw ModelStoreError.transfer("\(url) answered HTTP \(response.status.code)")
        }
        guard let file = FileHandle(forUpdatingAtPath: part) ?? Self.create(part) else {
            throw ModelStoreError.transfer("cannot write \(part)")
        }
        defer { try? file.close() }
        try file.truncate(atOffset: offset)
        try file.seekToEnd()
        var batch: [UInt8] = []
        batch.reserveCapacity(Self.batchBytes)
        do {
            for try await chunk in response.body {
                batch += chunk.readableBytesView
                if batch.count >= Self.batchBytes {
                    offset += try await Self.write(batch, to: file, path: part)
                    batch.removeAll(keepingCapacity: true)
                    progress(offset, total)
                }
            }
        } catch let error as ModelStoreError {
            throw error
        } catch {
            // Keep what arrived: the next attempt resumes after it.
            offset += try await Self.write(batch, to: file, path: part)
            throw ModelStoreError.transfer("the transfer from \(url) broke off at \(offset.binaryBytes): \(error)")
        }
        offset += try await Self.write(batch, to: file, path: part)
        progress(offset, total)
    }

    /// Writes on the blocking pool. A full disk deletes the part file, so a failed download never fills the disk.
    private static func write(_ bytes: [UInt8], to file: FileHandle, path: String) async throws -> UInt64 {
        guard !bytes.isEmpty else { return 0 }
        do {
            try await NIOThreadPool.singleton.runIfActive { try file.write(contentsOf: bytes) }
        } catch {
            let folder = (path as NSString).deletingLastPathComponent
            let free = HardwareProbe.diskFree(at: folder)
            try? FileManager.default.removeItem(atPath: path)
            if (error as NSError).code == Int(ENOSPC) || free < UInt64(bytes.count) {
                throw ModelStoreError.diskFull(needed: UInt64(bytes.count), free: free, directory: folder)
            }
            throw ModelStoreError.transfer("cannot write \(path): \(error)")
        }
        return UInt64(bytes.count)
    }

    private static func create(_ path: String) -> FileHandle? {
        FileManager.default.createFile(atPath: path, contents: nil) ? FileHandle(forUpdatingAtPath: path) : nil
    }

    /// The size of the file at `path`, 0 when there is none.
    package static func fileSize(atPath path: String) -> UInt64 {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.uint64Value ?? 0
    }
}
