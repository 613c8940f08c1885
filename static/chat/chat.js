/**
 * The customer chat page: domain picker, composer, the reply being streamed, and the wiring of
 * the page's other parts.
 *
 * Loaded with <script type="module"> (the CSP allows scripts from 'self' only; nothing is inline).
 * It speaks the chat front door of docs/CONTRACTS.md:
 *   POST /chat/api/conversations {domain}             -> {id, domain, title, pack_version}
 *   GET  /chat/api/conversations/<id>                 -> one conversation with messages, context, events_url
 *   POST /chat/api/conversations/<id>/messages {text} -> {message_id, reply_id, events_url}
 *   POST /chat/api/conversations/<id>/regenerate      -> {reply_id, message_id, events_url}
 *   POST /chat/api/replies/<reply_id>/cancel          -> the stop button
 * Module map: api.js (fetch + errors), messages.js (message views), reply.js (SSE streaming of a
 * reply), actions.js (copy, regenerate, feedback), conversation.js (list, search, rename, export,
 * delete), live.js (escalation banner, talk to a human, context gauge, an expert's live replies),
 * markdown.js (safe rendering).
 */

import { actionsAttach, regenerateOffer } from "./actions.js";
import { api } from "./api.js";
import { conversationInit, conversationsRefresh, conversationToolsSet } from "./conversation.js";
import { bannerShow, gaugeUpdate, liveFollow, liveInit, liveStop } from "./live.js";
import { messageCreate, messageShow, messagesClear } from "./messages.js";
import { replyCancel, replyDetach, replyStart } from "./reply.js";

const API = "/chat/api";

const el = {
  composer: document.getElementById("composer"),
  input: document.getElementById("message-input"),
  send: document.getElementById("send-button"),
  stop: document.getElementById("stop-button"),
  error: document.getElementById("error"),
  status: document.getElementById("status"),
  picker: document.getElementById("domain-picker"),
  heading: document.getElementById("chat-heading"),
  badge: document.getElementById("domain-badge"),
  messages: document.getElementById("messages"),
  newConversation: document.getElementById("new-conversation"),
  sidebarToggle: document.getElementById("sidebar-toggle"),
  list: document.getElementById("conversation-list"),
};

/** What the page is doing: the open conversation and the reply being streamed, if any. */
const state = { conversationId: null, domain: null, reply: null, sending: false };

function showError(message) {
  el.error.textContent = message;
  el.error.hidden = false;
}

function clearError() {
  el.error.hidden = true;
  el.error.textContent = "";
}

function announce(text) {
  el.status.textContent = text;
}

function domainTitle(slug) {
  const input = el.picker.querySelector(`input[name="domain"][value="${CSS.escape(slug || "")}"]`);
  return input ? input.dataset.title : slug;
}

function selectedDomain() {
  const checked = el.picker.querySelector('input[name="domain"]:checked');
  return checked ? checked.value : null;
}

function setBusy(busy) {
  el.send.disabled = busy;
  el.stop.hidden = !(busy && state.reply);
  el.composer.dataset.busy = busy ? "true" : "false";
  regenerateOffer(el.messages, !busy);
}

// ---------------------------------------------------------------------------------------------
// Replies: streaming, stop, regenerate
// ---------------------------------------------------------------------------------------------

const actionHooks = { regenerate: replyRegenerate };

const replyHooks = {
  announce,
  onSettled(reply) {
    if (state.reply === reply) state.reply = null;
    const id = reply.view.article.dataset.messageId || reply.id;
    actionsAttach(reply.view, { id, content: reply.answer, status: reply.failed ? "failed" : "complete" },
      actionHooks);
    setBusy(false);
  },
  onDone() {
    conversationsRefresh();
  },
  onEscalation: bannerShow,
  onContext: gaugeUpdate,
};

function replyFollow(eventsUrl, replyId, view) {
  state.reply = replyStart({ eventsUrl, replyId, view, hooks: replyHooks });
  setBusy(true);
}

async function replyStop() {
  const reply = state.reply;
  if (!reply || !reply.id) return;
  el.stop.disabled = true;
  try {
    await replyCancel(reply);
  } catch (err) {
    showError(err.message);
  } finally {
    el.stop.disabled = false;
  }
}

/** A new answer to the last question, streamed in place of `view` (the server keeps the old one). */
async function replyRegenerate(view) {
  if (state.reply || state.sending || !state.conversationId) return;
  clearError();
  state.sending = true;
  try {
    const started = await api("POST", `${API}/conversations/${encodeURIComponent(state.conversationId)}/regenerate`, {});
    replyFollow(started.events_url, started.reply_id, messageCreate("assistant", { replace: view.article }));
    announce("Writing a new answer…");
  } catch (err) {
    showError(err.message);
  } finally {
    state.sending = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Conversations
// ---------------------------------------------------------------------------------------------

function conversationSet(conversation) {
  const changed = state.conversationId !== String(conversation.id);
  state.conversationId = String(conversation.id);
  state.domain = conversation.domain;
  el.picker.hidden = true;
  el.badge.hidden = false;
  el.badge.textContent = domainTitle(conversation.domain);
  el.heading.textContent = conversation.title || `${domainTitle(conversation.domain)} assistant`;
  history.replaceState(null, "", `#c=${encodeURIComponent(conversation.id)}`);
  conversationToolsSet(conversation);
  if (changed) liveFollow(conversation.id, conversation.events_url, liveHooks);
  if (conversation.context) gaugeUpdate(conversation.context);
}

function conversationReset() {
  if (state.reply) replyDetach(state.reply);
  state.reply = null;
  state.conversationId = null;
  state.domain = null;
  liveStop();
  messagesClear();
  clearError();
  setBusy(false);
  conversationToolsSet(null);
  el.picker.hidden = false;
  el.badge.hidden = true;
  el.heading.textContent = "How can Verity help?";
  history.replaceState(null, "", location.pathname);
}

function storedShow(message) {
  const view = messageShow(message);
  if (message.role !== "user" && message.status !== "pending" && message.status !== "streaming") {
    actionsAttach(view, message, actionHooks);
  }
  if (message.escalation) bannerShow(message.escalation);
  return view;
}

async function conversationOpen(id) {
  conversationReset();
  try {
    const conversation = await api("GET", `${API}/conversations/${encodeURIComponent(id)}`);
    conversationSet(conversation);
    let last = null;
    for (const message of conversation.messages || []) last = { message, view: storedShow(message) };
    // A reply still being written when the page loaded: follow it (the relay replays from the start).
    const pending = last && last.message.role !== "user"
      && (last.message.status === "pending" || last.message.status === "streaming");
    if (pending) {
      const replyId = last.message.id;
      replyFollow(last.message.events_url || `${API}/replies/${encodeURIComponent(replyId)}/events`, replyId, last.view);
    } else {
      setBusy(false);
    }
    el.input.focus();
  } catch (err) {
    showError(err.message);
  }
}

const liveHooks = {
  announce,
  showError,
  humanMessage(data) {
    const view = messageShow({ id: data.message_id, role: "assistant", content: data.content, human: true,
      name: data.name, status: "complete" });
    actionsAttach(view, { id: data.message_id, content: data.content, human: true, status: "complete" },
      actionHooks);
  },
};

// ---------------------------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------------------------

async function messageSend() {
  if (state.sending || state.reply) {
    announce("Wait for the current answer to finish, or stop it.");
    return;
  }
  const text = el.input.value;
  clearError();
  if (!text.trim()) { showError("Type a message first."); el.input.focus(); return; }
  if (!state.conversationId && !selectedDomain()) {
    showError("Choose a topic first: finance, medical or legal.");
    const first = el.picker.querySelector('input[name="domain"]');
    if (first) first.focus();
    return;
  }
  state.sending = true;
  setBusy(true);
  const userView = messageCreate("user");
  userView.bubble.textContent = text;
  el.input.value = "";
  try {
    if (!state.conversationId) {
      const conversation = await api("POST", `${API}/conversations`, { domain: selectedDomain() });
      conversationSet(conversation);
      conversationsRefresh();
    }
    const sent = await api("POST", `${API}/conversations/${encodeURIComponent(state.conversationId)}/messages`, { text });
    userView.article.dataset.messageId = sent.message_id || "";
    replyFollow(sent.events_url, sent.reply_id, messageCreate("assistant"));
  } catch (err) {
    // Nothing was sent: take the bubble back and give the person their text again.
    userView.article.remove();
    el.input.value = text;
    showError(err.message);
    setBusy(false);
  } finally {
    state.sending = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Wiring
// ---------------------------------------------------------------------------------------------

function conversationFromHash() {
  const match = location.hash.match(/^#c=(.+)$/);
  return match ? decodeURIComponent(match[1]) : null;
}

function init() {
  el.composer.addEventListener("submit", (event) => { event.preventDefault(); messageSend(); });
  el.input.addEventListener("keydown", (event) => {
    // Enter sends; Shift+Enter inserts a newline; Enter while composing (IME) is left alone.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      messageSend();
    }
  });
  el.stop.addEventListener("click", replyStop);
  el.newConversation.addEventListener("click", () => {
    conversationReset();
    const first = el.picker.querySelector('input[name="domain"]');
    if (first) first.focus();
  });
  el.picker.addEventListener("change", () => { clearError(); el.input.focus(); });
  el.sidebarToggle.addEventListener("click", () => {
    const open = document.body.classList.toggle("sidebar-open");
    el.sidebarToggle.setAttribute("aria-expanded", open ? "true" : "false");
  });
  el.list.addEventListener("click", () => {
    document.body.classList.remove("sidebar-open");
    el.sidebarToggle.setAttribute("aria-expanded", "false");
  });
  window.addEventListener("hashchange", () => {
    const id = conversationFromHash();
    if (id && id !== state.conversationId) conversationOpen(id);
  });
  conversationInit({
    domainTitle,
    renamed(conversation) { el.heading.textContent = conversation.title; announce("Conversation renamed."); },
    titled(title) { el.heading.textContent = title; },
    deleted() {
      conversationReset();
      announce("Conversation deleted.");
      el.newConversation.focus();
    },
  });
  liveInit(liveHooks);
  const initial = conversationFromHash();
  if (initial) conversationOpen(initial);
  document.body.dataset.chatReady = "true";
}

init();
