// What every Hearth page shares: building elements (text only, never HTML strings), calling the gateway's API with
// the browser's login, and saying errors in words.

/** An element with attributes and children. Strings become text nodes, so nothing here ever parses HTML. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

// The login token (from the account page or pasted from `hearth login`), kept in this browser only.
const tokenKey = "hearth.token";
export const login = {
  get token() { return localStorage.getItem(tokenKey) || ""; },
  set token(value) { value ? localStorage.setItem(tokenKey, value) : localStorage.removeItem(tokenKey); },
};

/** An API refusal: the gateway's error envelope, its status and when to try again. */
export class APIError extends Error {
  constructor(status, message, code, retryAfter, headers) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    this.headers = headers;
  }
}

/** Headers for a gateway call: JSON and the login, if any. */
export function apiHeaders(json = false) {
  const headers = {};
  if (json) headers["Content-Type"] = "application/json";
  if (login.token) headers.Authorization = `Bearer ${login.token}`;
  return headers;
}

/** Calls the gateway; resolves to the JSON answer (or null for 204), rejects with an APIError. */
export async function api(path, { method = "GET", body, signal } = {}) {
  const response = await fetch(path, {
    method,
    headers: apiHeaders(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw await errorOf(response);
  if (response.status === 204) return null;
  return response.json();
}

/** The APIError a refused response carries: OpenAI's envelope `{error: {message, code}}` or Ollama's `{error: "…"}`. */
export async function errorOf(response) {
  let message = `The gateway answered ${response.status} ${response.statusText}.`;
  let code = "";
  try {
    const body = await response.json();
    const error = body && body.error;
    if (typeof error === "string") message = error;
    else if (error && typeof error.message === "string") { message = error.message; code = error.code || error.type || ""; }
  } catch { /* not JSON: keep the status line */ }
  const retry = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  return new APIError(response.status, message, code, Number.isFinite(retry) ? retry : undefined, response.headers);
}

/** An error in words for people, with when to try again where the gateway said. */
export function describe(error) {
  if (!(error instanceof APIError)) {
    return error && error.name === "TypeError" ? "The gateway cannot be reached. Is it running?" : String(error && error.message || error);
  }
  let text = error.message;
  if (error.retryAfter !== undefined) {
    const at = new Date(Date.now() + error.retryAfter * 1000);
    text += error.code === "token_quota_exceeded"
      ? ` Your quota refills at ${clock(at)}.`
      : ` Try again in ${duration(error.retryAfter)}.`;
  }
  if (error.status === 401 && error.code !== "control_token_required") text += " Log in on the Account page.";
  return text;
}

export function clock(date) {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function duration(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  if (seconds < 90) return `${seconds} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} days`;
}

export function bytes(count) {
  if (count === undefined || count === null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(count), unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value >= 10 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

export function number(value, digits = 0) {
  return Number(value || 0).toLocaleString(undefined, { maximumFractionDigits: digits });
}

export function shortID(id) {
  return id ? String(id).slice(0, 10) : "–";
}

export function badge(text, kind, title) {
  return el("span", title ? { class: `badge ${kind}`, title } : { class: `badge ${kind}` }, text);
}

/**
 * Calls `refresh` now and then every `seconds` while the page is visible; an error is shown in `status` and the
 * next round tries again. Returns a function that refreshes at once.
 */
export function every(seconds, refresh, status) {
  let timer;
  async function round() {
    clearTimeout(timer);
    try {
      await refresh();
      if (status) fill(status);
    } catch (error) {
      if (status) fill(status, el("div", { class: "notice error", role: "alert" }, describe(error)));
    }
    timer = setTimeout(round, seconds * 1000);
  }
  document.addEventListener("visibilitychange", () => { if (!document.hidden) round(); });
  round();
  return round;
}

/** Marks the current page in the header's navigation and shows who is logged in. */
export function header() {
  for (const link of document.querySelectorAll("header.top nav a")) {
    if (link.getAttribute("href") === location.pathname) link.setAttribute("aria-current", "page");
  }
  const who = document.querySelector("header.top .who");
  if (who) fill(who, login.token ? "logged in" : "anonymous");
}
