import Foundation
import HearthCore
import HearthNode

/// Where integration tests find the `hearth` binary, the engine and the default model.
package enum TestEnvironment {
    /// `$HEARTH_BIN_DIR/hearth`, else the `hearth` built next to the running test bundle.
    package static func hearthBinary() throws -> String {
        if let folder = ProcessInfo.processInfo.environment["HEARTH_BIN_DIR"] {
            return folder + "/hearth"
        }
        var folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<3 {
            let candidate = folder.appendingPathComponent("hearth").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            folder = folder.deletingLastPathComponent()
        }
        throw TestProcessError("cannot find the hearth binary; set HEARTH_BIN_DIR to `swift build --show-bin-path`")
    }

    /// `$HEARTH_LLAMA_SERVER`, else the provisioned engine in the cache.
    package static func llamaServer() throws -> String {
        let path = ProcessInfo.processInfo.environment["HEARTH_LLAMA_SERVER"] ?? EngineInstaller(progress: { _ in }).llamaServerPath
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw TestProcessError("llama-server is not at \(path); run `swift run hearth engine install` first")
        }
        return path
    }

    /// The default model's GGUF file in the cache.
    package static func defaultModel() throws -> String {
        let path = EngineInstaller(progress: { _ in }).defaultModelPath
        guard FileManager.default.fileExists(atPath: path) else {
            throw TestProcessError("the default model is not at \(path); run `swift run hearth engine install` first")
        }
        return path
    }

    /// The second real model (Gemma 3 270M Q4_K_M) that `scripts/second-model.sh` provisions: `$HEARTH_SECOND_MODEL`,
    /// else its place in the models cache.
    package static func secondModel() throws -> String {
        let path =
            ProcessInfo.processInfo.environment["HEARTH_SECOND_MODEL"]
            ?? ((EngineInstaller(progress: { _ in }).defaultModelPath as NSString).deletingLastPathComponent as NSString)
            .appendingPathComponent("a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818.gguf")
        guard FileManager.default.fileExists(atPath: path) else {
            throw TestProcessError("the second model is not at \(path); run scripts/second-model.sh first")
        }
        return path
    }

    /// A fresh folder under the system's temporary folder.
    /// Mounts a tmpfs of `megabytes` on a new temporary folder (needs root, as CI has), for tests of a full disk.
    /// - Throws: `TestProcessError` when the mount fails.
    package static func tinyFileSystem(megabytes: Int) throws -> TinyFileSystem {
        let path = try temporaryDirectory("tmpfs")
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=\(megabytes)m", "tmpfs", path]
        try mount.run()
        mount.waitUntilExit()
        guard mount.terminationStatus == 0 else { throw TestProcessError("cannot mount a tmpfs on \(path) (needs root)") }
        return TinyFileSystem(path: path)
    }

    /// A TCP port free on loopback now (the kernel's pick for port 0).
    package static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestProcessError("socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw TestProcessError("could not bind a loopback port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    package static func temporaryDirectory(_ label: String = "test") throws -> String {
        let path = NSTemporaryDirectory() + "hearth-\(label)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}

/// Child processes of `pid` whose command name is `name`, from `/proc` (Linux).
package func childProcesses(of pid: Int32, named name: String) -> [Int32] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    return entries.compactMap(Int32.init).filter { candidate in
        guard let status = try? String(contentsOfFile: "/proc/\(candidate)/status", encoding: .utf8) else { return false }
        let fields = Dictionary(
            status.split(separator: "\n").compactMap { line -> (String, String)? in
                let parts = line.split(separator: ":", maxSplits: 1)
                guard parts.count == 2 else { return nil }
                return (String(parts[0]), parts[1].trimmingCharacters(in: .whitespaces))
            },
            uniquingKeysWith: { first, _ in first }
        )
        return fields["PPid"] == String(pid) && fields["Name"].map { name.hasPrefix($0) } == true
    }
}

/// Whether a process with this id exists (and is not a zombie).
package func processIsAlive(_ pid: Int32) -> Bool {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return false }
    return !status.contains("State:\tZ")
}

/// Resident memory of a process, from `/proc/<pid>/status`.
package func residentBytes(of pid: Int32) -> Double {
    statusBytes("VmRSS", of: pid)
}

/// The part of a process's resident memory that is its own (`RssAnon`: heap, stacks, task slabs), as opposed to
/// pages of its executable and libraries mapped from the page cache, which every process running them shares.
package func privateResidentBytes(of pid: Int32) -> Double {
    statusBytes("RssAnon", of: pid)
}

/// A size line (in kB) of `/proc/<pid>/status`, in bytes; 0 when it cannot be read.
private func statusBytes(_ field: String, of pid: Int32) -> Double {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }),
        let kib = Double(line.split(separator: " ").dropFirst().first ?? "")
    else { return 0 }
    return kib * 1024
}

/// The value of `--flag` on a process's command line.
package func commandLineValue(of pid: Int32, flag: String) -> String? {
    guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
    let arguments = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
    guard let index = arguments.firstIndex(of: flag), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

/// The per-user cache where the engine, the model and test tools live.
package enum EngineCache {
    package static var directory: String { EngineInstaller.defaultCacheDirectory() }
}

/// One row of `/proc/<pid>/net/tcp{,6}` (Linux): its addresses in /proc's hex form (`0100007F:1F90`), its state
/// (`0A` listening, `01` established) and its socket's inode.
package struct ProcSocket: Sendable {
    package var local: String
    package var remote: String
    package var state: String
    package var inode: String

    package var localPort: Int? { local.split(separator: ":").last.flatMap { Int($0, radix: 16) } }
    package var remotePort: Int? { remote.split(separator: ":").last.flatMap { Int($0, radix: 16) } }
}

/// The TCP sockets of the network namespace `pid` is in (this process's by default), IPv4 and IPv6.
package func tcpSockets(seenBy pid: String = "self") -> [ProcSocket] {
    var sockets: [ProcSocket] = []
    for table in ["/proc/\(pid)/net/tcp", "/proc/\(pid)/net/tcp6"] {
        // Read to the end: procfs reports a size of 0, and a busy table is longer than one read (`String(contentsOfFile:)`
        // stops after the first page).
        guard let data = FileHandle(forReadingAtPath: table)?.readDataToEndOfFile() else { continue }
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n").dropFirst() {
            // sl, local_address, rem_address, st, tx_queue:rx_queue, tr:tm->when, retrnsmt, uid, timeout, inode
            let fields = line.split(separator: " ")
            guard fields.count > 9 else { continue }
            sockets.append(ProcSocket(local: String(fields[1]), remote: String(fields[2]), state: String(fields[3]), inode: String(fields[9])))
        }
    }
    return sockets
}

/// The TCP addresses (`ip:port`, IPv4 and IPv6 in /proc's hex form decoded) on which `pid` listens, from its open
/// sockets and `/proc/net/tcp{,6}` (Linux).
package func listeningAddresses(of pid: Int32) -> [String] {
    let fdDirectory = "/proc/\(pid)/fd"
    let inodes = Set(
        ((try? FileManager.default.contentsOfDirectory(atPath: fdDirectory)) ?? []).compactMap { fd -> String? in
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(fdDirectory)/\(fd)"),
                target.hasPrefix("socket:[")
            else { return nil }
            return String(target.dropFirst("socket:[".count).dropLast())
        }
    )
    return tcpSockets(seenBy: String(pid)).filter { $0.state == "0A" && inodes.contains($0.inode) }.map { decodeProcAddress($0.local) }
}

/// `0100007F:1F90` → `127.0.0.1:8080`; IPv6 addresses stay in hex except `::` and `::1`.
func decodeProcAddress(_ field: String) -> String {
    let parts = field.split(separator: ":")
    guard parts.count == 2, let port = Int(parts[1], radix: 16) else { return field }
    let hex = String(parts[0])
    if hex.count == 8, let value = UInt32(hex, radix: 16) {
        let bytes = [value & 0xff, (value >> 8) & 0xff, (value >> 16) & 0xff, value >> 24]
        return bytes.map(String.init).joined(separator: ".") + ":\(port)"
    }
    if hex == String(repeating: "0", count: 32) { return "[::]:\(port)" }
    if hex == "00000000000000000000000001000000" { return "[::1]:\(port)" }
    return "[\(hex)]:\(port)"
}

/// A mounted tmpfs; `unmount()` removes it and its folder.
package struct TinyFileSystem: Sendable {
    package let path: String

    package func unmount() {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/umount")
        process.arguments = [path]
        try? process.run()
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: path)
    }
}
