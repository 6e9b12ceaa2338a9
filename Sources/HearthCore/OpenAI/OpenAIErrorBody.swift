/// The OpenAI error envelope: `{"error":{"message","type","param","code"}}`. Written as `json`; read back with
/// `JSONDecoder`.
package struct OpenAIErrorBody: Decodable, Sendable, Equatable {
    struct Detail: Decodable, Sendable, Equatable {
        var message: String
        var type: String
        var param: String?
        var code: String?

        package init(message: String, type: String, param: String?, code: String?) {
            self.message = message
            self.type = type
            self.param = param
            self.code = code
        }
    }

    var error: Detail

    package init(message: String, type: String, param: String? = nil, code: String? = nil) {
        self.error = Detail(message: message, type: type, param: param, code: code)
    }

    /// The envelope as sent: its members in OpenAI's order, `param` and `code` always present (as `null` when unset),
    /// as OpenAI sends them.
    ///
    /// Written here rather than by Foundation's `JSONEncoder`, which put the same envelope's members in a different
    /// order from one response to the next (`{"error":{"type",…,"message"}}` beside `{"error":{"message",…}}`).
    package var json: [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(80 + error.message.utf8.count)
        output.append(contentsOf: #"{"error":{"message":"#.utf8)
        JSONValue.writeString(error.message, into: &output)
        output.append(contentsOf: #","type":"#.utf8)
        JSONValue.writeString(error.type, into: &output)
        for (name, value) in [(#","param":"#, error.param), (#","code":"#, error.code)] {
            output.append(contentsOf: name.utf8)
            if let value { JSONValue.writeString(value, into: &output) } else { output.append(contentsOf: "null".utf8) }
        }
        output.append(contentsOf: "}}".utf8)
        return output
    }
}

/// What went wrong, as the API reports it: a kind that fixes the HTTP status and the OpenAI `type`.
///
/// The table follows llama.cpp's `format_error_response`.
package struct APIFailure: Error, Sendable, Equatable, CustomStringConvertible {
    package enum Kind: String, Sendable {
        case invalidRequest
        case authentication
        case permission
        case notFound
        /// The request contradicts the current state (a stale plan, memory already lent).
        case conflict
        case requestTooLarge
        case rateLimited
        case unavailable
        case upstream
        case server
        case notSupported
    }

    var kind: Kind
    package var message: String
    var param: String?
    var code: String?

    package init(_ kind: Kind, _ message: String, param: String? = nil, code: String? = nil) {
        self.kind = kind
        self.message = message
        self.param = param
        self.code = code
    }

    /// The HTTP status code for this kind of failure.
    package var status: Int {
        switch kind {
        case .invalidRequest: 400
        case .authentication: 401
        case .permission: 403
        case .notFound: 404
        case .conflict: 409
        case .requestTooLarge: 413
        case .rateLimited: 429
        case .server: 500
        case .notSupported: 501
        case .upstream: 502
        case .unavailable: 503
        }
    }

    /// The OpenAI `error.type` string.
    var type: String {
        switch kind {
        case .invalidRequest, .requestTooLarge, .conflict: "invalid_request_error"
        case .authentication: "authentication_error"
        case .permission: "permission_error"
        case .notFound: "not_found_error"
        case .rateLimited: "rate_limit_error"
        case .unavailable: "unavailable_error"
        case .upstream: "upstream_error"
        case .server: "server_error"
        case .notSupported: "not_supported_error"
        }
    }

    package var body: OpenAIErrorBody { OpenAIErrorBody(message: message, type: type, param: param, code: code) }
    package var description: String { "\(kind.rawValue): \(message)" }
}
