// The node owner's dashboard: what the machine lends, the engines and their downloads, pools, receipts signed, and
// pause/resume. Served on 127.0.0.1 only; the control token comes from the dashboard's own server.
import { api, badge, bytes, describe, el, every, fill, number, shortID } from "./common.js";
import { lineChart } from "./charts.js";

const $ = (id) => document.getElementById(id);
let controlToken = "";

function row(label, value) {
  return el("tr", {}, el("th", { scope: "row" }, label), el("td", {}, value));
}

function progress(detail) {
  const match = /(\d{1,3})%/.exec(detail || "");
  if (!match) return detail ? el("span", { class: "muted small" }, detail) : "";
  const bar = el("span");
  bar.style.width = `${Math.min(100, Number(match[1]))}%`;
  return el("div", {}, el("div", { class: "bar", role: "progressbar", "aria-valuenow": match[1], "aria-valuemin": 0, "aria-valuemax": 100, "aria-label": detail }, bar), el("span", { class: "muted small" }, detail));
}

function render(status) {
  fill($("title"), `Node ${status.name}`);
  const taking = status.paused ? badge("paused", "warn") : status.draining ? badge("draining", "warn") : badge("taking work", "ok");
  fill(
    $("state"),
    status.linked ? badge("linked", "ok") : badge("not linked", "bad"),
    status.gateway ? ` to gateway ${shortID(status.gateway)} · ` : " · ",
    taking,
    ` · serving ${status.inFlight} request${status.inFlight === 1 ? "" : "s"} now`,
  );
  $("pause").disabled = status.paused;
  $("resume").disabled = !status.paused;
  const blockers = status.sandbox?.blockers || [];
  fill(
    $("blockers"),
    blockers.length ? el("div", { class: "notice error", role: "alert" }, el("strong", {}, "Preflight blockers: "), blockers.join("; ")) : null,
    status.sandbox ? el("p", { class: "muted small" }, `Engine sandbox: user ${status.sandbox.user || "–"}, limits ${status.sandbox.limits || "none"}, ${status.sandbox.enforced ? "enforced" : "not enforced"}.`) : null,
  );
  const kinds = { ready: "ok", loading: "warn", downloading: "warn", starting: "warn", standby: "idle", failed: "bad" };
  fill(
    $("engines"),
    (status.models || []).map((m) => el("tr", { "data-model": m.id, "data-state": m.state }, el("td", {}, m.id), el("td", {}, badge(m.state, kinds[m.state] || "idle"), m.backend ? el("div", { class: "small muted", "data-backend": m.backend.verified ? "verified" : "unverified" }, `your server, ${m.backend.verified ? "verified" : "unverified"}: ${m.backend.evidence}`) : null), el("td", {}, progress(m.detail)), el("td", {}, bytes(m.sizeBytes)))),
  );
  const hw = status.hardware || {}, limits = status.limits || {};
  fill(
    $("machine"),
    row("CPU cores", hw.cpuCores),
    row("Memory", `${bytes(hw.memoryAvailableBytes)} free of ${bytes(hw.memoryTotalBytes)}`),
    row("Disk free", bytes(hw.diskFreeBytes)),
    row("GPUs", (hw.gpus || []).map((g) => g.name).join(", ") || "none"),
    row("Lent to models", bytes(limits.memoryBytes)),
    row("Threads · slots · context", `${limits.threads} · ${limits.parallelSlots} · ${number(limits.contextSize)}`),
  );
  const pool = status.pool;
  fill(
    $("pools"),
    pool
      ? [
          el("p", {}, `Lends ${bytes(pool.memoryBytes)} and ${pool.threads} threads to pools; ${pool.canHead ? "can" : "cannot"} be a pool's head.`),
          (pool.work || []).length
            ? el(
                "ul",
                {},
                pool.work.map((w) =>
                  el("li", { "data-pool": w.pool }, `pool ${shortID(w.pool)} (plan ${w.epoch}): ${w.role} `, badge(w.state, kinds[w.state] || "idle"), w.detail ? ` ${w.detail}` : ""),
                ),
              )
            : el("p", { class: "muted" }, "Not in a pool right now."),
        ]
      : el("p", { class: "muted" }, "Lends no memory to pools (start with --pool-memory to lend some)."),
  );
  const receipts = status.receipts || [];
  const total = receipts.reduce((sum, h) => sum + h.tokens, 0);
  fill($("receipts-total"), `${number(receipts.reduce((sum, h) => sum + h.receipts, 0))} receipts for ${number(total)} tokens in the last day (since this node started). The gateway's ledger says what was credited.`);
  fill($("chart-receipts"), lineChart(receipts.map((h) => h.tokens), { title: "Tokens served per hour", format: (v) => number(v), span: "last day" }));
}

async function control(path) {
  try {
    if (!controlToken) controlToken = (await api("/api/session")).token;
    const response = await fetch(path, { method: "POST", headers: { Authorization: `Bearer ${controlToken}` } });
    if (!response.ok) throw new Error(`The node refused: ${response.status}`);
    refresh();
  } catch (error) {
    fill($("problem"), el("div", { class: "notice error", role: "alert" }, describe(error)));
  }
}

const refresh = every(3, async () => render(await api("/api/status")), $("problem"));
$("pause").addEventListener("click", () => control("/api/pause"));
$("resume").addEventListener("click", () => control("/api/resume"));
