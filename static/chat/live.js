/**
 * What the open conversation shows besides its messages: the escalation banner with "talk to a
 * human", the context gauge, and the conversation's own live stream.
 *
 * - Banner: when an answer escalates (crisis, emergency, or the person asked for a human) the pack's
 *   text is shown in a role="alert" banner with a "Talk to a human" button; the same request is in
 *   the conversation toolbar at all times. POST /chat/api/conversations/<id>/handoff is idempotent
 *   while a request is open, so pressing twice never queues twice.
 * - Gauge: a <meter> of how much of the model's window the latest prompt used ({tokens, budget, ratio}
 *   from the conversation API, `done.context` and `context_trimmed`).
 * - Live stream: GET /chat/api/conversations/<id>/events (SSE, never ends by itself) brings
 *   `human.message` (an expert's reply from the console) and `handoff.requested`. The stream replays
 *   from its start on connect, so messages already on screen (by id) are skipped.
 */

import { api } from "./api.js";

const el = {
  banner: document.getElementById("banner"),
  bannerTitle: document.getElementById("banner-title"),
  bannerText: document.getElementById("banner-text"),
  bannerHandoff: document.getElementById("banner-handoff"),
  handoffStatus: document.getElementById("handoff-status"),
  toolbarHandoff: document.getElementById("handoff-button"),
  gauge: document.getElementById("context-gauge"),
  meter: document.getElementById("context-meter"),
  gaugeText: document.getElementById("context-text"),
  messages: document.getElementById("messages"),
};

const BANNER_TITLES = {
  crisis: "You don't have to go through this alone",
  emergency: "This may be an emergency",
  fraud: "This may be a scam",
  human: "A person can help with this",
};

const live = { conversationId: null, source: null, hooks: null, handoffOpen: false };

export function bannerShow(escalation) {
  if (!escalation) return;
  el.bannerTitle.textContent = BANNER_TITLES[escalation.kind] || "Please read this";
  el.bannerText.textContent = escalation.text || "";
  el.banner.dataset.kind = escalation.kind || "human";
  el.banner.hidden = false;
}

export function bannerHide() {
  el.banner.hidden = true;
  el.bannerTitle.textContent = "";
  el.bannerText.textContent = "";
  el.handoffStatus.textContent = "";
}

function handoffShowOpen() {
  live.handoffOpen = true;
  el.handoffStatus.textContent = "A specialist has been asked to join. Their reply will appear here.";
  for (const button of [el.bannerHandoff, el.toolbarHandoff]) {
    button.textContent = "Human requested";
    button.setAttribute("aria-disabled", "true");
  }
}

function handoffReset() {
  live.handoffOpen = false;
  for (const button of [el.bannerHandoff, el.toolbarHandoff]) {
    button.textContent = "Talk to a human";
    button.removeAttribute("aria-disabled");
  }
}

/** "Talk to a human": queue a request for the experts and say so, in the banner and to screen readers. */
export async function handoffRequest() {
  if (!live.conversationId) return;
  if (live.handoffOpen) {
    live.hooks.announce("A specialist has already been asked to join.");
    return;
  }
  try {
    await api("POST", `/chat/api/conversations/${encodeURIComponent(live.conversationId)}/handoff`, {});
    if (el.banner.hidden) bannerShow({ kind: "human", text: "" });
    handoffShowOpen();
    live.hooks.announce("A specialist has been asked to join this conversation.");
  } catch (err) {
    live.hooks.showError(err.message);
  }
}

/** Show how much of the window the latest prompt used; hidden until there is a budget. */
export function gaugeUpdate(context) {
  if (!context || !context.budget) {
    el.gauge.hidden = true;
    return;
  }
  const ratio = Math.min(1, context.ratio ?? context.tokens / context.budget);
  el.meter.value = ratio;
  el.gaugeText.textContent = `${Math.round(ratio * 100)}% of memory used`;
  el.gauge.title = `${context.tokens} of ${context.budget} tokens`;
  el.gauge.hidden = false;
}

function onHumanMessage(event) {
  let data;
  try { data = JSON.parse(event.data || "{}"); } catch (_err) { return; }
  if (String(data.conversation_id) !== live.conversationId) return;
  handoffReset();  // an expert answered: the request is no longer open
  el.handoffStatus.textContent = "";
  const shown = el.messages.querySelector(`article[data-message-id="${CSS.escape(String(data.message_id))}"]`);
  if (shown) return;
  live.hooks.humanMessage(data);
  live.hooks.announce(`${data.name || "A specialist"} replied.`);
}

function onHandoffRequested(event) {
  let data;
  try { data = JSON.parse(event.data || "{}"); } catch (_err) { return; }
  if (data.status === "open") handoffShowOpen();
}

/**
 * Follow the conversation's own stream. hooks: announce(text), showError(text),
 * humanMessage(data) to put an expert's message on screen.
 */
export function liveFollow(conversationId, eventsUrl, hooks) {
  liveStop();
  live.conversationId = String(conversationId);
  live.hooks = hooks;
  const source = new EventSource(eventsUrl || `/chat/api/conversations/${encodeURIComponent(conversationId)}/events`);
  source.addEventListener("human.message", onHumanMessage);
  source.addEventListener("handoff.requested", onHandoffRequested);
  live.source = source;
  document.body.dataset.liveConversation = live.conversationId;
}

export function liveStop() {
  if (live.source) live.source.close();
  live.source = null;
  live.conversationId = null;
  delete document.body.dataset.liveConversation;
  bannerHide();
  handoffReset();
  gaugeUpdate(null);
}

export function liveInit(hooks) {
  live.hooks = hooks;
  el.bannerHandoff.addEventListener("click", handoffRequest);
  el.toolbarHandoff.addEventListener("click", handoffRequest);
}
