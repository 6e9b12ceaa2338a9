import HTTPTypes
import HearthCore
import HearthMesh
package import Hummingbird
import NIOCore

/// The one spelling of a request path that every decision uses: routing, authentication, rate limits and metrics.
///
/// Hummingbird's router skips empty segments, so `//v1/models` reaches `/v1/models`, while a middleware comparing
/// prefixes would not see `/v1/` there. The gateway therefore canonicalises the path once, before anything looks at
/// it, and refuses the spellings that have no single reading:
/// - repeated slashes collapse and a trailing slash is dropped (`//v1//models/` → `/v1/models`), as nginx's
///   `merge_slashes` does;
/// - dot segments (`/./`, `/../`), percent-encoded slashes, backslashes and dots (`%2F`, `%5C`, `%2E`), NUL and
///   other control characters, malformed escapes and relative paths are refused with 400.
enum CanonicalPath {
    /// The canonical form of `path` (without its query), or the reason it is refused.
    static func canonicalize(_ path: String) -> Result<String, APIFailure> {
        if path.isEmpty { return .success("/") }
        var bytes = Array(path.utf8)
        guard bytes.first == UInt8(ascii: "/") else { return .failure(refusal("The path must start with '/'.")) }
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte < 0x20 || byte == 0x7F { return .failure(refusal("The path contains a control character.")) }
            if byte == UInt8(ascii: "\\") { return .failure(refusal("The path contains a backslash.")) }
            if byte == UInt8(ascii: "%") {
                guard index + 2 < bytes.count, let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2]) else {
                    return .failure(refusal("The path contains a malformed percent escape."))
                }
                let decoded = high << 4 | low
                if decoded < 0x20 || decoded == 0x7F || decoded == UInt8(ascii: "/") || decoded == UInt8(ascii: "\\")
                    || decoded == UInt8(ascii: ".")
                {
                    return .failure(refusal("The path contains an encoded slash, backslash, dot or control character."))
                }
                index += 3
                continue
            }
            index += 1
        }
        let segments = bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true)
        for segment in segments where segment.elementsEqual(".".utf8) || segment.elementsEqual("..".utf8) {
            return .failure(refusal("The path contains a '.' or '..' segment."))
        }
        bytes.removeAll(keepingCapacity: true)
        for segment in segments {
            bytes.append(UInt8(ascii: "/"))
            bytes.append(contentsOf: segment)
        }
        if bytes.isEmpty { return .success("/") }
        return .success(String(decoding: bytes, as: UTF8.self))
    }

    /// Whether a canonical path is under the API (`/v1` or `/api`), which rate limits and `--require-auth` cover.
    static func isAPI(_ path: String) -> Bool {
        path == "/v1" || path == "/api" || path.hasPrefix("/v1/") || path.hasPrefix("/api/")
    }

    private static func refusal(_ message: String) -> APIFailure {
        APIFailure(.invalidRequest, message + " Send the path in its plain form, such as /v1/chat/completions.", code: "invalid_path")
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// The gateway's responder: canonicalises the path (see `CanonicalPath`), then hands the request to the router, so
/// the router and every middleware see the same path. A refused path never reaches the router.
///
/// The router, its middlewares and the route's handler run in a task of their own (`inOwnTask`), whose memory is gone
/// once the response is returned.
package struct GatewayResponder: HTTPResponder {
    package typealias Context = GatewayRequestContext
    let router: RouterResponder<GatewayRequestContext>
    let metrics: GatewayMetrics

    package func respond(to request: Request, context: Context) async throws -> Response {
        try await Self.inOwnTask { try await route(request, context: context) }
    }

    private func route(_ request: Request, context: Context) async throws -> Response {
        switch CanonicalPath.canonicalize(request.uri.path) {
        case .failure(let failure):
            metrics.requestFinished(route: "refused", status: failure.status, duration: .zero)
            var headers = HTTPFields()
            headers[.requestID] = context.id
            headers[.connection] = "close"
            return OpenAIError.response(for: failure, headers: headers, shape: .openAI)
        case .success(let canonical) where canonical == request.uri.path:
            return try await router.respond(to: request, context: context)
        case .success(let canonical):
            var head = request.head
            head.path = request.uri.query.map { canonical + "?" + $0 } ?? canonical
            return try await router.respond(to: Request(head: head, body: request.body), context: context)
        }
    }

    /// Runs `work` (the way in to a response) in a task of its own, on the caller's event loop when it runs on one,
    /// while the caller waits; a cancelled caller (Hummingbird's connection task, at shutdown) cancels it. The task
    /// starts at once on the caller's thread (`Task.immediate`), not through the loop's queue.
    ///
    /// A task keeps the memory its deepest moment took (its allocator's slabs are reused, never given back) until it
    /// ends, and the connection's task lives on while a streamed response is written. Handled in it, the way in (six
    /// middlewares, the route to a node: frames of up to 7.5 KB each) stayed with every stream for as long as it
    /// streamed: 29 KB of slabs before any of it moved (`bench/README.md`, sixteenth pass), and still 6 KB with the
    /// chain in an `async let` below the router (an `async let`'s child is itself made in its parent's task memory;
    /// twenty-third pass). An unstructured task is made apart and freed once it is done and let go of.
    static func inOwnTask<Output: Sendable>(_ work: @escaping @Sendable () async throws -> Output) async throws -> Output {
        let task = Task.immediate(executorPreference: EventLoopExecutor.current, operation: work)
        return try await withTaskCancellationHandler {
            try await task.value
        } onCancel: {
            task.cancel()
        }
    }
}
