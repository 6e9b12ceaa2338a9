import Foundation
import HearthCore
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1

/// An API failure rendered as the OpenAI error envelope, with optional extra headers such as `Retry-After`.
struct OpenAIError: HTTPResponseError {
    var failure: APIFailure
    var headers: HTTPFields

    init(_ failure: APIFailure, headers: HTTPFields = [:]) {
        self.failure = failure
        self.headers = headers
    }

    /// A refusal to route, saying when to try again where it says so.
    init(_ refusal: DispatchFailure) {
        var headers = HTTPFields()
        if let retryAfter = refusal.retryAfter { headers[.retryAfter] = String(retryAfter) }
        self.init(refusal.failure, headers: headers)
    }

    init(_ kind: APIFailure.Kind, _ message: String, param: String? = nil, code: String? = nil) {
        self.init(APIFailure(kind, message, param: param, code: code))
    }

    var status: HTTPResponse.Status { .init(code: failure.status) }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        Self.response(for: failure, headers: headers, shape: ErrorShape(path: request.uri.path))
    }

    /// The failure as a response, in the envelope of the route's API.
    static func response(for failure: APIFailure, headers: HTTPFields = [:], shape: ErrorShape) -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        let body: [UInt8]
        switch shape {
        case .openAI: body = failure.body.json
        case .ollama: body = JSONValue.object(["error": .string(failure.message)]).serialized()
        }
        return Response(status: .init(code: failure.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}

/// Which error body a route answers with: OpenAI's envelope everywhere, except on the routes that mimic Ollama,
/// whose clients read Ollama's `{"error": "message"}`.
enum ErrorShape: Sendable {
    case openAI
    case ollama

    /// The Ollama routes (canonical paths); everything else under `/api` is Hearth's own and uses OpenAI's envelope.
    static let ollamaPaths: Set<String> = [
        "/api/chat", "/api/generate", "/api/tags", "/api/ps", "/api/show", "/api/version", "/api/embed", "/api/embeddings",
        "/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete",
    ]

    init(path: String) {
        self = Self.ollamaPaths.contains(path) || path.hasPrefix("/api/blobs/") ? .ollama : .openAI
    }
}

/// Turns every error into an OpenAI error envelope, so no client ever sees an empty 500 or a framework message.
///
/// `OpenAIError` and `APIFailure` are rendered as they are; Hummingbird's `HTTPError` keeps its status with a matching type; anything else
/// becomes a logged 500 `server_error`. This is the outermost error handler: routes throw, it answers.
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let shape = ErrorShape(path: request.uri.path)
        do {
            return try await next(request, context)
        } catch let error as OpenAIError {
            return OpenAIError.response(for: error.failure, headers: error.headers, shape: shape)
        } catch let failure as APIFailure {
            return OpenAIError.response(for: failure, shape: shape)
        } catch let error as HTTPError {
            return OpenAIError.response(for: Self.failure(for: error, path: request.uri.path), headers: error.headers, shape: shape)
        } catch is NIOTooManyBytesError {
            return OpenAIError.response(for: Self.failure(for: HTTPError(.contentTooLarge), path: request.uri.path), shape: shape)
        } catch let error as HTTPParserError {
            // A body whose framing broke (invalid chunked encoding, a connection cut mid-body) is the client's
            // doing, not the gateway's.
            return OpenAIError.response(
                for: APIFailure(.invalidRequest, "The request could not be read: \(error).", code: "invalid_body"),
                shape: shape
            )
        } catch {
            context.logger.error("unhandled error", metadata: ["error.type": "\(type(of: error))", "error": "\(error)"])
            return OpenAIError.response(for: APIFailure(.server, "The gateway failed to handle the request.", code: "internal_error"), shape: shape)
        }
    }

    static func failure(for error: HTTPError, path: String) -> APIFailure {
        switch error.status.code {
        case 413: return APIFailure(.requestTooLarge, "The request body is larger than this gateway accepts.", code: "request_too_large")
        case 404: return APIFailure(.notFound, "No route for \(path).", code: "unknown_url")
        case 405: return APIFailure(.invalidRequest, "Method not allowed on \(path).", code: "method_not_allowed")
        case 400..<500: return APIFailure(.invalidRequest, error.body ?? "The request is invalid.")
        default: return APIFailure(.server, error.body ?? "The gateway failed to handle the request.")
        }
    }
}
