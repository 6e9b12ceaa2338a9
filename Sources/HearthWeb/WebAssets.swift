import Crypto
import Foundation
import HTTPTypes
package import Hummingbird
import NIOCore

/// One file of the web pages, embedded in the binary (`Assets/`, SwiftPM's `embedInCode`): nothing is read from disk
/// at run time and nothing is fetched from elsewhere, so a page looks the same wherever `hearth` runs.
package struct WebAsset: Sendable {
    package let name: String
    package let bytes: [UInt8]
    package let contentType: String
    /// A strong validator of the bytes, so a browser revalidates cheaply (`If-None-Match` → 304).
    package let etag: String

    init(_ name: String, _ bytes: [UInt8]) {
        self.name = name
        self.bytes = bytes
        self.contentType = Self.contentType(of: name)
        self.etag = "\"" + SHA256.hash(data: bytes).prefix(12).map { String(format: "%02x", $0) }.joined() + "\""
    }

    static func contentType(of name: String) -> String {
        switch name.split(separator: ".").last {
        case "html": "text/html; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        case "js": "text/javascript; charset=utf-8"
        case "svg": "image/svg+xml"
        default: "application/octet-stream"
        }
    }
}

/// The files, by name. Pages reach them as `/ui/<name>`.
package enum WebAssets {
    package static let all: [String: WebAsset] = Dictionary(
        uniqueKeysWithValues: [
            WebAsset("hearth.css", PackageResources.hearth_css),
            WebAsset("icon.svg", PackageResources.icon_svg),
            WebAsset("common.js", PackageResources.common_js),
            WebAsset("markdown.js", PackageResources.markdown_js),
            WebAsset("charts.js", PackageResources.charts_js),
            WebAsset("cbor.js", PackageResources.cbor_js),
            WebAsset("ledger.js", PackageResources.ledger_js),
            WebAsset("chat.html", PackageResources.chat_html),
            WebAsset("chat.js", PackageResources.chat_js),
            WebAsset("network.html", PackageResources.network_html),
            WebAsset("network.js", PackageResources.network_js),
            WebAsset("account.html", PackageResources.account_html),
            WebAsset("account.js", PackageResources.account_js),
            WebAsset("node.html", PackageResources.node_html),
            WebAsset("node.js", PackageResources.node_js),
        ].map { ($0.name, $0) }
    )
}

/// Serves pages and their files on a router, with the headers every page carries.
///
/// The Content-Security-Policy allows scripts, styles and requests from the serving origin only: the pages use no
/// inline script, so even text that slipped past the Markdown renderer's escaping could not run, and a page cannot
/// send what it shows anywhere else. `frame-ancestors 'none'` keeps other sites from framing the pages.
package struct WebRoutes {
    /// Page paths and the HTML file each serves, e.g. `/` → `chat.html`.
    package let pages: [String: String]
    /// The files under `/ui/` this server offers (a node's dashboard does not serve the gateway's pages).
    package let files: Set<String>

    package init(pages: [String: String], files: Set<String>) {
        self.pages = pages
        self.files = files.union(pages.values)
    }

    package func add<Context: RequestContext>(to router: Router<Context>) {
        for (path, file) in pages {
            guard let asset = WebAssets.all[file] else { preconditionFailure("no web asset \(file)") }
            router.get(RouterPath(path)) { request, _ in Self.response(asset, for: request) }
        }
        let files = self.files
        router.get("/ui/{file}") { request, context in
            guard let name = context.parameters.get("file"), files.contains(name), let asset = WebAssets.all[name] else {
                return Response(
                    status: .notFound,
                    headers: [.contentType: "text/plain; charset=utf-8"],
                    body: .init(byteBuffer: ByteBuffer(string: "No such file.\n"))
                )
            }
            return Self.response(asset, for: request)
        }
    }

    package static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"

    static func response(_ asset: WebAsset, for request: Request) -> Response {
        var headers: HTTPFields = [
            .contentType: asset.contentType,
            .eTag: asset.etag,
            // Revalidate on every load (a 304 costs nothing), so an upgraded `hearth` never serves yesterday's script.
            .cacheControl: "no-cache",
            .contentSecurityPolicy: contentSecurityPolicy,
            .xContentTypeOptions: "nosniff",
            .referrerPolicy: "no-referrer",
            .crossOriginOpenerPolicy: "same-origin",
        ]
        if let match = request.headers[.ifNoneMatch],
            match.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces) == asset.etag })
        {
            headers[.contentType] = nil
            return Response(status: .notModified, headers: headers)
        }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: asset.bytes)))
    }
}

extension HTTPField.Name {
    static let contentSecurityPolicy = Self("Content-Security-Policy")!
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
    static let crossOriginOpenerPolicy = Self("Cross-Origin-Opener-Policy")!
}
