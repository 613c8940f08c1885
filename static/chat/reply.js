/**
 * Streaming one assistant reply into its message view over Server-Sent Events.
 *
 * The events URL (from POST .../messages) streams `reasoning.delta`, `answer.delta`, `retract`,
 * `context_trimmed`, `escalation`, `done` and `error` (docs/CONTRACTS.md). Deltas accumulate and the answer is
 * re-rendered as safe Markdown at most once per frame; reasoning fills a collapsed "Thought for N s"
 * <details>; `retract` replaces the answer; `done` settles it with the disclaimer. EventSource
 * reconnects by itself with Last-Event-ID, and frames already seen are dropped, so a dropped
 * connection neither loses nor duplicates text. A new event kind is one entry in EVENT_HANDLERS.
 */

import { api } from "./api.js";
import { renderInto } from "./markdown.js";
import { disclaimerShow, noteAdd, reasoningShow, scrollToEnd } from "./messages.js";

// If the server never confirms a cancel with `done`, the page lets go of the reply after this.
const STOP_GRACE_MS = 8000;

function scheduleRender(reply) {
  if (reply.renderQueued) return;
  reply.renderQueued = true;
  const run = () => { reply.renderQueued = false; render(reply); };
  // requestAnimationFrame does not fire in a background tab; a timer keeps the answer current.
  if (document.hidden) setTimeout(run, 50);
  else requestAnimationFrame(run);
}

function render(reply) {
  renderInto(reply.view.bubble, reply.answer);
  if (reply.reasoning) {
    const ended = reply.reasoningEnd ?? (reply.finished ? performance.now() : null);
    reasoningShow(reply.view, reply.reasoning, ended === null ? null : (ended - reply.reasoningStart) / 1000);
  }
  scrollToEnd();
}

function settle(reply) {
  reply.finished = true;
  clearTimeout(reply.stopTimer);
  if (reply.source) reply.source.close();
  reply.view.article.dataset.streaming = "false";
  reply.view.bubble.removeAttribute("aria-busy");
  reply.hooks.onSettled(reply);
}

const EVENT_HANDLERS = {
  "reasoning.delta"(reply, data) {
    if (reply.reasoningStart === null) reply.reasoningStart = performance.now();
    reply.reasoning += data.text || "";
    scheduleRender(reply);
  },
  "answer.delta"(reply, data) {
    if (reply.reasoningStart !== null && reply.reasoningEnd === null) reply.reasoningEnd = performance.now();
    reply.answer += data.text || "";
    scheduleRender(reply);
  },
  retract(reply, data) {
    // {target: "answer"|"reasoning", reason: "safety"|"restart"}: everything shown so far on that
    // stream is withdrawn; what follows (new deltas, or done's content) replaces it.
    if (data.target === "reasoning") reply.reasoning = "";
    else reply.answer = "";
    scheduleRender(reply);
    if (data.reason === "safety" && !reply.retractNoted) {
      reply.retractNoted = true;
      noteAdd(reply.view, "Part of this answer was withdrawn by a safety check.");
    } else if (data.reason === "restart") {
      reply.hooks.announce("The answer is being restarted…");
    }
  },
  escalation(reply, data) {
    // The pack's crisis / emergency / human text; it also arrives as the answer's text.
    reply.hooks.onEscalation(data);
  },
  context_trimmed(reply, data) {
    noteAdd(reply.view, "Earlier messages were summarised to fit the assistant's memory.");
    reply.hooks.onContext({ tokens: data.tokens, budget: data.budget });
  },
  done(reply, data) {
    if (typeof data.content === "string") reply.answer = data.content;
    if (typeof data.reasoning === "string" && data.reasoning) reply.reasoning = data.reasoning;
    if (reply.reasoningStart === null && reply.reasoning) reply.reasoningStart = reply.startedAt;
    if (data.message_id) reply.view.article.dataset.messageId = data.message_id;
    settle(reply);
    render(reply);
    disclaimerShow(reply.view, data.disclaimer);
    if (data.finish_reason === "cancelled") noteAdd(reply.view, "Stopped before the answer was complete.");
    if (data.finish_reason === "length") noteAdd(reply.view, "The answer reached its length limit and was cut short.");
    if (data.context) reply.hooks.onContext(data.context);
    if (data.escalation) reply.hooks.onEscalation(data.escalation);
    reply.hooks.announce(data.finish_reason === "cancelled" ? "Stopped." : "Verity has answered.");
    reply.hooks.onDone(reply, data);
  },
  error(reply, data) {
    reply.failed = true;
    settle(reply);
    render(reply);
    noteAdd(reply.view, data.message || "Verity could not finish this answer. Please try again.", "error");
    reply.view.article.classList.add("message-failed");
    reply.hooks.announce("The answer failed.");
  },
};

function dispatch(reply, name, event) {
  if (reply.finished) return;
  // After a reconnect the server resumes from Last-Event-ID; ignoring ids already seen keeps a
  // replayed frame from duplicating text.
  if (event.lastEventId) {
    if (reply.seen.has(event.lastEventId)) return;
    reply.seen.add(event.lastEventId);
  }
  let data;
  try {
    data = JSON.parse(event.data || "{}");
  } catch (_err) {
    data = {};
  }
  EVENT_HANDLERS[name](reply, data);
}

/**
 * Follow the reply at `eventsUrl` into `view`. hooks: announce(text) for the screen-reader status,
 * onSettled(reply) once it stops for any reason, onDone(reply, data) after a successful `done`,
 * onEscalation({kind, text}) for the banner, onContext({tokens, budget, ratio?}) for the gauge.
 */
export function replyStart({ eventsUrl, replyId, view, hooks }) {
  const reply = {
    id: replyId, view, hooks, answer: "", reasoning: "", seen: new Set(), finished: false,
    startedAt: performance.now(), reasoningStart: null, reasoningEnd: null,
    renderQueued: false, source: null, stopTimer: null, retractNoted: false,
  };
  view.article.dataset.streaming = "true";
  view.article.dataset.replyId = replyId || "";
  view.bubble.setAttribute("aria-busy", "true");
  hooks.announce("Verity is answering…");
  const source = new EventSource(eventsUrl);
  reply.source = source;
  for (const name of Object.keys(EVENT_HANDLERS)) {
    if (name !== "error") source.addEventListener(name, (event) => dispatch(reply, name, event));
  }
  source.addEventListener("error", (event) => {
    // "error" is both the server's event name and EventSource's connection-failure signal.
    if (event instanceof MessageEvent && event.data !== undefined) {
      dispatch(reply, "error", event);
    } else if (!reply.finished && source.readyState === EventSource.CLOSED) {
      EVENT_HANDLERS.error(reply, { message: "The connection to Verity was lost. Reload the page to see the answer." });
    } else if (!reply.finished) {
      hooks.announce("Connection interrupted, reconnecting…");
    }
  });
  return reply;
}

/** Ask the server to stop generating; it confirms with done(finish_reason=cancelled). */
export async function replyCancel(reply) {
  await api("POST", `/chat/api/replies/${encodeURIComponent(reply.id)}/cancel`, {});
  reply.hooks.announce("Stopping…");
  reply.stopTimer = setTimeout(() => {
    if (!reply.finished) EVENT_HANDLERS.done(reply, { finish_reason: "cancelled" });
  }, STOP_GRACE_MS);
}

/** Stop listening without settling (the person left this conversation; the server carries on). */
export function replyDetach(reply) {
  reply.finished = true;
  clearTimeout(reply.stopTimer);
  if (reply.source) reply.source.close();
}
