/// Who computed a pooled answer, as the head's receipt names them: the pool, the plan's epoch, and every node of the
/// plan (head first) with its layers. The gateway holds it against the plan it made, and the ledger credits each
/// node its share of the tokens (`split`).
package struct PoolShares: Sendable, Equatable {
    package struct Share: Sendable, Equatable {
        package var node: NodeID
        package var layers: Int

        package init(node: NodeID, layers: Int) {
            self.node = node
            self.layers = layers
        }
    }

    package var pool: PoolID
    package var epoch: Int
    package var shares: [Share]

    package init(pool: PoolID, epoch: Int, shares: [Share]) {
        self.pool = pool
        self.epoch = epoch
        self.shares = shares
    }

    /// The shares of `plan`, head first.
    package init(pool: PoolID, epoch: Int, plan: PoolPlan) {
        self.init(pool: pool, epoch: epoch, shares: ([plan.head] + plan.members).map { Share(node: $0.node, layers: $0.layers) })
    }

    /// `tokens` shared in proportion to layers, in whole tokens, nothing created or lost: each node gets
    /// ⌊tokens × layers / total⌋, then the tokens left over go one each to the largest remainders, ties to the
    /// earlier share (the head first). A share of 0 layers gets nothing.
    func split(_ tokens: Int) -> [(node: NodeID, tokens: Int)] {
        let total = shares.reduce(0) { $0 + max($1.layers, 0) }
        guard total > 0, tokens > 0 else { return shares.map { ($0.node, 0) } }
        var parts = shares.map { tokens * max($0.layers, 0) / total }
        let remainders = shares.map { tokens * max($0.layers, 0) % total }
        let order = shares.indices.sorted { remainders[$0] != remainders[$1] ? remainders[$0] > remainders[$1] : $0 < $1 }
        for index in order.prefix(tokens - parts.reduce(0, +)) { parts[index] += 1 }
        return zip(shares, parts).map { ($0.node, $1) }
    }

    var cbor: CBOR {
        .map([
            (.text("id"), .text(pool.rawValue)),
            (.text("epoch"), .int(Int64(epoch))),
            (.text("shares"), .array(shares.map { .array([.text($0.node.rawValue), .int(Int64($0.layers))]) })),
        ])
    }

    init(cbor: CBOR) throws(ReceiptError) {
        guard case .map(let pairs) = cbor, pairs.count == 3, let id = cbor[.text("id")]?.textValue.flatMap(PoolID.init),
            let epoch = cbor[.text("epoch")]?.int64, (0...Int64(Int32.max)).contains(epoch),
            case .array(let items)? = cbor[.text("shares")], (1...(PoolPlanner.maxMembers + 1)).contains(items.count)
        else { throw .malformed("pool") }
        var shares: [Share] = []
        for item in items {
            guard case .array(let pair) = item, pair.count == 2, let node = pair[0].textValue.flatMap(NodeID.init),
                let layers = pair[1].int64, (0...4096).contains(layers), !shares.contains(where: { $0.node == node })
            else { throw .malformed("pool.shares") }
            shares.append(Share(node: node, layers: Int(layers)))
        }
        self.init(pool: id, epoch: Int(epoch), shares: shares)
    }
}
