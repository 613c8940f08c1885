/**
 * Per-answer actions under a finished assistant message: copy the answer, regenerate the latest
 * answer, and rate it (thumbs up / down, then an optional comment).
 *
 * The row is cloned from the page's #actions-template, so every control is a real <button> (keyboard
 * and screen-reader usable); results are announced in the row's own live region. Ratings go to
 * POST /chat/api/messages/<id>/feedback {rating, reason?}; a later submission replaces the earlier
 * one server-side, so a comment sent after the thumb is simply the same rating with its reason.
 * Regenerate is offered only on the newest model answer, and the page decides what it does
 * (`hooks.regenerate(view)`), because it replaces a message and starts a new stream.
 */

import { api } from "./api.js";

const template = document.getElementById("actions-template");

function status(view, text) {
  view.actionStatus.textContent = text;
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (_err) {
    // No clipboard permission (or not a secure context): copy through a hidden selection instead.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    let ok = false;
    try { ok = document.execCommand("copy"); } catch (_e) { ok = false; }
    area.remove();
    return ok;
  }
}

async function rate(view, rating, reason) {
  const body = reason === undefined ? { rating } : { rating, reason };
  const saved = await api("POST", `/chat/api/messages/${encodeURIComponent(view.messageId)}/feedback`, body);
  view.rating = saved.rating;
  for (const name of ["up", "down"]) {
    view.buttons[name].setAttribute("aria-pressed", name === saved.rating ? "true" : "false");
  }
  return saved;
}

async function onThumb(view, rating) {
  try {
    await rate(view, rating);
    status(view, "Thanks for your feedback.");
    view.feedbackForm.hidden = false;
    view.feedbackForm.querySelector("textarea").focus();
  } catch (err) {
    status(view, err.message);
  }
}

async function onFeedbackSubmit(view, event) {
  event.preventDefault();
  const textarea = view.feedbackForm.querySelector("textarea");
  const submit = view.feedbackForm.querySelector('button[type="submit"]');
  submit.disabled = true;
  try {
    await rate(view, view.rating, textarea.value);
    view.feedbackForm.hidden = true;
    status(view, "Thanks, your comment was sent to the team.");
    view.buttons[view.rating].focus();
  } catch (err) {
    // The comment stays in the box so nothing typed is lost.
    status(view, err.message);
  } finally {
    submit.disabled = false;
  }
}

/**
 * Give a settled assistant message its action row. `message`: {id, content, human, status, rating?}.
 * hooks.regenerate(view) runs when Regenerate is pressed.
 */
export function actionsAttach(view, message, hooks) {
  view.actions.replaceChildren(template.content.cloneNode(true));
  view.messageId = message.id;
  view.raw = message.content || "";
  view.human = Boolean(message.human);
  view.rating = message.rating || null;
  view.actionStatus = view.actions.querySelector(".action-status");
  view.feedbackForm = view.actions.querySelector(".feedback-form");
  view.buttons = {};
  for (const button of view.actions.querySelectorAll("button[data-action]")) {
    view.buttons[button.dataset.action] = button;
  }
  const rateable = Boolean(message.id) && message.status !== "failed";
  view.buttons.up.hidden = !rateable;
  view.buttons.down.hidden = !rateable;
  view.buttons.copy.hidden = !view.raw;
  view.buttons.copy.addEventListener("click", async () => {
    status(view, (await copyText(view.raw)) ? "Answer copied." : "Copy failed: select the text and copy it.");
  });
  view.buttons.up.addEventListener("click", () => onThumb(view, "up"));
  view.buttons.down.addEventListener("click", () => onThumb(view, "down"));
  view.buttons.regenerate.addEventListener("click", () => hooks.regenerate(view));
  view.buttons["feedback-cancel"].addEventListener("click", () => {
    view.feedbackForm.hidden = true;
    view.buttons[view.rating || "up"].focus();
  });
  view.feedbackForm.addEventListener("submit", (event) => onFeedbackSubmit(view, event));
  view.article.dataset.settled = "true";
}

/** Offer Regenerate on exactly one message: the newest model (not expert) answer, when idle. */
export function regenerateOffer(container, enabled) {
  const answers = [...container.querySelectorAll("article.message-assistant[data-settled='true']")]
    .filter((article) => article.dataset.human !== "true");
  const newest = answers[answers.length - 1];
  for (const article of answers) {
    const button = article.querySelector('button[data-action="regenerate"]');
    if (button) button.hidden = !(enabled && article === newest);
  }
}
