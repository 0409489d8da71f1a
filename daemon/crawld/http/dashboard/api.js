// The API as the dashboard calls it: every call carries the credential (a Bearer
// header, never a cookie, never in the URL) and "X-Crawld-Client: dashboard", which
// makes the daemon leave the Basic/Digest challenges out of a 401, so the browser never
// pops its own login dialog over the page. Paths are relative to the page, so the
// dashboard also works behind a reverse proxy that serves crawld under a prefix.

const STORE = "crawld.credential";

/** The credential of this tab: an API key or a session token (POST /login.json), kept
 * in sessionStorage (gone when the tab closes; other sites cannot read it). */
export const credential = {
  get() {
    try {
      return JSON.parse(sessionStorage.getItem(STORE) || "null");
    } catch {
      return null;
    }
  },
  set(kind, token) {
    sessionStorage.setItem(STORE, JSON.stringify({kind, token}));
  },
  clear() {
    sessionStorage.removeItem(STORE);
  },
};

/** An answer of the API that is not ok: its HTTP code and its message. */
export class ApiError extends Error {
  constructor(status, msg) {
    super(msg);
    this.status = status;
  }
}

const unauthorized = new Set();

/** Call fn() whenever the API answers 401 (the credential is wrong or expired). */
export function onUnauthorized(fn) {
  unauthorized.add(fn);
}

/** The headers every call carries. */
export function headers() {
  const found = {"X-Crawld-Client": "dashboard"};
  const cred = credential.get();
  if (cred && cred.token) found.Authorization = `Bearer ${cred.token}`;
  return found;
}

/** A URL of the API: path relative to the page, params (arrays repeat a name). */
export function url(path, params) {
  const made = new URL(path, document.baseURI);
  for (const [name, value] of Object.entries(params || {})) {
    if (value === null || value === undefined || value === "") continue;
    for (const one of Array.isArray(value) ? value : [value]) {
      made.searchParams.append(name, String(one));
    }
  }
  return made;
}

/** fetch() with the dashboard's headers; `form` (an object, URLSearchParams or
 * FormData) is POSTed. Resolves with the Response whatever its code (a 401 also
 * tells the listeners). */
export async function request(path, {params, form, method, signal} = {}) {
  let body;
  if (form instanceof FormData || form instanceof URLSearchParams) {
    body = form;
  } else if (form) {
    body = new URLSearchParams();
    for (const [name, value] of Object.entries(form)) {
      if (value === null || value === undefined) continue;
      for (const one of Array.isArray(value) ? value : [value]) body.append(name, one);
    }
  }
  const response = await fetch(url(path, params), {
    method: method || (body ? "POST" : "GET"), body, signal, headers: headers(),
    credentials: "omit", cache: "no-store",
  });
  if (response.status === 401) {
    for (const fn of unauthorized) fn();
  }
  return response;
}

/** A JSON call: resolves with the answer's object, rejects with an ApiError. */
export async function call(path, options = {}) {
  const response = await request(path, options);
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok || !body || body.status !== "ok") {
    const msg = body && body.msg ? body.msg : `HTTP ${response.status}`;
    throw new ApiError(response.status, msg);
  }
  return body;
}

/** Whether the daemon serves `path` (some endpoints come with later crawlds): a 404
 * whose message says there is no such endpoint. */
export function missing(error) {
  return error instanceof ApiError && error.status === 404 &&
    /no such endpoint/.test(error.message);
}

/** Read a streamed response line by line: onLine(text) for each complete line. */
export async function readLines(response, onLine) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let rest = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    rest += decoder.decode(value, {stream: true});
    let at;
    while ((at = rest.indexOf("\n")) >= 0) {
      const line = rest.slice(0, at);
      rest = rest.slice(at + 1);
      if (line.trim()) onLine(line);
    }
  }
  if (rest.trim()) onLine(rest);
}

/** whoami.json, asked as soon as this module runs: index.html loads it on its own, so
 * the app's first question is on its way while the other modules load. */
export const firstWhoami = call("whoami.json");
firstWhoami.catch(() => {}); // the app handles a failure when it reads it
