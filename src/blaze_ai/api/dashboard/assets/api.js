// Calls to Blaze's API, with the admin key when auth is on.
//
// The key is asked for once and kept in sessionStorage only: it lives as long as the browser
// tab's session and is sent as a Bearer header on every call. A 401 or 403 answer forgets it
// and asks for it again (through the handler main.js installs with onAuthNeeded).
//
// Paths are relative ("admin/dashboard", not "/admin/dashboard"), so the page also works
// behind a reverse proxy that serves Blaze under a prefix.

const KEY_ITEM = "blaze.adminKey";

/** The answer was 401 or 403: the key is missing, wrong, or not the admin key. */
export class AuthNeeded extends Error {}

/** Any other answer that is not 2xx; `message` is the OpenAI error's message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let authNeededHandler = () => {};

/**
 * Call `handler(message, keySent)` whenever a call is refused for want of the admin key;
 * `keySent` says whether the refused call carried a key (then it was wrong).
 */
export function onAuthNeeded(handler) {
  authNeededHandler = handler;
}

/** The admin key of this browser session, or null. */
export function adminKey() {
  return sessionStorage.getItem(KEY_ITEM);
}

/** Keep `key` for this browser session. */
export function setAdminKey(key) {
  sessionStorage.setItem(KEY_ITEM, key);
}

/** Forget the admin key. */
export function forgetAdminKey() {
  sessionStorage.removeItem(KEY_ITEM);
}

/**
 * fetch(path) with the admin key and a JSON body (when `body` is given).
 * Resolves to the Response when it is 2xx; rejects with AuthNeeded (401, 403; the key is then
 * forgotten and the handler called) or ApiError (any other status).
 */
export async function request(path, { method = "GET", body, signal } = {}) {
  const headers = { Accept: "application/json" };
  const key = adminKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers, signal, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.ok) return response;
  const message = await errorMessage(response);
  if (response.status === 401 || response.status === 403) {
    forgetAdminKey();
    authNeededHandler(message, key !== null);
    throw new AuthNeeded(message);
  }
  throw new ApiError(response.status, message);
}

/** GET `path` and parse its JSON answer. */
export async function getJSON(path) {
  return (await request(path)).json();
}

/** POST `body` as JSON to `path` and parse the JSON answer. */
export async function postJSON(path, body, signal) {
  return (await request(path, { method: "POST", body, signal })).json();
}

/** The message of an OpenAI-shaped error answer, or its status line. */
async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body?.error?.message) return String(body.error.message);
  } catch {
    // not JSON: fall through to the status line
  }
  return `HTTP ${response.status} ${response.statusText}`.trim();
}
