import Foundation
import HearthCore

/// Reads what the machine has: cores, memory, free disk and GPUs.
enum HardwareProbe {
    /// Probes now. `diskPath` is the folder whose file system's free space is reported.
    static func probe(diskPath: String) -> HardwareProfile {
        let memory = memoryInfo()
        return HardwareProfile(
            cpuCores: ProcessInfo.processInfo.activeProcessorCount,
            memoryTotalBytes: memory.total ?? ProcessInfo.processInfo.physicalMemory,
            memoryAvailableBytes: memory.available ?? 0,
            diskFreeBytes: diskFree(at: diskPath),
            gpus: gpus()
        )
    }

    /// `MemTotal` and `MemAvailable` from `/proc/meminfo` (Linux), in bytes.
    static func memoryInfo() -> (total: UInt64?, available: UInt64?) {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return (nil, nil) }
        return parseMeminfo(text)
    }

    static func parseMeminfo(_ text: String) -> (total: UInt64?, available: UInt64?) {
        var total: UInt64?
        var available: UInt64?
        for line in text.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == ":" })
            guard fields.count >= 2, let kilobytes = UInt64(fields[1]) else { continue }
            if fields[0] == "MemTotal" { total = kilobytes * 1024 }
            if fields[0] == "MemAvailable" { available = kilobytes * 1024 }
        }
        return (total, available)
    }

    static func diskFree(at path: String) -> UInt64 {
        let attributes = try? FileManager.default.attributesOfFileSystem(forPath: path)
        return (attributes?[.systemFreeSize] as? NSNumber)?.uint64Value ?? 0
    }

    /// NVIDIA GPUs as the driver lists them, and render nodes of other vendors.
    static func gpus() -> [String] {
        let nvidia = "/proc/driver/nvidia/gpus"
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: nvidia), !entries.isEmpty {
            return entries.sorted().map { entry in
                let info = try? String(contentsOfFile: "\(nvidia)/\(entry)/information", encoding: .utf8)
                let model = info?.split(separator: "\n").first { $0.hasPrefix("Model:") }?.dropFirst(6)
                return model.map { $0.trimmingCharacters(in: .whitespaces) } ?? "NVIDIA GPU \(entry)"
            }
        }
        let renderNodes = (try? FileManager.default.contentsOfDirectory(atPath: "/dev/dri"))?.filter { $0.hasPrefix("renderD") } ?? []
        return renderNodes.sorted().map { "DRI \($0)" }
    }
}
