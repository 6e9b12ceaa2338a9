// The account page: log in with an Ed25519 key made and kept by this browser (WebCrypto; the private key is not
// extractable and is stored as a CryptoKey in IndexedDB), or with a pasted token; then standing, history, API keys
// and devices.
import { api, badge, describe, duration, el, fill, header, login, number, shortID } from "./common.js";
import { lineChart } from "./charts.js";

const $ = (id) => document.getElementById(id);

// IndexedDB keeps CryptoKey objects as they are, so the private key is stored without ever being exported.
function keyStore(mode, action) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open("hearth", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("keys");
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const transaction = open.result.transaction("keys", mode);
      const request = action(transaction.objectStore("keys"));
      transaction.oncomplete = () => resolve(request.result);
      transaction.onerror = () => reject(transaction.error);
    };
  });
}

const storedKey = () => keyStore("readonly", (store) => store.get("login"));
const storeKey = (pair) => keyStore("readwrite", (store) => store.put(pair, "login"));
const forgetKey = () => keyStore("readwrite", (store) => store.delete("login"));

function base64(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)));
}

/** Makes a key if this browser has none, signs the gateway's challenge with it and keeps the token. */
async function logInWithKey() {
  if (!window.isSecureContext || !crypto.subtle) {
    throw new Error("Keys in the browser need a secure page (https, or the gateway on localhost). Paste a token from `hearth login` instead.");
  }
  let pair = await storedKey();
  if (!pair) {
    pair = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    await storeKey(pair);
  }
  const publicKey = base64(await crypto.subtle.exportKey("raw", pair.publicKey));
  const challenge = await api("/api/auth/challenge", { method: "POST", body: { public_key: publicKey } });
  const message = new TextEncoder().encode(`hearth-login-v1:${challenge.nonce}`);
  const signature = base64(await crypto.subtle.sign({ name: "Ed25519" }, pair.privateKey, message));
  const verified = await api("/api/auth/verify", { method: "POST", body: { public_key: publicKey, nonce: challenge.nonce, signature } });
  login.token = verified.token;
}

async function showKeyNote() {
  const pair = await storedKey().catch(() => null);
  fill($("key-note"), pair ? "This browser already has a key: it will sign in with it." : "This browser has no key yet: one will be made.");
}

function stat(label, value, note) {
  return el("div", {}, el("div", { class: "muted small" }, label), el("div", { class: "stat" }, value), note ? el("div", { class: "muted small" }, note) : null);
}

async function renderStanding() {
  const [standing, history] = await Promise.all([api("/api/reciprocity/standing"), api("/api/reciprocity/history?days=30")]);
  fill($("account-id"), `Account ${standing.account}`);
  fill(
    $("standing"),
    stat("Contributed", `${number(standing.contributed_tokens)} tokens`, `half-life ${number(standing.half_life_days, 1)} days`),
    stat("Used", `${number(standing.consumed_tokens)} tokens`),
    stat("Standing", number(standing.standing)),
    stat("Quota", `${number(standing.remaining_tokens)} of ${number(standing.quota_tokens_per_hour)} tokens left this hour`,
      standing.full_again_in_seconds > 0 ? `full again in ${duration(standing.full_again_in_seconds)}` : "full"),
  );
  fill($("earn"), standing.how_to_earn_more);
  fill($("chart-consumed"), lineChart(history.buckets.map((b) => b.consumed_tokens), { title: "Tokens you used per day", format: (v) => number(v), span: "last 30 days" }));
  fill($("chart-contributed"), lineChart(history.buckets.map((b) => b.contributed_tokens), { title: "Tokens your nodes served per day", format: (v) => number(v), span: "last 30 days" }));
}

async function renderKeys() {
  const keys = await api("/api/keys");
  fill(
    $("key-rows"),
    keys.data.length === 0
      ? el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No API key yet."))
      : keys.data.map((key) =>
          el(
            "tr",
            { "data-key": key.id },
            el("td", {}, key.name),
            el("td", { class: "mono" }, key.id),
            el("td", {}, new Date(key.created_at).toLocaleString()),
            el("td", {}, key.revoked ? badge("revoked", "idle") : badge("active", "ok")),
            el("td", {}, key.revoked ? null : el("button", { type: "button", "aria-label": `Revoke the key ${key.name}`, onclick: () => act(() => api(`/api/keys/${encodeURIComponent(key.id)}`, { method: "DELETE" }), renderKeys) }, "Revoke")),
          ),
        ),
  );
}

async function renderDevices() {
  const devices = await api("/api/devices");
  fill(
    $("device-rows"),
    devices.data.length === 0
      ? el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No device of yours has joined this gateway."))
      : devices.data.map((device) =>
          el(
            "tr",
            { "data-device": device.id },
            el("td", {}, device.name),
            el("td", { class: "mono", title: device.id }, shortID(device.id)),
            el("td", {}, new Date(device.last_seen).toLocaleString()),
            el("td", {}, device.revoked ? badge("revoked", "bad") : device.online ? badge("online", "ok") : badge("offline", "idle")),
            el("td", {}, device.revoked ? null : el("button", { type: "button", "aria-label": `Revoke the device ${device.name}`, onclick: () => { if (confirm(`Revoke ${device.name}? It stops serving at once.`)) act(() => api(`/api/devices/${device.id}`, { method: "DELETE" }), renderDevices); } }, "Revoke")),
          ),
        ),
  );
}

async function act(action, then) {
  try {
    fill($("problem"));
    await action();
    await then();
  } catch (error) {
    problem(error);
  }
}

function problem(error) {
  fill($("problem"), el("div", { class: "notice error" }, describe(error)));
}

async function createKey(event) {
  event.preventDefault();
  const name = $("key-name").value.trim();
  if (!name) return;
  await act(async () => {
    const created = await api("/api/keys", { method: "POST", body: { name } });
    $("key-name").value = "";
    const field = el("input", { readonly: true, class: "mono", size: 60, value: created.key, "aria-label": "The new API key", id: "created-key" });
    fill(
      $("new-key"),
      el(
        "div",
        { class: "notice ok" },
        el("p", {}, "Your new key. Copy it now: it is shown only this once, and the gateway keeps only its hash."),
        field, " ",
        el("button", { type: "button", onclick: () => copy(field) }, "Copy"),
      ),
    );
    field.select();
  }, renderKeys);
}

async function copy(field) {
  field.select();
  try {
    await navigator.clipboard.writeText(field.value);
  } catch {
    document.execCommand("copy");
  }
}

async function show() {
  header();
  const loggedIn = !!login.token;
  $("login").hidden = loggedIn;
  $("account").hidden = !loggedIn;
  if (!loggedIn) {
    await showKeyNote();
    return;
  }
  try {
    await Promise.all([renderStanding(), renderKeys(), renderDevices()]);
  } catch (error) {
    if (error.status === 401) {
      // An expired or revoked token: back to the login.
      login.token = "";
      await show();
      fill($("problem"), el("div", { class: "notice" }, "Your login has expired. Log in again."));
      return;
    }
    problem(error);
  }
}

$("login-key").addEventListener("click", () => act(logInWithKey, show));
$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token").value.trim().replace(/^token=/, "");
  if (!token) return;
  login.token = token;
  $("token").value = "";
  act(async () => {}, show);
});
$("key-form").addEventListener("submit", createKey);
$("logout").addEventListener("click", () => { login.token = ""; fill($("new-key")); show(); });
$("forget").addEventListener("click", () => act(async () => { await forgetKey(); login.token = ""; }, show));
show();
