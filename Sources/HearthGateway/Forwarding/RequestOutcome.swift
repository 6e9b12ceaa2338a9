/// How one request, or one part of a continued stream, ended: what its usage row says, and whether its receipt is
/// asked for. The usage row keeps `stored`, the text operators and `hearth usage` read.
enum RequestOutcome: Sendable, Equatable {
    /// The client has the whole answer.
    case ok
    /// The client went away before the end; the node was asked to stop.
    case clientClosed
    /// The node's answer broke off, or never came.
    case upstreamError
    /// The node drained mid-answer and another node carried the stream on.
    case handedOver
    /// The node answered with this HTTP error status.
    case refused(status: Int)
    /// Started and not yet metered: the row a crash leaves behind.
    case inFlight
    /// Found in flight by a gateway that started again: the one before it died before metering it.
    case cutOff

    var stored: String {
        switch self {
        case .ok: "ok"
        case .clientClosed: "client_closed"
        case .upstreamError: "upstream_error"
        case .handedOver: "handed_over"
        case .refused(let status): String(status)
        case .inFlight: "in_flight"
        case .cutOff: "cut_off"
        }
    }

    /// Whether a receipt the node sent is checked and credited. A broken relay (`upstreamError`) has one only when
    /// the node outlived the break (its engine broke off, and it signed for what the engine had made); a node that
    /// died or lost its link sent none, and is not refused for it.
    var isReceipted: Bool {
        switch self {
        case .ok, .clientClosed, .handedOver, .upstreamError: true
        default: false
        }
    }
}
