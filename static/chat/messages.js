/**
 * Message views: one <article> per message, cloned from the page's #message-template, with a
 * bubble, a collapsed reasoning <details>, the disclaimer and a slot for per-message actions
 * (actions.js fills it). The user's text is set with textContent; the assistant's answer (and an
 * expert's reply, labelled as written by a person) goes through the safe Markdown renderer.
 * Nothing here parses HTML.
 */

import { renderInto } from "./markdown.js";

const container = document.getElementById("messages");
const template = document.getElementById("message-template");

export function scrollToEnd() {
  container.scrollTop = container.scrollHeight;
}

/**
 * Create a message at the end of the conversation (or in place of `replace`, an article that a
 * regenerated answer supersedes); returns handles on its parts.
 */
export function messageCreate(role, { replace = null, author = null } = {}) {
  const article = template.content.firstElementChild.cloneNode(true);
  article.classList.add(`message-${role}`);
  article.dataset.role = role;
  const label = role === "user" ? "You" : author ? `${author} · a person, not the AI` : "Verity";
  article.querySelector(".message-role").textContent = label;
  if (author) {
    article.dataset.human = "true";
    article.classList.add("message-human");
  }
  if (replace) replace.replaceWith(article);
  else container.appendChild(article);
  scrollToEnd();
  return {
    article,
    bubble: article.querySelector(".bubble"),
    reasoning: article.querySelector(".reasoning"),
    reasoningSummary: article.querySelector(".reasoning-summary"),
    reasoningBody: article.querySelector(".reasoning-body"),
    disclaimer: article.querySelector(".disclaimer"),
    actions: article.querySelector(".message-actions"),
  };
}

/** Remove every message, keeping the AI notice at the top. */
export function messagesClear() {
  for (const node of [...container.children]) {
    if (node.id !== "ai-notice") node.remove();
  }
}

/** A short line under the bubble: "stopped", "cut short", or an error (kind "error"). */
export function noteAdd(view, text, kind = "note") {
  const note = document.createElement("p");
  note.className = `message-note message-note-${kind}`;
  note.textContent = text;
  view.bubble.after(note);
  return note;
}

/** Show reasoning collapsed; `seconds` null = still thinking, undefined = duration unknown. */
export function reasoningShow(view, text, seconds) {
  view.reasoning.hidden = !text;
  view.reasoningBody.textContent = text || "";
  if (seconds === null) view.reasoningSummary.textContent = "Thinking…";
  else if (seconds === undefined) view.reasoningSummary.textContent = "Show reasoning";
  else view.reasoningSummary.textContent = `Thought for ${Math.max(1, Math.round(seconds))} s`;
}

export function disclaimerShow(view, text) {
  view.disclaimer.textContent = text || "";
  view.disclaimer.hidden = !text;
}

/** Render a stored message (from GET /chat/api/conversations/<id>). */
export function messageShow(message) {
  const author = message.human ? message.name || "Specialist" : null;
  const view = messageCreate(message.role === "user" ? "user" : "assistant", { author });
  if (message.id) view.article.dataset.messageId = message.id;
  if (message.role === "user") {
    view.bubble.textContent = message.content || "";
    return view;
  }
  renderInto(view.bubble, message.content || "");
  reasoningShow(view, message.reasoning || "", undefined);
  disclaimerShow(view, message.disclaimer);
  if (message.finish_reason === "cancelled") noteAdd(view, "Stopped before the answer was complete.");
  if (message.status === "failed") {
    const reason = message.error && message.error.message;
    noteAdd(view, reason || "This answer could not be completed.", "error");
    view.article.classList.add("message-failed");
  }
  return view;
}
