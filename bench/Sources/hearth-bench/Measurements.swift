import AsyncHTTPClient
import Foundation
import HearthCore
import NIOCore
import NIOFoundationEssentialsCompat
import NIOHTTP1

/// One streamed request as the client saw it.
struct StreamSample {
    var firstToken: Double
    var total: Double
    var completionTokens: Int
    /// Generated tokens per second after the first one arrived.
    var tokensPerSecond: Double {
        completionTokens > 1 && total > firstToken ? Double(completionTokens - 1) / (total - firstToken) : 0
    }
}

/// Sends one streaming chat request and times the first content token and the end of the stream.
func streamOnce(client: HTTPClient, url: String, body: JSONValue) async throws -> StreamSample {
    var request = HTTPClientRequest(url: url)
    request.method = .POST
    request.headers.add(name: "content-type", value: "application/json")
    request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
    let start = ContinuousClock.now
    let response = try await client.execute(request, timeout: .seconds(300))
    guard response.status == .ok else { throw BenchError("HTTP \(response.status.code) from \(url)") }
    var firstToken: Double?
    var usageTokens = 0
    var contentEvents = 0
    var pending = ""
    for try await chunk in response.body {
        pending += String(buffer: chunk)
        while let end = pending.range(of: "\n\n") {
            let event = String(pending[pending.startIndex..<end.lowerBound])
            pending.removeSubrange(pending.startIndex..<end.upperBound)
            if event.contains("\"content\":\""), !event.contains("\"content\":\"\"") {
                contentEvents += 1
                if firstToken == nil { firstToken = seconds(since: start) }
            }
            if event.contains("\"usage\":{"), let data = event.dropFirst(6).data(using: .utf8),
                let usage = try? JSONDecoder().decode(CompletionChunk.self, from: data).usage
            {
                usageTokens = usage.completionTokens
            }
        }
    }
    let total = seconds(since: start)
    return StreamSample(firstToken: firstToken ?? total, total: total, completionTokens: max(usageTokens, contentEvents))
}

func seconds(since start: ContinuousClock.Instant) -> Double {
    let elapsed = ContinuousClock.now - start
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
}

/// The `p`th percentile of `values`, `p` in percent (50 for the median, 99 for p99).
func percentile(_ values: [Double], _ p: Double) -> Double {
    // A fraction here (0.5 for the median) once gave the storage and tunnel reports their fastest samples as p50.
    precondition(p >= 1 && p <= 100, "percentile takes a percentage, not \(p)")
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    let rank = Int((p / 100 * Double(sorted.count - 1)).rounded())
    return sorted[min(sorted.count - 1, max(0, rank))]
}

/// User plus system CPU seconds a process has used, from `/proc/<pid>/stat`.
func cpuSeconds(of pid: Int32) -> Double {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return 0 }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // After the command name: state is field 3, utime 14 and stime 15 (1-based in proc(5)).
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// Every `postgres` process on the machine (the server and one backend per connection).
func postgresPIDs() -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap(Int32.init).filter { pid in
        (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.hasPrefix("postgres") == true
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func format(_ value: Double, _ digits: Int = 2) -> String {
    String(format: "%.\(digits)f", value)
}
