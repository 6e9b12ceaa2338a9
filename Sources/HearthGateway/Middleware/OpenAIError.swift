import Foundation
public import HearthCore
public import Hummingbird
import Logging
import NIOCore

/// An API failure rendered as the OpenAI error envelope, with optional extra headers such as `Retry-After`.
public struct OpenAIError: HTTPResponseError {
    public var failure: APIFailure
    public var headers: HTTPFields

    public init(_ failure: APIFailure, headers: HTTPFields = [:]) {
        self.failure = failure
        self.headers = headers
    }

    public init(_ kind: APIFailure.Kind, _ message: String, param: String? = nil, code: String? = nil) {
        self.init(APIFailure(kind, message, param: param, code: code))
    }

    public var status: HTTPResponse.Status { .init(code: failure.status) }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        Self.response(for: failure, headers: headers)
    }

    /// The envelope as a response.
    static func response(for failure: APIFailure, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        let body = (try? JSONEncoder().encode(failure.body)) ?? Data(#"{"error":{"message":"error","type":"server_error"}}"#.utf8)
        return Response(status: .init(code: failure.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}

/// Turns every error into an OpenAI error envelope, so no client ever sees an empty 500 or a framework message.
///
/// `OpenAIError` and `APIFailure` are rendered as they are; Hummingbird's `HTTPError` keeps its status with a matching type; anything else
/// becomes a logged 500 `server_error`. This is the outermost error handler: routes throw, it answers.
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as OpenAIError {
            return OpenAIError.response(for: error.failure, headers: error.headers)
        } catch let failure as APIFailure {
            return OpenAIError.response(for: failure)
        } catch let error as HTTPError {
            return OpenAIError.response(for: Self.failure(for: error, path: request.uri.path), headers: error.headers)
        } catch is NIOTooManyBytesError {
            return OpenAIError.response(for: Self.failure(for: HTTPError(.contentTooLarge), path: request.uri.path))
        } catch {
            context.logger.error("unhandled error", metadata: ["error.type": "\(type(of: error))", "error": "\(error)"])
            return OpenAIError.response(for: APIFailure(.server, "The gateway failed to handle the request.", code: "internal_error"))
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
