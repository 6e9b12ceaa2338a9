import Foundation
import HearthCore

/// Decides what a served request's receipt is worth: it must come from the node that served the request, verify,
/// and match what the gateway relayed. The result is written with the usage record in one transaction.
enum ReceiptClerk {
    /// - Parameters:
    ///   - trailer: the node's `hearth-receipt` trailer, if one came.
    ///   - status: how the relay ended. A complete relay (`ok`) must have a receipt; one whose client went away
    ///     (`client_closed`), that its draining node handed over (`handed_over`), or that broke (`upstream_error`) is
    ///     settled when the node still sent one (it finished, was cancelled and said so, or its engine broke off).
    ///   - usage: the engine's counts as they passed through the gateway.
    static func settle(
        trailer: String?,
        upstream: OpenedUpstream,
        requestID: String,
        consumer: String,
        gateway: NodeID,
        usage: TokenUsage?,
        status: RequestOutcome,
        sentAt: Date,
        endedAt: Date
    ) -> ReceiptSettlement {
        guard status.isReceipted else { return .none }
        guard let trailer else {
            return status == .ok ? .refuse(reason: "missing", detail: "the node sent no receipt", signed: nil) : .none
        }
        guard let data = SignedToken.unbase64url(trailer), let message = try? COSESign1(decoding: data) else {
            return .refuse(reason: "malformed", detail: "the receipt trailer is not a COSE_Sign1 message", signed: nil)
        }
        let signed = Array(data)
        let receipt: Receipt
        do {
            receipt = try Receipt.verified(message, from: upstream.node)
        } catch {
            return .refuse(reason: error.reason, detail: error.description, signed: signed)
        }
        guard let digest = upstream.modelSHA256 else {
            return .refuse(reason: "mismatch", detail: "the node announced no hash for the model", signed: signed)
        }
        let relayed = Receipt.Relayed(
            requestID: requestID,
            gateway: gateway,
            account: upstream.account,
            model: upstream.model,
            modelSHA256: digest,
            consumer: consumer,
            maxTokens: upstream.maxTokens,
            promptTokens: usage?.promptTokens,
            completionTokens: usage?.completionTokens,
            promptTokenLimit: upstream.bounds.promptTokens,
            sentAt: Int64(sentAt.timeIntervalSince1970 * 1000),
            endedAt: Int64(endedAt.timeIntervalSince1970 * 1000)
        )
        if let problem = receipt.problem(against: relayed) {
            return .refuse(reason: problem.reason, detail: problem.description, signed: signed)
        }
        // A head's receipt must name the pool the gateway sent the request to, with exactly the plan it made; a
        // receipt for a request sent to a node's own engine must name none.
        switch (upstream.pool, receipt.pool) {
        case (nil, nil): break
        case (let pool?, let claimed?):
            guard let (epoch, plan) = upstream.poolPlan, claimed == PoolShares(pool: pool, epoch: epoch, plan: plan) else {
                return .refuse(reason: "mismatch", detail: "the receipt's pool shares are not the plan the gateway made", signed: signed)
            }
        case (_?, nil):
            return .refuse(reason: "mismatch", detail: "a pool's head sent a receipt that names no pool", signed: signed)
        case (nil, _?):
            return .refuse(reason: "mismatch", detail: "the receipt names a pool, but the request went to the node alone", signed: signed)
        }
        return .credit(receipt, signed: signed)
    }
}
