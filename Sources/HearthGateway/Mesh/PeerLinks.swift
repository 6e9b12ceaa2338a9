import HearthCore
import HearthMesh
import Synchronization

/// Links from the other gateways of this network (docs/SCALE-OUT.md, "Forwarding"). Each gateway dials every other
/// one's mesh, as a node would, and serves the streams the dialed gateway opens on that link with its own API: so
/// gateway A forwards a request to gateway B on the link B dialed to A. The links are authenticated by the same
/// TLS 1.3 handshake as node links, both ways: A accepts B as a peer only if B's certificate carries the network's
/// signature over B's key, and B dialed A pinned to the network.
final class PeerLinks: Sendable {
    private let links = Mutex<[NodeID: NodeLink]>([:])

    /// Records `link` as its gateway's link and returns the one it replaces.
    func insert(_ link: NodeLink) -> NodeLink? {
        links.withLock { links in
            defer { links[link.nodeID] = link }
            return links[link.nodeID]
        }
    }

    /// Forgets `link` if it is still its gateway's current one.
    func remove(_ link: NodeLink) {
        links.withLock { links in
            if links[link.nodeID] === link { links[link.nodeID] = nil }
        }
    }

    /// The link the gateway `id` dialed to this one, if it is up.
    func link(to id: NodeID) -> NodeLink? {
        links.withLock { $0[id] }
    }

    var isEmpty: Bool { links.withLock { $0.isEmpty } }

    func all() -> [NodeLink] { links.withLock { Array($0.values) } }
}
