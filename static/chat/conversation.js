/**
 * The conversation around the messages: the sidebar list with search, and the toolbar's rename,
 * export and delete.
 *
 * - List: GET /chat/api/conversations[?q=] (newest first); search is debounced and announced
 *   ("3 conversations found"), and an empty result says so instead of showing a blank list.
 * - Rename: a native <dialog> (focus moves in and returns, Escape closes) with the title prefilled;
 *   PATCH {title}; a server error is shown in the dialog and the typed title is kept.
 * - Export: plain download links to .../export?format=md|json (the server sends an attachment).
 * - Delete: a confirmation <dialog> that says what happens to the firm's record; DELETE, then the
 *   page returns to a new conversation via `hooks.deleted()`.
 */

import { api } from "./api.js";

const API = "/chat/api";
const SEARCH_DEBOUNCE_MS = 250;

const el = {
  list: document.getElementById("conversation-list"),
  listEmpty: document.getElementById("conversation-empty"),
  searchForm: document.getElementById("search-form"),
  search: document.getElementById("search-input"),
  searchStatus: document.getElementById("search-status"),
  tools: document.getElementById("conversation-tools"),
  exportMd: document.getElementById("export-md"),
  exportJson: document.getElementById("export-json"),
  renameButton: document.getElementById("rename-button"),
  renameDialog: document.getElementById("rename-dialog"),
  renameForm: document.getElementById("rename-form"),
  renameInput: document.getElementById("rename-input"),
  renameError: document.getElementById("rename-error"),
  deleteButton: document.getElementById("delete-button"),
  deleteDialog: document.getElementById("delete-dialog"),
  deleteForm: document.getElementById("delete-form"),
  deleteError: document.getElementById("delete-error"),
};

const current = { id: null, title: "", hooks: null, searchTimer: null, searchSeq: 0 };

function listRender(conversations, query) {
  el.list.replaceChildren();
  for (const conversation of conversations) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.className = "conversation-link";
    link.href = `#c=${encodeURIComponent(conversation.id)}`;
    link.dataset.conversationId = conversation.id;
    link.dataset.domain = conversation.domain;
    const title = document.createElement("span");
    title.className = "conversation-title";
    title.textContent = conversation.title || "Untitled conversation";
    const domain = document.createElement("span");
    domain.className = "conversation-domain";
    domain.textContent = current.hooks.domainTitle(conversation.domain);
    link.append(title, domain);
    if (String(conversation.id) === current.id) {
      link.setAttribute("aria-current", "page");
      if (conversation.title && conversation.title !== current.title) {
        current.title = conversation.title;  // the server titled it after the first message
        current.hooks.titled(conversation.title);
      }
    }
    item.appendChild(link);
    el.list.appendChild(item);
  }
  el.listEmpty.textContent = query ? `No conversations match “${query}”.` : "No conversations yet.";
  el.listEmpty.hidden = conversations.length > 0;
  if (query) {
    const n = conversations.length;
    el.searchStatus.textContent = `${n} conversation${n === 1 ? "" : "s"} found.`;
  } else {
    el.searchStatus.textContent = "";
  }
}

/** Reload the list (honouring the search box); failures leave the list as it was. */
export async function conversationsRefresh() {
  const query = el.search.value.trim();
  const seq = ++current.searchSeq;
  try {
    const url = query ? `${API}/conversations?q=${encodeURIComponent(query)}` : `${API}/conversations`;
    const data = await api("GET", url);
    if (seq === current.searchSeq) listRender(data.conversations || [], query);
  } catch (err) {
    if (query) el.searchStatus.textContent = err.message;
  }
}

/** The toolbar follows the open conversation (null: none open). */
export function conversationToolsSet(conversation) {
  current.id = conversation ? String(conversation.id) : null;
  current.title = conversation ? conversation.title || "" : "";
  el.tools.hidden = !conversation;
  for (const link of el.list.querySelectorAll("a[data-conversation-id]")) {
    if (link.dataset.conversationId === current.id) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!conversation) {
    el.exportMd.removeAttribute("href");
    el.exportJson.removeAttribute("href");
    return;
  }
  const base = `${API}/conversations/${encodeURIComponent(conversation.id)}/export`;
  el.exportMd.href = `${base}?format=md`;
  el.exportJson.href = `${base}?format=json`;
}

function dialogOpen(dialog, errorBox) {
  errorBox.hidden = true;
  errorBox.textContent = "";
  dialog.showModal();
}

function dialogError(errorBox, message) {
  errorBox.textContent = message;
  errorBox.hidden = false;
}

async function renameSubmit(event) {
  event.preventDefault();
  const title = el.renameInput.value.trim();
  if (!title) {
    dialogError(el.renameError, "Enter a title.");
    el.renameInput.focus();
    return;
  }
  try {
    const saved = await api("PATCH", `${API}/conversations/${encodeURIComponent(current.id)}`, { title });
    current.title = saved.title;
    el.renameDialog.close();
    current.hooks.renamed(saved);
    el.renameButton.focus();
    await conversationsRefresh();
  } catch (err) {
    dialogError(el.renameError, err.message);  // the typed title stays in the box
    el.renameInput.focus();
  }
}

async function deleteSubmit(event) {
  event.preventDefault();
  const id = current.id;
  const submit = el.deleteForm.querySelector('button[type="submit"]');
  submit.disabled = true;
  try {
    await api("DELETE", `${API}/conversations/${encodeURIComponent(id)}`);
    // Gone from the list at once: a list request already in flight must not bring it back.
    current.searchSeq += 1;
    for (const link of el.list.querySelectorAll("a[data-conversation-id]")) {
      if (link.dataset.conversationId === id) link.closest("li").remove();
    }
    el.deleteDialog.close();
    current.hooks.deleted(id);
    await conversationsRefresh();
  } catch (err) {
    dialogError(el.deleteError, err.message);
  } finally {
    submit.disabled = false;
  }
}

/** hooks: domainTitle(slug), renamed(conversation), titled(title), deleted(id). */
export function conversationInit(hooks) {
  current.hooks = hooks;
  el.searchForm.addEventListener("submit", (event) => { event.preventDefault(); conversationsRefresh(); });
  el.search.addEventListener("input", () => {
    clearTimeout(current.searchTimer);
    current.searchTimer = setTimeout(conversationsRefresh, SEARCH_DEBOUNCE_MS);
  });
  el.renameButton.addEventListener("click", () => {
    el.renameInput.value = current.title;
    dialogOpen(el.renameDialog, el.renameError);
    el.renameInput.select();
  });
  el.renameForm.addEventListener("submit", renameSubmit);
  el.deleteButton.addEventListener("click", () => dialogOpen(el.deleteDialog, el.deleteError));
  el.deleteForm.addEventListener("submit", deleteSubmit);
  for (const button of document.querySelectorAll("dialog [data-close]")) {
    button.addEventListener("click", () => button.closest("dialog").close());
  }
  el.deleteDialog.addEventListener("close", () => { if (current.id) el.deleteButton.focus(); });
}
