import Foundation
import HearthCore

/// What one look at the owner's own server found for one mapped model, decided from its answers without I/O: listed
/// or not, and whether the file it serves is the one the catalog pins.
struct BackendCheck: Equatable {
    enum Verdict: Equatable {
        /// The server lists the model and the node proved its file is the pinned one.
        case verified(String)
        /// The server lists the model; its file could not be checked (why is given).
        case unverified(String)
        /// The server serves another file, or does not list the model, or does not answer: not served.
        case refused(String)
    }

    /// The evidence the server gave about the file behind a model.
    enum Evidence: Equatable {
        /// Ollama's `/api/show`: the blob its modelfile is made from, named by its digest (the GGUF's sha256), and the
        /// blob hashed by this node where it can read the file the modelfile names (`nil` where it cannot).
        case ollamaBlob(SHA256Digest, hashed: SHA256Digest?)
        /// llama-server's `/props`: the file it loaded, hashed here (`nil` when the node cannot read it).
        case file(path: String, sha256: SHA256Digest?)
        /// Neither route answered usefully.
        case none
        /// A route that could have named the file left the question unanswered (no answer in time, a connection
        /// that broke, a 5xx): the server may well have said, so this is no finding about the file.
        case unanswered
    }

    /// The verdict for a model the server lists, from `evidence`, against the catalog's `pinned` hash.
    /// The evidence names a file by its name only: the owner's folders (and user name) are not the network's to see.
    static func verdict(evidence: Evidence, pinned: SHA256Digest) -> Verdict {
        switch evidence {
        case .ollamaBlob(let digest, let hashed):
            guard digest == pinned else {
                return .refused("the server's blob is sha256 \(digest.hex), not the pinned \(pinned.hex): it serves another file")
            }
            guard let hashed else {
                return .verified(
                    "Ollama's blob digest is the pinned sha256 (from its /api/show: this node cannot read the blob to hash it, so it is the server's word)"
                )
            }
            guard hashed == pinned else {
                return .refused(
                    "the server names the pinned blob, but the file it names, hashed by this node, has sha256 \(hashed.hex): it serves another file"
                )
            }
            return .verified("Ollama's blob digest is the pinned sha256, and the blob, hashed by this node, is that file")
        case .file(let path, let digest?):
            let name = fileName(path)
            guard digest == pinned else {
                return .refused("the server's file \(name) has sha256 \(digest.hex), not the pinned \(pinned.hex)")
            }
            return .verified("the server's file \(name), hashed by this node, is the pinned sha256")
        case .file(let path, nil):
            return .unverified("the server names its file \(fileName(path)), which this node cannot read to hash")
        case .none:
            return .unverified("the server offers no way to check its file (no Ollama /api/show, no llama-server /props)")
        case .unanswered:
            return .unverified("the server left the node's question about its file unanswered (Ollama /api/show, llama-server /props)")
        }
    }

    private static func fileName(_ path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }

    /// The model ids in a `/v1/models` answer (`data[].id`); `nil` when it is not one.
    static func listedModels(_ answer: JSONValue) -> [String]? {
        guard let data = answer["data"]?.arrayValue else { return nil }
        return data.compactMap { $0["id"]?.stringValue }
    }

    /// The blob a model is made from, in Ollama's `/api/show` answer: the first `FROM …/sha256-<hex>` line of its
    /// modelfile (later ones are adapters and projectors), with the blob's path as the line gives it.
    static func ollamaBlob(_ answer: JSONValue) -> (digest: SHA256Digest, path: String)? {
        guard let modelfile = answer["modelfile"]?.stringValue else { return nil }
        for line in modelfile.split(whereSeparator: \.isNewline) where line.hasPrefix("FROM ") {
            guard let range = line.range(of: "sha256-", options: .backwards) else { continue }
            let hex = line[range.upperBound...].prefix(64)
            guard let digest = SHA256Digest(hex: String(hex).lowercased()) else { return nil }
            return (digest, line.dropFirst("FROM ".count).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }

    /// The file llama-server's `/props` says it loaded.
    static func loadedFile(_ answer: JSONValue) -> String? {
        guard let path = answer["model_path"]?.stringValue, !path.isEmpty else { return nil }
        return path
    }
}
