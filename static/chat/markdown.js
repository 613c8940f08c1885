/**
 * A small, safe Markdown renderer for model answers.
 *
 * Model text is untrusted: it may contain `<script>`, event-handler attributes, `javascript:` links
 * or remote images meant to track the reader. So this renderer never parses HTML. It splits the
 * text into blocks (paragraphs, headings, lists, quotes, fenced code, rules, pipe tables) and inline
 * spans (code, strong, emphasis, strike, links), and builds DOM nodes from a fixed list of tags with
 * `textContent` only. Raw HTML in the text stays literal text. Images are never loaded: `![alt](url)`
 * becomes the plain text "[image: alt]" so no request leaves the page. Links are kept only for
 * absolute http(s) and mailto URLs and open in a new tab without a referrer.
 *
 * The renderer is pure and re-entrant so the chat page can re-render the whole answer on every
 * streamed delta; an unfinished construct (an open ``` fence, a dangling `**`) renders as text or as
 * an open block until the closing marker arrives.
 */

const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);

/** Return the URL as a string if it is absolute and uses a safe protocol, else null. */
export function safeUrl(raw) {
  const text = String(raw || "").trim();
  if (!/^(https?:\/\/|mailto:)/i.test(text)) return null;
  try {
    const url = new URL(text);
    return SAFE_PROTOCOLS.has(url.protocol) ? url.href : null;
  } catch (_err) {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Inline spans
// ---------------------------------------------------------------------------------------------

/**
 * Find the closing `marker` at or after `from`, skipping backslash-escaped copies and, for "_"
 * markers, copies followed by a word character (snake_case and __dunder__ names stay literal).
 */
function findClosing(text, marker, from) {
  let i = from;
  while (i < text.length) {
    const at = text.indexOf(marker, i);
    if (at < 0) return -1;
    const escaped = text[at - 1] === "\\";
    const intraword = marker[0] === "_" && /\w/.test(text[at + marker.length] || "");
    if (!escaped && !intraword) return at;
    i = at + 1;
  }
  return -1;
}

/** Parse `[label](url)` starting at `start` (the "["); return {label, url, end} or null. */
function parseLinkAt(text, start) {
  let depth = 0;
  let i = start;
  for (; i < text.length; i += 1) {
    const ch = text[i];
    if (ch === "\\") { i += 1; continue; }
    if (ch === "[") depth += 1;
    if (ch === "]") { depth -= 1; if (depth === 0) break; }
  }
  if (i >= text.length || text[i + 1] !== "(") return null;
  const close = text.indexOf(")", i + 2);
  if (close < 0) return null;
  const target = text.slice(i + 2, close).trim().split(/\s+/)[0] || "";
  return { label: text.slice(start + 1, i), url: target, end: close + 1 };
}

const EMPHASIS = [
  { marker: "**", tag: "strong" },
  { marker: "__", tag: "strong" },
  { marker: "~~", tag: "del" },
  { marker: "*", tag: "em" },
  { marker: "_", tag: "em" },
];

/** Append inline nodes for `text` to `parent`. */
export function renderInline(text, parent, doc = document) {
  let buffer = "";
  const flush = () => {
    if (buffer) parent.appendChild(doc.createTextNode(buffer));
    buffer = "";
  };
  let i = 0;
  while (i < text.length) {
    const ch = text[i];
    if (ch === "\\" && i + 1 < text.length && /[\\`*_{}[\]()#+\-.!~|<>]/.test(text[i + 1])) {
      buffer += text[i + 1];
      i += 2;
      continue;
    }
    if (ch === "`") {
      const end = text.indexOf("`", i + 1);
      if (end > i) {
        flush();
        const code = doc.createElement("code");
        code.textContent = text.slice(i + 1, end);
        parent.appendChild(code);
        i = end + 1;
        continue;
      }
    }
    if (ch === "!" && text[i + 1] === "[") {
      const link = parseLinkAt(text, i + 1);
      if (link) {
        // Never an <img>: a remote image would leave a request (tracking pixel, data exfiltration).
        flush();
        const span = doc.createElement("span");
        span.className = "md-image";
        span.textContent = `[image: ${link.label || "untitled"}]`;
        parent.appendChild(span);
        i = link.end;
        continue;
      }
    }
    if (ch === "[") {
      const link = parseLinkAt(text, i);
      if (link) {
        flush();
        const href = safeUrl(link.url);
        if (href) {
          const a = doc.createElement("a");
          a.href = href;
          a.rel = "noopener noreferrer nofollow";
          a.target = "_blank";
          renderInline(link.label, a, doc);
          parent.appendChild(a);
        } else {
          renderInline(link.label, parent, doc);
        }
        i = link.end;
        continue;
      }
    }
    const emphasis = EMPHASIS.find((e) => text.startsWith(e.marker, i));
    if (emphasis) {
      const inner = i + emphasis.marker.length;
      // "_" inside words (snake_case) and markers followed by a space are literal text.
      const wordInside = emphasis.marker[0] === "_" && /\w/.test(text[i - 1] || "");
      const end = findClosing(text, emphasis.marker, inner + 1);
      if (!wordInside && end > inner && !/\s/.test(text[inner]) && !/\s/.test(text[end - 1])) {
        flush();
        const el = doc.createElement(emphasis.tag);
        renderInline(text.slice(inner, end), el, doc);
        parent.appendChild(el);
        i = end + emphasis.marker.length;
        continue;
      }
    }
    buffer += ch;
    i += 1;
  }
  flush();
}

/** Render the lines of one paragraph; single newlines become line breaks, as chat users expect. */
function renderLines(lines, parent, doc) {
  lines.forEach((line, index) => {
    if (index > 0) parent.appendChild(doc.createElement("br"));
    renderInline(line.trim(), parent, doc);
  });
}

// ---------------------------------------------------------------------------------------------
// Blocks
// ---------------------------------------------------------------------------------------------

const RE_FENCE = /^\s{0,3}(```|~~~)\s*([\w+-]*)\s*$/;
const RE_HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RE_RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
const RE_BULLET = /^(\s*)([-*+])\s+(.*)$/;
const RE_ORDERED = /^(\s*)(\d{1,9})[.)]\s+(.*)$/;
const RE_QUOTE = /^\s{0,3}>\s?(.*)$/;
const RE_TABLE_SEP = /^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$/;

function isBlockStart(line) {
  return RE_FENCE.test(line) || RE_HEADING.test(line) || RE_RULE.test(line) || RE_BULLET.test(line)
    || RE_ORDERED.test(line) || RE_QUOTE.test(line);
}

function splitRow(line) {
  let row = line.trim();
  if (row.startsWith("|")) row = row.slice(1);
  if (row.endsWith("|")) row = row.slice(0, -1);
  return row.split("|").map((cell) => cell.trim());
}

function renderTable(lines, doc) {
  const table = doc.createElement("table");
  const head = doc.createElement("thead");
  const headRow = doc.createElement("tr");
  splitRow(lines[0]).forEach((cell) => {
    const th = doc.createElement("th");
    renderInline(cell, th, doc);
    headRow.appendChild(th);
  });
  head.appendChild(headRow);
  table.appendChild(head);
  const body = doc.createElement("tbody");
  lines.slice(2).forEach((line) => {
    const tr = doc.createElement("tr");
    splitRow(line).forEach((cell) => {
      const td = doc.createElement("td");
      renderInline(cell, td, doc);
      tr.appendChild(td);
    });
    body.appendChild(tr);
  });
  table.appendChild(body);
  const wrap = doc.createElement("div");
  wrap.className = "md-table";
  wrap.appendChild(table);
  return wrap;
}

/** Render a list starting at lines[start]; returns [element, nextIndex]. */
function renderList(lines, start, doc) {
  const ordered = RE_ORDERED.test(lines[start]);
  const pattern = ordered ? RE_ORDERED : RE_BULLET;
  const list = doc.createElement(ordered ? "ol" : "ul");
  if (ordered) {
    const first = Number(lines[start].match(RE_ORDERED)[2]);
    if (first !== 1) list.start = first;
  }
  let i = start;
  let item = null;
  while (i < lines.length) {
    const line = lines[i];
    const match = line.match(pattern);
    if (match) {
      item = doc.createElement("li");
      renderInline(match[3], item, doc);
      list.appendChild(item);
    } else if (line.trim() && /^\s{2,}/.test(line) && item) {
      // An indented continuation line (or a nested item) stays inside the current item.
      item.appendChild(doc.createElement("br"));
      renderInline(line.trim().replace(/^([-*+]|\d+[.)])\s+/, "• "), item, doc);
    } else {
      break;
    }
    i += 1;
  }
  return [list, i];
}

/** Render `text` as a DocumentFragment of safe nodes. */
export function renderMarkdown(text, doc = document) {
  const fragment = doc.createDocumentFragment();
  const lines = String(text || "").replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i += 1; continue; }

    const fence = line.match(RE_FENCE);
    if (fence) {
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) { body.push(lines[i]); i += 1; }
      i += 1; // the closing fence (or past the end while it is still streaming)
      const pre = doc.createElement("pre");
      const code = doc.createElement("code");
      if (fence[2]) code.dataset.lang = fence[2];
      code.textContent = body.join("\n");
      pre.appendChild(code);
      fragment.appendChild(pre);
      continue;
    }
    const heading = line.match(RE_HEADING);
    if (heading) {
      // Answers sit inside a conversation, so headings start at h3 to keep the page outline sane.
      const level = Math.min(6, heading[1].length + 2);
      const h = doc.createElement(`h${level}`);
      renderInline(heading[2], h, doc);
      fragment.appendChild(h);
      i += 1;
      continue;
    }
    if (RE_RULE.test(line)) {
      fragment.appendChild(doc.createElement("hr"));
      i += 1;
      continue;
    }
    if (RE_BULLET.test(line) || RE_ORDERED.test(line)) {
      const [list, next] = renderList(lines, i, doc);
      fragment.appendChild(list);
      i = next;
      continue;
    }
    if (RE_QUOTE.test(line)) {
      const quoted = [];
      while (i < lines.length && RE_QUOTE.test(lines[i])) { quoted.push(lines[i].match(RE_QUOTE)[1]); i += 1; }
      const quote = doc.createElement("blockquote");
      quote.appendChild(renderMarkdown(quoted.join("\n"), doc));
      fragment.appendChild(quote);
      continue;
    }
    if (line.includes("|") && i + 1 < lines.length && RE_TABLE_SEP.test(lines[i + 1])) {
      const rows = [line, lines[i + 1]];
      i += 2;
      while (i < lines.length && lines[i].includes("|") && lines[i].trim()) { rows.push(lines[i]); i += 1; }
      fragment.appendChild(renderTable(rows, doc));
      continue;
    }
    const paragraph = [];
    while (i < lines.length && lines[i].trim() && (paragraph.length === 0 || !isBlockStart(lines[i]))) {
      paragraph.push(lines[i]);
      i += 1;
    }
    const p = doc.createElement("p");
    renderLines(paragraph, p, doc);
    fragment.appendChild(p);
  }
  return fragment;
}

/** Replace the children of `element` with the rendering of `text`. */
export function renderInto(element, text) {
  element.replaceChildren(renderMarkdown(text, element.ownerDocument));
}
