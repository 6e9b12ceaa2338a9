import Foundation
import HearthCore
import Synchronization

extension EngineBuild {
    /// The build of the `llama-server` this node runs, as it says itself (`--version`): an owner may point
    /// `--llama-server` at a build of their own, and pooling it with others would mix RPC structs of two builds. The
    /// RPC protocol is known for the pinned build only; a binary that does not say its build number reports 0, a build
    /// of its own that is never pooled with anyone's. `nil` when there is no such executable (yet).
    static func probe(llamaServer path: String, timeout: Duration = .seconds(10)) async -> EngineBuild? {
        guard let executable = path.contains("/") ? path : Subprocess.which(path), FileManager.default.isExecutableFile(atPath: executable)
        else { return nil }
        let output = await versionOutput(of: executable, timeout: timeout)
        return EngineBuild(llamaCpp: output.flatMap(buildNumber(in:)) ?? 0)
    }

    /// A build by its number, on this machine.
    init(llamaCpp number: Int) {
        self.init(
            llamaCpp: number,
            rpcProtocol: number == EnginePins.llamaCppBuildNumber ? EnginePins.rpcProtocol : "unknown",
            architecture: EngineBuild.current.architecture,
            byteOrder: EngineBuild.current.byteOrder
        )
    }

    /// The build number in llama.cpp's `--version` text: `version: 0.6.0-dev (build 11434, commit 515e85511)`.
    static func buildNumber(in text: String) -> Int? {
        guard let range = text.range(of: "(build ") else { return nil }
        let digits = text[range.upperBound...].prefix { $0.isNumber }
        return Int(digits)
    }

    /// What `path --version` prints (it writes to stderr), or `nil` when it cannot run; killed after `timeout`.
    private static func versionOutput(of executable: String, timeout: Duration) async -> String? {
        let lines = Mutex<[String]>([])
        do {
            _ = try await Subprocess.run(executable, ["--version"], timeout: timeout) { line in
                lines.withLock { if $0.count < 50 { $0.append(line) } }
            }
        } catch {
            return nil
        }
        return lines.withLock { $0 }.joined(separator: "\n")
    }
}
