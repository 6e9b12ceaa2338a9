// Model output as Markdown, rendered safely: every piece of the text becomes a text node of an element we chose, so
// `<script>` or `<img onerror=…>` in an answer shows as those characters and never as markup. Links are kept only
// for http(s) URLs. It renders half-finished text too (an open code fence shows as code so far), as it is called on
// every streamed token.
import { el } from "./common.js";

/** The DOM for `text`, as a fragment. */
export function renderMarkdown(text) {
  const fragment = document.createDocumentFragment();
  const lines = String(text).replace(/\r\n?/g, "\n").split("\n");
  let index = 0;
  while (index < lines.length) {
    const line = lines[index];
    const fence = line.match(/^\s*(```|~~~)\s*([\w+#.-]*)\s*$/);
    if (fence) {
      const body = [];
      index += 1;
      while (index < lines.length && !lines[index].trim().startsWith(fence[1])) body.push(lines[index++]);
      index += 1;
      fragment.append(codeBlock(body.join("\n"), fence[2]));
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    if (heading) {
      // Headings inside an answer sit below the page's own: # is h3.
      fragment.append(el(`h${Math.min(6, heading[1].length + 2)}`, {}, inline(heading[2])));
      index += 1;
      continue;
    }
    if (/^\s*(\*\s*\*\s*\*|-\s*-\s*-|_\s*_\s*_)[\s*_-]*$/.test(line)) {
      fragment.append(el("hr"));
      index += 1;
      continue;
    }
    if (/^\s*>/.test(line)) {
      const quoted = [];
      while (index < lines.length && /^\s*>/.test(lines[index])) quoted.push(lines[index++].replace(/^\s*>\s?/, ""));
      fragment.append(el("blockquote", {}, renderMarkdown(quoted.join("\n"))));
      continue;
    }
    const item = listItem(line);
    if (item) {
      const list = el(item.ordered ? "ol" : "ul");
      if (item.ordered && item.start !== 1) list.setAttribute("start", String(item.start));
      while (index < lines.length) {
        const next = listItem(lines[index]);
        if (next && next.ordered === item.ordered) {
          list.append(el("li", {}, inline(next.text)));
          index += 1;
        } else if (lines[index].trim() !== "" && /^\s{2,}\S/.test(lines[index]) && list.lastChild) {
          // A continuation line of the item above.
          list.lastChild.append(" ", ...inline(lines[index].trim()));
          index += 1;
        } else break;
      }
      fragment.append(list);
      continue;
    }
    if (line.trim() === "") {
      index += 1;
      continue;
    }
    const paragraph = [];
    while (index < lines.length && lines[index].trim() !== "" && !startsBlock(lines[index])) paragraph.push(lines[index++]);
    const p = el("p");
    paragraph.forEach((text, position) => {
      if (position > 0) p.append(el("br"));
      p.append(...inline(text));
    });
    fragment.append(p);
  }
  return fragment;
}

function startsBlock(line) {
  return /^\s*(```|~~~)/.test(line) || /^#{1,6}\s/.test(line) || /^\s*>/.test(line) || listItem(line) !== null;
}

function listItem(line) {
  let match = line.match(/^\s{0,3}[-*+]\s+(.*)$/);
  if (match) return { ordered: false, text: match[1] };
  match = line.match(/^\s{0,3}(\d{1,9})[.)]\s+(.*)$/);
  if (match) return { ordered: true, start: Number(match[1]), text: match[2] };
  return null;
}

function codeBlock(code, language) {
  const pre = el("pre");
  if (language) pre.append(el("span", { class: "lang", "aria-hidden": "true" }, language));
  pre.append(el("code", language ? { "data-language": language } : {}, code));
  return pre;
}

// Inline spans, earliest match first; text between them stays text.
const spans = [
  { pattern: /`([^`\n]+)`/, make: (m) => el("code", {}, m[1]) },
  // Underscores only around whole words (`snake_case` and `__init__`-like names stay as they are).
  { pattern: /\*\*(?=\S)(.+?)(?<=\S)\*\*|(?<![\w])__(?=\S)(.+?)(?<=\S)__(?![\w])/, make: (m) => el("strong", {}, inline(m[1] ?? m[2])) },
  { pattern: /\*(?=[^\s*])(.+?)(?<=\S)\*|(?<![\w])_(?=[^\s_])(.+?)(?<=\S)_(?![\w])/, make: (m) => el("em", {}, inline(m[1] ?? m[2])) },
  { pattern: /\[([^\]\n]+)\]\(\s*([^)\s]+)\s*\)/, make: (m) => link(m[1], m[2]) },
  { pattern: /\bhttps?:\/\/[^\s<>()"']+[^\s<>().,;:!?"']/, make: (m) => link(m[0], m[0]) },
];

/** The nodes of one line of inline Markdown. */
export function inline(text) {
  const nodes = [];
  let rest = String(text);
  while (rest.length > 0) {
    let best = null;
    for (const span of spans) {
      const match = span.pattern.exec(rest);
      if (match && (best === null || match.index < best.match.index)) best = { span, match };
    }
    if (best === null) {
      nodes.push(document.createTextNode(rest));
      break;
    }
    if (best.match.index > 0) nodes.push(document.createTextNode(rest.slice(0, best.match.index)));
    nodes.push(best.span.make(best.match));
    rest = rest.slice(best.match.index + best.match[0].length);
  }
  return nodes;
}

function link(text, href) {
  let url;
  try {
    url = new URL(href, location.href);
  } catch {
    return document.createTextNode(text);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return document.createTextNode(text);
  return el("a", { href: url.href, rel: "noopener noreferrer nofollow", target: "_blank" }, text);
}
