/// Every name the link between a gateway and its nodes uses on the wire: paths, headers and the receipt trailer.
/// Both sides, the tests and the benchmark's stand-in node read them from here, so a rename cannot leave one side
/// behind.
package enum LinkProtocol {
    /// Paths the node serves for the gateway (besides the OpenAI completion routes it proxies to its engines).
    package enum Path {
        /// `GET`: the node's credentials (device certificate, invite) for admission.
        package static let hello = "/link/v1/hello"
        /// `POST {reason, message, retry}`: the gateway's refusal, sent before it closes the link.
        package static let refused = "/link/v1/refused"
        /// `GET`: the node's report, long-polled (see `Header.after` and `Header.waitMilliseconds`).
        package static let report = "/link/v1/report"
        /// `POST` with `Header.requestID`: the gateway's client went away; stop the engine and end the stream with a
        /// receipt for what was done.
        package static let cancel = "/link/v1/cancel"
        /// `POST /link/v1/tunnel/{service}`: one full-duplex byte stream to a loopback service the owner listed.
        package static let tunnelPrefix = "/link/v1/tunnel/"
        package static func tunnel(_ service: String) -> String { tunnelPrefix + service }
        /// `PUT {epoch, plan}`: serve this node's part of a pool (an rpc-server, or the head); `DELETE`: drop all of it,
        /// or with `Header.poolEpoch` only work of that epoch or older (a stop sent late must not end a newer plan).
        package static let poolPrefix = "/link/v1/pool/"
        package static func pool(_ id: PoolID) -> String { poolPrefix + id.rawValue }
        /// `POST`: a byte stream to this member's rpc-server for the pool.
        package static func poolRPC(_ id: PoolID) -> String { pool(id) + "/rpc" }
        /// `POST`: held by the gateway until the head's engine connects to member `index`'s local port, then the
        /// byte stream of that connection.
        package static func poolPeer(_ id: PoolID, index: Int) -> String { pool(id) + "/peer/\(index)" }
    }

    /// Header names, lower-case as HTTP/2 sends them.
    package enum Header {
        /// The gateway's request id, so both sides log (and the receipt names) the same id.
        package static let requestID = "x-request-id"
        /// Who asked, as the receipt names them: `anonymous`, `user:<id>`, `key:<id>`.
        package static let consumer = "x-hearth-consumer"
        /// The catalog's SHA-256 for the model: the node serves only that file.
        package static let modelSHA256 = "x-hearth-model-sha256"
        /// The report revision the gateway has; the node answers at once when its own differs.
        package static let after = "x-hearth-after"
        /// How long the node may hold a report poll, in milliseconds.
        package static let waitMilliseconds = "x-hearth-wait-ms"
        /// The pool whose head should answer (a node may also serve the same model alone).
        package static let pool = "x-hearth-pool"
        /// On a pool `DELETE`: the newest epoch the stop is for.
        package static let poolEpoch = "x-hearth-pool-epoch"
        /// On a node's answer to a continuation (`Continuation.field`): how many tokens of its prompt were the earlier
        /// nodes' answer, which its usage counts as prompt. Its presence says the node did continue.
        package static let prefill = "x-hearth-prefill"
    }

    /// The start of the comment line a node puts in front of each generated event of a stream (`TokenMark`).
    package static let tokenMarkPrefix = ": hearth-token "
    package static let tokenMarkPrefixBytes = Array(tokenMarkPrefix.utf8)

    /// The trailer that carries the node's signed receipt (base64url COSE_Sign1) after the last body byte.
    package static let receiptTrailer = "hearth-receipt"

    /// Ends a stream the node stopped because it drains, not because it finished: the gateway continues it elsewhere.
    package static let handoverTrailer = "hearth-handover"
}
