import HearthCore
import Hummingbird

/// `GET /v1/models`: the models that at least one ready node serves right now; `GET /v1/models/{model}`: one of them,
/// as OpenAI's SDKs retrieve a model (`client.models.retrieve`), by its id or any name a request may use for it.
struct ModelsController {
    let registry: NodeRegistry
    let catalog: Catalog

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/v1/models") { _, _ in
            try jsonResponse(["object": "list", "data": .array(registry.readyModels().map(Self.card))])
        }
        router.get("/v1/models/:model") { _, context in
            let name = context.parameters.get("model") ?? ""
            guard let id = ModelID(name), let entry = registry.readyModel(named: id, in: catalog) else {
                throw OpenAIError(.notFound, "The model '\(name)' does not exist on this network.", param: "model", code: "model_not_found")
            }
            return try jsonResponse(Self.card(entry))
        }
    }

    /// A model as OpenAI lists one, with what Hearth knows of it under `hearth`.
    static func card(_ entry: (model: ServedModel, nodes: [NodeID])) -> JSONValue {
        [
            "id": .string(entry.model.id.rawValue), "object": "model", "created": 0, "owned_by": "hearth",
            "hearth": [
                "sha256": .string(entry.model.sha256.hex), "context_length": .integer(Int64(entry.model.contextLength)),
                "nodes": .integer(Int64(entry.nodes.count)),
                "aliases": .array(entry.model.aliases.map { .string($0.rawValue) }),
            ],
        ]
    }
}
