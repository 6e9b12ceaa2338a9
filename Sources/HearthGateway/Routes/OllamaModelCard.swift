import Foundation
import HearthCore

/// A served model described as Ollama describes its models (`/api/tags`, `/api/ps`, `/api/show`), from what its
/// nodes report and what the catalog says of the pinned file. Clients read these: Open WebUI shows the parameter
/// size and quantization, and Continue sizes its prompts by `model_info`'s `<architecture>.context_length`.
package struct OllamaModelCard {
    let model: ServedModel
    /// The catalog's entry for the model's id; nil only when the gateway's catalog lacks an id a node serves.
    let entry: CatalogEntry?

    /// An `/api/tags` entry. An owner's server (`--backend`) reports no file size; the catalog knows the pinned one's.
    var tag: JSONValue {
        let size = model.sizeBytes > 0 ? model.sizeBytes : entry?.sizeBytes ?? 0
        return [
            "name": .string(model.id.rawValue), "model": .string(model.id.rawValue),
            "modified_at": .string(OllamaController.timestamp()), "size": .integer(Int64(clamping: size)),
            "digest": .string(model.sha256.hex), "details": details,
        ]
    }

    /// An `/api/ps` entry: Ollama's running-model shape, which clients (Open WebUI) read to show a model as loaded.
    /// A network model has no unload time (nodes keep it while they serve it), so `expires_at` is far off, as Ollama
    /// says for `keep_alive: -1`; `size_vram` is 0, as nodes report no accelerator memory per model.
    var running: JSONValue {
        var entry = tag
        entry["expires_at"] = .string(Self.noExpiry)
        entry["size_vram"] = 0
        entry["context_length"] = .integer(Int64(model.contextLength))
        return entry
    }

    static let noExpiry = "2318-11-26T00:00:00Z"

    /// `/api/show`'s answer. `model_info` gives the context the network serves the model with (what its nodes run),
    /// not the one it was trained for: a client that fills the trained context would be refused.
    var show: JSONValue {
        var info: JSONValue = [
            "general.architecture": .string(architecture),
            "general.context_length": .integer(Int64(model.contextLength)),
            "\(architecture).context_length": .integer(Int64(model.contextLength)),
        ]
        if let entry {
            info["general.parameter_count"] = .integer(Int64(clamping: entry.parameters))
            info["\(architecture).embedding_length"] = .integer(Int64(entry.shape.embedding))
            info["\(architecture).block_count"] = .integer(Int64(entry.shape.layers))
        }
        var answer: JSONValue = [
            "modelfile": "", "parameters": "", "template": "", "details": details, "model_info": info,
            "capabilities": entry?.tier == .embed ? ["embedding"] : ["completion"],
            "modified_at": .string(OllamaController.timestamp()),
        ]
        if let licence = entry?.licence { answer["license"] = .string(licence) }
        return answer
    }

    var details: JSONValue {
        let quantization = entry?.quantization ?? model.id.rawValue.split(separator: ":").last.map { $0.uppercased() } ?? ""
        return [
            "parent_model": "", "format": "gguf", "family": .string(architecture), "families": [.string(architecture)],
            "parameter_size": .string(entry.map { Self.parameterSize($0.parameters) } ?? ""),
            "quantization_level": .string(quantization),
        ]
    }

    /// Ollama's family is the GGUF architecture; the catalog's own family is the fallback for an entry that does not
    /// state it.
    var architecture: String { entry?.shape.architecture ?? entry?.family ?? "llama" }

    /// A parameter count as Ollama writes it (its `format.HumanNumber`): `134.52M`, `494.03M`, `8.0B`, `7B`.
    package static func parameterSize(_ count: UInt64) -> String {
        func scaled(_ unit: Double, _ suffix: String, _ format: String) -> String {
            let value = Double(count) / unit
            return String(format: value == value.rounded(.down) ? "%.0f" : format, value) + suffix
        }
        switch count {
        case 1_000_000_000...: return scaled(1e9, "B", "%.1f")
        case 1_000_000...: return scaled(1e6, "M", "%.2f")
        case 1_000...: return String(format: "%.0fK", Double(count) / 1e3)
        default: return "\(count)"
        }
    }
}
