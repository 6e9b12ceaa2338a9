import ArgumentParser
import HearthNode

/// `hearth engine install`: build the engine and fetch the default model into the cache.
struct EngineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "engine",
        abstract: "Manage the inference engine (llama.cpp) and the default model.",
        subcommands: [Install.self, Paths.self]
    )

    struct Install: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Build llama-server and ggml-rpc-server from the pinned llama.cpp source and fetch the default model.",
            discussion: """
                Everything goes into the cache (env: HEARTH_CACHE_DIR, else $XDG_CACHE_HOME/hearth, else ~/.cache/hearth).
                Safe to run again: finished parts are kept, interrupted ones are redone. Needs python3 with pip, a C++
                compiler, and cmake/ninja (installed into a private venv when missing).
                """
        )

        @Flag(help: "Only fetch the default model; do not build the engine.")
        var modelOnly = false

        func run() async throws {
            let installer = EngineInstaller(progress: say)
            do {
                if !modelOnly { try await installer.installEngine() }
                try await installer.installDefaultModel()
            } catch let error as InstallError {
                warn("error: \(error.description)")
                throw ExitCode(1)
            }
            say("ready: llama-server at \(installer.llamaServerPath)")
            say("ready: default model at \(installer.defaultModelPath)")
        }
    }

    struct Paths: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print where the engine and the default model are (or will be) cached.")

        func run() {
            let installer = EngineInstaller(progress: { _ in })
            say("llama-server=\(installer.llamaServerPath)")
            say("ggml-rpc-server=\(installer.rpcServerPath)")
            say("default-model=\(installer.defaultModelPath)")
        }
    }
}
