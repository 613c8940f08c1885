/**
 * The chat JSON API client: one `api(method, url, body)` that sends the session's CSRF token,
 * parses JSON, and turns every failure into an `ApiError` carrying the server's stable error code
 * and human message (`{"error": {"code", "message", "field"?}}`, docs/CONTRACTS.md), or a plain
 * explanation when the network or a non-JSON error page got in the way.
 */

export class ApiError extends Error {
  constructor(code, message, status, field) {
    super(message);
    this.name = "ApiError";
    this.code = code;
    this.status = status;
    this.field = field;
  }
}

/** The CSRF token for the X-CSRFToken header. */
export function csrfToken() {
  // The cookie is always current (Django rotates the token at login); the meta tag covers
  // deployments that set CSRF_COOKIE_HTTPONLY.
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  if (match) return decodeURIComponent(match[1]);
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

/** Call the chat API; resolves to the JSON body, rejects with an ApiError a person can read. */
export async function api(method, url, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
  let response;
  try {
    response = await fetch(url, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (_err) {
    throw new ApiError("network_error", "Could not reach Verity. Check your connection and try again.", 0);
  }
  const isJson = (response.headers.get("Content-Type") || "").includes("application/json");
  const payload = isJson ? await response.json().catch(() => null) : null;
  if (response.ok) return payload || {};
  const error = payload && payload.error;
  if (error && error.message) throw new ApiError(error.code || "error", error.message, response.status, error.field);
  if (response.status === 401 || response.status === 403) {
    throw new ApiError("authentication_required", "Your session has expired. Please sign in again.", response.status);
  }
  throw new ApiError(`http_${response.status}`,
    `Verity could not complete that (HTTP ${response.status}). Please try again.`, response.status);
}
