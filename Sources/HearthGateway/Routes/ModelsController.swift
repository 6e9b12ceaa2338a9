import HearthCore
import Hummingbird

/// `GET /v1/models`: the models that at least one ready node serves right now.
struct ModelsController {
    let registry: NodeRegistry

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/v1/models") { _, _ in
            let data: [JSONValue] = registry.readyModels().map { entry in
                [
                    "id": .string(entry.model.id.rawValue), "object": "model", "created": 0, "owned_by": "hearth",
                    "hearth": [
                        "sha256": .string(entry.model.sha256.hex), "context_length": .integer(Int64(entry.model.contextLength)),
                        "nodes": .integer(Int64(entry.nodes.count)),
                        "aliases": .array(entry.model.aliases.map { .string($0.rawValue) }),
                    ],
                ]
            }
            return try jsonResponse(["object": "list", "data": .array(data)])
        }
    }
}
