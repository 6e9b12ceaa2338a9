// Checks the gateway's ledger in the browser, trusting nothing the gateway says about it: every entry's
// countersignature (COSE_Sign1 with EdDSA, RFC 9052, through WebCrypto's Ed25519), every node's receipt inside it,
// that each payload is deterministic CBOR, the hash chain (SHA-256 of each entry's bytes) and the signed head. The same
// checks as `hearth ledger verify` and the independent Python verifier in the tests.
import { decode, encodeCanonical, equal, Tag } from "./cbor.js";

export function fromBase64URL(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

export function hex(bytes) {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/** The signer's key and the payload of a tagged COSE_Sign1 whose Ed25519 signature verifies; throws otherwise. */
async function coseSign1(raw) {
  const tagged = decode(raw);
  if (!(tagged instanceof Tag) || tagged.tag !== 18 || !Array.isArray(tagged.value) || tagged.value.length !== 4) {
    throw new Error("not a tagged COSE_Sign1");
  }
  const [protectedBytes, unprotected, payload, signature] = tagged.value;
  const header = decode(protectedBytes);
  if (!(header instanceof Map) || header.size !== 1 || header.get(1) !== -8) throw new Error("the protected header is not alg EdDSA");
  const kid = unprotected instanceof Map ? unprotected.get(4) : undefined;
  if (!(kid instanceof Uint8Array) || kid.length !== 32) throw new Error("no Ed25519 key id");
  const toBeSigned = encodeCanonical(["Signature1", protectedBytes, new Uint8Array(0), payload]);
  const key = await crypto.subtle.importKey("raw", kid, { name: "Ed25519" }, false, ["verify"]);
  if (!(await crypto.subtle.verify({ name: "Ed25519" }, key, signature, toBeSigned))) throw new Error("the signature does not verify");
  return { kid, payload };
}

function deterministic(payload) {
  const value = decode(payload);
  if (!equal(encodeCanonical(value), payload)) throw new Error("not deterministic CBOR");
  if (!(value instanceof Map)) throw new Error("not a map");
  return value;
}

/** A pool's tokens shared by layers (docs/POOLS.md): floors, then one each to the largest remainders, ties earlier. */
function split(tokens, shares) {
  const total = shares.reduce((sum, share) => sum + Number(share[1]), 0);
  if (total === 0 || tokens === 0) return shares.map(() => 0);
  const parts = shares.map((share) => Math.floor((tokens * Number(share[1])) / total));
  const remainders = shares.map((share, i) => ({ i, r: (tokens * Number(share[1])) % total }));
  remainders.sort((a, b) => b.r - a.r || a.i - b.i);
  let left = tokens - parts.reduce((a, b) => a + b, 0);
  for (const { i } of remainders) {
    if (left-- <= 0) break;
    parts[i] += 1;
  }
  return parts;
}

/**
 * Verifies entries 1…n (base64url COSE_Sign1, in order) against the signed head and the gateway's id.
 * Resolves to the totals, or rejects with an Error naming the first entry that fails.
 */
export async function verifyChain({ gateway, entries, head }) {
  let previous = new Uint8Array(32);
  const totals = { entries: 0, promptTokens: 0, completionTokens: 0, pooled: 0 };
  for (let index = 0; index < entries.length; index++) {
    const seq = index + 1;
    try {
      const raw = fromBase64URL(entries[index]);
      const { kid, payload } = await coseSign1(raw);
      if (hex(await sha256(kid)) !== gateway) throw new Error("not signed by the gateway");
      const entry = deterministic(payload);
      if (entry.get("seq") !== seq) throw new Error(`it says it is entry ${entry.get("seq")}`);
      if (!(entry.get("prev") instanceof Uint8Array) || !equal(entry.get("prev"), previous)) throw new Error("it breaks the hash chain");
      const signed = await coseSign1(entry.get("receipt"));
      const receipt = deterministic(signed.payload);
      if (receipt.get("node") !== hex(await sha256(signed.kid))) throw new Error("its receipt is signed by another node");
      if (receipt.get("gateway") !== gateway) throw new Error("its receipt is for another gateway");
      const prompt = receipt.get("prompt_tokens"), completion = receipt.get("completion_tokens");
      if (!(completion >= 0 && completion <= receipt.get("max_tokens"))) throw new Error("its completion is over max_tokens");
      if (receipt.get("v") === 2) {
        const shares = receipt.get("pool").get("shares");
        if (shares[0][0] !== receipt.get("node")) throw new Error("a pooled receipt not signed by the pool's head");
        const expected = split(prompt + completion, shares);
        const credits = entry.get("credits") || [];
        if (credits.length !== shares.length || credits.some((credit, i) => credit[0] !== shares[i][0] || credit[2] !== expected[i])) {
          throw new Error("its credits are not the pool's shares");
        }
        totals.pooled += 1;
      } else if (receipt.get("v") !== 1 || entry.has("credits")) {
        throw new Error("credits without a pool");
      }
      totals.promptTokens += prompt;
      totals.completionTokens += completion;
      totals.entries = seq;
      previous = await sha256(raw);
    } catch (error) {
      throw new Error(`Entry ${seq}: ${error.message}.`);
    }
  }
  try {
    const { kid, payload } = await coseSign1(fromBase64URL(head));
    const signedHead = deterministic(payload);
    if (hex(await sha256(kid)) !== gateway || signedHead.get("gateway") !== gateway) throw new Error("not signed by the gateway");
    if (signedHead.get("seq") !== entries.length || !equal(signedHead.get("hash"), previous)) throw new Error("it does not match the chain");
  } catch (error) {
    throw new Error(`The signed head: ${error.message}.`);
  }
  return totals;
}

/** Fetches the signed head, then every entry up to it, page by page, and verifies them. */
export async function fetchAndVerify(api, onProgress = () => {}) {
  const head = await api("/api/ledger/head");
  const entries = [];
  while (entries.length < head.seq) {
    const page = await api(`/api/ledger/entries?after=${entries.length}&limit=1000`);
    if (page.data.length === 0) break;
    for (const row of page.data) if (row.seq <= head.seq) entries.push(row.entry);
    onProgress(entries.length, head.seq);
  }
  return verifyChain({ gateway: head.gateway, entries, head: head.signed });
}
