import Foundation

extension ProxyBench {
    /// The `proxies` section: every table, then the issue's goals with what was measured and whether each is met.
    static func report(
        settings: Settings,
        targets: [ProxyTarget],
        latencies: [String: [Double]],
        paced: [String: Load],
        perRequest: [String: Load],
        held: [String: Load],
        ramp: [String: [(count: Int, load: Load)]],
        hearth: (gateway: Int32, node: Int32),
        started: (gateway: Double, node: Double),
        released: (gateway: Double, node: Double),
        idle: (gateway: Double, node: Double),
        beforeHeld: (gateway: Double, node: Double),
        idlePrivate: (gateway: Double, node: Double),
        litellmMissing: Bool,
        engine: ProxyEngineBench.Outcome?
    ) -> String {
        let proxies = targets.filter { $0.name != "direct" }
        let direct = latencies["direct"] ?? []
        var text = """
            ## Proxies side by side: Hearth, nginx\(litellmMissing ? "" : " and LiteLLM") in front of one paced upstream

            One mock OpenAI-compatible server (`hearth-bench mock-upstream`, Hummingbird) streams canned tokens paced like
            an engine. In front of it, each started as its users would: \(proxies.map { "**\($0.name)** (\($0.version))" }.joined(separator: ", ")).
            Hearth is a `hearth gateway` and a `hearth node --backend openai:<mock>/v1` (two processes, linked over TLS
            1.3 + HTTP/2 as on two machines), metering, receipts and the ledger on; nginx has one worker, `proxy_buffering
            off` and keep-alive upstream; LiteLLM one worker.\(litellmMissing ? " LiteLLM is left out of this run (`--without-litellm`, or its venv, `~/.cache/hearth/litellm`, is missing)." : "")
            CPU is each proxy's processes' user + system time from /proc; the mock and the load generator (this process)
            share the same 2 cores and are not counted.


            """
        // Latency.
        text += "### Added latency: \(settings.sequential) sequential whole answers (16 tokens) per target, "
        text += "interleaved (each round begins with the next target)\n\n"
        text += "| target | p50 | p99 | added p50 | added p99 |\n| --- | --- | --- | --- | --- |\n"
        for target in targets {
            let values = latencies[target.name] ?? []
            let p50 = percentile(values, 50) * 1000
            let p99 = percentile(values, 99) * 1000
            let added = target.name == "direct" ? "–" : format(p50 - percentile(direct, 50) * 1000, 3) + " ms"
            let added99 = target.name == "direct" ? "–" : format(p99 - percentile(direct, 99) * 1000, 3) + " ms"
            text += "| \(target.name) | \(format(p50, 3)) ms | \(format(p99, 3)) ms | \(added) | \(added99) |\n"
        }
        // Paced streams.
        let nginxToken = (paced["nginx"]?.cpu ?? 0) / Double(max(1, paced["nginx"]?.tokens ?? 0))
        text += """

            ### Paced streams: \(settings.pacedClients) clients × \(settings.pacedRequests) streams × \(settings.pacedTokens) tokens, one event every \(settings.paceMilliseconds) ms

            | target | tokens | errors | tokens/s | proxy CPU | CPU per token | × nginx |
            | --- | --- | --- | --- | --- | --- | --- |

            """
        for target in targets {
            guard let load = paced[target.name] else { continue }
            let perToken = load.cpu / Double(max(1, load.tokens))
            text +=
                "| \(target.name) | \(load.tokens) | \(load.errors) | \(format(Double(load.tokens) / load.elapsed, 0)) | \(format(load.cpu, 3)) s | "
            text += target.name == "direct" ? "– | – |\n" : "\(format(perToken * 1e6, 1)) µs | \(format(perToken / max(nginxToken, 1e-12), 2)) |\n"
        }
        let hearthPaced = paced["Hearth"] ?? Load()
        let gatewayToken = (hearthPaced.cpuByProcess[hearth.gateway] ?? 0) / Double(max(1, hearthPaced.tokens))
        let nodeToken = (hearthPaced.cpuByProcess[hearth.node] ?? 0) / Double(max(1, hearthPaced.tokens))
        text += "\nHearth's share: gateway \(format(gatewayToken * 1e6, 1)) µs and node \(format(nodeToken * 1e6, 1)) µs per token.\n"
        // Whole answers at the ceiling.
        let nginxRequest = (perRequest["nginx"]?.cpu ?? 0) / Double(max(1, perRequest["nginx"]?.requests ?? 0))
        text += """

            ### Whole answers at the ceiling: \(settings.requestClients) clients for \(format(settings.requestSeconds, 0)) s, unpaced, 16 tokens each

            | target | requests | errors | requests/s | latency p50 | CPU per request | × nginx |
            | --- | --- | --- | --- | --- | --- | --- |

            """
        for target in targets {
            guard let load = perRequest[target.name] else { continue }
            let perCall = load.cpu / Double(max(1, load.requests))
            text +=
                "| \(target.name) | \(load.requests) | \(load.errors) | \(format(Double(load.requests) / load.elapsed, 0)) | \(format(percentile(load.latencies, 50) * 1000, 2)) ms | "
            text += target.name == "direct" ? "– | – |\n" : "\(format(perCall * 1e6, 0)) µs | \(format(perCall / max(nginxRequest, 1e-12), 2)) |\n"
        }
        let hearthRequests = perRequest["Hearth"] ?? Load()
        let gatewayRequest = (hearthRequests.cpuByProcess[hearth.gateway] ?? 0) / Double(max(1, hearthRequests.requests))
        text +=
            "\nHearth's gateway alone: \(format(gatewayRequest * 1e6, 0)) µs per request (the node: \(format((hearthRequests.cpuByProcess[hearth.node] ?? 0) / Double(max(1, hearthRequests.requests)) * 1e6, 0)) µs).\n"
        // Held streams.
        text += """

            ### \(settings.streams) streams held open at once, 20 tokens/s each for \(format(settings.streamSeconds, 0)) s

            | target | streams completed | kept 20 tok/s | errors | peak RSS | CPU |
            | --- | --- | --- | --- | --- | --- |

            """
        for (name, load) in held.sorted(by: { $0.key > $1.key }) {
            text +=
                "| \(name) | \(settings.streams - load.errors) | \(load.keptPace) | \(load.errors) | \(format(load.peakRSS / 1_048_576, 1)) MiB | \(format(load.cpu, 2)) s |\n"
            if let error = load.firstError { text += "\n\(name)'s first error: `\(error.prefix(200))`\n\n" }
        }
        let hearthHeld = held["Hearth"] ?? Load()
        let beforeBoth = beforeHeld.gateway + beforeHeld.node
        let perStream = (hearthHeld.peakRSS - beforeBoth) / Double(max(1, settings.streams))
        // The goal is the gateway's: each process's own peak over its own figure just before the streams opened.
        func extraPerStream(_ process: Int32, before: Double) -> Double {
            ((hearthHeld.peakRSSByProcess[process] ?? before) - before) / Double(max(1, settings.streams))
        }
        let gatewayPerStream = extraPerStream(hearth.gateway, before: beforeHeld.gateway)
        let nodePerStream = extraPerStream(hearth.node, before: beforeHeld.node)
        let gatewayOverIdle = extraPerStream(hearth.gateway, before: idle.gateway)
        text +=
            "\nHearth idle (no request for a minute; its unused code pages given back after 30 s, some mapped again by the link's polls since): gateway \(format(idle.gateway / 1_048_576, 1)) MiB, node \(format(idle.node / 1_048_576, 1)) MiB (just started: \(format(started.gateway / 1_048_576, 1)) and \(format(started.node / 1_048_576, 1)) MiB; just after the release: \(format(released.gateway / 1_048_576, 1)) and \(format(released.node / 1_048_576, 1)) MiB); just before the streams opened (after the loads above): gateway \(format(beforeHeld.gateway / 1_048_576, 1)) MiB, node \(format(beforeHeld.node / 1_048_576, 1)) MiB; counted from there, extra per open stream: gateway \(format(gatewayPerStream / 1024, 1)) KiB, node \(format(nodePerStream / 1024, 1)) KiB, together (their summed peak) \(format(perStream / 1024, 1)) KiB (the gateway's over its idle figure: \(format(gatewayOverIdle / 1024, 1)) KiB).\n"
        text += """

            Of the idle figures, the processes' own memory (`RssAnon`: heap, stacks, task slabs) is \(format(idlePrivate.gateway / 1_048_576, 1)) MiB
            for the gateway and \(format(idlePrivate.node / 1_048_576, 1)) MiB for the node; the rest is pages of the `hearth`
            executable and the Swift runtime mapped from the page cache, which every process running them shares. Serving maps
            again what it runs, with the kernel's fault-around (64 KiB around each page), until the next quiet spell.

            """
        // Where held streams break: the most each proxy held at 20 tokens/s with no error, and the count it did not.
        func mostHeld(_ name: String) -> Int {
            guard let first = held[name], first.holds(settings.streams) else { return 0 }
            return (ramp[name] ?? []).filter { $0.load.holds($0.count) }.map(\.count).max() ?? settings.streams
        }
        func brokeAt(_ name: String) -> String {
            guard let first = held[name], first.holds(settings.streams) else { return "broke at \(settings.streams)" }
            guard let tried = ramp[name], !tried.isEmpty else { return "no more tried" }
            guard let failed = tried.first(where: { !$0.load.holds($0.count) }) else { return "held all tried" }
            return "broke at \(failed.count)"
        }
        if !settings.streamRamp.isEmpty {
            text += """

                ### Where held streams break: more at once, count by count, 20 tokens/s each for \(format(settings.streamSeconds, 0)) s

                Each proxy goes on to the next count only while it held the last one at 20 tokens/s without an error
                (a stream kept the pace when its last token came within a quarter more than the time asked, plus a
                second). The load generator (this process) and the mock share the same 2 cores: past some count they,
                not the proxy, are what cannot keep up, so the counts compare the proxies on this machine.

                | streams | nginx: kept pace / errors / CPU | Hearth: kept pace / errors / CPU |
                | --- | --- | --- |

                """
            for count in settings.streamRamp {
                let cells = ["nginx", "Hearth"].map { name -> String in
                    guard let load = ramp[name]?.first(where: { $0.count == count })?.load else { return "–" }
                    return "\(load.keptPace) / \(load.errors) / \(format(load.cpu, 2)) s"
                }
                text += "| \(count) | \(cells.joined(separator: " | ")) |\n"
            }
            text +=
                "\nHeld at 20 tokens/s without an error: nginx up to \(mostHeld("nginx")) streams (\(brokeAt("nginx"))), Hearth up to \(mostHeld("Hearth")) (\(brokeAt("Hearth"))).\n"
            for name in ["nginx", "Hearth"] {
                if let error = ramp[name]?.last?.load.firstError { text += "\n\(name)'s first error at its last count: `\(error.prefix(200))`\n" }
            }
        }

        if let engine {
            text += """

                ### A real engine on the same cores: llama-server behind nginx against `hearth up`

                SmolLM2-135M-Instruct Q4_1, llama-server with \(engine.streams) slots and 2 threads either way; \(engine.streams) clients
                streaming \(engine.tokens)-token answers (`ignore_eos`). Every CPU-second a proxy spends is taken from the engine.
                Both run at once (an idle engine costs nothing) and their loads take turns, \(engine.ratios.count) rounds, which goes first alternating: the ratio is
                the median of the rounds' ratios, with the lowest and highest in brackets.

                | | behind nginx | through `hearth up` | ratio |
                | --- | --- | --- | --- |
                | aggregate tokens/s | \(format(engine.nginxTokensPerSecond, 1)) | \(format(engine.hearthTokensPerSecond, 1)) | \(PoolBench.formatPaired(engine.ratios)) |
                | proxy CPU per token | \(format(engine.nginxCPUPerToken * 1e6, 1)) µs | \(format(engine.hearthCPUPerToken * 1e6, 1)) µs | \(format(engine.hearthCPUPerToken / max(engine.nginxCPUPerToken, 1e-12), 2)) |
                | errors | \(engine.nginxErrors) | \(engine.hearthErrors) | |
                \(engine.firstErrors.isEmpty ? "" : "\nThe first error " + engine.firstErrors.joined(separator: "; ") + ".\n")
                `hearth up` idle (its engine loaded, no request): \(format(engine.idleCPU, 3)) CPU-seconds over \(format(engine.idleSeconds, 0)) s.

                """
        }

        // Goals.
        let addedP50 = (percentile(latencies["Hearth"] ?? [], 50) - percentile(direct, 50)) * 1000
        let addedP99 = (percentile(latencies["Hearth"] ?? [], 99) - percentile(direct, 99)) * 1000
        let hearthToken = hearthPaced.cpu / Double(max(1, hearthPaced.tokens))
        var goals: [(String, String, String, Bool)] = [
            (
                "added latency, whole answer, sequential", "≤ 1 ms p50, ≤ 2 ms p99 over direct",
                "\(format(addedP50, 3)) ms p50, \(format(addedP99, 3)) ms p99", addedP50 <= 1 && addedP99 <= 2
            ),
            (
                "gateway + node CPU per paced streamed token", "≤ 2× nginx's",
                "\(format(hearthToken / max(nginxToken, 1e-12), 2))× (\(format(hearthToken * 1e6, 1)) against \(format(nginxToken * 1e6, 1)) µs)",
                hearthToken <= 2 * nginxToken
            ),
            ("node relay CPU per streamed token", "≤ 10 µs", "\(format(nodeToken * 1e6, 1)) µs", nodeToken * 1e6 <= 10),
            (
                "gateway CPU per request, metering + receipts + ledger on", "≤ 200 µs", "\(format(gatewayRequest * 1e6, 0)) µs",
                gatewayRequest * 1e6 <= 200
            ),
            (
                "concurrent 20 tok/s streams, 0 errors", "≥ 10,000",
                "\(mostHeld("Hearth")) held at 20 tok/s, \(brokeAt("Hearth")) (nginx \(mostHeld("nginx")), \(brokeAt("nginx")))",
                mostHeld("Hearth") >= 10_000
            ),
            (
                "gateway idle RSS / extra RSS per open stream", "≤ 30 MiB / ≤ 32 KiB",
                "\(format(idle.gateway / 1_048_576, 1)) MiB / \(format(gatewayPerStream / 1024, 1)) KiB (the node \(format(nodePerStream / 1024, 1)) KiB more)",
                idle.gateway <= 30 * 1_048_576 && gatewayPerStream <= 32 * 1024
            ),
        ]
        if let engine {
            goals.append(
                (
                    "idle CPU of `hearth up`", "≤ 0.01 CPU-s per 30 s", "\(format(engine.idleCPU * 30 / engine.idleSeconds, 3)) CPU-s per 30 s",
                    engine.idleCPU * 30 / engine.idleSeconds <= 0.01
                )
            )
            // The median of the rounds' ratios, each taken of two loads measured one after the other.
            let kept = percentile(engine.ratios, 50)
            goals.append(
                (
                    "engine tokens/s kept, co-located, \(engine.streams) paced streams", "≥ 0.98 of llama-server behind nginx",
                    PoolBench.formatPaired(engine.ratios),
                    kept >= 0.98
                )
            )
        }
        text += "\n### Goals\n\n| metric | goal | measured | met |\n| --- | --- | --- | --- |\n"
        for (metric, goal, measured, met) in goals { text += "| \(metric) | \(goal) | \(measured) | \(met ? "yes" : "**no**") |\n" }
        return text + "\n"
    }
}
