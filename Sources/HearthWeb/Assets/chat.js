// The chat page: streams answers from `POST /v1/chat/completions` (the request `hearth chat` sends), keeps every
// conversation in this browser's localStorage and none on the gateway, renders answers as safe Markdown.
import { api, apiHeaders, describe, el, errorOf, fill, header, number } from "./common.js";
import { renderMarkdown } from "./markdown.js";

const $ = (id) => document.getElementById(id);
const chatsKey = "hearth.chats";
const settingsKey = "hearth.chat-settings";

let chats = load(chatsKey, []);
let settings = load(settingsKey, {});
let currentID = settings.current && chats.some((chat) => chat.id === settings.current) ? settings.current : null;
let streaming = null; // { controller, answer }
let models = { ready: [], pooled: [] };

function load(key, fallback) {
  try {
    return JSON.parse(localStorage.getItem(key)) ?? fallback;
  } catch {
    return fallback;
  }
}

function save() {
  settings.current = currentID;
  localStorage.setItem(chatsKey, JSON.stringify(chats));
  localStorage.setItem(settingsKey, JSON.stringify(settings));
}

function current() {
  return chats.find((chat) => chat.id === currentID) ?? null;
}

function newChat() {
  const chat = { id: crypto.randomUUID(), title: "New chat", messages: [], updated: Date.now() };
  chats.unshift(chat);
  currentID = chat.id;
  save();
  return chat;
}

// The conversation as the API takes it: the system prompt, then every turn that has text. Failed answers are left
// out, so a retry does not teach the model its own error message.
function conversation(chat) {
  const messages = [];
  if (settings.system && settings.system.trim()) messages.push({ role: "system", content: settings.system.trim() });
  for (const message of chat.messages) {
    if (message.error && !message.content) continue;
    if (message.content) messages.push({ role: message.role, content: message.content });
  }
  return messages;
}

function renderChats() {
  fill(
    $("chats"),
    chats.map((chat) =>
      el(
        "li",
        { "aria-current": chat.id === currentID ? "true" : "false" },
        el("button", { class: "open", type: "button", title: chat.title, onclick: () => { currentID = chat.id; save(); render(); } }, chat.title),
        el("button", { class: "remove", type: "button", "aria-label": `Delete the chat “${chat.title}”`, onclick: () => remove(chat.id) }, "×"),
      ),
    ),
  );
}

function remove(id) {
  if (streaming) return;
  chats = chats.filter((chat) => chat.id !== id);
  if (currentID === id) currentID = chats[0]?.id ?? null;
  save();
  render();
}

function messageView(message) {
  const body = el("div", { class: "body" });
  if (message.role === "user") body.append(message.content);
  else body.append(renderMarkdown(message.content));
  if (message.error) body.append(el("div", { class: "notice error", role: "alert" }, message.error));
  if (message.role === "assistant" && !message.content && !message.error && message === streaming?.answer) {
    body.append(el("span", { class: "muted" }, "…"));
  }
  const meta = [];
  if (message.model) meta.push(message.model);
  if (message.usage) meta.push(`${number(message.usage.completion_tokens)} tokens`);
  if (message.tokensPerSecond) meta.push(`${number(message.tokensPerSecond, 1)} tokens/s`);
  if (message.stopped) meta.push("stopped");
  if (message.finish === "length") meta.push("cut at the token limit");
  return el(
    "article",
    { class: `message ${message.role}`, "data-role": message.role, "data-request": message.requestID, title: message.requestID ? `request ${message.requestID}` : undefined },
    el("div", { class: "role" }, message.role === "user" ? "You" : "Hearth"),
    body,
    meta.length ? el("div", { class: "meta" }, meta.join(" · ")) : null,
  );
}

function render() {
  renderChats();
  const chat = current();
  const list = $("messages");
  if (!chat || chat.messages.length === 0) {
    fill(
      list,
      el(
        "div",
        { class: "empty" },
        el("h1", {}, "Chat with the community's models"),
        el("p", {}, "Answers come from machines people lend to this network. What you type goes to one of them and is not stored by the gateway."),
      ),
    );
  } else {
    fill(list, chat.messages.map(messageView));
    list.scrollTop = list.scrollHeight;
  }
  $("send").disabled = !!streaming || models.ready.length + models.pooled.length === 0;
  $("stop").hidden = !streaming;
}

// Redraws the streaming answer at most once a frame, however fast tokens come.
let redrawPending = false;
function redrawAnswer() {
  if (redrawPending) return;
  redrawPending = true;
  requestAnimationFrame(() => {
    redrawPending = false;
    const list = $("messages");
    const last = list.lastElementChild;
    if (!streaming || !last) return;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    last.replaceWith(messageView(streaming.answer));
    if (atBottom) list.scrollTop = list.scrollHeight;
  });
}

async function send(text) {
  const chat = current() ?? newChat();
  const model = $("model").value;
  if (chat.messages.length === 0) chat.title = text.length > 40 ? `${text.slice(0, 40)}…` : text;
  chat.messages.push({ role: "user", content: text });
  const answer = { role: "assistant", content: "", model };
  chat.messages.push(answer);
  chat.updated = Date.now();
  const body = { model, messages: conversation(chat), stream: true, stream_options: { include_usage: true } };
  const temperature = Number.parseFloat(settings.temperature);
  if (Number.isFinite(temperature)) body.temperature = temperature;
  const maxTokens = Number.parseInt(settings.maxTokens, 10);
  if (Number.isFinite(maxTokens) && maxTokens > 0) body.max_tokens = maxTokens;
  streaming = { controller: new AbortController(), answer };
  save();
  render();
  fill($("status"), "Waiting for a node…");
  let firstTokenAt = null;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: apiHeaders(true),
      body: JSON.stringify(body),
      signal: streaming.controller.signal,
    });
    // The request's id, for whoever has to find it in the gateway's records or the ledger.
    answer.requestID = response.headers.get("X-Request-Id") || undefined;
    if (!response.ok) throw await errorOf(response);
    fill($("status"), "Answering…");
    for await (const event of serverSentEvents(response.body)) {
      if (event === "[DONE]") break;
      const chunk = JSON.parse(event);
      if (chunk.error) throw new Error(chunk.error.message || String(chunk.error));
      const choice = chunk.choices && chunk.choices[0];
      if (choice?.delta?.content) {
        firstTokenAt ??= performance.now();
        answer.content += choice.delta.content;
        redrawAnswer();
      }
      if (choice?.finish_reason) answer.finish = choice.finish_reason;
      if (chunk.usage) answer.usage = chunk.usage;
    }
    if (answer.usage && firstTokenAt !== null) {
      const seconds = (performance.now() - firstTokenAt) / 1000;
      if (seconds > 0 && answer.usage.completion_tokens > 1) answer.tokensPerSecond = (answer.usage.completion_tokens - 1) / seconds;
    }
  } catch (error) {
    if (error.name === "AbortError") answer.stopped = true;
    else answer.error = describe(error);
  } finally {
    streaming = null;
    fill($("status"));
    save();
    render();
    $("prompt").focus();
  }
}

/** The `data:` payloads of a Server-Sent Events body, one per event; comment lines are skipped. */
async function* serverSentEvents(stream) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const lines = buffer.slice(0, end).split("\n");
      buffer = buffer.slice(end + 2);
      const data = lines.filter((line) => line.startsWith("data:")).map((line) => line.slice(5).replace(/^ /, ""));
      if (data.length) yield data.join("\n");
    }
  }
}

async function loadModels() {
  const [ready, catalog] = await Promise.allSettled([api("/v1/models"), api("/api/catalog")]);
  if (ready.status === "rejected") {
    fill($("model-note"), el("span", { role: "alert" }, describe(ready.reason)));
    return;
  }
  const readyIDs = ready.value.data.map((model) => model.id);
  const pooled = catalog.status === "fulfilled"
    ? catalog.value.data.filter((entry) => entry.runnability?.status === "pool" && entry.runnability.pinned && !readyIDs.includes(entry.id))
    : [];
  models = { ready: readyIDs, pooled: pooled.map((entry) => entry.id) };
  const select = $("model");
  const chosen = select.value || settings.model;
  fill(
    select,
    models.ready.length ? el("optgroup", { label: "Ready now" }, models.ready.map((id) => el("option", { value: id }, id))) : null,
    models.pooled.length
      ? el("optgroup", { label: "Pooled: starts on first use" }, models.pooled.map((id) => el("option", { value: id }, `${id} (pooled)`)))
      : null,
  );
  if ([...models.ready, ...models.pooled].includes(chosen)) select.value = chosen;
  fill(
    $("model-note"),
    models.ready.length + models.pooled.length === 0
      ? el("span", { role: "alert" }, "No model can be served right now: no node is ready. See the Network page.")
      : models.pooled.length
        ? "A pooled model is split over several people's machines; the first request starts it, which takes a while."
        : "",
  );
  render();
}

function bind() {
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("prompt").value.trim();
    if (!text || streaming || !$("model").value) return;
    $("prompt").value = "";
    send(text);
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => streaming?.controller.abort());
  $("new-chat").addEventListener("click", () => {
    if (streaming) return;
    newChat();
    render();
    $("prompt").focus();
  });
  $("model").addEventListener("change", () => { settings.model = $("model").value; save(); });
  for (const [id, key] of [["system", "system"], ["temperature", "temperature"], ["max-tokens", "maxTokens"]]) {
    $(id).value = settings[key] ?? "";
    $(id).addEventListener("input", () => { settings[key] = $(id).value; save(); });
  }
}

header();
bind();
render();
loadModels();
setInterval(() => { if (!streaming && !document.hidden) loadModels(); }, 15000);
