// The network page: nodes, models and pools, what the network could run, the ledger, and the last hour's traffic.
// Everything comes from the gateway's public API and is refreshed every few seconds without reloading the page.
import { api, badge, bytes, describe, duration, el, every, fill, header, number, shortID } from "./common.js";
import { lineChart } from "./charts.js";
import { fetchAndVerify } from "./ledger.js";

const $ = (id) => document.getElementById(id);

function modelState(model) {
  const kinds = { ready: "ok", loading: "warn", downloading: "warn", standby: "idle", failed: "bad" };
  return badge(model.state, kinds[model.state] || "idle");
}

// A model from an owner's own server: whether the node could check its file, and whether this gateway routes to it.
function backendBadge(model) {
  const backend = model.backend;
  if (!backend) return null;
  if (backend.verified) return badge("own server, verified", "ok", backend.evidence);
  return badge(backend.routed ? "own server, unverified" : "own server, unverified: not routed", backend.routed ? "warn" : "bad", backend.evidence);
}

function nodeState(node) {
  if (node.draining) return badge("draining", "warn");
  if ((node.models || []).some((m) => m.state === "ready")) return badge("serving", "ok");
  if ((node.models || []).some((m) => m.state === "failed")) return badge("failing", "bad");
  return badge("starting", "warn");
}

function score(value) {
  if (value === undefined || value === null) return "–";
  return el("span", { title: "1 is as good as a node gets; see docs/ROUTING.md" }, number(value, 2));
}

function renderNodes(nodes) {
  fill(
    $("node-rows"),
    nodes.length === 0
      ? el("tr", {}, el("td", { colspan: 9, class: "muted" }, "No node is linked. Run `hearth node --join …` on a machine to add one."))
      : nodes.map((node) => {
          const slots = node.limits?.parallelSlots ?? 0;
          const spot = node.spotChecks;
          return el(
            "tr",
            { "data-node": node.nodeID },
            el("td", {}, node.name),
            el("td", { class: "mono", title: node.nodeID }, shortID(node.nodeID)),
            el("td", { class: "mono", title: node.account || "" }, node.account ? shortID(node.account) : el("span", { class: "muted" }, "none")),
            el("td", {}, nodeState(node)),
            el("td", {}, (node.models || []).map((m) => el("div", {}, m.id, " ", modelState(m), m.backend ? " " : null, backendBadge(m), m.detail ? el("span", { class: "muted small" }, ` ${m.detail}`) : null))),
            el("td", {}, `${node.inFlight} / ${slots}`),
            el("td", {}, score(node.routing?.score), node.routing?.ejectedForSeconds ? el("div", { class: "small" }, badge(`ejected ${duration(node.routing.ejectedForSeconds)}`, "bad")) : null),
            el("td", {}, spot ? `${number(spot.reputation, 2)} (${spot.checked} checked)` : "–"),
            el("td", { title: node.linkedSince || "" }, node.linkedForSeconds === undefined ? "–" : duration(node.linkedForSeconds)),
          );
        }),
  );
}

function renderModels(models, pools) {
  fill(
    $("model-rows"),
    models.length === 0
      ? el("tr", {}, el("td", { colspan: 3, class: "muted" }, "No model is ready right now."))
      : models.map((model) => el("tr", {}, el("td", {}, model.id), el("td", {}, `${model.hearth?.nodes ?? 0} node(s)`), el("td", {}, number(model.hearth?.context_length)))),
  );
  fill(
    $("pools"),
    pools.length === 0
      ? el("p", { class: "muted" }, "No pool. A pool starts when someone asks for a model no single node can hold.")
      : pools.map((pool) =>
          el(
            "div",
            { class: "notice ok", "data-pool": pool.id },
            el("strong", {}, pool.model), " ", badge(pool.state, pool.state === "serving" ? "ok" : pool.state === "failed" ? "bad" : "warn"),
            el("span", { class: "muted small" }, ` ${pool.progress} · for ${duration(pool.sinceSeconds)} · epoch ${pool.epoch}`),
            el("ul", {}, pool.members.map((m) => el("li", { class: "small" }, `${shortID(m.node)} ${m.role}: ${m.layers} layers, ${bytes(m.memoryBytes)}`))),
            pool.lastIncident ? el("div", { class: "small muted" }, `last incident: ${pool.lastIncident.kind} ${pool.lastIncident.detail || ""}`) : null,
          ),
        ),
  );
}

function renderCapacity(catalog, nodes) {
  const largest = Math.max(0, ...nodes.map((node) => node.limits?.memoryBytes ?? 0));
  const sizes = catalog.map((entry) => entry.runnability.estimate.totalBytes);
  const low = Math.log2(64 * 1024 * 1024), high = Math.log2(Math.max(largest, ...sizes, 2 ** 30) * 1.1);
  const position = (value) => `${Math.max(0, Math.min(100, ((Math.log2(Math.max(value, 1)) - low) / (high - low)) * 100)).toFixed(1)}%`;
  const statuses = {
    singleNode: ["runs now", "ok"],
    pool: ["pooled", "warn"],
    needsMoreNodes: ["not runnable", "bad"],
  };
  fill(
    $("capacity"),
    catalog.map((entry) => {
      const verdict = entry.runnability;
      const [label, kind] = statuses[verdict.status] || [verdict.status, "idle"];
      const have = el("span", { class: "have" });
      have.style.width = position(largest);
      const want = el("span", { class: "want" });
      want.style.width = position(verdict.estimate.totalBytes);
      return el(
        "div",
        { class: "row", "data-model": entry.id, "data-status": verdict.status },
        el("div", {}, el("strong", {}, entry.name || entry.id), el("div", { class: "muted small mono" }, entry.id)),
        el("div", {}, badge(label, kind)),
        el("div", { class: "need", role: "img", "aria-label": `needs ${bytes(verdict.estimate.totalBytes)}; the largest node offers ${bytes(largest)}` }, have, want),
        el("div", { class: "summary" }, `needs ${bytes(verdict.estimate.totalBytes)} · ${verdict.summary}`),
      );
    }),
  );
}

function renderLedger(head, entries) {
  fill($("ledger-head"), `${number(head.seq)} entries · head ${head.hash.slice(0, 16)}… · gateway ${shortID(head.gateway)}`);
  fill(
    $("ledger-rows"),
    entries.length === 0
      ? el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No credited request yet."))
      : entries
          .slice()
          .reverse()
          .map((row) =>
            el(
              "tr",
              { "data-request": row.request_id },
              el("td", {}, row.seq),
              el("td", {}, row.credited_at ? new Date(row.credited_at).toLocaleString() : "–"),
              el("td", { class: "mono", title: row.node }, shortID(row.node)),
              el("td", {}, row.model),
              el("td", {}, `${number(row.prompt_tokens)} / ${number(row.completion_tokens)}`),
              el("td", { class: "mono small" }, row.request_id),
            ),
          ),
  );
}

function renderActivity(activity) {
  const minutes = activity.buckets;
  const seconds = activity.bucket_seconds;
  fill($("chart-requests"), lineChart(minutes.map((b) => b.requests), { title: "Requests per minute", format: (v) => number(v) }));
  fill($("chart-tokens"), lineChart(minutes.map((b) => b.completion_tokens / seconds), { title: "Tokens generated per second", format: (v) => number(v, 1) }));
  fill($("chart-ttft"), lineChart(minutes.map((b) => b.first_token_ms ?? null), { title: "Time to first token", format: (v) => `${number(v)} ms` }));
}

async function refresh() {
  const [nodes, models, pools, catalog, head, activity] = await Promise.all([
    api("/api/nodes"),
    api("/v1/models"),
    api("/api/pools"),
    api("/api/catalog"),
    api("/api/ledger/head"),
    api("/api/activity"),
  ]);
  const recent = await api(`/api/ledger/entries?after=${Math.max(0, head.seq - 10)}&limit=10`);
  const ready = nodes.filter((node) => (node.models || []).some((m) => m.state === "ready")).length;
  fill(
    $("summary"),
    `${nodes.length} node${nodes.length === 1 ? "" : "s"} linked, ${ready} serving · ${models.data.length} model${models.data.length === 1 ? "" : "s"} ready · ${pools.pools.length} pool${pools.pools.length === 1 ? "" : "s"} · updated ${new Date().toLocaleTimeString()}`,
  );
  renderActivity(activity);
  renderNodes(nodes);
  renderModels(models.data, pools.pools);
  renderCapacity(catalog.data, nodes);
  renderLedger(head, recent.data);
}

async function verify() {
  const button = $("verify");
  button.disabled = true;
  fill($("verify-result"), el("p", { class: "muted" }, "Fetching the ledger…"));
  try {
    const totals = await fetchAndVerify(api, (done, total) => fill($("verify-result"), el("p", { class: "muted" }, `Checking ${done} of ${total} entries…`)));
    fill(
      $("verify-result"),
      el(
        "div",
        { class: "notice ok", "data-verdict": "ok" },
        `The chain verifies: ${number(totals.entries)} entries, every signature and hash link checked, head signed by the gateway. `,
        `${number(totals.promptTokens)} prompt and ${number(totals.completionTokens)} completion tokens credited${totals.pooled ? `, ${totals.pooled} pooled` : ""}.`,
      ),
    );
  } catch (error) {
    fill($("verify-result"), el("div", { class: "notice error", role: "alert", "data-verdict": "failed" }, `The chain does not verify. ${describe(error)}`));
  } finally {
    button.disabled = false;
  }
}

header();
fill($("origin"), location.origin);
$("verify").addEventListener("click", verify);
every(5, refresh, $("problem"));
