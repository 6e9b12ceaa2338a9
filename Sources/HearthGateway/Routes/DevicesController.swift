import Foundation
import HearthCore
import Hummingbird
import Logging
import NIOCore

/// An account's devices: `GET /api/devices` lists the ones the gateway has seen, `DELETE /api/devices/{id}`
/// revokes one (its link closes at once and it cannot join again with that certificate). Logged-in users only.
struct DevicesController {
    let database: GatewayDatabase
    let links: NodeLinks?
    let registry: NodeRegistry

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/api/devices") { _, context in
            let account = try Self.account(of: context)
            let devices = try await database.devices(of: account).map { device -> JSONValue in
                [
                    "id": .string(device.deviceID), "name": .string(device.name),
                    "last_seen": .string(AuthController.timestamp(device.lastSeen)), "revoked": .bool(device.revokedAt != nil),
                    "online": .bool(NodeID(device.deviceID).map { links?.isLinked($0) ?? false } ?? false),
                ]
            }
            return try jsonResponse(["data": .array(devices)])
        }
        router.delete("/api/devices/{id}") { _, context in
            let account = try Self.account(of: context)
            guard let device = context.parameters.get("id").flatMap(NodeID.init) else {
                throw OpenAIError(.invalidRequest, "The device id must be a NodeID (64 lowercase hex characters).", param: "id")
            }
            guard try await database.revoke(device: device, by: account) else {
                throw OpenAIError(.notFound, "No device \(device.short) certified by this account has joined this gateway.", code: "device_not_found")
            }
            links?.close(device)
            registry.remove(device)
            context.logger.info("device revoked", metadata: ["node.id": "\(device.short)", "account": "\(account.short)"])
            return try jsonResponse(["revoked": .string(device.rawValue)])
        }
    }

    /// The logged-in account; API keys act for apps, not for the account's devices.
    static func account(of context: GatewayRequestContext) throws -> NodeID {
        guard case .user(let account) = context.caller else {
            throw OpenAIError(.authentication, "Log in with your account key (hearth login) to manage devices.", code: "login_required")
        }
        return account
    }
}
