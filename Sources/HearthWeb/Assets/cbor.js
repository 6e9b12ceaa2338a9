// The CBOR (RFC 8949) the ledger uses, read and written in the browser: integers, byte and text strings, arrays,
// maps, tags, true/false/null. Maps decode to `Map`s so integer keys (COSE headers) survive; integers past 2^53 decode
// to BigInt. `encodeCanonical` writes core deterministic encoding (shortest lengths, keys sorted by their bytes), so
// `equal(encodeCanonical(decode(b)), b)` says whether `b` was the one encoding of its value.

export class Tag {
  constructor(tag, value) {
    this.tag = tag;
    this.value = value;
  }
}

/** Decodes exactly one item filling `bytes`; throws on anything else (trailing bytes, indefinite lengths, floats). */
export function decode(bytes) {
  const reader = { bytes, offset: 0, depth: 0 };
  const value = item(reader);
  if (reader.offset !== bytes.length) throw new Error("CBOR: bytes after the item");
  return value;
}

function need(reader, count) {
  if (reader.offset + count > reader.bytes.length) throw new Error("CBOR: truncated");
}

function argument(reader, info) {
  if (info < 24) return info;
  const widths = { 24: 1, 25: 2, 26: 4, 27: 8 };
  const width = widths[info];
  if (!width) throw new Error("CBOR: indefinite length or reserved value");
  need(reader, width);
  let value = 0n;
  for (let i = 0; i < width; i++) value = (value << 8n) | BigInt(reader.bytes[reader.offset + i]);
  reader.offset += width;
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

function length(reader, info) {
  const value = argument(reader, info);
  if (typeof value !== "number" || value > reader.bytes.length) throw new Error("CBOR: length beyond the input");
  return value;
}

function item(reader) {
  if (++reader.depth > 64) throw new Error("CBOR: nested too deeply");
  need(reader, 1);
  const initial = reader.bytes[reader.offset++];
  const major = initial >> 5, info = initial & 31;
  let value;
  switch (major) {
    case 0: value = argument(reader, info); break;
    case 1: {
      const n = argument(reader, info);
      value = typeof n === "bigint" || n + 1 > Number.MAX_SAFE_INTEGER ? -1n - BigInt(n) : -1 - n;
      break;
    }
    case 2: case 3: {
      const count = length(reader, info);
      need(reader, count);
      const slice = reader.bytes.slice(reader.offset, reader.offset + count);
      reader.offset += count;
      value = major === 2 ? slice : new TextDecoder("utf-8", { fatal: true }).decode(slice);
      break;
    }
    case 4: {
      const count = length(reader, info);
      value = [];
      for (let i = 0; i < count; i++) value.push(item(reader));
      break;
    }
    case 5: {
      const count = length(reader, info);
      value = new Map();
      for (let i = 0; i < count; i++) {
        const key = item(reader);
        value.set(key, item(reader));
      }
      if (value.size !== count) throw new Error("CBOR: duplicate map key");
      break;
    }
    case 6: value = new Tag(argument(reader, info), item(reader)); break;
    default:
      if (info === 20) value = false;
      else if (info === 21) value = true;
      else if (info === 22) value = null;
      else throw new Error("CBOR: unsupported simple value or float");
  }
  reader.depth--;
  return value;
}

/** The deterministic encoding of `value`. */
export function encodeCanonical(value) {
  const out = [];
  write(out, value);
  return Uint8Array.from(out);
}

function head(out, major, n) {
  n = BigInt(n);
  const m = major << 5;
  if (n < 24n) out.push(m | Number(n));
  else if (n < 0x100n) out.push(m | 24, Number(n));
  else if (n < 0x10000n) out.push(m | 25, ...be(n, 2));
  else if (n < 0x100000000n) out.push(m | 26, ...be(n, 4));
  else out.push(m | 27, ...be(n, 8));
}

function be(n, width) {
  const bytes = [];
  for (let i = width - 1; i >= 0; i--) bytes.push(Number((n >> BigInt(8 * i)) & 0xffn));
  return bytes;
}

function write(out, value) {
  if (value === false) out.push(0xf4);
  else if (value === true) out.push(0xf5);
  else if (value === null) out.push(0xf6);
  else if (typeof value === "number" || typeof value === "bigint") {
    if (typeof value === "number" && !Number.isInteger(value)) throw new Error("CBOR: floats are not written");
    const n = BigInt(value);
    if (n >= 0n) head(out, 0, n);
    else head(out, 1, -1n - n);
  } else if (typeof value === "string") {
    const bytes = new TextEncoder().encode(value);
    head(out, 3, bytes.length);
    out.push(...bytes);
  } else if (value instanceof Uint8Array) {
    head(out, 2, value.length);
    for (const byte of value) out.push(byte);
  } else if (Array.isArray(value)) {
    head(out, 4, value.length);
    for (const element of value) write(out, element);
  } else if (value instanceof Map) {
    const pairs = [...value].map(([key, element]) => [encodeCanonical(key), element]);
    pairs.sort((a, b) => compare(a[0], b[0]));
    head(out, 5, pairs.length);
    for (const [key, element] of pairs) {
      out.push(...key);
      write(out, element);
    }
  } else if (value instanceof Tag) {
    head(out, 6, value.tag);
    write(out, value.value);
  } else throw new Error("CBOR: cannot encode this value");
}

export function compare(a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

export function equal(a, b) {
  return a.length === b.length && compare(a, b) === 0;
}
