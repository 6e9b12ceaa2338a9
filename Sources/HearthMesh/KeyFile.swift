package import Foundation
package import HearthCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads and writes private key files: PKCS#8 PEM, readable by the owner only.
package enum KeyFile {
    /// Loads the key at `path`, creating it (owner-only, written atomically) when there is none yet.
    /// - Throws: `KeyFileError` when the file exists but is not a usable key; an existing file is never replaced.
    package static func loadOrCreate(_ path: String) throws -> IdentityKey {
        if FileManager.default.fileExists(atPath: path) { return try load(path) }
        let key = IdentityKey.generate()
        try write(key, to: path, replacing: false)
        return key
    }

    /// Reads a key file.
    /// - Throws: `KeyFileError` if the file is missing, readable by others, or not an Ed25519 PKCS#8 key.
    package static func load(_ path: String) throws -> IdentityKey {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue
        else { throw KeyFileError("cannot read key file \(path)") }
        guard mode & 0o077 == 0 else {
            throw KeyFileError("key file \(path) is readable by others (mode \(String(mode, radix: 8))); run `chmod 600 \(path)`")
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw KeyFileError("cannot read key file \(path)")
        }
        do {
            return try IdentityKey(privateKeyPEM: text)
        } catch {
            throw KeyFileError("key file \(path) is not usable: \(error.description)")
        }
    }

    /// Writes `key` to `path` with mode 0600: into a temporary file first, then renamed into place.
    /// - Throws: `KeyFileError` if `path` exists and `replacing` is false, or the file cannot be written.
    package static func write(_ key: IdentityKey, to path: String, replacing: Bool) throws {
        if !replacing && FileManager.default.fileExists(atPath: path) {
            throw KeyFileError("\(path) already exists; refusing to replace a key")
        }
        try writeOwnerOnly(Data(key.privateKeyPEM.utf8), to: path)
    }

    /// Creates `path` (and missing parents) and makes it the owner's alone (0700): data folders hold keys, tokens and
    /// the database, which nobody else on the machine should read.
    /// - Throws: `KeyFileError` when the folder cannot be created or its mode set.
    package static func createPrivateDirectory(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw KeyFileError("cannot create \(path): \(error.localizedDescription)")
        }
        guard chmod(path, 0o700) == 0 else { throw KeyFileError("cannot make \(path) private: \(String(cString: strerror(errno)))") }
    }

    /// Makes the files at `paths` the owner's alone (0600), creating any that is missing as an empty file. SQLite
    /// gives its `-wal` and `-shm` files the mode of the database file, so creating that one 0600 first is enough
    /// for new databases; older ones are tightened here.
    /// - Throws: `KeyFileError` when a file cannot be created or its mode set.
    package static func makeOwnerOnly(_ path: String, creating: Bool) throws {
        if creating {
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw KeyFileError("cannot create \(path): \(String(cString: strerror(errno)))") }
            close(fd)
        } else if !FileManager.default.fileExists(atPath: path) {
            return
        }
        guard chmod(path, 0o600) == 0 else { throw KeyFileError("cannot make \(path) private: \(String(cString: strerror(errno)))") }
    }

    /// Writes a secret with mode 0600: into a temporary file first, then renamed into place over any old one.
    /// - Throws: `KeyFileError` when the file cannot be written.
    package static func writeOwnerOnly(_ data: Data, to path: String) throws {
        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        let temporary = "\(path).tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw KeyFileError("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        let written: Bool
        do {
            try handle.write(contentsOf: data)
            try handle.synchronize()
            try handle.close()
            written = true
        } catch {
            written = false
        }
        guard written, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw KeyFileError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}

/// A key file cannot be read or written; the message says why and what to do.
package struct KeyFileError: Error, CustomStringConvertible, Sendable {
    package var description: String
    init(_ description: String) { self.description = description }
}
